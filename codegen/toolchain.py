"""Finding the C compilers that build the generated code.

clang is looked for in this order: ``$CC`` when it is clang, ``clang`` on
PATH, then the clang bundled in the pinned ``ziglang`` wheel that the
project's own install step brings.  gcc (``$GCC`` or ``gcc`` on PATH) is used
beside it where a check runs with every compiler.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

from .record import record

_CLANG = re.compile(r"clang version (\d+(?:\.\d+)*)")


class ToolchainError(Exception):
    """No usable compiler; the message says what was tried."""


@record
class Compiler:
    family: str  # "clang" or "gcc"
    argv: tuple[str, ...]  # the command and the arguments it always needs
    version: str
    origin: str  # how it was found, for `kgen doctor`

    @property
    def name(self) -> str:
        return f"{self.family} {self.version}"

    def command(self, *args: str) -> list[str]:
        return [*self.argv, *args]


def _probe(argv: list[str]) -> tuple[str, str] | None:
    """(family, version) of a compiler command, or None when it does not run."""
    try:
        proc = subprocess.run(
            [*argv, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    first = proc.stdout.splitlines()[0] if proc.stdout else ""
    m = _CLANG.search(first)
    if m:
        return "clang", m.group(1)
    if first.startswith(("gcc", "cc ")) or "(GCC)" in first:
        return "gcc", first.split()[-1]
    return None


def _ziglang_argv() -> list[str] | None:
    spec = importlib.util.find_spec("ziglang")
    if spec is None:
        return None
    # the wheel's zig binary itself: `python -m ziglang` only execs it, after a Python
    # start-up (about 30 ms) on every compile
    zig = next((os.path.join(d, "zig") for d in spec.submodule_search_locations or ()
                if os.access(os.path.join(d, "zig"), os.X_OK)), None)  # fmt: skip
    command = [zig] if zig else [sys.executable, "-m", "ziglang"]
    _zig_cache()
    # without an explicit target zig tunes for the host CPU and the code would
    # differ from machine to machine
    return [*command, "cc", "-target", "x86_64-linux-gnu"]


def _zig_cache() -> None:
    """Give zig a cache directory it can use, in ZIG_GLOBAL_CACHE_DIR (inherited by every
    compile) unless the caller set one.

    zig keeps its cache in ``$XDG_CACHE_HOME/zig``, relative or not (a relative one is a
    directory made in the working directory), else ``~/.cache/zig``; where that cannot be
    made it does not run, which read as "no clang found".  kgen names the directory the XDG
    Base Directory specification means (a relative XDG_CACHE_HOME ignored, as
    :func:`codegen.cache_root` does), and where that cannot be made or written a private
    temporary one, removed when kgen exits.
    """
    if os.environ.get("ZIG_GLOBAL_CACHE_DIR"):
        return
    import atexit
    import tempfile

    from . import cache_root
    from .cachedir import make_dir

    where = cache_root().parent / "zig"
    try:
        make_dir(where)
        usable = os.access(where, os.W_OK | os.X_OK)
    except OSError:
        usable = False
    if not usable:
        try:
            where = Path(tempfile.mkdtemp(prefix="kgen-zig-"))
        except OSError:
            return  # zig says what it lacks
        atexit.register(_remove_own, os.getpid(), where)
    os.environ["ZIG_GLOBAL_CACHE_DIR"] = str(where)


def _remove_own(owner: int, directory: Path) -> None:
    if os.getpid() == owner:  # not at a forked worker's exit: the directory is its parent's
        shutil.rmtree(directory, ignore_errors=True)


def _origin(where: str, skipped: list[str]) -> str:
    return f"{where}; skipped {', '.join(skipped)}" if skipped else where


@cache
def find_clang() -> Compiler:
    tried = []
    cc = os.environ.get("CC")
    if cc:
        argv = shlex.split(cc)
        found = _probe(argv)
        if found and found[0] == "clang":
            return Compiler("clang", tuple(argv), found[1], f"$CC ({cc})")
        tried.append(f"$CC={cc} (not clang)")
    path = shutil.which("clang")
    if path:
        found = _probe([path])
        if found and found[0] == "clang":
            return Compiler("clang", (path,), found[1], _origin(f"PATH ({path})", tried))
        tried.append(f"{path} (does not run)")
    else:
        tried.append("clang on PATH (none)")
    zig = _ziglang_argv()
    if zig:
        found = _probe(zig)
        if found and found[0] == "clang":
            return Compiler(
                "clang",
                tuple(zig),
                found[1],
                _origin("the ziglang wheel in this environment", tried),
            )
        tried.append("the ziglang wheel (does not run)")
    else:
        tried.append("the ziglang wheel (not installed)")
    raise ToolchainError(
        "no clang found; tried " + ", ".join(tried) + ". Run `make venv` to install the pinned "
        "ziglang wheel, or point $CC at a clang."
    )


@cache
def find_gcc() -> Compiler | None:
    cmd = os.environ.get("GCC", "gcc")
    argv = shlex.split(cmd)
    found = _probe(argv)
    if found and found[0] == "gcc":
        where = shutil.which(argv[0]) or argv[0]
        return Compiler("gcc", tuple(argv), found[1], f"PATH ({where})")
    return None


def compilers() -> list[Compiler]:
    """clang (required) and gcc (when present)."""
    found = [find_clang()]
    gcc = find_gcc()
    if gcc:
        found.append(gcc)
    return found
