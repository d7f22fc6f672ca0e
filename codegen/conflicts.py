"""Checks across specs: encodings that collide, and kernel names used twice.

Every spec's bytes are compared with the other specs' and with the table of
known instructions in the same opcode space (codegen/data/known_encodings.yaml).
The same bytes under two names is a finding that names both sides with their
file and line; a spec whose bytes, without a prefix, are another instruction
gets a note, since a CPU that ignores the prefix would run that one.
"""

from __future__ import annotations

from dataclasses import field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from .diagnostics import Diagnostic, Mark, shown_path
from .loadcache import remembered
from .model import Byte, Doc, Identifier, Node, Spec, global_names
from .record import record
from .spec import convert_document
from .x86 import decode, decoder_name

if TYPE_CHECKING:  # the assembler and its toolchain only where a check runs one
    from .toolchain import Compiler

KNOWN_ENCODINGS = Path(__file__).resolve().parent / "data" / "known_encodings.yaml"


@record
class KnownEncoding(Node):
    mnemonic: Identifier
    bytes: tuple[Byte, ...]
    vendor: Literal["amd", "intel", "both"]
    source: Annotated[Literal["asm", "sheet"], Doc("where the bytes come from (see the file)")]


@record
class KnownEncodings(Node):
    encodings: tuple[KnownEncoding, ...]


@cache
def known_encodings(path: Path = KNOWN_ENCODINGS) -> tuple[KnownEncoding, ...]:
    try:
        rel = str(path.relative_to(Path.cwd()))
    except ValueError:
        rel = str(path)
    text = path.read_text()
    return remembered("known-encodings", (rel, text),
                      lambda: convert_document(text, rel, KnownEncodings).encodings)  # fmt: skip


def _hex(data: tuple[int, ...]) -> str:
    return " ".join(f"{b:02X}" for b in data)


def _where(mark: Mark) -> str:
    return f"{shown_path(mark.path)}:{mark.line}"


def _source(entry: KnownEncoding) -> str:
    return f"{_where(entry.mark('mnemonic'))}, source: {entry.source}"


@record
class Findings:
    problems: list[Diagnostic]
    notes: list[Diagnostic]
    # (path of the spec a problem is reported on, a note at the other side of that problem)
    others: list[tuple[str, Diagnostic]] = field(default_factory=list)


def assembler_check(specs: list[Spec], compiler: Compiler) -> Findings:
    """Each spec's bytes against what ``compiler`` assembles for its mnemonic."""
    from .assembler import assemble

    problems, notes = [], []
    for spec in specs:
        insn = spec.instruction
        data = bytes(b.byte for b in insn.encoding)
        got = assemble(compiler, insn.mnemonic)
        mark = insn.mark("encoding")
        if got is None:
            notes.append(Diagnostic(mark, f"{compiler.name} does not know '{insn.mnemonic}': "
                                    "its bytes are not checked against an assembler", "note"))  # fmt: skip
        elif got != data:
            problems.append(Diagnostic(mark, f"{compiler.name} assembles '{insn.mnemonic}' as "
                                       f"{_hex(tuple(got))}, not {_hex(tuple(data))}"))  # fmt: skip
    return Findings(problems, notes)


def cross_check(
    specs: list[Spec], known: tuple[KnownEncoding, ...] | None = None, notes_too: bool = True
) -> Findings:
    """Collisions and repeated names among ``specs`` and against the known encodings; with
    ``notes_too``, also the notes (the decoder's reading is asked only for those)."""
    known = known_encodings() if known is None else known
    problems, notes, others = [], [], []
    encoded = [(s, tuple(b.byte for b in s.instruction.encoding)) for s in specs]
    for i, (spec, data) in enumerate(encoded):
        mnemonic, mark = spec.instruction.mnemonic, spec.instruction.mark("encoding")
        for other, other_data in encoded[:i] + encoded[i + 1 :]:
            if data == other_data:
                problems.append(Diagnostic(mark, (
                    f"encoding {_hex(data)} of {mnemonic} is also {other.instruction.mnemonic}'s "
                    f"({_where(other.instruction.mark('encoding'))})")))  # fmt: skip
                others.append((spec.path, Diagnostic(other.instruction.mark("encoding"), (
                    f"{other.instruction.mnemonic}'s encoding {_hex(data)}, which "
                    f"{mnemonic} ({_where(mark)}) also has"), "note")))  # fmt: skip
        prefixes = [b.byte for b in spec.instruction.encoding if b.role == "prefix"]
        for entry in known:
            if entry.mnemonic == mnemonic and entry.bytes != data:
                problems.append(Diagnostic(mark, (
                    f"{mnemonic} is {_hex(entry.bytes)} in the known encodings ({_source(entry)}), "
                    f"not {_hex(data)}")))  # fmt: skip
            elif entry.mnemonic != mnemonic and entry.bytes == data:
                problems.append(Diagnostic(mark, (
                    f"encoding {_hex(data)} of {mnemonic} collides with {entry.mnemonic} "
                    f"({_source(entry)})")))  # fmt: skip
            elif prefixes and entry.bytes == data[len(prefixes) :]:
                notes.append(Diagnostic(mark, (
                    f"without its {_hex(tuple(prefixes))} prefix, {mnemonic} is "
                    f"{entry.mnemonic} ({_source(entry)}): a CPU that ignores the prefix runs "
                    f"{entry.mnemonic.upper()}"), "note"))  # fmt: skip
        if not notes_too:
            continue
        # the decoder's reading, where it is another instruction whose prefix it ignores;
        # a note from the table above that names it already says so (one note per hazard)
        d = decode(bytes(data))
        named = [n for n in notes if n.mark == mark and f" is {d.mnemonic} (" in n.message]
        if d.exact and d.mnemonic and d.mnemonic != mnemonic and d.ignored_prefixes and not named:
            notes.append(Diagnostic(mark, (
                f"{decoder_name()} decodes {_hex(data)} as {d.mnemonic}, ignoring its "
                f"{_hex(tuple(d.ignored_prefixes))} prefix: a CPU that ignores the prefix runs "
                f"{d.mnemonic.upper()}"), "note"))  # fmt: skip
    # every spec that defines a name another defines gets the problem: a check of one spec
    # finds it whichever of the two comes first
    defined: dict[str, list[tuple[Spec, Mark]]] = {}
    for spec in specs:
        for name, mark in global_names(spec):
            defined.setdefault(name, []).append((spec, mark))
    for name, sites in defined.items():
        for spec, mark in sites:
            rival = next(((o, m) for o, m in sites if o is not spec), None)
            if rival is None:
                continue
            problems.append(Diagnostic(mark, (
                f"kernel name '{name}' is also defined by {rival[0].instruction.mnemonic} "
                f"({_where(rival[1])})")))  # fmt: skip
            others.append((spec.path, Diagnostic(rival[1], (
                f"kernel name '{name}' of {rival[0].instruction.mnemonic}, which "
                f"{spec.instruction.mnemonic} ({_where(mark)}) also defines"), "note")))  # fmt: skip
    return Findings(problems, notes if notes_too else [], others)
