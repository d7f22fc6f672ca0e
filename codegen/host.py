"""What the host CPU does with the spec's bytes, and so which engine is safe.

On Intel CPUs the SNP encodings raise #UD in user mode (SIGILL).  AMD CPUs
with CLZERO decode ``F2 0F 01 FC`` as CLZERO with an ignored prefix, which
user mode may execute: it zeroes the 64-byte line at RAX instead of
trapping (measured on an AMD EPYC).  It faults only where RAX is not
mapped writable, so the native engine on such a CPU reserves the low
address space with no access first; the emulator needs no such care.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

# Native runs on a CLZERO CPU reserve [64 KiB, GUARD_TOP) with no access; every
# address a case hands the instruction stays below it.
GUARD_TOP = 1 << 46


@dataclass(frozen=True)
class HostCpu:
    vendor: str
    clzero: bool

    @property
    def traps_natively(self) -> bool:
        """Whether the bytes raise #UD here without any preparation."""
        return not self.clzero


@cache
def host_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> HostCpu:
    vendor, flags = "unknown", set()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "vendor_id" and vendor == "unknown":
                vendor = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return HostCpu(vendor, "clzero" in flags)


@dataclass(frozen=True)
class EngineChoice:
    engine: str  # "native" or "emulator"
    guard: int | None  # top of the no-access reservation, for native on CLZERO CPUs
    reason: str


def choose_engine(requested: str, cpu: HostCpu | None = None) -> EngineChoice:
    cpu = cpu or host_cpu()
    if requested == "emulator":
        return EngineChoice("emulator", None, "requested")
    if requested == "native":
        if cpu.traps_natively:
            return EngineChoice("native", None, f"{cpu.vendor}: the bytes raise #UD (SIGILL)")
        return EngineChoice(
            "native", GUARD_TOP,
            f"{cpu.vendor} with CLZERO: the bytes run as CLZERO, so the address space below "
            f"{GUARD_TOP:#x} is reserved with no access and every execution faults (SIGSEGV)",
        )  # fmt: skip
    if cpu.traps_natively:
        return EngineChoice("native", None, f"{cpu.vendor} without CLZERO: the bytes trap")
    return EngineChoice(
        "emulator", None,
        f"{cpu.vendor} with CLZERO would run the bytes as CLZERO: emulating instead "
        "(--engine native reserves the address space and traps the fault)",
    )  # fmt: skip
