"""kgen apply, check --tree and patch with hostile input: the caller's git environment,
odd files in the tree, a broken record of what kgen wrote, a bad output directory, Ctrl-C,
C nested too deep.  Each fails loudly and cleanly, never with a traceback, and never
touches anything outside the tree and the output directory."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pytest

from codegen import ctext
from codegen.kernelapi import min_gcc
from tests.test_tree import GIT_ENV, ISA, ROOT, SPECS, git, kgen, make_tree, snapshot


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path)


SEV = "arch/x86/virt/svm/sev.c"
PV = ISA / "pvalidate.yaml"


def clean(result, code: int) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (KeyError, IndexError,
                                                                                 TypeError, OSError))  # fmt: skip


# --- 1. the caller's GIT_* variables ---------------------------------------------------


def test_git_environment_of_the_caller_is_not_used(tree, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    (other / "f").write_text("x\n")
    git(other, "add", "f")
    git(other, "commit", "-q", "-m", "mine")
    head, index = git(other, "rev-parse", "HEAD"), (other / ".git/index").read_bytes()
    hostile = {"GIT_DIR": str(other / ".git"), "GIT_WORK_TREE": str(other),
               "GIT_INDEX_FILE": str(other / ".git/index"),
               "GIT_OBJECT_DIRECTORY": str(other / ".git/objects")}  # fmt: skip
    out = tmp_path / "p"
    result = kgen("patch", *SPECS, "--tree", tree, "-o", out, env=hostile)
    clean(result, 0)
    assert (
        len(list(out.iterdir())) == 12
    )  # 11 patches (RMPREAD has nothing to replace) and the cover letter
    assert (
        "base-commit: " + git(tree, "rev-parse", "HEAD").strip()
        in (out / "0000-cover-letter.patch").read_text()
    )
    clean(kgen("apply", *SPECS, "--tree", tree, env=hostile), 0)
    assert (tree / ".git/kgen/applied.json").is_file() and not (other / ".git/kgen").exists()
    assert git(other, "rev-parse", "HEAD") == head and (other / ".git/index").read_bytes() == index
    assert git(other, "status", "--porcelain") == ""


# --- 2. nothing to do --------------------------------------------------------------------


def test_patch_on_an_up_to_date_tree_has_nothing_to_do(tree, tmp_path):
    clean(kgen("apply", *SPECS, "--tree", tree), 0)
    git(tree, "commit", "-q", "-am", "applied")
    result = kgen("patch", *SPECS, "--tree", tree, "-o", tmp_path / "p")
    clean(result, 0)
    assert "nothing to do" in result.output and not (tmp_path / "p").exists()


# --- 3. the record of what kgen wrote -----------------------------------------------------


@pytest.mark.parametrize("content", ["[]", '{"a": 1}', '{"a": {"b": 2}}', "not json", "\xff",
                                     "[" * 100_000 + "]" * 100_000])  # fmt: skip
def test_a_malformed_record_is_ignored_with_a_warning(tree, content):
    clean(kgen("apply", PV, "--tree", tree), 0)
    record = tree / ".git/kgen/applied.json"
    record.write_bytes(content.encode("latin-1"))
    result = kgen("apply", *SPECS, "--tree", tree)
    clean(result, 0)
    assert f"{record}: warning: is not a record kgen wrote" in result.output
    assert isinstance(json.loads(record.read_text()), dict)  # written anew


def _kgen_a_file(tree, outside):
    (tree / ".git/kgen").write_text("mine\n")


def _record_a_dir(tree, outside):
    (tree / ".git/kgen/applied.json").mkdir(parents=True)


def _kgen_a_link(tree, outside):
    (tree / ".git/kgen").symlink_to(outside)


@pytest.mark.parametrize("spoil, said", [(_kgen_a_file, "/.git/kgen: warning: is not a directory"),
                                         (_record_a_dir, "applied.json: warning: is a directory"),
                                         (_kgen_a_link, "/.git/kgen: warning: is a symbolic link")])  # fmt: skip
def test_a_record_that_cannot_be_written_is_a_warning_after_the_files(tree, tmp_path, spoil, said):
    outside = tmp_path / "outside"
    outside.mkdir()
    spoil(tree, outside)
    result = kgen("apply", *SPECS, "--tree", tree)
    clean(result, 1)
    assert "8 files changed" in result.output and said in result.output
    assert "the files were written but this record of what kgen wrote was not" in result.output
    assert list(outside.iterdir()) == []
    assert kgen("check", *SPECS, "--tree", tree).exit_code == 0


def test_the_record_is_written_through_no_link(tree, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (tree / ".git/kgen").mkdir()
    for name in ("applied.tmp", "applied.json.tmp"):  # names a fixed temporary file would take
        (tree / ".git/kgen" / name).symlink_to(victim)
    clean(kgen("apply", *SPECS, "--tree", tree), 0)
    assert victim.read_text() == "keep\n" and (tree / ".git/kgen/applied.json").is_file()


# --- 4. Ctrl-C ---------------------------------------------------------------------------


@pytest.fixture
def sigint_raises():
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_while_the_files_go_in_still_records_them(
    tree, tmp_path, monkeypatch, sigint_raises
):
    import codegen.outtree as outtree

    reference = tmp_path / "reference"
    shutil.copytree(tree, reference, symlinks=True)
    clean(kgen("apply", *SPECS, "--tree", reference), 0)
    discard = outtree._discard

    def interrupted(staged):
        if staged:
            signal.raise_signal(signal.SIGINT)  # held until the files are in
        discard(staged)

    monkeypatch.setattr(outtree, "_discard", interrupted)
    result = kgen("apply", *SPECS, "--tree", tree)
    assert result.exit_code == 130, result.output
    assert snapshot(tree) == snapshot(reference)
    assert (tree / ".git/kgen/applied.json").read_text() == (
        reference / ".git/kgen/applied.json"
    ).read_text()


def test_ctrl_c_during_the_cleanup_of_patch_leaves_no_scratch_repository(tree, tmp_path, monkeypatch,
                                                                         sigint_raises):  # fmt: skip
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    rmtree = shutil.rmtree

    def interrupted(path, *args, **kwargs):
        if Path(path).name.startswith("kgen-series-"):
            signal.raise_signal(signal.SIGINT)
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", interrupted)
    result = kgen("patch", PV, "--tree", tree, "-o", tmp_path / "p")
    assert result.exit_code == 130, result.output
    assert list(scratch.iterdir()) == []


# --- 5. the output directory ---------------------------------------------------------------


def test_patch_writes_through_no_dangling_link(tree, tmp_path):
    out, target = tmp_path / "p", tmp_path / "elsewhere.patch"
    out.mkdir()
    (out / "0001-x86-sev-Add-kernel-doc-to-pvalidate.patch").symlink_to(target)
    result = kgen("patch", PV, "--tree", tree, "-o", out)
    clean(result, 1)
    assert (
        "0001-x86-sev-Add-kernel-doc-to-pvalidate.patch: error: exists; kgen does not overwrite it"
        in result.output
    )
    assert not target.exists() and [p.name for p in out.iterdir()] == [
        "0001-x86-sev-Add-kernel-doc-to-pvalidate.patch"
    ]


def test_patch_writes_the_whole_series_or_nothing(tree, tmp_path, monkeypatch):
    copyfile, calls = shutil.copyfile, []

    def full_disk(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return copyfile(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", full_disk)
    out = tmp_path / "p"
    result = kgen("patch", *SPECS, "--tree", tree, "-o", out)
    clean(result, 1)
    assert "error: cannot write: No space left on device" in result.output
    assert not out.exists()
    out.mkdir()
    calls.clear()
    clean(kgen("patch", *SPECS, "--tree", tree, "-o", out), 1)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("kind", ["parent-file", "dangling-link"])
def test_a_bad_output_directory_is_an_error(tree, tmp_path, kind):
    if kind == "parent-file":
        (tmp_path / "file").write_text("x\n")
        out = tmp_path / "file" / "p"
    else:
        out = tmp_path / "p"
        out.symlink_to(tmp_path / "nowhere")
    result = kgen("patch", PV, "--tree", tree, "-o", out)
    assert result.exit_code in (1, 2) and "Traceback" not in result.output, result.output
    assert f"{out}: error: " in result.output or "Invalid value" in result.output
    assert not (tmp_path / "nowhere").exists()


# --- 6. odd files in the tree ----------------------------------------------------------------


def _subprocess_kgen(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codegen.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **GIT_ENV})  # fmt: skip


@pytest.mark.parametrize("command", ["check", "patch"])
def test_a_fifo_in_the_tree_is_refused_not_read(tree, tmp_path, command):
    (tree / SEV).unlink()
    os.mkfifo(tree / SEV)
    extra = ["-o", tmp_path / "p"] if command == "patch" else []
    proc = _subprocess_kgen(command, *SPECS, "--tree", tree, *extra)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert (
        f"{tree / SEV}: error: kgen must change this file, but it is not a regular file"
        in proc.stderr
    )


def test_a_fifo_makefile_or_min_tool_version_does_not_hang(tree):
    os.mkfifo(tree / "scripts" / "min-tool-version.sh.fifo")
    (tree / "scripts" / "min-tool-version.sh").unlink()
    os.rename(
        tree / "scripts" / "min-tool-version.sh.fifo", tree / "scripts" / "min-tool-version.sh"
    )
    (tree / "Makefile").unlink()
    os.mkfifo(tree / "Makefile")
    proc = _subprocess_kgen("check", *SPECS, "--tree", tree, timeout=60)
    assert proc.returncode == 1 and "not a Linux kernel tree" in proc.stderr, proc.stderr


@pytest.mark.parametrize("kind, said", [
    ("huge", "is larger than 4 MiB: kgen does not read it"),
    ("link", "is a symbolic link: kgen does not follow links inside the tree"),
    ("dir", "is a directory, not a file"),
])  # fmt: skip
def test_a_target_that_is_not_a_plain_file_says_what_it_is(tree, kind, said):
    path = tree / SEV
    text = path.read_bytes()
    path.unlink()
    if kind == "huge":
        path.write_bytes(text + b"\n" * (5 << 20))
    elif kind == "link":
        (tree / "sev.c.real").write_bytes(text)
        path.symlink_to(tree / "sev.c.real")
    else:
        path.mkdir()
    for command in ("check", "apply"):
        result = kgen(command, *SPECS, "--tree", tree)
        clean(result, 1)
        assert f"{path}: error: kgen must change this file, but it {said}" in result.output
        assert "moved or renamed upstream" not in result.output


@pytest.mark.parametrize("command", ["check", "patch", "apply"])
def test_a_linked_directory_of_the_tree_is_refused(tree, tmp_path, command):
    outside = tmp_path / "outside"
    shutil.move(tree / "arch/x86/virt", outside)
    (tree / "arch/x86/virt").symlink_to(outside)
    extra = ["-o", tmp_path / "p"] if command == "patch" else []
    result = kgen(command, *SPECS, "--tree", tree, *extra)
    clean(result, 1)
    assert f"{tree / 'arch/x86/virt'}: " in result.output and "symbolic link" in result.output
    assert not (tmp_path / "p").exists()


def test_min_tool_version_is_read_in_linear_time(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts/min-tool-version.sh").write_text(
        "gcc)\n" + " \n" * 5000 + "\techo 5.1.0\n"
    )
    start = time.perf_counter()
    assert min_gcc(tmp_path) is None  # no ";;": not a case kgen can read
    assert time.perf_counter() - start < 1


# --- 7. C nested too deep ------------------------------------------------------------------


def test_deep_brace_nesting_is_an_error_not_a_recursion(tree):
    path = tree / SEV
    deep = "void deep(void)\n{\n" + "{" * 500 + "}" * 500 + "\n}\n"
    path.write_text(path.read_text() + deep)
    result = kgen("apply", *SPECS, "--tree", tree)
    clean(result, 1)
    assert "kgen cannot read this C: nesting deeper than 200 levels" in result.output
    with pytest.raises(ctext.CTextError, match="nesting deeper"):
        ctext.statements("{" + "if (a) " * 1000 + "x;}", 1, 1 + 7000 + 2)


def test_deep_conditional_nesting_is_bounded():
    text = "#if A\n" * 20000 + "int x;\n" + "#endif\n" * 20000
    with pytest.raises(ctext.CTextError, match="nesting deeper than 200"):
        ctext.items(text)
    # within the bound, items share what encloses them instead of each copying it
    deep = "#ifdef A\n" * 190 + "#define X 1\n" * 40000 + "#endif\n" * 190
    tracemalloc.start()
    found = ctext._items(deep)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(found[-200].conditions) == 190 and peak < 40 << 20, peak


# --- 8. no git ---------------------------------------------------------------------------------


def test_without_git_apply_works_and_patch_says_it_needs_git(tree, tmp_path):
    shutil.rmtree(tree / ".git")
    empty = tmp_path / "bin"
    empty.mkdir()
    result = kgen("patch", PV, "--tree", tree, "-o", tmp_path / "p",
                  env={"PATH": str(empty), "GIT_AUTHOR_NAME": "", "GIT_AUTHOR_EMAIL": ""})  # fmt: skip
    clean(result, 1)
    assert "kgen patch needs git" in result.output and not (tmp_path / "p").exists()
    clean(kgen("apply", *SPECS, "--tree", tree, env={"PATH": str(empty)}), 0)


# --- 9. uncommitted changes --------------------------------------------------------------------


def test_a_tree_with_uncommitted_changes_gives_no_base_commit(tree, tmp_path):
    clean(kgen("patch", *SPECS, "--tree", tree, "-o", tmp_path / "a"), 0)
    head = git(tree, "rev-parse", "HEAD").strip()
    assert f"base-commit: {head}" in (tmp_path / "a/0000-cover-letter.patch").read_text()
    (tree / SEV).write_text((tree / SEV).read_text() + "\n/* mine */\n")
    result = kgen("patch", *SPECS, "--tree", tree, "-o", tmp_path / "b")
    clean(result, 0)
    assert f"warning: {SEV} differs from the tree's last commit" in result.output
    assert "base-commit" not in (tmp_path / "b/0000-cover-letter.patch").read_text()


# --- 10, 12. line endings and byte order marks --------------------------------------------------


@pytest.mark.parametrize("where", ["every-line", "one-comment"])
def test_a_carriage_return_that_ends_no_crlf_line_is_refused(tree, tmp_path, where):
    """A lone CR ends a line for the compiler, not for kgen's reading: a file of them (old Mac
    line endings) read as one line, so the helpers in it were not found and the sibling
    patches said nothing to do. Such a file is named, at the line, and nothing is written."""
    path = tree / SEV
    data = path.read_bytes()
    if where == "every-line":
        data, line = data.replace(b"\n", b"\r"), 1
    else:
        head = data.split(b"\n", 3)
        data = b"\n".join([*head[:3], b"/* one\rtwo */\n" + head[3]])
        line = 4
    path.write_bytes(data)
    before = snapshot(tree)
    for command in (("apply",), ("patch", "-o", tmp_path / "p"), ("check",)):
        result = kgen(*command[:1], *SPECS, "--tree", tree, *command[1:])
        clean(result, 1)
        assert f"{SEV}:{line}: error: has a carriage return that ends no CRLF line" in result.output
    assert snapshot(tree) == before and not (tmp_path / "p").exists()


@pytest.mark.parametrize("form", ["crlf", "bom", "both"])
def test_a_file_keeps_its_line_endings_and_bom(tree, tmp_path, form):
    path = tree / SEV
    data = path.read_bytes()
    if form in ("crlf", "both"):
        data = data.replace(b"\n", b"\r\n")
    if form in ("bom", "both"):
        data = b"\xef\xbb\xbf" + data
    path.write_bytes(data)
    git(tree, "commit", "-q", "-am", form)
    out = tmp_path / "p"
    clean(kgen("patch", *SPECS, "--tree", tree, "-o", out), 0)
    clean(kgen("apply", *SPECS, "--tree", tree), 0)
    new = path.read_bytes()
    assert new != data and new.startswith(b"\xef\xbb\xbf") == (form != "crlf")
    assert new.count(b"\xef\xbb\xbf") == (form != "crlf")
    if form != "bom":
        assert new.count(b"\n") == new.count(b"\r\n")
    else:
        assert b"\r" not in new
    clean(kgen("check", *SPECS, "--tree", tree), 0)
    assert "0 files changed" in kgen("apply", *SPECS, "--tree", tree).output
    # the series gives the same bytes
    applied = snapshot(tree)
    git(tree, "checkout", "-q", "--", ".")
    git(tree, "am", "-q", "--keep-cr", *sorted(map(str, out.glob("00[0-9][1-9]-*.patch"))))
    assert snapshot(tree)[SEV] == applied[SEV]


# --- 13. temporary files of a concurrent run -------------------------------------------------


def test_apply_removes_only_stale_temporary_files(tree):
    d = tree / "arch/x86/virt/svm"
    fresh, stale = d / ".kgen-tmp-sev.c.new.0001", d / ".kgen-tmp-sev.c.new.0002"
    fresh.write_text("a running kgen's\n")
    stale.write_text("a dead kgen's\n")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    clean(kgen("apply", *SPECS, "--tree", tree), 0)
    assert fresh.exists() and not stale.exists()


def test_a_path_out_of_the_tree_is_never_read(tree, tmp_path):
    from codegen.tree import KernelTree, TreeError

    (tmp_path / "secret.c").write_text("int secret;\n")
    kt = KernelTree.open(tree)
    for rel in ("../secret.c", "arch/../../secret.c", "./Makefile"):
        with pytest.raises(TreeError, match="is not a path inside the tree"):
            kt.data(rel)
