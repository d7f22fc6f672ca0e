"""Kernel API spellings that differ between kernel versions, in one table.

The generated code names a few kernel interfaces whose spelling changed over
time: the scoped mutex guard of <linux/cleanup.h> (6.5), wrmsrq_on_cpu()
(6.16; wrmsrl_on_cpu() before), EXPORT_SYMBOL_FOR_MODULES() (newest; before
it the nearest is EXPORT_SYMBOL_GPL()).  A :class:`Profile` says which
spelling one kernel has; :data:`NEWEST` is what ``generated/`` is rendered
for, and :func:`detect` reads a tree's headers to choose.  The templates only
place the C text computed here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


@dataclass(frozen=True)
class Profile:
    name: str
    guard: bool  # guard(mutex)(&lock) from <linux/cleanup.h>; else mutex_lock()/mutex_unlock()
    wrmsr_on_cpu: str  # wrmsrq_on_cpu or wrmsrl_on_cpu
    export_for_modules: bool  # EXPORT_SYMBOL_FOR_MODULES(sym, "mod"); else EXPORT_SYMBOL_GPL(sym)
    hotplug_lock: tuple[str, str] = ("cpus_read_lock", "cpus_read_unlock")
    sizes: frozenset[str] | None = None  # the SZ_* names <linux/sizes.h> has; None: all

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

    def export(self, symbol: str, module: str) -> str:
        if self.export_for_modules:
            return f'EXPORT_SYMBOL_FOR_MODULES({symbol}, "{module}");'
        return f"EXPORT_SYMBOL_GPL({symbol});"

    def wrmsr(self, cpu: str, msr: str, value: str) -> str:
        return f"{self.wrmsr_on_cpu}({cpu}, {msr}, {value});"


NEWEST = Profile("newest", guard=True, wrmsr_on_cpu="wrmsrq_on_cpu", export_for_modules=True)
LINUX_6_1 = Profile("6.1", guard=False, wrmsr_on_cpu="wrmsrl_on_cpu", export_for_modules=False)
PROFILES = {p.name: p for p in (NEWEST, LINUX_6_1)}

# (header, text whose presence means the newer spelling)
_PROBES = {
    "guard": ("linux/mutex.h", "DEFINE_GUARD(mutex"),
    "wrmsrq": ("asm/msr.h", "wrmsrq_on_cpu"),
    "export_for_modules": ("linux/export.h", "EXPORT_SYMBOL_FOR_MODULES"),
}


def _header(include_dirs: Iterable[Path], name: str) -> str:
    for d in include_dirs:
        path = Path(d) / name
        if path.is_file():
            return path.read_text(errors="replace")
    return ""


def detect(include_dirs: Iterable[Path]) -> Profile:
    """The profile of a kernel tree, from its headers (``include``, ``arch/x86/include``)."""
    dirs = [Path(d) for d in include_dirs]
    found = {key: text in _header(dirs, header) for key, (header, text) in _PROBES.items()}
    sizes = frozenset(re.findall(r"^#define\s+(SZ_\w+)", _header(dirs, "linux/sizes.h"), re.M))
    return Profile(
        "detected",
        guard=found["guard"],
        wrmsr_on_cpu="wrmsrq_on_cpu" if found["wrmsrq"] else "wrmsrl_on_cpu",
        export_for_modules=found["export_for_modules"],
        sizes=sizes or None,
    )
