"""What the host CPU does with the spec's bytes, and so which engine is safe.

The native engine executes a spec's bytes only where it can prove they
fault: bytes the decoder (iced-x86) knows as no instruction raise #UD, and
privileged instructions fault in user mode.  Bytes it decodes as an
instruction user mode may execute run natively only with a proof that they
fault: ``F2 0F 01 FC`` (RMPOPT) decodes as CLZERO with an ignored prefix,
which zeroes the 64-byte line at RAX on CPUs with CLZERO (measured on an
AMD EPYC), so the native engine reserves the low address space with no
access first: every address the table model's cases hand the helper lies
below the guard's top, and the harness proves at start-up that nothing else
is mapped there and that CLZERO faults there (or refuses to run).  Anything
else runs in the emulator.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from .record import record

# Native runs on a CLZERO CPU reserve [64 KiB, GUARD_TOP) with no access; every
# address a case hands the instruction stays below it.
GUARD_TOP = 1 << 46


@record
class HostCpu:
    vendor: str
    clzero: bool


@cache
def host_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> HostCpu:
    vendor, flags = "unknown", set[str]()
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


@record
class EngineChoice:
    engine: str  # "native" or "emulator"
    guard: int | None  # top of the no-access reservation, for native on CLZERO CPUs
    reason: str
    fallback: bool = False  # chosen by auto behind the guard: emulate if the guard does not hold


class EngineRefused(Exception):
    """The native engine cannot prove that the spec's bytes fault; the message says why."""


@record
class NativePlan:
    """Whether the native engine may execute the spec's bytes, and with which guard."""

    allowed: bool
    guard: int | None
    why: str
    hazard: str | None = None  # the user-mode instruction the bytes are, when there is one


# User-mode instructions the native engine can make fault, and how: CLZERO writes the
# 64-byte line at RAX, so with [64 KiB, GUARD_TOP) reserved with no access it faults for
# every address the table model's cases pass (the oracle's cases pass any 64-bit value).
# Whether /proc/cpuinfo lists the feature proves nothing: clearcpuid= and hypervisors hide
# CPUID bits from a CPU that still executes the instruction.
GUARDED = {"clzero"}


def native_plan(spec) -> NativePlan:
    """What executing ``spec``'s bytes in user mode does, as iced-x86 decodes them."""
    from .oracle import uses_oracle
    from .x86 import PREFIXES, decode, decoder_name, hex_bytes

    data = bytes(b.byte for b in spec.instruction.encoding)
    d, name, shown = decode(data), decoder_name(), hex_bytes(data)
    n = next((i for i, b in enumerate(data) if b not in PREFIXES), len(data))
    bare = decode(data[n:]) if n else None
    if d.status != "invalid" and not d.exact:
        return NativePlan(False, None, f"{shown} is not one instruction to {name}")
    if (
        bare is not None
        and bare.exact
        and not bare.privileged
        and not d.ignored_prefixes
        and (d.status == "invalid" or d.privileged)
    ):
        # what a CPU that ignores the prefix runs (the known encodings note such cases)
        d = bare
        what = (f"{name} decodes {hex_bytes(data[n:])} ({shown} without its "
                f"{hex_bytes(data[:n])} prefix) as {d.mnemonic}, which user mode may execute on "
                "a CPU that ignores the prefix")  # fmt: skip
    elif d.status == "invalid":
        return NativePlan(
            True, None, f"{name} knows no instruction {shown}: it raises #UD (SIGILL)"
        )
    elif d.privileged:
        return NativePlan(True, None, f"{name} decodes {shown} as {d.mnemonic}, a privileged "
                          "instruction: user mode faults (SIGILL or SIGSEGV)")  # fmt: skip
    else:
        what = f"{name} decodes {shown} as {d.mnemonic}, which user mode may execute"
    if d.mnemonic in GUARDED and not uses_oracle(spec):
        from .cases import highest_address

        top = highest_address(spec)
        if top >= GUARD_TOP:
            return NativePlan(False, None, f"{what}, and the spec's cases pass addresses up to "
                              f"{top:#x}, above the guard at {GUARD_TOP:#x} that makes it fault",
                              d.mnemonic)  # fmt: skip
        return NativePlan(True, GUARD_TOP, f"{what}: the address space below {GUARD_TOP:#x} is "
                          "reserved with no access, so every execution faults (SIGSEGV)",
                          d.mnemonic)  # fmt: skip
    return NativePlan(False, None, f"{what}, and the native engine cannot make it fault",
                      d.mnemonic)  # fmt: skip


def choose_engine(requested: str, spec=None, cpu: HostCpu | None = None) -> EngineChoice:
    """The engine for ``spec`` on ``cpu``; EngineRefused when native is asked for and unsafe.

    Only the emulator can be chosen without the spec: the others depend on its bytes.
    """
    cpu = cpu or host_cpu()
    if requested == "emulator":
        return EngineChoice("emulator", None, "requested")
    if spec is None:
        raise TypeError(f"choose_engine({requested!r}) needs the spec whose bytes it runs")
    plan = native_plan(spec)
    if requested == "native":
        if not plan.allowed:
            raise EngineRefused(f"--engine native refused: {plan.why}; use --engine emulator")
        return EngineChoice("native", plan.guard, plan.why)
    if not plan.allowed:
        return EngineChoice("emulator", None, f"{plan.why}: emulating")
    if plan.hazard and cpu.clzero:
        return EngineChoice(
            "native", plan.guard,
            f"{cpu.vendor} with CLZERO would run the bytes as CLZERO: natively only behind the "
            f"guard, below {plan.guard:#x}, where every address a case passes lies; the harness "
            "checks at start-up that nothing else is mapped there and that CLZERO faults there, "
            "or compare emulates",
            fallback=True,
        )  # fmt: skip
    return EngineChoice("native", plan.guard, plan.why)


def check_engine(spec, engine: EngineChoice) -> None:
    """Refuse a native engine that ``spec``'s bytes do not allow, however it was chosen."""
    if engine.engine == "emulator":
        return
    plan = native_plan(spec)
    if engine.engine != "native" or not plan.allowed:
        raise EngineRefused(f"the native engine does not run these bytes: {plan.why}")
    if plan.guard is not None and engine.guard != plan.guard:
        raise EngineRefused(f"the native engine needs the guard here: {plan.why}")
