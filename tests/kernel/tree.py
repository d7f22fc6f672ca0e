"""Linux 6.12 as test material: private copies of a prepared tree, and what tests do to them.

tests/kernel/get-kernel-material (through tests/kernel/tree612) prepares the tree once, in
a cache outside the clone, and names it in .kernel/TREE612:

    linux-6.12/src/              git repository, one commit, pristine
    linux-6.12/src/build/        O= build dir, configured and prepared with gcc
    linux-6.12/src/build-clang/  the same with clang (CC= as recorded in CLANG_CC)

`fresh_tree()` gives a test its own copy in a few seconds: the sources and the git objects
are hard links to the cache's files, everything else is copied: the build dirs (kbuild
writes in place) and the rest of .git (git appends to reflogs and truncates files such as
COMMIT_EDITMSG). A hard link is the same file, so a copy must never be written in place: every
writer used here replaces a file instead (git am, git checkout and git apply unlink and
create; `write()` renames a temporary file over it; make writes only below the build
dirs, which are real copies). Opening an existing source file for writing, or appending
to one, would change the cache for every later test: use `write()`.

`reused_tree()` (the tree612 fixture) gives a test a copy that an earlier test of the same
worker used, put back by `reset()` as `fresh_tree()` makes it, in about a second.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from codegen.toolchain import find_clang

ROOT = Path(__file__).resolve().parent.parent.parent
KERNEL = ROOT / ".kernel"
LAYOUT = "layout 4"  # as tests/kernel/tree612 writes it into STAMP
BUILD_DIRS = {"gcc": "build", "clang": "build-clang"}
JOBS = str(os.cpu_count() or 1)


def kbuild_clang() -> list[str]:
    """The project's clang (codegen.toolchain.find_clang) as kbuild's CC. The ziglang wheel's
    `zig cc` parses the options itself and refuses some the kernel passes
    (-fpatchable-function-entry=16,16); `zig clang` is the plain driver, and kbuild adds
    --target= itself."""
    argv = list(find_clang().argv)
    # the zig binary itself, or `python -m ziglang`, then `cc`
    zig = next((i for i, a in enumerate(argv) if a == "ziglang" or os.path.basename(a) == "zig"), None)
    if zig is not None and argv[zig + 1 : zig + 2] == ["cc"]:
        argv = argv[: zig + 1] + ["clang"]
    return argv


def cache() -> Path | None:
    """The prepared tree named in .kernel/TREE612, or None when there is none complete."""
    named = KERNEL / "TREE612"
    if not named.is_file():
        return None
    path = Path(named.read_text().strip())
    stamp = path / "STAMP"
    if not stamp.is_file() or not stamp.read_text().strip().endswith(LAYOUT):
        return None
    return path


def missing_reason() -> str:
    named, status = KERNEL / "TREE612", KERNEL / "STATUS612"
    if named.is_file():
        stamp = Path(named.read_text().strip()) / "STAMP"
        found = stamp.read_text().strip() if stamp.is_file() else "no STAMP"
        why = f"{stamp.parent} is not complete or not {LAYOUT} ({found}); run tests/kernel/get-kernel-material"
    elif status.is_file():
        why = status.read_text().strip()
    else:
        why = "tests/kernel/get-kernel-material has not run"
    return f"no Linux 6.12 tree: {why}"


@dataclass(frozen=True)
class Tree:
    src: Path  # the sources, a git repository
    build: Path  # O= for gcc
    build_clang: Path  # O= for clang
    base: str  # the pristine commit
    clang_cc: str  # the CC= the clang build dir was configured with

    def build_dir(self, cc: str) -> Path:
        return self.src / BUILD_DIRS[cc]


def _cp(*args: str | Path) -> None:
    subprocess.run(["cp", *map(str, args)], check=True, capture_output=True, text=True)


def copy_tree(pristine: Path, dst: Path) -> None:
    """Copy the git work tree `pristine` to `dst`: sources and git objects hard-linked, the
    rest of .git and the build dirs copied (they are written in place: reflogs, kbuild)."""
    dst.mkdir(parents=True)
    linked = [p for p in pristine.iterdir() if p.name not in {".git", *BUILD_DIRS.values()}]
    copied = [p for p in pristine.iterdir() if p.name in BUILD_DIRS.values()]
    git = pristine / ".git"
    (dst / ".git").mkdir()
    git_linked = [git / "objects"]
    git_copied = [p for p in git.iterdir() if p.name != "objects"]
    try:
        _cp("-a", "-l", "-t", dst, *linked)
        _cp("-a", "-l", "-t", dst / ".git", *git_linked)
    except subprocess.CalledProcessError as e:
        if "cross-device" not in e.stderr:
            raise
        # another file system: a real copy, slower (gigabytes) but just as private
        _cp("-a", "-t", dst, *linked)
        _cp("-a", "-t", dst / ".git", *git_linked)
    if copied:
        _cp("-a", "-t", dst, *copied)
    if git_copied:
        _cp("-a", "-t", dst / ".git", *git_copied)


def _own_build_dirs(src: Path, built_in: str) -> None:
    # kbuild names the sources by relative paths, but objtool's own build records absolute
    # ones: without this every copy would rebuild objtool (10 s a compiler)
    for name in BUILD_DIRS.values():
        for cmd in (src / name / "tools").rglob(".*.cmd"):
            text = cmd.read_text()
            if built_in in text:
                cmd.write_text(text.replace(built_in, str(src)))


def fresh_tree(tmp_path: Path) -> Tree:
    """A private, writable copy of the prepared Linux 6.12 tree below tmp_path."""
    pristine = cache()
    if pristine is None:
        raise RuntimeError(missing_reason())
    src = tmp_path / "linux-6.12"
    copy_tree(pristine / "src", src)
    _own_build_dirs(src, (pristine / "BUILT_IN").read_text().strip())
    base = git(src, "rev-parse", "HEAD").stdout.strip()
    return Tree(src, src / "build", src / "build-clang", base,
                (pristine / "CLANG_CC").read_text().strip())  # fmt: skip


def reset(tree: Tree, pristine: Path, built_in: str = "") -> None:
    """Make a copy of `pristine` (a git work tree, as copy_tree() copied it) what a new copy
    would be, in a fraction of the time a new copy takes (hard-linking 92 000 files, and
    deleting them later): the branch at the pristine commit, nothing else in the work tree,
    each file it changed a hard link to the pristine file again (its mtime too, so that
    kbuild does not rebuild what it need not) and the build dirs copied anew."""
    src = tree.src
    changed = touched(tree)
    if (src / ".git" / "rebase-apply").exists():
        git(src, "am", "--abort", check=False)
    branch = git(pristine, "symbolic-ref", "--short", "HEAD").stdout.strip()
    git(src, "checkout", "-q", "-f", "-B", branch, tree.base)
    git(src, "clean", "-q", "-ffdx", *(f"--exclude=/{d}/" for d in BUILD_DIRS.values()))
    for rel in sorted(changed):
        if (pristine / rel).is_file() and not (pristine / rel).is_symlink():
            link = (src / rel).parent / f".kgen-link-{os.getpid()}"
            os.link(pristine / rel, link)
            os.replace(link, src / rel)
    git(src, "update-index", "-q", "--refresh", check=False)  # the links' new stat, once
    for name in BUILD_DIRS.values():
        if (pristine / name).is_dir():
            _restore(pristine / name, src / name)
        elif (src / name).exists():
            subprocess.run(["rm", "-rf", str(src / name)], check=True)
    if built_in:
        _own_build_dirs(src, built_in)


def _restore(orig: Path, copy: Path) -> None:
    """Make `copy` a copy of the directory `orig` again (as `cp -a` made it), copying only the
    files whose type, size or mtime differ and removing what `orig` does not have: a build
    changes a few of a build dir's 2 000 files."""
    if copy.is_symlink() or (copy.exists() and not copy.is_dir()):
        copy.unlink()
    copy.mkdir(exist_ok=True)
    theirs = {e.name: e for e in os.scandir(orig)}
    for entry in os.scandir(copy):
        if entry.name not in theirs:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    for name, entry in theirs.items():
        target = copy / name
        if entry.is_dir(follow_symlinks=False):
            _restore(Path(entry.path), target)
            continue
        want = entry.stat(follow_symlinks=False)
        try:
            have = target.lstat()
        except FileNotFoundError:
            have = None
        if have is not None and (stat.S_IFMT(have.st_mode), have.st_size, have.st_mtime_ns) == (
            stat.S_IFMT(want.st_mode), want.st_size, want.st_mtime_ns
        ) and (not entry.is_symlink() or os.readlink(target) == os.readlink(entry.path)):
            continue
        if have is not None:
            if stat.S_ISDIR(have.st_mode):
                shutil.rmtree(target)
            else:
                target.unlink()
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
        else:
            shutil.copy2(entry.path, target)


def reused_tree(home: Path) -> Tree:
    """A private, writable copy of the prepared tree in `home`: made there on the first call,
    reset() to pristine on each later one.  One test at a time may use it."""
    pristine = cache()
    if pristine is None:
        raise RuntimeError(missing_reason())
    src = home / "linux-6.12"
    if not src.exists():
        return fresh_tree(home)
    base = git(pristine / "src", "rev-parse", "HEAD").stdout.strip()
    tree = Tree(src, src / "build", src / "build-clang", base,
                (pristine / "CLANG_CC").read_text().strip())  # fmt: skip
    reset(tree, pristine / "src", (pristine / "BUILT_IN").read_text().strip())
    return tree


def git(src: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True, check=check)


def write(tree: Tree, path: str, text: str) -> None:
    """Write a file of the tree by renaming a new file over it, never in place."""
    target = tree.src / path
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".kgen-tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if target.exists():
        os.chmod(tmp, target.stat().st_mode & 0o7777)
    os.replace(tmp, target)


def touched(tree: Tree) -> set[str]:
    """Files that differ from the pristine commit: committed, staged, edited or new."""
    names = git(tree.src, "diff", "--name-only", tree.base).stdout.split()
    names += git(tree.src, "ls-files", "--others", "--exclude-standard").stdout.split()
    return set(names)


_DIAG = re.compile(r"^(?P<path>[^\s:]+):(?:\d+:)*\s*(?P<kind>warning|error)\b.*$", re.M)


@dataclass
class Built:
    ok: bool  # make succeeded for every object
    warnings: list[str]  # compiler warnings in touched files, and every objtool message
    errors: list[str]  # every error line, paths relative to the sources
    elsewhere: list[str]  # compiler warnings in files not touched (a use of a touched header)
    output: str = field(repr=False)  # all make printed

    def __iter__(self):
        return iter((self.ok, self.warnings))


def build(tree: Tree, objects: list[str], cc: str = "gcc") -> Built:
    """`make O=<build dir> W=1 <object>...` in the tree, with gcc or the project's clang."""
    args = ["make", "-C", str(tree.src), f"O={BUILD_DIRS[cc]}", f"-j{JOBS}", "-k", "W=1", *objects]
    env = dict(os.environ)
    if cc == "clang":
        args.insert(3, f"CC={tree.clang_cc}")
        env["KGEN_CLANG"] = shlex.join(kbuild_clang())
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    output = proc.stdout + proc.stderr
    mine = touched(tree)
    warnings, errors, elsewhere = [], [], []
    for m in _DIAG.finditer(output):
        # kbuild names a source from the build dir (../arch/x86/...), an object from its own
        rel = m.group("path").removeprefix("../")
        line = rel + m.group(0)[len(m.group("path")) :]
        if m.group("kind") == "error":
            errors.append(line)
        elif "objtool:" in line or rel in mine:
            warnings.append(line)
        else:
            elsewhere.append(line)
    return Built(proc.returncode == 0, warnings, errors, elsewhere, output)


@dataclass
class Report:
    ok: bool  # checkpatch exited 0
    errors: int
    warnings: int
    checks: int
    text: str


_TOTAL = re.compile(r"total: (\d+) errors, (\d+) warnings, (?:(\d+) checks, )?\d+ lines checked")


def checkpatch(tree: Tree, patch_file: Path) -> Report:
    """scripts/checkpatch.pl --strict on a patch, run in the tree (not --no-tree)."""
    proc = subprocess.run(["perl", "scripts/checkpatch.pl", "--strict", str(Path(patch_file).resolve())],
                          cwd=tree.src, capture_output=True, text=True, check=False)  # fmt: skip
    m = _TOTAL.search(proc.stdout)
    if m is None:
        raise AssertionError(f"checkpatch gave no total:\n{proc.stdout}{proc.stderr}")
    errors, warnings, checks = (int(g or 0) for g in m.groups())
    return Report(proc.returncode == 0, errors, warnings, checks, proc.stdout + proc.stderr)


def checkpatch_all(tree: Tree, patch_files: list[Path]) -> list[Report]:
    """checkpatch() of each patch, from one run of checkpatch.pl (a run costs a third of a
    second before it reads a patch): its report of each file follows a header naming it."""
    paths = [str(Path(f).resolve()) for f in patch_files]
    if len(paths) < 2:
        return [checkpatch(tree, f) for f in patch_files]
    proc = subprocess.run(["perl", "scripts/checkpatch.pl", "--strict", *paths],
                          cwd=tree.src, capture_output=True, text=True, check=False)  # fmt: skip
    heads, at = [], 0
    for path in paths:
        head = re.compile(rf"^-+\n{re.escape(path)}\n-+\n", re.M).search(proc.stdout, at)
        if head is None:
            raise AssertionError(f"checkpatch did not report {path} in turn:\n{proc.stdout}{proc.stderr}")
        heads.append(head)
        at = head.end()
    reports = []
    for n, (path, head) in enumerate(zip(paths, heads, strict=True)):
        text = proc.stdout[head.start() : heads[n + 1].start() if n + 1 < len(heads) else None]
        m = _TOTAL.search(text)
        if m is None:
            raise AssertionError(f"checkpatch gave no total for {path}:\n{text}{proc.stderr}")
        errors, warnings, checks = (int(g or 0) for g in m.groups())
        ok = f"{path} has no obvious style problems" in text
        reports.append(Report(ok, errors, warnings, checks, text + proc.stderr))
    return reports


def git_am(tree: Tree, patches: list[Path]) -> str:
    """Apply a series with `git am`; '' when it applied, else what git said (series aborted)."""
    proc = git(tree.src, "am", "--quiet", *[str(Path(p).resolve()) for p in patches], check=False)
    if proc.returncode == 0:
        return ""
    git(tree.src, "am", "--abort", check=False)
    return (proc.stdout + proc.stderr).strip() or f"git am exited {proc.returncode}"


# The objects whose sources kgen changes in 6.12: the macros their headers define are names
# every generated line is preprocessed with.
TOUCHED_OBJECTS = ("arch/x86/virt/svm/sev.o", "drivers/crypto/ccp/sev-dev.o",
                   "arch/x86/kvm/svm/sev.o", "arch/x86/coco/sev/core.o")  # fmt: skip


def lowercase_macros(src: Path, objects: tuple[str, ...] = TOUCHED_OBJECTS) -> set[str]:
    """The macros starting with a lower-case letter that the units of ``objects`` see, as
    gcc's -dM lists them, each unit preprocessed with the command kbuild compiled it with
    (read from the gcc build dir's .o.cmd files)."""
    names: set[str] = set()
    build_dir = src / BUILD_DIRS["gcc"]
    for obj in objects:
        cmd_file = build_dir / Path(obj).parent / f".{Path(obj).name}.cmd"
        line = cmd_file.read_text().splitlines()[0]
        command = line.split(" := ", 1)[1].split(" ; ", 1)[0]
        argv = [a for a in shlex.split(command) if not a.startswith("-Wp,-MMD")]
        at = argv.index("-c")
        argv[at : at + 3] = ["-E", "-dM"]  # -c -o OBJ
        out = subprocess.run(argv, cwd=build_dir, capture_output=True, text=True, check=True).stdout
        names |= {m.group(1) for m in re.finditer(r"^#define ([a-z]\w*)", out, re.M)}
    return names
