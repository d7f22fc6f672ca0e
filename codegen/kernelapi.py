"""Kernel API spellings that differ between kernel versions, in one table.

The generated code names a few kernel interfaces whose spelling changed over
time: the scoped mutex guard of <linux/cleanup.h> (6.5), wrmsrq_on_cpu()
(6.16; wrmsrl_on_cpu() before), EXPORT_SYMBOL_FOR_MODULES() (newest; before
it the nearest is EXPORT_SYMBOL_GPL()), and how a flag leaves an asm statement:
a bare ``"=@ccc"`` output needs GCC 6, so a tree whose minimum GCC
(scripts/min-tool-version.sh) is older uses asm/asm.h's ``CC_SET(c)`` /
``CC_OUT(c)``, as its own pvalidate() does.  A :class:`Profile` says which
spelling one kernel has; :data:`NEWEST` is what ``generated/`` is rendered
for, and :func:`detect` reads a tree's headers to choose.  The templates only
place the C text computed here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from .record import record
from .treeio import read_regular


@record
class Profile:
    name: str
    guard: bool  # guard(mutex)(&lock) from <linux/cleanup.h>; else mutex_lock()/mutex_unlock()
    wrmsr_on_cpu: str  # wrmsrq_on_cpu or wrmsrl_on_cpu
    export_for_modules: bool  # EXPORT_SYMBOL_FOR_MODULES(sym, "mod"); else EXPORT_SYMBOL_GPL(sym)
    hotplug_lock: tuple[str, str] = ("cpus_read_lock", "cpus_read_unlock")
    sizes: frozenset[str] | None = None  # the SZ_* names <linux/sizes.h> has; None: all
    flag_outputs: bool = True  # bare "=@ccc" outputs (GCC >= 6); else CC_SET(c) / CC_OUT(c)

    def locked(self, mutex: str, body: list[str], result: str | None = None) -> str:
        """The lines of a function body that run ``body`` with ``mutex`` held, one tab in.

        ``result``: a variable ``body`` sets and the function returns after the unlock.
        """
        if self.guard:
            lines = [f"guard(mutex)(&{mutex});", *body]
            if result:
                lines.append(f"return {result};")
            return "\n".join(f"\t{line}" for line in lines)
        lines = [f"mutex_lock(&{mutex});", *body, f"mutex_unlock(&{mutex});"]
        if result:
            lines += ["", f"return {result};"]
        return "\n".join(f"\t{line}" if line else "" for line in lines)

    def summary(self) -> str:
        """What the profile chooses, as a reader of the generated code sees it."""
        return ", ".join((
            "guard(mutex)" if self.guard else "mutex_lock()",
            f"{self.wrmsr_on_cpu}()",
            "EXPORT_SYMBOL_FOR_MODULES()" if self.export_for_modules else "EXPORT_SYMBOL_GPL()",
            '"=@ccc" flag outputs' if self.flag_outputs else "CC_SET()/CC_OUT()",
        ))  # fmt: skip

    def export(self, symbol: str, module: str) -> str:
        if self.export_for_modules:
            return f'EXPORT_SYMBOL_FOR_MODULES({symbol}, "{module}");'
        return f"EXPORT_SYMBOL_GPL({symbol});"

    def wrmsr(self, cpu: str, msr: str, value: str) -> str:
        return f"{self.wrmsr_on_cpu}({cpu}, {msr}, {value});"

    def wrmsr_local(self, msr: str, value: str, indent: str | None) -> str:
        """The write of this CPU's MSR (wrmsrq() or wrmsrl(), as the _on_cpu spelling), the value
        on a line of its own after ``indent``, or on the same line without one."""
        name = self.wrmsr_on_cpu.removesuffix("_on_cpu")
        if indent is None:
            return f"{name}({msr}, {value});"
        return f"{name}({msr},\n{indent}{' ' * (len(name) + 1)}{value});"

    def flag_output(self, flag: str, name: str) -> str:
        """The asm output operand that sets ``name`` from a flag (``cf``): its condition code."""
        cc = flag[0]
        return f'"=@cc{cc}" ({name})' if self.flag_outputs else f"CC_OUT({cc}) ({name})"

    def flag_sets(self, flags: Iterable[str]) -> list[str]:
        """What follows the instruction in the asm template so that the flags reach C:
        nothing with flag outputs, else asm/asm.h's ``CC_SET(c)`` for each."""
        return [] if self.flag_outputs else [f"CC_SET({flag[0]})" for flag in flags]


NEWEST = Profile("newest", guard=True, wrmsr_on_cpu="wrmsrq_on_cpu", export_for_modules=True)
# 6.1 and 6.12 still build with GCC 5.1 (scripts/min-tool-version.sh): no flag outputs
LINUX_6_1 = Profile("6.1", guard=False, wrmsr_on_cpu="wrmsrl_on_cpu", export_for_modules=False,
                    flag_outputs=False)  # fmt: skip
LINUX_6_12 = Profile("6.12", guard=True, wrmsr_on_cpu="wrmsrl_on_cpu", export_for_modules=False,
                     flag_outputs=False)  # fmt: skip
PROFILES = {p.name: p for p in (NEWEST, LINUX_6_1, LINUX_6_12)}
# the first GCC with asm flag outputs ("=@cc<cond>")
FLAG_OUTPUTS_GCC = (6, 0)

# <uapi/asm-generic/errno-base.h>: what an out-of-line function may return, negated
ERRNO = {"EPERM": 1, "ENOENT": 2, "EIO": 5, "EAGAIN": 11, "ENOMEM": 12, "EFAULT": 14,
         "EBUSY": 16, "ENODEV": 19, "EINVAL": 22, "ENOSPC": 28}  # fmt: skip

# (header, text whose presence means the newer spelling)
_PROBES = {
    "guard": ("linux/mutex.h", "DEFINE_GUARD(mutex"),
    "wrmsrq": ("asm/msr.h", "wrmsrq_on_cpu"),
    "export_for_modules": ("linux/export.h", "EXPORT_SYMBOL_FOR_MODULES"),
}


def _header(include_dirs: Iterable[Path], name: str) -> str:
    for d in include_dirs:
        path = Path(d) / name
        try:
            return read_regular(path, follow=True).decode("utf-8", "replace")
        except OSError:
            continue
    return ""


def min_gcc(root: Path) -> tuple[int, ...] | None:
    """The minimum GCC a kernel tree builds with, from its scripts/min-tool-version.sh.

    The script's ``gcc)`` case may test the architecture first; the x86
    answer is the ``else`` branch (or the only ``echo``).  None when the
    tree has no such script or it names no version.
    """
    path = Path(root) / "scripts" / "min-tool-version.sh"
    try:
        lines = read_regular(path).decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    # line by line, so that no input makes the search slower than linear
    body = _between(
        lines, lambda line: line.strip() == "gcc)", lambda line: line.strip().startswith(";;")
    )
    if body is None:
        return None
    # an architecture test: take what every other architecture gets
    branch = _between(
        body, lambda line: line.strip() == "else", lambda line: re.match(r"\s*fi\b", line)
    )
    echoes = re.findall(
        r"echo[ \t]+([0-9]+(?:\.[0-9]+)*)", "\n".join(branch if branch is not None else body)
    )
    if len(echoes) != 1:
        return None
    return tuple(int(part) for part in echoes[0].split("."))


def _between(lines: list[str], first, last) -> list[str] | None:
    """The lines after the first line ``first`` accepts, up to the next that ``last`` accepts."""
    for i, line in enumerate(lines):
        if first(line):
            for j in range(i + 1, len(lines)):
                if last(lines[j]):
                    return lines[i + 1 : j]
            return None
    return None


def tree_include_dirs(root: Path) -> list[Path]:
    """The header directories of a kernel tree that the x86 build searches."""
    return [Path(root) / "arch" / "x86" / "include", Path(root) / "include"]


def detect(include_dirs: Iterable[Path] = (), root: Path | None = None) -> Profile:
    """The profile of a kernel tree, from its headers (``include``, ``arch/x86/include``).

    With ``root`` (the tree's top directory), its header directories are
    searched after ``include_dirs``, and its scripts/min-tool-version.sh
    says whether bare flag outputs are allowed.  Without it, or where the
    script names no GCC, a tree whose asm/asm.h defines ``CC_OUT`` gets the
    CC_SET/CC_OUT form, which builds with every compiler the kernel takes.
    """
    dirs = [Path(d) for d in include_dirs] + (tree_include_dirs(root) if root is not None else [])
    found = {key: text in _header(dirs, header) for key, (header, text) in _PROBES.items()}
    sizes = frozenset(re.findall(r"^#define\s+(SZ_\w+)", _header(dirs, "linux/sizes.h"), re.M))
    gcc = min_gcc(root) if root is not None else None
    if gcc is not None:
        flag_outputs = gcc >= FLAG_OUTPUTS_GCC
    else:
        flag_outputs = not re.search(r"#\s*define\s+CC_OUT\b", _header(dirs, "asm/asm.h"))
    return Profile(
        "detected",
        guard=found["guard"],
        wrmsr_on_cpu="wrmsrq_on_cpu" if found["wrmsrq"] else "wrmsrl_on_cpu",
        export_for_modules=found["export_for_modules"],
        sizes=sizes or None,
        flag_outputs=flag_outputs,
    )
