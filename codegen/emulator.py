"""Running the harness's bare ELF in a CPU emulator (Unicorn).

Used where the instruction cannot safely trap natively (an AMD CPU runs
``F2 0F 01 FC`` as CLZERO).  Unicorn knows no CLZERO and none of the SNP
instructions, so every execution of the spec's bytes stops at the
invalid-instruction hook, on any host.  The hook pushes the instruction's
address and continues at ``kgen_emu_trap_stub``, which runs the same
``kgen_trap()`` that the native signal handler calls.
"""

from __future__ import annotations

from pathlib import Path

from elftools.elf.elffile import ELFFile
from unicorn import UC_ARCH_X86, UC_HOOK_INSN_INVALID, UC_MODE_64, Uc, UcError
from unicorn.x86_const import UC_X86_REG_RDI, UC_X86_REG_RIP, UC_X86_REG_RSP

PAGE = 0x1000
STACK_TOP = 0x7FFF_0000_0000
STACK_SIZE = 8 << 20
SENTINEL = 0x7FFF_1000_0000  # the return address of kgen_emu_run: emulation stops there


class EmulatorError(Exception):
    """The emulated harness did not return normally."""


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
            symbols = {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()}
        mapped: list[tuple[int, int]] = []
        for vaddr, memsz, data in spans:
            lo, hi = _page_down(vaddr), _page_up(vaddr + memsz)
            for mlo, mhi in mapped:  # segments may share a page
                if lo < mhi and mlo < hi:
                    lo = max(lo, mhi)
            if lo < hi:
                self.uc.mem_map(lo, hi - lo)
                mapped.append((lo, hi))
            self.uc.mem_write(vaddr, data)
        self.uc.mem_map(STACK_TOP - STACK_SIZE, STACK_SIZE)
        self.uc.mem_map(SENTINEL, PAGE)
        self.run_addr = symbols["kgen_emu_run"]
        self.stub = symbols["kgen_emu_trap_stub"]
        self.in_addr = symbols["kgen_emu_in"]
        self.out_addr = symbols["kgen_emu_out"]
        self.out_len_addr = symbols["kgen_out_len"]
        self.in_cap = 1 << 20
        self.traps = 0
        self.uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid)

    def _on_invalid(self, uc: Uc, _user) -> bool:
        rip = uc.reg_read(UC_X86_REG_RIP)
        rsp = uc.reg_read(UC_X86_REG_RSP) - 8
        uc.mem_write(rsp, rip.to_bytes(8, "little"))
        uc.reg_write(UC_X86_REG_RSP, rsp)
        uc.reg_write(UC_X86_REG_RIP, self.stub)
        self.traps += 1
        return True

    def run(self, text: bytes) -> bytes:
        """Run the harness on ``text`` (spec and case lines); return its output."""
        if len(text) >= self.in_cap:
            raise EmulatorError(f"input of {len(text)} bytes exceeds the harness's buffer")
        uc = self.uc
        uc.mem_write(self.in_addr, text)
        sp = STACK_TOP - 64
        uc.mem_write(sp, SENTINEL.to_bytes(8, "little"))
        uc.reg_write(UC_X86_REG_RSP, sp)
        uc.reg_write(UC_X86_REG_RDI, len(text))
        try:
            uc.emu_start(self.run_addr, SENTINEL)
        except UcError as exc:
            rip = uc.reg_read(UC_X86_REG_RIP)
            raise EmulatorError(f"emulation stopped at {rip:#x}: {exc}") from None
        n = int.from_bytes(uc.mem_read(self.out_len_addr, 8), "little")
        return bytes(uc.mem_read(self.out_addr, n))
