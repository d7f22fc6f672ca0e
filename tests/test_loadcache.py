"""Checked specs kept between runs (codegen/loadcache.py).

A spec from the cache must be the spec the loader reads, whatever was cached before it:
each test compares against a fresh parse, and the last ones break the key or the entry
check on purpose and see the comparison fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from codegen import loadcache, spec
from codegen.diagnostics import SpecError

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = sorted((ROOT / "isa").glob("*.yaml"))


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """A cache of this test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(loadcache.OFF, raising=False)
    return tmp_path / "xdg" / "kgen" / "loaded"


def entries(cache: Path) -> list[Path]:
    return (
        sorted(p for p in cache.iterdir() if not p.name.startswith(".")) if cache.is_dir() else []
    )


def test_every_bundled_spec_comes_back_as_the_loader_reads_it(cache, monkeypatch):
    fresh = spec.load_all(BUNDLED)
    first = spec.load_all(BUNDLED, cached=True)
    assert len(entries(cache)) == len(BUNDLED)
    monkeypatch.setattr(spec, "parse", lambda text, path: pytest.fail(f"{path} was parsed"))
    again = spec.load_all(BUNDLED, cached=True)
    for a, b, c in zip(fresh, first, again, strict=True):
        assert a == b == c
        # what equality leaves out (marks, path, source) must match as well
        assert (a.path, a.source, a.marks) == (c.path, c.source, c.marks)
        assert repr(a) == repr(c)


def same_text_two_paths(tmp_path: Path) -> None:
    """One text at two paths: each spec names its own path, in its marks and messages."""
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    text = (ROOT / "isa" / "rmpopt.yaml").read_text()
    a.write_text(text)
    b.write_text(text)
    (sa,) = spec.load_all([a], cached=True)
    (sb,) = spec.load_all([b], cached=True)
    assert sa.path == str(a) and sb.path == str(b)
    assert sb.instruction.mark("mnemonic").path == str(b)


def test_the_path_is_part_of_the_key(tmp_path):
    same_text_two_paths(tmp_path)


def test_a_key_without_the_path_is_caught(tmp_path, monkeypatch):
    key = loadcache._key
    monkeypatch.setattr(
        loadcache, "_key", lambda code, kind, parts: key(code, kind, ("", *parts[1:]))
    )
    with pytest.raises(AssertionError):
        same_text_two_paths(tmp_path)


def edited_text_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "rmpopt.yaml"
    text = (ROOT / "isa" / "rmpopt.yaml").read_text()
    path.write_text(text)
    spec.load_all([path], cached=True)
    path.write_text(text.replace("mnemonic: rmpopt", "mnemonic: rmpoptx", 1))
    (edited,) = spec.load_all([path], cached=True)
    assert edited.instruction.mnemonic == "rmpoptx"


def test_an_edited_spec_is_read_again(tmp_path):
    edited_text_is_read_again(tmp_path)


def test_a_key_without_the_text_is_caught(tmp_path, monkeypatch):
    key = loadcache._key
    monkeypatch.setattr(
        loadcache, "_key", lambda code, kind, parts: key(code, kind, (parts[0], ""))
    )
    with pytest.raises(AssertionError):
        edited_text_is_read_again(tmp_path)


def test_other_code_is_another_key(cache, monkeypatch):
    spec.load_all(BUNDLED[:1], cached=True)
    monkeypatch.setattr(loadcache, "code_digest", lambda: "another kgen")
    spec.load_all(BUNDLED[:1], cached=True)
    assert len(entries(cache)) == 2


def test_the_code_digest_follows_every_module_and_data_file(tmp_path):
    package = tmp_path / "pkg"
    shutil.copytree(loadcache.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = loadcache.package_digest(package)
    assert before == loadcache.package_digest(package)  # nothing changed: the same
    for edited in (package / "x86.py", package / "data" / "known_encodings.yaml"):
        now = loadcache.package_digest(package)
        st = edited.stat()
        edited.write_bytes(edited.read_bytes().replace(b"a", b"b", 1))  # the same size
        os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns))  # and time, set back
        assert loadcache.package_digest(package) != now, edited  # its bytes changed
    (package / "new.py").write_text("")
    assert loadcache.package_digest(package) != now
    assert loadcache.package_digest(tmp_path / "nothing") is None  # then nothing is cached


def test_the_code_digest_follows_a_change_that_leaves_every_time_alone(tmp_path):
    """A file's times are not its contents: a write through a shared mapping to a page
    already written moves neither time, and some file systems (sshfs, FAT, squashfs) give
    a change time that is the modification time, which anyone may set back."""
    import mmap

    package = tmp_path / "pkg"
    shutil.copytree(loadcache.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    module = package / "x86.py"
    with open(module, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        at = m.find(b"MAX_LENGTH = 15")
        assert at >= 0
        m[at + 14 : at + 15] = b"6"
        before, code = loadcache.package_digest(package), module.read_bytes()
        m[at + 14 : at + 15] = b"7"
        assert module.read_bytes() != code  # kgen's code changed
        assert loadcache.package_digest(package) != before


def test_a_library_is_known_by_its_files(tmp_path, monkeypatch):
    lib = tmp_path / "somelib"
    lib.mkdir()
    (lib / "__init__.py").write_text("")
    (lib / "_ext.so").write_bytes(b"x" * 10)
    (tmp_path / "somelib-1.0.dist-info").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    before = loadcache.library("somelib")
    assert "somelib-1.0.dist-info" in before
    (lib / "_ext.so").write_bytes(b"y" * 11)  # an upgrade rewrites its files
    assert loadcache.library("somelib") != before
    assert loadcache.library("no_such_library_here") == "no_such_library_here: none"


def test_a_spec_with_a_problem_is_never_kept(cache, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (ROOT / "isa" / "rmpopt.yaml").read_text().replace("mnemonic: rmpopt", "mnemonic: 1x", 1)
    )
    for _ in range(2):
        with pytest.raises(SpecError) as exc:
            spec.load_all([bad], cached=True)
        assert "'1x' is not a C identifier" in str(exc.value.diagnostics[0])
    assert entries(cache) == []


def damage(entry: Path, how: str, other: Path) -> None:
    data = entry.read_bytes()
    if how == "truncated":
        entry.write_bytes(data[:-10])
    elif how == "flipped":
        entry.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif how == "empty":
        entry.write_bytes(b"")
    elif how == "group-writable":
        entry.chmod(0o664)
    elif how == "link":
        target = entry.with_name("elsewhere")
        entry.rename(target)
        entry.symlink_to(target)
    elif how == "another key's":  # whole, and this user's: another spec's entry
        entry.write_bytes(other.read_bytes())


@pytest.mark.parametrize(
    "how", ["truncated", "flipped", "empty", "group-writable", "link", "another key's"]
)
def test_a_damaged_entry_is_read_again(cache, tmp_path, how):
    other = tmp_path / "psmash.yaml"
    other.write_text((ROOT / "isa" / "psmash.yaml").read_text())
    spec.load_all([other], cached=True)
    (other_entry,) = entries(cache)
    path = tmp_path / "rmpopt.yaml"
    path.write_text((ROOT / "isa" / "rmpopt.yaml").read_text())
    (first,) = spec.load_all([path], cached=True)
    (entry,) = set(entries(cache)) - {other_entry}
    damage(entry, how, other_entry)
    (again,) = spec.load_all([path], cached=True)
    assert again == first and again.source == first.source and again.path == first.path


def test_a_swapped_entry_is_caught_only_by_its_key(cache, tmp_path, monkeypatch):
    """Without the key in the entry, another spec's entry would be taken: the test above sees it."""
    real = loadcache._read

    def unchecked(entry):
        payload = real(entry)
        if payload is None and entry.is_file():
            return entry.read_bytes().split(b"\n", 3)[3]
        return payload

    monkeypatch.setattr(loadcache, "_read", unchecked)
    with pytest.raises(AssertionError):
        test_a_damaged_entry_is_read_again(cache, tmp_path, "another key's")


def test_a_cache_that_cannot_be_written_is_no_cache(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert spec.load_all(BUNDLED, cached=True) == spec.load_all(BUNDLED)


def test_render_through_the_cache_is_byte_identical(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"), PYTHONPATH=str(ROOT))
    outs = []
    for run in ("cold", "warm"):
        out = tmp_path / run
        subprocess.run([sys.executable, "-m", "codegen.cli", "render", "--out", str(out)],
                       cwd=ROOT, env=env, check=True, capture_output=True)  # fmt: skip
        outs.append({p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    assert (tmp_path / "xdg" / "kgen" / "loaded").is_dir()
    assert outs[0] == outs[1] and len(outs[0]) >= len(BUNDLED)
    assert outs[0] == {p.relative_to(ROOT / "generated"): p.read_bytes()
                       for p in (ROOT / "generated").rglob("*") if p.is_file()}  # fmt: skip


def render_follows_templates(tmp_path: Path, monkeypatch) -> None:
    """`kgen render` keeps its renders: one with other templates is rendered again."""
    from codegen import cli, render

    templates = tmp_path / "templates"
    shutil.copytree(render.TEMPLATES, templates)
    monkeypatch.setattr(render, "TEMPLATES", templates)
    specs = spec.load_all(BUNDLED)
    assert cli.render_specs(specs, cached=True) == render.render_all(specs, templates)
    (templates / "helpers.h.j2").write_text("{{ insn.mnemonic }}\n")  # no longer renders
    with pytest.raises(render.RenderError):  # which the command reports
        cli.render_specs(specs, cached=True)


def test_a_render_is_kept_only_for_the_same_templates(tmp_path, monkeypatch):
    render_follows_templates(tmp_path, monkeypatch)


def test_a_render_key_without_the_templates_is_caught(tmp_path, monkeypatch):
    from codegen import render

    monkeypatch.setattr(render, "template_inputs", lambda templates: ())
    with pytest.raises(pytest.fail.Exception):
        render_follows_templates(tmp_path, monkeypatch)


def test_render_inputs_name_every_spec_and_template(tmp_path):
    from codegen import render

    templates = tmp_path / "templates"
    shutil.copytree(render.TEMPLATES, templates)
    specs = spec.load_all(BUNDLED)
    assert render.spec_inputs(specs[:-1]) != render.spec_inputs(specs)
    before = render.template_inputs(templates)
    (templates / "_banner.j2").write_text((templates / "_banner.j2").read_text() + " ")
    assert render.template_inputs(templates) != before


def test_kgen_whose_modules_cannot_be_read_keeps_nothing(cache, monkeypatch):
    monkeypatch.setattr(loadcache, "code_digest", lambda: None)
    assert spec.load_all(BUNDLED, cached=True) == spec.load_all(BUNDLED)
    assert entries(cache) == []


def test_the_switch_turns_the_cache_off(cache, monkeypatch):
    monkeypatch.setenv(loadcache.OFF, "1")
    spec.load_all(BUNDLED, cached=True)
    assert entries(cache) == []
    monkeypatch.setenv(loadcache.OFF, "")  # set but empty: on
    spec.load_all(BUNDLED, cached=True)
    assert len(entries(cache)) == len(BUNDLED)


def test_a_fifo_in_place_of_an_entry_is_a_miss_not_a_hang(cache, tmp_path):
    """Opening a FIFO for reading waits for a writer: an entry that is one must not block kgen."""
    import threading

    path = tmp_path / "rmpopt.yaml"
    path.write_text((ROOT / "isa" / "rmpopt.yaml").read_text())
    (first,) = spec.load_all([path], cached=True)
    (entry,) = entries(cache)
    entry.unlink()
    os.mkfifo(entry)
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(spec.load_all([path], cached=True)))
    reader.start()
    reader.join(10)
    if reader.is_alive():
        with open(entry, "wb"):  # a writer lets the blocked open return, and the thread end
            pass
        reader.join()
        pytest.fail("a FIFO in the cache blocked the load")
    assert got == [first] and got[0].source == first.source


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_store_stopped_midway_leaves_nothing_behind(cache, tmp_path, monkeypatch, stop):
    """Ctrl-C (KeyboardInterrupt) or SIGTERM (an exception the command raises) while an entry
    is written: its temporary file is removed, since pruning never removes a name with a dot."""

    def interrupted(src, dst):
        raise stop

    monkeypatch.setattr(loadcache.os, "replace", interrupted)
    with pytest.raises(stop):
        spec.load_all(BUNDLED[:1], cached=True)
    assert [p for p in cache.parent.rglob("*") if p.is_file()] == []


def kgen_render(out: Path, xdg: Path, timeout: float = 60) -> dict[Path, bytes]:
    """`kgen render` of rmpopt into ``out`` with the cache ``xdg``, its renders not kept (the
    compiled templates are), and the files it wrote."""
    env = dict(os.environ, XDG_CACHE_HOME=str(xdg), PYTHONPATH=str(ROOT), KGEN_NO_LOAD_CACHE="1")
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "codegen.cli", "render", "--out", str(out), "isa/rmpopt.yaml"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=timeout)  # fmt: skip
    return {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_a_fifo_in_the_template_cache_is_a_miss_not_a_hang(tmp_path):
    xdg = tmp_path / "xdg"
    first = kgen_render(tmp_path / "out", xdg)
    compiled = sorted((xdg / "kgen" / "templates").iterdir())
    assert compiled
    for entry in compiled:
        entry.unlink()
        os.mkfifo(entry)
    try:
        assert kgen_render(tmp_path / "out", xdg, timeout=30) == first
    finally:
        for entry in compiled:  # nothing waits on them any more, whatever happened
            with contextlib.suppress(OSError):
                fd = os.open(entry, os.O_WRONLY | os.O_NONBLOCK)
                os.close(fd)


@pytest.mark.parametrize("how", ["world-writable", "another user's"])
def test_a_compiled_template_anyone_could_have_written_is_not_run(tmp_path, how):
    """The template cache holds code that render runs: one that another user wrote (or could
    have) is compiled again, as loaded/ refuses such an entry."""
    from jinja2.bccache import Bucket

    from codegen import render

    xdg = tmp_path / "xdg"
    first = kgen_render(tmp_path / "out", xdg)
    env = render.environment()
    source = (render.TEMPLATES / "helpers.h.j2").read_text()
    cache = render._TemplateCache()
    filename = os.path.normpath(render.TEMPLATES / "helpers.h.j2")  # as Jinja's loader names it
    bucket = Bucket(
        env, cache.get_cache_key("helpers.h.j2", filename), cache.get_source_checksum(source)
    )
    bucket.code = env.compile("planted\n", "helpers.h.j2")  # right checksum, other code
    entry = Path(cache._get_cache_filename(bucket))
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry, "wb") as f:
        bucket.write_bytecode(f)
    assert entry.is_file()
    planted = kgen_render(tmp_path / "out", xdg)  # this user's own entry is run: the plant works
    assert planted != first and b"planted\n" in planted.values()
    if how == "world-writable":
        entry.chmod(0o666)
    else:
        if os.geteuid() != 0:
            pytest.skip("only root can give a file to another user")
        os.chown(entry, 65534, 65534)
    assert kgen_render(tmp_path / "out", xdg) == first


def test_a_template_in_a_linked_directory_is_in_the_render_key(tmp_path):
    """Jinja reads a template through a link to a directory, so the key must too."""
    from codegen import render

    templates, elsewhere = tmp_path / "templates", tmp_path / "elsewhere"
    shutil.copytree(render.TEMPLATES, templates)
    elsewhere.mkdir()
    (elsewhere / "part.j2").write_text("one\n")
    (templates / "parts").symlink_to(elsewhere)
    (templates / "loop").symlink_to(templates)  # a link back up is read once, not without end
    before = loadcache.files_digest(templates)
    (elsewhere / "part.j2").write_text("two\n")
    assert loadcache.files_digest(templates) != before


def test_a_template_compiled_by_other_code_is_compiled_again(tmp_path, monkeypatch):
    """Compiled template code depends on kgen's code too (the filters it names, and any it
    folds into constants): a template compiled before kgen changed is compiled again."""
    from codegen import render

    (rmpopt,) = spec.load_all([ROOT / "isa" / "rmpopt.yaml"])
    try:
        render.environment.cache_clear()
        render.render_spec(rmpopt)  # compiles the templates, and keeps them
        assert list((tmp_path / "xdg" / "kgen" / "templates").iterdir())
        monkeypatch.delitem(render.FILTERS, "hex")  # another kgen: one without this filter
        monkeypatch.setattr(loadcache, "code_digest", lambda: "another kgen")
        render.environment.cache_clear()
        with pytest.raises(render.RenderError) as kept:
            render.render_spec(rmpopt)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
        render.environment.cache_clear()
        with pytest.raises(render.RenderError) as fresh:
            render.render_spec(rmpopt)
        assert str(kept.value) == str(fresh.value)
    finally:
        render.environment.cache_clear()  # its filters are this test's


def test_compiled_templates_stay_bounded(tmp_path, monkeypatch):
    """Each change of kgen's code compiles the templates anew: the old ones are pruned."""
    from codegen import cachedir, render

    monkeypatch.setitem(cachedir.LIMITS, "templates", 2)
    (rmpopt,) = spec.load_all([ROOT / "isa" / "rmpopt.yaml"])
    try:
        render.environment.cache_clear()
        first = render.render_spec(rmpopt)
        assert len(list((tmp_path / "xdg" / "kgen" / "templates").iterdir())) == 2
        render.environment.cache_clear()
        assert render.render_spec(rmpopt) == first
    finally:
        render.environment.cache_clear()


def test_key_parts_cannot_run_into_each_other():
    assert loadcache._key("c", "k", ("a\0b", "c")) != loadcache._key("c", "k", ("a", "b\0c"))
    assert loadcache._key("c", "k", ("ab",)) != loadcache._key("c", "k", ("a", "b"))


def test_no_template_cache_when_kgen_s_code_cannot_be_read(monkeypatch):
    from codegen import render

    monkeypatch.setattr(loadcache, "code_digest", lambda: None)
    assert render._template_cache() is None
    monkeypatch.setattr(loadcache, "code_digest", lambda: "some kgen")
    assert render._template_cache() is not None


def test_a_template_file_gone_while_it_is_listed_is_no_crash(tmp_path, monkeypatch):
    """An editor's swap file removed between listing the templates and reading them (or a file
    that cannot be read) is part of the key as such, not a traceback of `kgen render`."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "a.j2").write_text("a\n")
    swap = templates / ".a.j2.swp"
    swap.write_text("x")
    before = loadcache.files_digest(templates)
    is_file = Path.is_file

    def racing(path):
        found = is_file(path)
        if path.name == swap.name:
            swap.unlink(missing_ok=True)
        return found

    monkeypatch.setattr(Path, "is_file", racing)
    assert loadcache.files_digest(templates) != before


def edited_spec(tmp_path: Path, name: str = "psmash") -> tuple[Path, str]:
    path = tmp_path / f"{name}.yaml"
    text = (ROOT / "isa" / f"{name}.yaml").read_text()
    path.write_text(text)
    return path, text


def test_a_spec_edited_but_for_its_bytes_is_read_without_the_decoder(tmp_path, monkeypatch):
    from codegen import x86

    path, text = edited_spec(tmp_path)
    (before,) = spec.load_all([path], cached=True)
    monkeypatch.setattr(x86, "_decode", lambda data: pytest.fail("the decoder was asked"))
    path.write_text(text + "# an edit that leaves the bytes alone\n")
    (after,) = spec.load_all([path], cached=True)
    assert after.instruction == before.instruction and after.source != before.source
    with pytest.raises(pytest.fail.Exception):  # other bytes: asked, as they must be
        path.write_text(text.replace("{byte: 0xff, role: modrm}", "{byte: 0xfe, role: modrm}", 1))
        spec.load_all([path], cached=True)


def test_after_an_edit_only_the_spec_edited_renders_again(tmp_path, monkeypatch):
    from codegen import cli, render

    paths = [edited_spec(tmp_path, name)[0] for name in ("psmash", "rmpopt", "pvalidate")]
    cli.render_specs(spec.load_all(paths, cached=True), cached=True)
    rendered = []
    real = render.render_spec
    monkeypatch.setattr(render, "render_spec", lambda s, t=render.TEMPLATES: rendered.append(
        s.path) or real(s, t))  # fmt: skip
    paths[1].write_text(paths[1].read_text() + "# edited\n")
    specs = spec.load_all(paths, cached=True)
    files = cli.render_specs(specs, cached=True)
    assert rendered == [str(paths[1])]
    assert files == render.render_all(specs)


def test_a_render_kept_names_its_own_spec_file(tmp_path):
    """One text in two files renders two banners, each naming its file: a spec's render is
    kept under its path too, alone and in a whole render."""
    from codegen import cli, render

    text = (ROOT / "isa" / "rmpopt.yaml").read_text()
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(text)
        specs = spec.load_all([tmp_path / name], cached=True)
        assert cli.render_specs(specs, cached=True) == render.render_all(specs)
        assert f"from {name} (sha256" in "".join(cli.render_specs(specs, cached=True).values())
