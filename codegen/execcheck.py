"""What the native engine executes besides the spec's instruction: nothing surprising.

The native harness runs the compiled generated code on this CPU, so before it
runs, compare holds that code to two checks:

- source: every asm statement in the generated files is the spec's `.byte`
  line, alone (a `--generated` directory is whatever someone wrote);
- objects: the compiled units call nothing but the harness and each other
  (no C library, hence no system calls through it), and their executable
  sections, decoded from the start, hold only ordinary x86-64 code: the
  instruction set a compiler uses for baseline C, no system call, software
  interrupt, far branch or privileged instruction, and nothing undecodable
  except the spec's own bytes.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from .model import Spec


class UnsafeCode(Exception):
    """The code to run natively is not only the spec's instruction and plain C."""


def byte_line(spec: Spec) -> str:
    """The asm template of the spec's instruction, as the templates render it."""
    return ".byte " + ", ".join(f"0x{b.byte:02x}" for b in spec.instruction.encoding)


_TOKENS = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.S)
_ASM = re.compile(r"\b(?:asm|__asm__|__asm)\b(?:\s+(?:volatile|__volatile__|inline|goto))*\s*\(")
_STRINGS = re.compile(r'\s*((?:"(?:\\.|[^"\\\n])*"\s*)+)')
_EVASIONS = re.compile(r"##|\b(?:section|naked|ifunc|alias|constructor|destructor)\b")


def _without_comments(text: str) -> str:
    return _TOKENS.sub(lambda m: m.group() if m.group()[0] in "\"'" else " ", text)


def check_sources(spec: Spec, files: dict[str, str]) -> None:
    """Every asm statement is exactly the spec's .byte line; no way around the compiler."""
    want = byte_line(spec)
    seen = 0
    for path, text in sorted(files.items()):
        code = _without_comments(text)
        if m := _EVASIONS.search(_TOKENS.sub(" ", code)):
            raise UnsafeCode(f"{path}: {m.group()!r} is not in code kgen generates, and could "
                             "hide instructions from this check")  # fmt: skip
        for m in _ASM.finditer(code):
            line = code.count("\n", 0, m.start()) + 1
            lits = _STRINGS.match(code, m.end())
            template = (
                "".join(re.findall(r'"((?:\\.|[^"\\\n])*)"', lits.group(1))) if lits else None
            )
            if template != want:
                raise UnsafeCode(f"{path}:{line}: an asm statement that is not the spec's "
                                 f"'{want}' (found {template!r})")  # fmt: skip
            seen += 1
    if not seen:
        raise UnsafeCode(f"no asm statement holds the spec's '{want}'")


@cache
def _baseline() -> frozenset[int]:
    import iced_x86

    f = iced_x86.CpuidFeature
    names = ("INTEL8086", "INTEL186", "INTEL286", "INTEL386", "INTEL486", "X64", "CMOV",
             "FPU", "SSE", "SSE2", "MULTIBYTENOP", "CX8", "PAUSE")  # fmt: skip
    return frozenset(getattr(f, n) for n in names if hasattr(f, n))


def _surprise(insn) -> str | None:
    import iced_x86

    if insn.is_invalid:
        return "bytes no x86 decoder knows"
    if insn.is_privileged:
        return "a privileged instruction"
    if insn.flow_control == iced_x86.FlowControl.INTERRUPT:
        return "a software interrupt"
    if insn.is_call_far or insn.is_call_far_indirect or insn.is_jmp_far or insn.is_jmp_far_indirect:
        return "a far branch"
    extra = set(insn.cpuid_features()) - _baseline()
    if extra:
        return "an instruction compiled C does not use"
    if insn.flow_control == iced_x86.FlowControl.RETURN and insn.mnemonic != iced_x86.Mnemonic.RET:
        return "a far or interrupt return"
    return None


def _text_sections(elf: ELFFile):
    for section in elf.iter_sections():
        if section["sh_flags"] & 0x4 and section["sh_type"] != "SHT_NOBITS":  # SHF_EXECINSTR
            yield section


def _symbols(elf: ELFFile) -> tuple[set[str], set[str]]:
    defined, undefined = set[str](), set[str]()
    for section in elf.iter_sections():
        if isinstance(section, SymbolTableSection):
            for sym in section.iter_symbols():
                if not sym.name or sym["st_info"]["bind"] == "STB_LOCAL":
                    continue
                (undefined if sym["st_shndx"] == "SHN_UNDEF" else defined).add(sym.name)
    return defined, undefined


def check_objects(spec: Spec, units: list[Path], harness: list[Path],
                  runtime: tuple[str, ...] = ()) -> int:  # fmt: skip
    """Hold the compiled units to the rules above; return how often the spec's bytes occur.

    ``runtime`` names what a library linked in besides the harness provides
    (gcov's, in a coverage build).
    """
    import iced_x86

    data = bytes(b.byte for b in spec.instruction.encoding)
    provided: set[str] = {"_GLOBAL_OFFSET_TABLE_", *runtime}
    needs: list[tuple[Path, set[str]]] = []
    for obj in [*units, *harness]:
        with open(obj, "rb") as f:
            defined, undefined = _symbols(ELFFile(f))
        provided |= defined
        if obj in units:
            needs.append((obj, undefined))
    for obj, undefined in needs:
        foreign = sorted(undefined - provided)
        if foreign:
            raise UnsafeCode(f"{obj.name} calls {', '.join(foreign)}, which neither the harness "
                             "nor the generated code defines")  # fmt: skip
    found = 0
    for obj in units:
        with open(obj, "rb") as f:
            elf = ELFFile(f)
            for section in _text_sections(elf):
                code = section.data()
                decoder = iced_x86.Decoder(64, code, ip=0)
                at = 0
                while at < len(code):
                    if code[at : at + len(data)] == data:
                        found += 1
                        at += len(data)
                        decoder.position = at
                        decoder.ip = at
                        continue
                    insn = decoder.decode()
                    why = _surprise(insn)
                    if why:
                        raise UnsafeCode(f"{obj.name} {section.name}+{at:#x}: {why} "
                                         f"({code[at : at + insn.len].hex(' ')}: {insn})")  # fmt: skip
                    at += insn.len
    return found
