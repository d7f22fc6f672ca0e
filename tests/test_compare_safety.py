"""compare under attack: bounded, sandboxed, interruptible, and tidy after itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codegen import build, toolchain
from codegen.render import render_spec
from codegen.spec import load
from tests.conftest import RMPOPT_YAML

SPEC = load(RMPOPT_YAML)


def _other_filesystem(than: Path) -> Path:
    """A directory on another filesystem than ``than``, or skip: the test needs two."""
    for cand in ("/dev/shm", "/run", "/tmp", "/var/tmp"):
        if os.path.isdir(cand) and os.access(cand, os.W_OK) and os.stat(cand).st_dev != os.stat(than).st_dev:
            return Path(cand)
    pytest.skip("this machine has a single writable filesystem")


# --- the object cache -----------------------------------------------------


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    # not XDG_CACHE_HOME: the ziglang clang keeps its own cache there, slow to refill
    objects = tmp_path / "cache" / "kgen" / "objects"
    monkeypatch.setattr(build, "_cache_dir", lambda: objects)
    return objects


def _build(work: Path):
    work.mkdir(parents=True, exist_ok=True)
    return build.build_harness(toolchain.find_clang(), SPEC, render_spec(SPEC), work, ("-O2",), ("native",))


def test_the_cache_fills_from_a_temp_dir_on_another_filesystem(cache_dir, tmp_path):
    import tempfile

    other = _other_filesystem(tmp_path)
    with tempfile.TemporaryDirectory(dir=other) as work:
        assert os.stat(work).st_dev != os.stat(tmp_path).st_dev
        _build(Path(work) / "w")
    objects = sorted(p.name for p in cache_dir.glob("*.o"))
    assert [n.split("-")[0] for n in objects] == ["core", "native"]
    assert not [p for p in cache_dir.iterdir() if "tmp" in p.name]  # no stray temp file


@pytest.mark.parametrize(
    "bad", [b"", b"garbage, not an object file\n" * 40, b"\x7fELF" + b"\0" * 60],
    ids=["empty", "garbage", "elf-header-only"],
)
def test_a_bad_cached_object_is_rebuilt(cache_dir, tmp_path, bad):
    _build(tmp_path / "a")
    (core,) = cache_dir.glob("core-*.o")
    good = core.read_bytes()
    core.write_bytes(bad)
    (h,) = _build(tmp_path / "b")  # links: the bad entry was noticed and rebuilt
    assert core.read_bytes() == good and h.native.exists()
