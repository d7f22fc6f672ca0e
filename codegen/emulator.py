"""Running the harness's bare ELF in a CPU emulator (Unicorn).

Used where the instruction cannot safely trap natively (an AMD CPU runs
``F2 0F 01 FC`` as CLZERO).  Unicorn knows no CLZERO and none of the SNP
instructions, so every execution of the spec's bytes stops at the
invalid-instruction hook, on any host.  The hook pushes the instruction's
address and continues at ``kgen_emu_trap_stub``, which runs the same
``kgen_trap()`` that the native signal handler calls.
"""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from unicorn import UC_ARCH_X86, UC_HOOK_INSN_INVALID, UC_MODE_64, Uc, UcError
from unicorn.unicorn_py3 import unicorn as _unicorn_binding
from unicorn.x86_const import UC_X86_REG_RDI, UC_X86_REG_RIP, UC_X86_REG_RSP

_UCLIB = _unicorn_binding.uclib  # the C library behind the binding

PAGE = 0x1000
STACK_TOP = 0x7FFF_0000_0000
STACK_SIZE = 8 << 20
SENTINEL = 0x7FFF_1000_0000  # the return address of kgen_emu_run: emulation stops there
OUT_CAP = 48 << 20  # the harness's output buffer (emu.c)


class EmulatorError(Exception):
    """The emulated harness did not return normally; ``output`` is what it printed so far."""

    def __init__(self, message: str, output: bytes = b""):
        super().__init__(message)
        self.output = output


class EmulatorTimeout(EmulatorError):
    """The emulated code ran past its time limit."""


# what stopped the emulator, in the words the native harness uses for the same fault
_FAULTS = {
    "UC_ERR_FETCH_UNMAPPED": "jumped to an address that holds no code",
    "UC_ERR_FETCH_PROT": "jumped to an address that holds no code",
    "UC_ERR_READ_UNMAPPED": "a memory fault in the generated code, not at the spec's instruction",
    "UC_ERR_WRITE_UNMAPPED": "a memory fault in the generated code, not at the spec's instruction",
    "UC_ERR_READ_PROT": "a memory fault in the generated code, not at the spec's instruction",
    "UC_ERR_WRITE_PROT": "a memory fault in the generated code, not at the spec's instruction",
}


def _error_name(exc: UcError) -> str:
    import unicorn.unicorn_const as const

    return next(
        (n for n in dir(const) if n.startswith("UC_ERR_") and getattr(const, n) == exc.errno), ""
    )


def _page_down(x: int) -> int:
    return x & ~(PAGE - 1)


def _page_up(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


class Emulator:
    """One loaded harness ELF; :meth:`run` feeds it cases and returns its events."""

    def __init__(self, elf_path: Path):
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        with open(elf_path, "rb") as f:
            elf = ELFFile(f)
            spans = []
            for seg in elf.iter_segments():
                if seg["p_type"] != "PT_LOAD":
                    continue
                spans.append((seg["p_vaddr"], seg["p_memsz"], seg.data()))
            symtab = elf.get_section_by_name(".symtab")
            if not isinstance(symtab, SymbolTableSection):
                raise EmulatorError(f"{elf_path} has no symbol table")
            symbols = {s.name: s["st_value"] for s in symtab.iter_symbols()}
        regions: list[tuple[int, int]] = []
        for vaddr, memsz, _ in spans:
            lo, hi = _page_down(vaddr), _page_up(vaddr + memsz)
            for mlo, mhi in regions:  # segments may share a page
                if lo < mhi and mlo < hi:
                    lo = max(lo, mhi)
            if lo < hi:
                regions.append((lo, hi))
        regions += [(STACK_TOP - STACK_SIZE, STACK_TOP), (SENTINEL, SENTINEL + PAGE)]
        # Largest first: Unicorn 2.1 places each new region's RAM after the smallest one mapped
        # so far, so a smaller region mapped before a larger one shares RAM offsets with it.
        # Translated code is tracked by RAM offset: every write to .bss then threw away the
        # translations of the .text page it shared offsets with (a case translated its code
        # again, most of an emulated run's time).
        for lo, hi in sorted(regions, key=lambda r: r[0] - r[1]):
            self.uc.mem_map(lo, hi - lo)
        for vaddr, _, data in spans:
            self.uc.mem_write(vaddr, data)
        self.run_addr = symbols["kgen_emu_run"]
        self.stub = symbols["kgen_emu_trap_stub"]
        self.in_addr = symbols["kgen_emu_in"]
        self.out_addr = symbols["kgen_emu_out"]
        self.out_len_addr = symbols["kgen_out_len"]
        self.in_cap = 1 << 20
        self.traps = 0
        self._handle = self.uc._uch
        self._rip, self._rsp = ctypes.c_uint64(), ctypes.c_uint64()
        self._rip_ref, self._rsp_ref = ctypes.byref(self._rip), ctypes.byref(self._rsp)
        self._rip_bytes = ctypes.cast(ctypes.pointer(self._rip), ctypes.POINTER(ctypes.c_char))
        self._hook = self.uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid)

    def close(self) -> None:
        """Free the engine now.  Unicorn's memory grows with every trap it took, and the
        binding's closures keep the engine in reference cycles that only a full garbage
        collection frees, which a busy worker may not run for minutes (measured: 20 MB/s)."""
        uc = self.__dict__.pop("uc", None)  # a closed emulator has no engine
        if uc is not None:
            uc.hook_del(self._hook)
            del uc
            gc.collect()

    def _on_invalid(self, uc: Uc, _user) -> bool:
        # every trap passes here: straight to the C API, past the binding's dispatch
        lib, h, rip, rsp = _UCLIB, self._handle, self._rip, self._rsp
        lib.uc_reg_read(h, UC_X86_REG_RIP, self._rip_ref)
        lib.uc_reg_read(h, UC_X86_REG_RSP, self._rsp_ref)
        rsp.value -= 8
        lib.uc_mem_write(h, rsp.value, self._rip_bytes, 8)
        lib.uc_reg_write(h, UC_X86_REG_RSP, self._rsp_ref)
        rip.value = self.stub
        lib.uc_reg_write(h, UC_X86_REG_RIP, self._rip_ref)
        self.traps += 1
        return True

    def run(self, text: bytes, timeout: float = 0) -> bytes:
        """Run the harness on ``text`` (spec and case lines); return its output.

        With ``timeout`` (seconds), emulation stops after that long and
        :class:`EmulatorTimeout` carries the output made so far; the
        emulator's state is then unusable.
        """
        if len(text) >= self.in_cap:
            raise EmulatorError(f"input of {len(text)} bytes exceeds the harness's buffer")
        uc = self.uc
        uc.mem_write(self.in_addr, text)
        sp = STACK_TOP - 64
        uc.mem_write(sp, SENTINEL.to_bytes(8, "little"))
        uc.reg_write(UC_X86_REG_RSP, sp)
        uc.reg_write(UC_X86_REG_RDI, len(text))
        try:
            uc.emu_start(self.run_addr, SENTINEL, timeout=int(timeout * 1e6))
        except UcError as exc:
            rip = uc.reg_read(UC_X86_REG_RIP)
            what = _FAULTS.get(_error_name(exc), "the emulator stopped")
            raise EmulatorError(f"{what} (emulator: {exc} at {rip:#x})", self._output()) from None
        out = self._output()
        if uc.reg_read(UC_X86_REG_RIP) != SENTINEL:
            raise EmulatorTimeout(f"ran past {timeout} s", out)
        return out

    def _output(self) -> bytes:
        """The harness's output, up to the last complete event."""
        n = int.from_bytes(self.uc.mem_read(self.out_len_addr, 8), "little")
        return bytes(self.uc.mem_read(self.out_addr, min(n, OUT_CAP)))
