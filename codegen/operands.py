"""A spec's operand facts against sources that do not come from the spec.

* iced-x86's instruction database: the registers the instruction reads and
  writes, the RFLAGS it changes, the memory it accesses and through which
  register.  The spec's inputs, register outputs, ``preserved``, flag outputs,
  ``cc`` clobber and pointer operands must say the same.  An instruction iced
  does not know (or reads as another one) gets a note: nothing is checked.
* The assembler versions of ``assembler.binutils``: the GNU assembler on this
  machine (does it know the mnemonic, and emit the spec's bytes?) and the
  versions the kernel's sources state (codegen/data/assembler_versions.yaml).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Annotated

from .conflicts import Findings, _where
from .diagnostics import Diagnostic
from .model import CommentText, Doc, Identifier, Node, Spec, VersionText
from .record import record
from .x86 import decode, decoder_name, hex_bytes

ASSEMBLER_VERSIONS = Path(__file__).resolve().parent / "data" / "assembler_versions.yaml"


# --- iced-x86 ---------------------------------------------------------------


@record
class Facts:
    """What the decoder's database says one instruction does with its operands."""

    reads: dict[str, int]  # 64-bit register name -> bits read
    writes: dict[str, int]
    memory: tuple[tuple[str, str], ...]  # (base register, read|write|read-write)
    flags: tuple[str, ...]  # RFLAGS bits changed, lower case


_ACCESS = {"READ": "read", "COND_READ": "read", "WRITE": "write", "COND_WRITE": "write",
           "READ_WRITE": "read-write", "READ_COND_WRITE": "read-write"}  # fmt: skip


def _enum_names(ns) -> dict[int, str]:
    return {v: k for k, v in vars(ns).items() if k.isupper() and isinstance(v, int)}


@cache
def iced_facts(data: bytes) -> Facts:
    import iced_x86 as iced

    regs, access, flag_bits = (
        _enum_names(iced.Register),
        _enum_names(iced.OpAccess),
        _enum_names(iced.RflagsBits),
    )
    insn = iced.Decoder(64, data).decode()
    info = iced.InstructionInfoFactory().info(insn)
    reads: dict[str, int] = {}
    writes: dict[str, int] = {}
    for used in info.used_registers():
        how = _ACCESS.get(access[used.access])
        if how is None or not iced.RegisterExt.is_gpr(used.register):
            continue
        full = regs[iced.RegisterExt.full_register(used.register)].lower()
        bits = 8 * iced.RegisterExt.size(used.register)
        for table, wanted in ((reads, "read"), (writes, "write")):
            if how in (wanted, "read-write"):
                table[full] = max(table.get(full, 0), bits)
    memory = tuple(
        (regs[m.base].lower(), _ACCESS.get(access[m.access], access[m.access].lower()))
        for m in info.used_memory()
    )
    changed = insn.rflags_modified
    flags = tuple(name.lower() for bit, name in sorted(flag_bits.items()) if bit and changed & bit)
    return Facts(reads, writes, memory, flags)


def _names(regs) -> str:
    return ", ".join(sorted(regs)) or "none"


def operand_check(specs: list[Spec]) -> Findings:
    """Each spec's registers, flags and memory operands against iced-x86's database."""
    problems, notes = [], []
    source = decoder_name()
    for spec in specs:
        insn = spec.instruction
        data = bytes(b.byte for b in insn.encoding)
        d = decode(data)
        if not d.exact:
            notes.append(Diagnostic(insn.mark("encoding"), (
                f"{source} does not know {hex_bytes(data)}: the operands of {insn.mnemonic} "
                "are not checked against an independent database"), "note"))  # fmt: skip
            continue
        if d.mnemonic != insn.mnemonic:
            notes.append(Diagnostic(insn.mark("encoding"), (
                f"{source} reads {hex_bytes(data)} as {d.mnemonic}: the operands of "
                f"{insn.mnemonic} are not checked against an independent database"), "note"))  # fmt: skip
            continue
        facts = iced_facts(data)
        said = f"{source} says the instruction"

        def problem(mark, message):
            problems.append(Diagnostic(mark, message))

        inputs = {i.register for i in insn.inputs}
        if inputs != set(facts.reads):
            problem(insn.mark("inputs"), f"spec says inputs {_names(inputs)}; {said} reads "
                                         f"{_names(facts.reads)}")  # fmt: skip
        for i in insn.inputs:
            bits = facts.reads.get(i.register)
            if bits is not None and i.width > bits:
                problem(i.mark("width") if "width" in i.marks else i.mark("register"),
                        f"spec says the instruction reads {i.width} bits of {i.register}; {said} "
                        f"reads {bits}")  # fmt: skip
        outputs = {o.register for o in insn.outputs if o.register}
        if outputs != set(facts.writes):
            problem(insn.mark("outputs"), f"spec says register outputs {_names(outputs)}; {said} "
                                          f"writes {_names(facts.writes)}")  # fmt: skip
        kept = set(insn.preserved) & set(facts.writes)
        if kept:
            problem(insn.mark("preserved"), f"spec says {_names(kept)} preserved; {said} writes "
                                            f"{_names(facts.writes)}")  # fmt: skip
        flag_outputs = {o.flag for o in insn.outputs if o.flag}
        if flag_outputs - set(facts.flags):
            problem(insn.mark("outputs"), f"spec says flag outputs {_names(flag_outputs)}; {said} "
                                          f"changes RFLAGS {_names(facts.flags)}")  # fmt: skip
        if facts.flags and "cc" not in insn.clobbers:
            problem(insn.mark("clobbers") if "clobbers" in insn.marks else insn.mark(),
                    f"spec says the instruction leaves RFLAGS alone (no cc clobber); {said} "
                    f"changes {_names(facts.flags)}")  # fmt: skip
        pointers = {(i.register, i.access) for i in insn.inputs if i.type == "pointer"}
        if pointers != set(facts.memory):

            def shown(pairs):
                return ", ".join(f"{how} [{reg}]" for reg, how in sorted(pairs)) or "none"

            problem(next((i.mark("access") for i in insn.inputs if i.type == "pointer"), insn.mark("inputs")),
                    f"spec says memory operands {shown(pointers)}; {said} accesses "
                    f"{shown(facts.memory)}")  # fmt: skip
    return Findings(problems, notes)


# --- assembler versions -----------------------------------------------------


@record
class KnownVersion(Node):
    mnemonic: Identifier
    binutils: Annotated[VersionText | None, Doc("first binutils that knows it, or null: none does")]
    source: Annotated[CommentText, Doc("where that is stated")]


@record
class KnownVersions(Node):
    versions: tuple[KnownVersion, ...]


@cache
def known_versions(path: Path = ASSEMBLER_VERSIONS) -> tuple[KnownVersion, ...]:
    from .spec import convert_document

    try:
        rel = str(path.relative_to(Path.cwd()))
    except ValueError:
        rel = str(path)
    return convert_document(path.read_text(), rel, KnownVersions).versions


def version_key(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


@record
class Gas:
    path: str
    version: str

    @property
    def name(self) -> str:
        return f"binutils {self.version}"


@cache
def find_gas(command: str = "as") -> Gas | None:
    """The GNU assembler on PATH and its binutils version, or None."""
    path = shutil.which(command)
    if path is None:
        return None
    try:
        proc = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    first = proc.stdout.splitlines()[0] if proc.stdout else ""
    m = re.search(r"^GNU assembler .*?(\d+\.\d+(?:\.\d+)*)\s*$", first)
    return Gas(path, m.group(1)) if m else None


@cache
def gas_assemble(gas: Gas, mnemonic: str) -> bytes | None:
    """The bytes ``gas`` emits for ``mnemonic`` alone in 64-bit code, or None if it does not know it."""
    from elftools.elf.elffile import ELFFile

    with tempfile.TemporaryDirectory(prefix="kgen-gas-") as tmp:
        src, obj = Path(tmp) / "insn.s", Path(tmp) / "insn.o"
        src.write_text(f"\t{mnemonic}\n")
        proc = subprocess.run(
            [gas.path, "--64", "-o", str(obj), str(src)], capture_output=True, check=False
        )
        if proc.returncode != 0:
            return None
        with open(obj, "rb") as f:
            text = ELFFile(f).get_section_by_name(".text")
            return text.data() if text is not None else None


def binutils_check(
    specs: list[Spec], gas: Gas | None, known: tuple[KnownVersion, ...] | None = None
) -> Findings:
    """Each spec's ``assembler.binutils`` against the sources' versions and the assembler here."""
    known = known_versions() if known is None else known
    problems, notes = [], []
    for spec in specs:
        insn = spec.instruction
        stated = insn.assembler.binutils if insn.assembler else None
        mark = insn.assembler.mark("binutils") if insn.assembler else insn.mark()
        says = f"binutils {stated}" if stated else "no binutils release"
        for entry in known:
            if entry.mnemonic == insn.mnemonic and entry.binutils != stated:
                problems.append(Diagnostic(mark, (
                    f"spec says {says} knows '{insn.mnemonic}'; "
                    f"{f'binutils {entry.binutils}' if entry.binutils else 'no binutils release'} "
                    f"does, says {entry.source} ({_where(entry.mark('mnemonic'))})")))  # fmt: skip
        if gas is None:
            notes.append(Diagnostic(mark, "no GNU assembler (as) here: assembler.binutils is not "
                                          "checked against one", "note"))  # fmt: skip
            continue
        data = bytes(b.byte for b in insn.encoding)
        got = gas_assemble(gas, insn.mnemonic)
        here = version_key(gas.version)
        if got is not None and got != data:
            problems.append(Diagnostic(mark, f"{gas.name} assembles '{insn.mnemonic}' as "
                                             f"{hex_bytes(got)}, not {hex_bytes(data)}"))  # fmt: skip
        elif got is not None and (stated is None or version_key(stated) > here):
            problems.append(Diagnostic(mark, f"spec says {says} knows '{insn.mnemonic}'"
                                             f"{' first' if stated else ''}; {gas.name} here "
                                             "assembles it"))  # fmt: skip
        elif got is None and stated is not None and version_key(stated) <= here:
            problems.append(Diagnostic(mark, f"spec says {says} knows '{insn.mnemonic}'; "
                                             f"{gas.name} here does not assemble it"))  # fmt: skip
    return Findings(problems, notes)
