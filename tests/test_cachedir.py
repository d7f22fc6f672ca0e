"""kgen's caches stay bounded: the entries used longest ago go first, nothing else does."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from codegen import cachedir


def entry(root, name, when, kind="file"):
    path = root / name
    if kind == "dir":
        path.mkdir()
        (path / "MANIFEST").write_text("x")
    else:
        path.write_text("x")
    os.utime(path, (when, when))
    return path


def test_the_least_recently_used_entries_go_first(tmp_path):
    for i in range(6):
        entry(tmp_path, f"e{i}", 1000 + i, "dir" if i % 2 else "file")
    assert cachedir.prune(tmp_path, keep=4) == ["e0", "e1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e2", "e3", "e4", "e5"]
    assert cachedir.prune(tmp_path, keep=4) == []


def test_an_entry_used_again_is_kept(tmp_path):
    old = entry(tmp_path, "old", 1000)
    for i in range(3):
        entry(tmp_path, f"new{i}", 2000 + i)
    cachedir.used(old)
    cachedir.prune(tmp_path, keep=3)
    assert old.exists() and not (tmp_path / "new0").exists()


def test_sidecars_go_with_their_entry_and_entries_being_written_stay(tmp_path):
    entry(tmp_path, "core-1.o", 1000)
    entry(tmp_path, "core-1.o.sha256", 3000)  # the newest time of a group counts
    entry(tmp_path, "core-2.o", 2000)
    entry(tmp_path, "core-2.o.sha256", 2000)
    entry(tmp_path, ".core-3.o.tmp", time.time() - 60)  # being written now
    entry(tmp_path, ".core-4.o.tmp", time.time() - cachedir.ABANDONED - 60)  # a killed store's
    assert cachedir.prune(tmp_path, keep=1, sidecars=(".sha256",)) == ["core-2.o"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".core-3.o.tmp", "core-1.o",
                                                          "core-1.o.sha256"]  # fmt: skip


def test_used_marks_a_link_not_what_it_points_at(tmp_path):
    target = entry(tmp_path, "target", 1000)
    (tmp_path / "link").symlink_to(target)
    cachedir.used(tmp_path / "link")
    assert target.stat().st_mtime == 1000
    assert (tmp_path / "link").lstat().st_mtime > 1000


def test_a_link_is_removed_not_followed(tmp_path):
    cache, outside = tmp_path / "levels", tmp_path / "outside"
    cache.mkdir()
    outside.mkdir()
    (outside / "keep").write_text("x")
    (cache / "link").symlink_to(outside, target_is_directory=True)
    os.utime(cache / "link", (1000, 1000), follow_symlinks=False)
    entry(cache, "new", 2000)
    assert cachedir.prune(cache, keep=1) == ["link"]
    assert (outside / "keep").exists() and not (cache / "link").exists()


def test_a_missing_directory_is_no_error(tmp_path):
    assert cachedir.prune(tmp_path / "levels") == []
    assert set(cachedir.LIMITS) == {"levels", "objects", "loaded", "decoded", "templates"}


def test_a_relative_xdg_cache_home_is_ignored(monkeypatch, tmp_path):
    from codegen import cache_root

    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")
    assert cache_root() == Path(os.path.expanduser("~")) / ".cache" / "kgen"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "kgen"


def test_a_cache_directory_and_its_missing_parents_are_made_0700(tmp_path):
    (tmp_path / "home").mkdir(mode=0o755)
    old = os.umask(0o002)
    try:
        cachedir.make_dir(tmp_path / "home" / ".cache" / "kgen" / "loaded")
        cachedir.make_dir(tmp_path / "home" / ".cache" / "kgen" / "loaded")  # there: no error
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "home").rglob("*")}
    assert modes == {".cache": 0o700, "kgen": 0o700, "loaded": 0o700}
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o755  # not made: left alone
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        cachedir.make_dir(tmp_path / "file" / "kgen")


def test_usage_counts_entries_as_prune_does(tmp_path):
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / "core-1.o").write_bytes(b"x" * 100)
    (tmp_path / "objects" / "core-1.o.sha256").write_bytes(b"y" * 10)  # goes with its entry
    (tmp_path / "objects" / ".core-2.o.tmp").write_bytes(b"z")  # being written: no entry
    level = tmp_path / "levels" / "k1"
    level.mkdir(parents=True)
    (level / "MANIFEST").write_bytes(b"m" * 10)
    (level / "harness").write_bytes(b"h" * 5)
    (tmp_path / "loaded").mkdir()
    assert cachedir.usage(tmp_path) == [("levels", 1, 15), ("objects", 1, 111), ("loaded", 0, 0)]
    assert cachedir.usage(tmp_path / "none") == []


def test_doctor_says_where_the_caches_are_and_whether_one_is_off(tmp_path, monkeypatch, capsys):
    import codegen
    from codegen import cli, loadcache

    monkeypatch.setattr(codegen, "cache_root", lambda: tmp_path / "kgen")
    monkeypatch.delenv(loadcache.OFF, raising=False)
    cli._doctor_caches()
    assert capsys.readouterr().out == f"cache: {tmp_path / 'kgen'}: empty\n"
    (tmp_path / "kgen" / "loaded").mkdir(parents=True)
    (tmp_path / "kgen" / "loaded" / "e1").write_bytes(b"x" * 2_000_000)
    monkeypatch.setenv(loadcache.OFF, "1")
    cli._doctor_caches()
    assert capsys.readouterr().out == (
        f"cache: {tmp_path / 'kgen'}: loaded 1 entry (2.0 MB)\n"
        "cache: checked specs, renders and decodings are neither kept nor taken "
        "(KGEN_NO_LOAD_CACHE is set)\n"
    )


def test_a_full_cache_is_pruned_a_tenth_below_its_limit(tmp_path):
    for i in range(21):
        entry(tmp_path, f"e{i:02}", 1000 + i)
    assert cachedir.prune(tmp_path, keep=20) == ["e00", "e01", "e02"]  # down to 18
    entry(tmp_path, "e21", 2000)
    assert cachedir.prune(tmp_path, keep=20) == []  # room again: nothing is looked at


def test_write_own_is_whole_private_and_leaves_nothing_when_stopped(tmp_path, monkeypatch):
    path = tmp_path / "a" / "b" / "entry"
    cachedir.write_own(path, b"data")
    assert path.read_bytes() == b"data" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    real = os.replace

    def stopped(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(cachedir.os, "replace", stopped)
    with pytest.raises(KeyboardInterrupt):
        cachedir.write_own(path, b"other")
    monkeypatch.setattr(cachedir.os, "replace", real)
    assert path.read_bytes() == b"data" and sorted(p.name for p in path.parent.iterdir()) == [
        "entry"
    ]


def test_every_cache_writes_through_write_own(tmp_path, monkeypatch):
    """Spec entries, compiled templates and harness objects: one writer, one set of rules."""
    from codegen import loadcache, render, spec

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(loadcache.OFF, raising=False)
    kept = []
    real = cachedir.write_own
    monkeypatch.setattr(cachedir, "write_own", lambda p, d: kept.append(Path(p).parent.name)
                        or real(p, d))  # fmt: skip
    (rmpopt,) = spec.load_all([Path(__file__).parent.parent / "isa" / "rmpopt.yaml"], cached=True)
    render.environment.cache_clear()
    try:
        render.render_spec(rmpopt)
    finally:
        render.environment.cache_clear()
    assert {"loaded", "decoded", "templates"} <= set(kept)
    for p in (tmp_path / "kgen").rglob("*"):
        assert not p.name.startswith(".")  # no temporary file left
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p
