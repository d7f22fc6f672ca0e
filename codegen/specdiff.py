"""What an edit to a spec changes: in the spec, in the generated code, in behaviour.

:func:`base_text` finds the older version (a file, or the same path at a git
revision); :func:`spec_changes` lists the changed facts grouped by meaning;
:func:`code_diff` re-renders both in memory; :func:`behaviour_changes` runs
the mirror on reference machines before and after.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import subprocess
from pathlib import Path
from typing import Any

from . import mirror
from .diagnostics import size_text
from .model import Spec
from .record import record
from .spec import yaml_fields
from .treeio import git_env
from .yamlsource import MAX_FILE_BYTES, decode_text, read_limited, read_text

# The meaning of each part of a spec, for grouping its changes (first match wins).
GROUPS = (
    ("instruction.encoding", "encoding"),
    ("instruction.function_codes", "function codes"),
    ("instruction.inputs", "operands"),
    ("instruction.preserved", "operands"),
    ("instruction.clobbers", "operands"),
    ("instruction.outputs", "output semantics"),
    ("instruction.cpuid", "CPUID and MSR"),
    ("instruction.msr", "CPUID and MSR"),
    ("instruction.table", "region size and coverage"),
    ("kernel.sweep.leader", "sweep policy"),
    ("kernel.sweep.cpus", "sweep policy"),
    ("kernel.sweep.followers", "sweep policy"),
    ("kernel.sweep.resched", "sweep policy"),
    ("kernel.sweep.log_message", "sweep policy"),
    ("kernel.sweep.cap_message", "sweep policy"),
    ("kernel.sweep.cap_log", "sweep policy"),
    ("kernel.sweep.workers", "sweep policy"),
    ("kernel.enable", "enabling and locking"),
    ("kernel", "kernel names"),
    ("instruction", "documentation and facts"),
)
_KEYS = ("name", "register", "flag", "kind", "exception")


class BaseError(Exception):
    """The base version cannot be read."""


def base_text(spec_path: str, base: str) -> tuple[str, str]:
    """(label, text) of the older version: a file, or ``spec_path`` at git revision ``base``.

    A file is read as a spec is (regular files only, within the size limit, UTF-8;
    a :class:`SpecError` otherwise); a revision is never taken for an option of git.
    """
    if os.path.lexists(base) and not Path(base).is_dir():
        return base, read_text(Path(base), base)
    if not base or base.startswith("-"):
        raise BaseError(f"{base!r} is not a revision")
    path = Path(spec_path).resolve()
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path.parent, env=git_env(),
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        rel = path.relative_to(Path(top).resolve()).as_posix()
        with subprocess.Popen(["git", "show", "--end-of-options", f"{base}:{rel}"], cwd=top, env=git_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as git:  # fmt: skip
            stdout, stderr = git.stdout, git.stderr
            assert stdout is not None and stderr is not None  # both are pipes
            data = read_limited(stdout)
            stdout.close()  # a bigger blob: git stops on the closed pipe
            err = stderr.read(4096).decode("utf-8", errors="replace")
            status = git.wait()
    except (OSError, subprocess.CalledProcessError, ValueError):
        raise BaseError(
            f"{base!r} is not a file, and {spec_path} is not in a git work tree"
        ) from None
    label = f"{base}:{rel}"
    if status != 0 and len(data) <= MAX_FILE_BYTES:
        raise BaseError(_not_shown(top, base, rel, err))
    return label, decode_text(data, label)


def _not_shown(top: str, base: str, rel: str, err: str) -> str:
    """Why `git show BASE:REL` failed, in kgen's words where git's would puzzle: no such
    revision, or a spec the revision does not have (a new one); else git's own."""

    def git_ok(*args: str) -> bool:
        try:
            return subprocess.run(["git", *args], cwd=top, env=git_env(), capture_output=True,
                                  check=False).returncode == 0  # fmt: skip
        except OSError:
            return True  # cannot tell: git's words then

    if not git_ok("rev-parse", "--verify", "--quiet", "--end-of-options", f"{base}^{{commit}}"):
        return f"{base!r} is neither a file nor a revision of the git tree at {top}"
    if not git_ok("cat-file", "-e", "--end-of-options", f"{base}:{rel}"):
        return (f"{rel} is not in {base}: a new spec has no older version to compare with; "
                "validate it without --base")  # fmt: skip
    return f"{rel} at {base}: {err.strip() or 'not found'}"


def _flatten(obj: Any, prefix: str, out: dict[str, tuple[Any, Any]], owner: Any = None) -> None:
    """Leaves of a spec as {dotted path: (value, object holding its mark)}; a field that is not
    there (None) is no leaf, so a section added or removed is said leaf by leaf."""
    if obj is None:
        return
    if dataclasses.is_dataclass(obj):
        for f in yaml_fields(type(obj)):
            _flatten(getattr(obj, f.name), f"{prefix}.{f.name}" if prefix else f.name, out, obj)
        return
    if isinstance(obj, tuple) and obj and dataclasses.is_dataclass(obj[0]):
        for i, item in enumerate(obj):
            key = next((getattr(item, k) for k in _KEYS if getattr(item, k, None) is not None), i)
            _flatten(item, f"{prefix}[{key}]", out, item)
        return
    out[prefix] = (obj, owner)


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:#x}" if value > 9 else str(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


@record
class Change:
    group: str
    message: str
    where: str  # path:line of the new value, or of the base's for a removal


def _group(path: str) -> str:
    return next(name for prefix, name in GROUPS if path.startswith(prefix))


def _at(mark) -> str:
    return f"{mark.path}:{mark.line}"


def _where(spec: Spec, owner: Any, path: str) -> str:
    key = path.rsplit(".", 1)[-1].split("[")[0]
    return _at(owner.mark(key) if owner is not None else spec.mark())


def _codes(spec: Spec) -> dict[str, Any]:
    fc = spec.instruction.function_codes
    return {c.name: c for c in fc.codes} if fc else {}


CODES = "instruction.function_codes.codes["


def _code_of(path: str) -> str | None:
    """The function code a leaf path belongs to, if any."""
    return path[len(CODES) :].split("]", 1)[0] if path.startswith(CODES) else None


def spec_changes(old: Spec, new: Spec) -> list[Change]:
    """Every changed fact, grouped by meaning, in the order of the new spec."""
    a: dict[str, tuple[Any, Any]] = {}
    b: dict[str, tuple[Any, Any]] = {}
    _flatten(old, "", a)
    _flatten(new, "", b)
    changes = []
    # function codes are said as codes: added, renumbered, removed
    old_codes, new_codes = _codes(old), _codes(new)
    for name, code in new_codes.items():
        if name not in old_codes:
            changes.append(Change("function codes", f"function code {name} added "
                                  f"({_show(code.value)})", _at(code.mark("name"))))  # fmt: skip
        elif old_codes[name].value != code.value:
            changes.append(Change("function codes", f"function code {name} renumbered "
                                  f"{_show(old_codes[name].value)} -> {_show(code.value)}",
                                  _at(code.mark("value"))))  # fmt: skip
    for name, code in old_codes.items():
        if name not in new_codes:
            changes.append(Change("function codes", f"function code {name} removed "
                                  f"(was {_show(code.value)})", _at(code.mark("name"))))  # fmt: skip
    for path, (value, owner) in b.items():
        code = _code_of(path)
        if code is not None and (code not in old_codes or path.endswith((".name", ".value"))):
            continue  # said above in terms of codes
        if path not in a:
            changes.append(Change(_group(path), f"{path} added: {_show(value)}",
                                  _where(new, owner, path)))  # fmt: skip
        elif a[path][0] != value:
            changes.append(Change(_group(path), f"{path}: {_show(a[path][0])} -> {_show(value)}",
                                  _where(new, owner, path)))  # fmt: skip
    for path, (value, owner) in a.items():
        code = _code_of(path)
        if path not in b and (code is None or code in new_codes):
            changes.append(Change(_group(path), f"{path} removed (was {_show(value)})",
                                  _where(old, owner, path)))  # fmt: skip
    order = [name for _, name in GROUPS]
    return sorted(changes, key=lambda c: order.index(c.group))


def code_diff(old_files: dict[str, str], new_files: dict[str, str]) -> str:
    """A unified diff of the re-rendered files (banner lines included)."""
    out: list[str] = []
    for path in sorted(set(old_files) | set(new_files)):
        out += difflib.unified_diff(
            old_files.get(path, "").splitlines(keepends=True),
            new_files.get(path, "").splitlines(keepends=True),
            fromfile=f"a/{path}", tofile=f"b/{path}",
        )  # fmt: skip
    return "".join(out)


# Machines on which behaviour is compared: typical, and past the coverage.
REFERENCE_MACHINES = (
    ("64 GB, 4 cores", dict(memory=64 << 30, cores=4, threads_per_core=1)),
    ("3 TB, 8 cores x 2 threads", dict(memory=3 << 40, cores=8, threads_per_core=2)),
)


def _behaviour(spec: Spec, memory: int, **kw) -> dict[str, str]:
    if spec.kernel.sweep is None or spec.instruction.table is None:
        return {}
    machine = mirror.Machine(0, memory >> mirror.PAGE_SHIFT, **kw)
    s, _ = mirror.summarize(spec, machine)
    return {
        "regions swept": str(s.regions),
        "RMPOPT executions": str(s.rmpopt),
        "cross-CPU calls": str(s.ipis),
        "memory above the cap": _above_cap(s.range.uncapped_end - s.range.pa_end),
    }


def _above_cap(n: int) -> str:
    return size_text(n) if n else "none"


def behaviour_changes(old: Spec, new: Spec) -> list[str]:
    """How the mirror's sweep differs on the reference machines."""
    lines = []
    for label, kw in REFERENCE_MACHINES:
        sides = []
        for name, spec in (("the base", old), ("the spec", new)):
            try:
                sides.append(_behaviour(spec, **kw))
            except mirror.MachineTooLarge as exc:
                lines.append(f"{label}: not compared: the pass of {name} is too large: {exc}")
                break
        if len(sides) < 2:
            continue
        before, after = sides
        order = list(after) + [k for k in before if k not in after]
        for key in order:
            if before.get(key) != after.get(key):
                lines.append(f"{label}: {key} {before.get(key, '-')} -> {after.get(key, '-')}")
    return lines
