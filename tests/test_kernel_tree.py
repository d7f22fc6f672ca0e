"""The Linux 6.12 tree helpers (tests/kernel/tree.py): copies, builds, checkpatch, git am.

The tree is prepared by tests/kernel/get-kernel-material; where it could not be, the tests
that need it skip with its reason (and under CI=true fail, see tests/ci_policy.py).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.kernel.tree import (
    Tree,
    build,
    cache,
    checkpatch,
    checkpatch_all,
    copy_tree,
    fresh_tree,
    git,
    git_am,
    lowercase_macros,
    missing_reason,
    reset,
    touched,
    write,
)

needs_tree = pytest.mark.skipif(cache() is None, reason=missing_reason())
COMPILERS = ["gcc", "clang"]
SEV = "arch/x86/virt/svm/sev.c"
SEV_O = "arch/x86/virt/svm/sev.o"
OBJECTS = [
    SEV_O,
    "drivers/crypto/ccp/sev-dev.o",
    "arch/x86/kvm/svm/sev.o",
    "arch/x86/coco/sev/core.o",
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pristine_status(src: Path) -> list[str]:
    """Everything git sees changed, new or ignored in a pristine tree, but its build dirs."""
    out = git(src, "status", "--porcelain", "--ignored", "--untracked-files=all").stdout
    return [
        line for line in out.splitlines() if not line.startswith(("!! build/", "!! build-clang/"))
    ]


def commit_patch(tree: Tree, path: str, text: str, subject: str, out: Path) -> Path:
    """Commit `text` as `path`, write the commit as a patch into `out` and drop the commit."""
    write(tree, path, text)
    git(tree.src, "commit", "-q", "-s", "-a", "-m", subject, "-m", "Body of the change.")
    out.mkdir(exist_ok=True)
    patch = Path(git(tree.src, "format-patch", "-1", "-o", str(out)).stdout.strip())
    git(tree.src, "reset", "-q", "--hard", "HEAD~1")
    return patch


def edit(tree: Tree, path: str, old: str, new: str) -> None:
    text = (tree.src / path).read_text()
    assert old in text, old
    write(tree, path, text.replace(old, new, 1))


# --- copies -------------------------------------------------------------------------------


def mini_repo(tmp_path: Path) -> Tree:
    """A small stand-in for the cache: a git work tree with a build dir beside its sources."""
    src = tmp_path / "pristine"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "a.c").write_text("int a;\n")
    (src / "b.c").write_text("int b;\n")
    (src / "build").mkdir()
    (src / "build" / "a.o").write_text("object\n")
    for args in (
        ["init", "-q", "-b", "master"],
        ["config", "user.name", "t"],
        ["config", "user.email", "t@t"],
        ["config", "core.trustctime", "false"],
        ["config", "core.checkStat", "minimal"],
    ):
        git(src, *args)  # fmt: skip
    (src / ".git" / "info" / "exclude").write_text("/build/\n")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "base")
    return Tree(
        src, src / "build", src / "build-clang", git(src, "rev-parse", "HEAD").stdout.strip(), ""
    )


def snapshot(top: Path) -> dict[str, str]:
    return {str(p.relative_to(top)): sha256(p) for p in sorted(top.rglob("*")) if p.is_file()}


def test_the_ways_a_copy_is_written_leave_the_original_alone(tmp_path):
    orig = mini_repo(tmp_path)
    before = snapshot(orig.src)
    copy_tree(orig.src, tmp_path / "copy")
    tree = Tree(tmp_path / "copy", tmp_path / "copy" / "build", orig.build_clang, orig.base, "")
    assert (tree.src / "b.c").stat().st_ino == (orig.src / "b.c").stat().st_ino  # hard-linked
    patch = commit_patch(tree, "b.c", "int b = 1;\n", "b: set", tmp_path / "patches")
    assert git_am(tree, [patch]) == ""
    git(tree.src, "checkout", "-q", "HEAD~1", "--", "b.c")
    git(tree.src, "checkout", "-q", "HEAD", "--", "b.c")
    write(tree, "lib/a.c", "int a = 2;\n")
    (tree.build / "a.o").write_text("rebuilt\n")  # the build dir is a real copy: in place is fine
    assert touched(tree) == {"b.c", "lib/a.c"}
    assert pristine_status(orig.src) == []
    assert (orig.src / "b.c").read_text() == "int b;\n" and (
        orig.src / "lib" / "a.c"
    ).read_text() == "int a;\n"
    assert (orig.build / "a.o").read_text() == "object\n"
    assert snapshot(orig.src) == before  # every file, .git's too (reflogs are appended to)


def test_writing_a_copy_s_source_in_place_would_change_the_original(tmp_path):
    """Why `write()` renames: a hard-linked source written in place is the original's file."""
    orig = mini_repo(tmp_path)
    copy_tree(orig.src, tmp_path / "copy")
    with open(tmp_path / "copy" / "b.c", "a") as f:
        f.write("int c;\n")
    assert pristine_status(orig.src) == [" M b.c"]
    assert (orig.src / "b.c").read_text() == "int b;\nint c;\n"


def test_a_copy_on_another_file_system_is_a_real_copy(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system at /dev/shm")
    orig = mini_repo(tmp_path)
    with tempfile.TemporaryDirectory(dir=shm) as other:
        copy_tree(orig.src, Path(other) / "copy")
        assert (Path(other) / "copy" / "lib" / "a.c").read_text() == "int a;\n"
        assert git(Path(other) / "copy", "status", "--porcelain").stdout == ""


def test_a_reset_copy_is_what_a_new_copy_is(tmp_path):
    """What the tests do to a copy (commit, git am, edit, add, delete, build, a failed am),
    reset() undoes: the same commit and branch, files that are the original's again (its
    inodes, so its mtimes), nothing new, and the build dir as the original's."""
    orig = mini_repo(tmp_path)
    before = snapshot(orig.src)
    copy_tree(orig.src, tmp_path / "copy")
    tree = Tree(tmp_path / "copy", tmp_path / "copy" / "build", orig.build_clang, orig.base, "")
    branch = git(orig.src, "symbolic-ref", "--short", "HEAD").stdout
    patch = commit_patch(tree, "b.c", "int b = 1;\n", "b: set", tmp_path / "patches")
    assert git_am(tree, [patch]) == ""
    write(tree, "lib/a.c", "int a = 2;\n")
    (tree.src / "new.c").write_text("int n;\n")
    (tree.src / "lib" / "gone").mkdir()
    (tree.src / "b.c").unlink()
    (tree.build / "a.o").write_text("rebuilt\n")
    (tree.build / "b.o").write_text("new\n")
    (tree.build / "sub").mkdir()
    (tree.build / "sub" / "c.o").write_text("new\n")
    git(tree.src, "checkout", "-q", "-b", "other")
    git(tree.src, "am", str(patch), check=False)  # does not apply: an am left in progress
    assert (tree.src / ".git" / "rebase-apply").exists()
    reset(tree, orig.src)
    assert git(tree.src, "rev-parse", "HEAD").stdout.strip() == orig.base
    assert git(tree.src, "symbolic-ref", "--short", "HEAD").stdout == branch
    assert pristine_status(tree.src) == [] and not (tree.src / ".git" / "rebase-apply").exists()
    assert touched(tree) == set()
    for rel in ("b.c", "lib/a.c"):
        assert (tree.src / rel).stat().st_ino == (orig.src / rel).stat().st_ino, rel
    assert (tree.build / "a.o").stat().st_mtime_ns == (orig.build / "a.o").stat().st_mtime_ns
    copy = snapshot(tree.src)
    assert {k: v for k, v in copy.items() if not k.startswith(".git/")} == {
        k: v for k, v in before.items() if not k.startswith(".git/")
    }
    assert snapshot(orig.src) == before


@needs_tree
def test_a_copy_patched_and_built_leaves_the_cache_alone(tmp_path):
    pristine = cache() / "src"
    before = (
        sha256(pristine / SEV),
        (pristine / SEV).stat().st_mtime_ns,
        sha256(pristine / "build" / SEV_O),
    )
    tree = fresh_tree(tmp_path)
    assert (tree.src / SEV).stat().st_ino == (pristine / SEV).stat().st_ino  # hard-linked
    text = (tree.src / SEV).read_text()
    patch = commit_patch(
        tree, SEV, text + "\n/* kgen test */\n", "x86/sev: test", tmp_path / "patches"
    )
    assert git_am(tree, [patch]) == ""
    git(tree.src, "checkout", "-q", "HEAD~1", "--", SEV)
    git(tree.src, "checkout", "-q", "HEAD", "--", SEV)
    ok, warnings = build(tree, [SEV_O])
    assert ok and warnings == []
    assert (tree.src / SEV).read_text().endswith("/* kgen test */\n")
    assert pristine_status(pristine) == []
    assert (sha256(pristine / SEV), (pristine / SEV).stat().st_mtime_ns,
            sha256(pristine / "build" / SEV_O)) == before  # fmt: skip


# --- build --------------------------------------------------------------------------------


# Each test below edits one copy and builds it with both compilers (each has its own build
# dir in the copy): a copy of the tree costs seconds, and one serves both builds.  The copy
# is the worker's reused one (the tree612 fixture), reset to pristine for each test.


@needs_tree
def test_a_broken_edit_fails_the_build(tree612):
    tree = tree612
    edit(tree, SEV, "#include <linux/cc_platform.h>\n",
         "#include <linux/cc_platform.h>\n\nint kgen_broken(void) { return kgen_undeclared; }\n")  # fmt: skip
    for cc in COMPILERS:
        built = build(tree, [SEV_O], cc)
        assert not built.ok, cc
        assert any(f"{SEV}:" in e and "kgen_undeclared" in e for e in built.errors), (
            cc,
            built.output,
        )


@needs_tree
def test_an_unused_static_function_warns(tree612):
    tree = tree612
    edit(tree, SEV, "#include <linux/cc_platform.h>\n",
         "#include <linux/cc_platform.h>\n\nstatic int kgen_unused(void) { return 0; }\n")  # fmt: skip
    for cc in COMPILERS:
        ok, warnings = build(tree, [SEV_O], cc)
        assert ok, cc
        assert (
            len(warnings) == 1
            and "kgen_unused" in warnings[0]
            and "-Wunused-function" in warnings[0]
        ), (cc, warnings)


@needs_tree
def test_objtool_s_messages_are_reported(tree612):
    tree = tree612
    text = (tree.src / SEV).read_text()
    write(tree, SEV, text + '\nvoid kgen_ret(void);\nvoid kgen_ret(void)\n{\n\tasm volatile("ret");\n}\n'
          "EXPORT_SYMBOL_GPL(kgen_ret);\n")  # fmt: skip
    for cc in COMPILERS:
        ok, warnings = build(tree, [SEV_O], cc)
        assert ok and any(
            w.startswith(SEV_O + ":") and "objtool: kgen_ret" in w for w in warnings
        ), (
            cc,
            warnings,
        )


@needs_tree
def test_a_touched_header_s_warning_in_an_untouched_file_is_kept_apart(tree612):
    """A warning at the use of a touched header is the change's doing, but not in its files."""
    tree = tree612
    edit(tree, "include/linux/cc_platform.h", "bool cc_platform_has(enum cc_attr attr);",
         'bool __attribute__((__warning__("kgen"))) cc_platform_has(enum cc_attr attr);')  # fmt: skip
    for cc in COMPILERS:
        built = build(tree, [SEV_O], cc)
        assert built.ok and built.warnings == [], (cc, built.output)
        assert built.elsewhere and all(
            w.startswith(f"{SEV}:") and "kgen" in w for w in built.elsewhere
        ), (cc, built.output)


@needs_tree
def test_the_pristine_objects_build_without_any_warning(tree612):
    """Linux 6.12 builds these with W=1 and no warning: any warning at all is a change's."""
    tree = tree612
    for cc in COMPILERS:
        for obj in OBJECTS:
            (tree.build_dir(cc) / obj).unlink()  # built again, not found up to date
        built = build(tree, OBJECTS, cc)
        assert built.ok and built.warnings == [] and built.elsewhere == [], (cc, built.output)
        assert all((tree.build_dir(cc) / obj).exists() for obj in OBJECTS), cc


# --- checkpatch and git am ----------------------------------------------------------------


@needs_tree
def test_checkpatch_flags_trailing_whitespace(tree612, tmp_path):
    tree = tree612
    text = (tree.src / SEV).read_text()
    clean = commit_patch(
        tree, SEV, text + "\n/* kgen test */\n", "x86/sev: Add a comment", tmp_path / "a"
    )
    dirty = commit_patch(
        tree, SEV, text + "\n/* kgen test */ \n", "x86/sev: Add a comment", tmp_path / "b"
    )
    assert checkpatch(tree, clean).ok, checkpatch(tree, clean).text
    report = checkpatch(tree, dirty)
    assert not report.ok and report.errors == 1 and "trailing whitespace" in report.text, (
        report.text
    )
    # one run over several patches reports each as a run of its own does
    alone = [checkpatch(tree, clean), report]
    for one, two in zip(checkpatch_all(tree, [clean, dirty]), alone, strict=True):
        assert (one.ok, one.errors, one.warnings, one.checks) == (two.ok, two.errors, two.warnings,
                                                                  two.checks), one.text  # fmt: skip


@needs_tree
def test_git_am_of_a_patch_that_does_not_apply_fails(tree612, tmp_path):
    tree = tree612
    text = (tree.src / SEV).read_text()
    patch = commit_patch(
        tree, SEV, text.replace("#include", "#include  ", 1), "x86/sev: test", tmp_path / "p"
    )
    edit(tree, SEV, "#include", "#include\t")
    git(tree.src, "commit", "-q", "-a", "-m", "diverge")
    head = git(tree.src, "rev-parse", "HEAD").stdout
    failure = git_am(tree, [patch])
    assert "patch does not apply" in failure, failure
    assert git(tree.src, "rev-parse", "HEAD").stdout == head
    assert not (tree.src / ".git" / "rebase-apply").exists()  # aborted: the next am can run


# --- the material itself ------------------------------------------------------------------


@pytest.mark.parametrize("ci", ["true", None])
def test_missing_material_fails_only_under_ci(ci, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["KGEN_KERNEL_CACHE"] = "/dev/null/cache"  # cannot be created
    if ci:
        env["CI"] = ci
    proc = subprocess.run(["bash", str(ROOT / "tests" / "kernel" / "tree612"), str(tmp_path)],
                          capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert proc.returncode == (1 if ci else 0), proc.stdout + proc.stderr
    assert "cannot create the cache /dev/null/cache" in (tmp_path / "STATUS612").read_text()
    assert not (tmp_path / "TREE612").exists()


@needs_tree
def test_the_kernel_macro_list_is_the_trees():
    """codegen/kernel_macros.py, which the loader holds spec names to, is what the units kgen
    changes in the prepared 6.12 tree see: computed again here, it must be the same list."""
    from codegen.kernel_macros import NAMES

    tree = cache()
    assert tree is not None
    found = lowercase_macros(tree / "src")
    assert {"current", "likely", "min", "for_each_online_cpu"} <= found  # the list is real
    assert sorted(found - NAMES) == [] and sorted(NAMES - found) == []
