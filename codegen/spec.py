"""Load a spec file into the typed objects of :mod:`codegen.model`.

Loading has two stages, and reports every problem of a stage in one run:

1. structure: the YAML node tree is matched against the dataclass
   declarations (unknown, missing and duplicate keys, wrong types, values out
   of range, names that are not C identifiers, text that would break C);
2. meaning: rules that relate fields (function codes unique and fitting their
   operand, coverage = region size x entries, kernel names resolvable, ...).

Every problem is a :class:`~codegen.diagnostics.Diagnostic` with the file, line
and column of the value at fault.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union

from yaml.nodes import MappingNode, Node as YamlNode, ScalarNode, SequenceNode

from . import model, x86
from .diagnostics import Diagnostic, Mark, SpecError, quote

# the C names and text rules live with the model; kept importable from here
from .model import (
    C_KEYWORDS as C_KEYWORDS,
    WORKER_NAME_KEYS as WORKER_NAME_KEYS,
    PowerOfTwo,
    Range,
    SizeLiteral,
    Spec,
    Text,
    global_names as global_names,
    kernel_names as kernel_names,
    retry_limit_name as retry_limit_name,
    text_problem as text_problem,
)
from .yamlsource import INT_BITS, compose, node_mark, read_text, scalar_value

_SIZE = re.compile(r"\s*([0-9]+)\s*([KMGTPE]?)\s*\Z")
SIZE_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50, "E": 60}

_INVALID = object()  # a value that failed; its diagnostic is already recorded


def parse_size(text: str) -> int | None:
    """``"1G"`` -> 1 << 30; None when the text is not a size.

    Raises ValueError when it is a size that does not fit 64 bits.
    """
    m = _SIZE.match(text)
    if not m:
        return None
    digits, unit = m.group(1).lstrip("0") or "0", m.group(2)
    if len(digits) > 20 or int(digits) << SIZE_UNITS[unit] >= 1 << INT_BITS:
        raise ValueError(f"size {quote(text.strip())} does not fit {INT_BITS} bits")
    return int(digits) << SIZE_UNITS[unit]


def _describe(node: YamlNode) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if not isinstance(node, ScalarNode):
        return "a list"
    try:
        value = scalar_value(node)
    except ValueError:
        return quote(node.value)
    if value is None:
        return "nothing (null)"
    name = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    return f"{name.get(type(value), type(value).__name__)} {quote(node.value)}"


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def yaml_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a spec dataclass that are YAML keys."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def field_type(cls: type, name: str) -> Any:
    return _hints(cls)[name]


def _close_matches(word: str, choices: list[str], n: int) -> list[str]:
    """difflib's closest ``n`` of ``choices`` (imported only for a message that offers one)."""
    import difflib

    return difflib.get_close_matches(word, choices, n)


def is_optional_field(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        return "a list"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", str: "a string", bool: "true or false"}.get(tp, str(tp))


class _Converter:
    def __init__(self, path: str):
        self.path = path
        self.problems: list[Diagnostic] = []

    def error(self, node: YamlNode, message: str) -> object:
        self.problems.append(Diagnostic(node_mark(self.path, node), message))
        return _INVALID

    def convert(self, node: YamlNode, tp: Any) -> Any:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            base, *constraints = typing.get_args(tp)
            return self._annotated(node, base, constraints)
        if origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if isinstance(node, ScalarNode) and node.tag.endswith(":null"):
                return None
            assert len(args) == 1, tp
            return self.convert(node, args[0])
        if origin is Literal:
            return self._literal(node, typing.get_args(tp))
        if origin is tuple:
            return self._sequence(node, typing.get_args(tp)[0])
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self._mapping(node, tp)
        return self._scalar(node, tp)

    def _scalar(self, node: YamlNode, tp: type) -> Any:
        if not isinstance(node, ScalarNode):
            return self.error(node, f"expected {_type_name(tp)}, got {_describe(node)}")
        try:
            value = scalar_value(node, text_ok=tp is str)
        except ValueError as exc:
            return self.error(node, str(exc))
        if type(value) is not tp:
            return self.error(node, f"expected {_type_name(tp)}, got {_describe(node)}")
        return value

    def _literal(self, node: YamlNode, choices: tuple) -> Any:
        if isinstance(node, ScalarNode):
            try:
                value = scalar_value(node, text_ok=all(isinstance(c, str) for c in choices))
            except ValueError as exc:
                return self.error(node, str(exc))
            for choice in choices:
                if type(value) is type(choice) and value == choice:
                    return value
        wanted = ", ".join(repr(c) for c in choices)
        hint = ""
        if isinstance(node, ScalarNode):
            close = _close_matches(str(node.value), [str(c) for c in choices], 1)
            hint = f" (did you mean {quote(close[0])}?)" if close else ""
        return self.error(node, f"expected one of {wanted}, got {_describe(node)}{hint}")

    def _annotated(self, node: YamlNode, base: Any, constraints: list) -> Any:
        if any(isinstance(c, SizeLiteral) for c in constraints) and isinstance(node, ScalarNode):
            try:
                raw = scalar_value(node)
            except ValueError as exc:
                return self.error(node, str(exc))
            if isinstance(raw, str):
                try:
                    size = parse_size(raw)
                except ValueError as exc:
                    return self.error(node, str(exc))
                if size is None:
                    return self.error(
                        node, f"{quote(raw)} is not a size (write e.g. 4096, 2M, 1G, 2T)"
                    )
                value: Any = size
            else:
                value = self.convert(node, base)
        else:
            value = self.convert(node, base)
        if value is _INVALID or value is None:
            return value
        for c in constraints:
            if isinstance(c, Range):
                if value < c.lo or (c.hi is not None and value > c.hi):
                    hi = "" if c.hi is None else f"..{c.hi:#x}" if c.hi > 255 else f"..{c.hi}"
                    return self.error(node, f"value {value:#x} is out of range {c.lo}{hi}")
            elif isinstance(c, PowerOfTwo):
                if value <= 0 or value & (value - 1):
                    return self.error(node, f"{value:#x} is not a power of two")
            elif isinstance(c, Text):
                why = text_problem(c.kind, value)
                if why:
                    return self.error(node, why)
        return value

    def _sequence(self, node: YamlNode, item_tp: Any) -> Any:
        if not isinstance(node, SequenceNode):
            return self.error(node, f"expected a list, got {_describe(node)}")
        items = [self.convert(item, item_tp) for item in node.value]
        if any(i is _INVALID for i in items):
            return _INVALID
        return tuple(items)

    def _mapping(self, node: YamlNode, cls: type) -> Any:
        if not isinstance(node, MappingNode):
            return self.error(node, f"expected a mapping ({cls.__name__}), got {_describe(node)}")
        known = {f.name: f for f in yaml_fields(cls)}
        values: dict[str, Any] = {}
        marks: dict[str, Mark] = {"": node_mark(self.path, node)}
        failed = False
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str) or key not in known:
                shown = key if isinstance(key, str) else _describe(key_node)
                close = _close_matches(str(shown), list(known), 1)
                hint = f" (did you mean {quote(close[0])}?)" if close else ""
                allowed = ", ".join(known)
                self.error(
                    key_node, f"unknown key {quote(shown)}{hint}; {cls.__name__} has: {allowed}"
                )
                failed = True
                continue
            marks[key] = node_mark(self.path, value_node)
            value = self.convert(value_node, field_type(cls, key))
            if value is _INVALID:
                failed = True
            values[key] = value
            if isinstance(value_node, SequenceNode):
                for i, item in enumerate(value_node.value):
                    marks[f"{key}[{i}]"] = node_mark(self.path, item)
        for name, f in known.items():
            if name not in values and not is_optional_field(f):
                self.error(node, f"missing required key '{name}' in {cls.__name__}")
                failed = True
        if failed:
            return _INVALID
        return cls(**values, marks=marks)


# --- meaning ----------------------------------------------------------------


class _Rules:
    """Rules across fields; each appends diagnostics, none stops the others."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.problems: list[Diagnostic] = []

    def error(self, mark: Mark, message: str) -> None:
        self.problems.append(Diagnostic(mark, message))

    def unique(self, items: Iterable[tuple[Any, Mark]], what: str) -> None:
        seen: dict[Any, Mark] = {}
        for value, mark in items:
            if value in seen:
                shown = f"{value:#x}" if isinstance(value, int) else quote(value)
                self.error(mark, f"{what} {shown} repeats (first at line {seen[value].line})")
            else:
                seen[value] = mark

    def run(self) -> list[Diagnostic]:
        insn = self.spec.instruction
        self.encoding(insn)
        self.operands(insn)
        self.function_codes(insn)
        self.table_and_msr(insn)
        self.kernel(self.spec.kernel, insn)
        return self.problems

    def encoding(self, insn: model.Instruction) -> None:
        """One x86 instruction in the layout of the 0F maps, then as the decoder reads it."""
        before = len(self.problems)
        order = ["prefix", "escape", "opcode", "modrm", "immediate"]
        last = 0
        for i, b in enumerate(insn.encoding):
            where = insn.mark(f"encoding[{i}]")
            rank = order.index(b.role)
            if rank < last:
                self.error(
                    where,
                    f"{b.role} byte after a {order[last]} byte; the order is "
                    "prefix, escape, opcode, modrm, immediate",
                )
            last = max(last, rank)
        if len(insn.encoding) > x86.MAX_LENGTH:
            self.error(
                insn.mark(f"encoding[{x86.MAX_LENGTH}]"),
                f"the encoding has {len(insn.encoding)} bytes; an x86 instruction has at most "
                f"{x86.MAX_LENGTH}",
            )
        by_role: dict[str, list[model.EncodingByte]] = {r: [] for r in order}
        for b in insn.encoding:
            by_role[b.role].append(b)
        seen: dict[int, model.EncodingByte] = {}
        for b in by_role["prefix"]:
            if b.byte not in x86.PREFIXES:
                self.error(b.mark("byte"), f"{b.byte:#04x} is not a 66/F2/F3/F0 prefix")
            elif b.byte in seen:
                self.error(b.mark("byte"), f"prefix {b.byte:#04x} repeats (first at line "
                           f"{seen[b.byte].mark('byte').line}): an instruction takes each prefix once")  # fmt: skip
            else:
                group = [
                    p for p in seen if p in x86.PREFIX_GROUP_1 and b.byte in x86.PREFIX_GROUP_1
                ]
                if group:
                    self.error(b.mark("byte"), f"prefix {b.byte:#04x} after {group[0]:#04x}: F0, F2 "
                               "and F3 are one prefix group, an instruction takes one of them")  # fmt: skip
                seen[b.byte] = b
        escape = tuple(b.byte for b in by_role["escape"])
        for n, b in enumerate(by_role["escape"]):
            if n == 0 and b.byte != 0x0F:
                self.error(b.mark("byte"), f"the escape byte is 0x0f, not {b.byte:#04x}")
            elif n == 1 and b.byte not in (0x38, 0x3A):
                self.error(b.mark("byte"), f"the second escape byte is 0x38 or 0x3a (the 0F 38 "
                           f"and 0F 3A maps), not {b.byte:#04x}")  # fmt: skip
            elif n == 2:
                self.error(b.mark("byte"), "a third escape byte: the escape is 0F, 0F 38 or 0F 3A")
                break
        if not escape and insn.encoding:
            self.error(insn.mark("encoding"), "the encoding has no escape byte: the format "
                       "describes instructions of the 0F, 0F 38 and 0F 3A opcode maps")  # fmt: skip
        opcodes = by_role["opcode"]
        if not opcodes:
            self.error(insn.mark("encoding"), "the encoding has no opcode byte")
        if len(opcodes) > 1:
            more = f" (and {len(opcodes) - 2} more)" if len(opcodes) > 2 else ""
            self.error(opcodes[1].mark("byte"), f"a second opcode byte {opcodes[1].byte:#04x}{more}: "
                       f"an instruction has exactly one opcode byte (the first is "
                       f"{opcodes[0].byte:#04x})")  # fmt: skip
        if escape == (0x0F,) and opcodes and opcodes[0].byte in (0x38, 0x3A):
            self.error(opcodes[0].mark("byte"), f"{opcodes[0].byte:#04x} after 0F is an escape "
                       f"(the 0F {opcodes[0].byte:02X} map), not an opcode")  # fmt: skip
        modrm = by_role["modrm"]
        if len(modrm) > 1:
            self.error(insn.mark("encoding"), "the encoding has more than one ModRM byte")
        if self.problems[before:]:
            return  # the rules below read the layout as one instruction
        opcode = opcodes[0]
        shown = x86.hex_bytes(escape + (opcode.byte,))
        if x86.takes_modrm(escape, opcode.byte) and not modrm:
            self.error(opcode.mark("byte"), f"opcode {shown} takes a ModRM byte, and the "
                       "encoding has none")  # fmt: skip
        if modrm and not x86.takes_modrm(escape, opcode.byte):
            self.error(modrm[0].mark("byte"), f"opcode {shown} takes no ModRM byte: "
                       f"{modrm[0].byte:#04x} would be read as another instruction")  # fmt: skip
        elif modrm and (why := x86.modrm_problem(modrm[0].byte)):
            self.error(modrm[0].mark("byte"), f"ModRM {modrm[0].byte:#04x}: {why}, which the "
                       "format has no role for; use mod 11 or a register-indirect operand")  # fmt: skip
        imm = by_role["immediate"]
        if imm:
            if escape == (0x0F, 0x38):
                self.error(imm[0].mark("byte"), "the 0F 38 map takes no immediate")
            elif escape == (0x0F, 0x3A) and len(imm) != 1:
                self.error(imm[0].mark("byte"), f"the 0F 3A map takes a 1-byte immediate, not "
                           f"{len(imm)} bytes")  # fmt: skip
            elif len(imm) not in x86.IMMEDIATE_SIZES:
                self.error(imm[0].mark("byte"), f"{len(imm)} immediate bytes: an immediate is 1, 2 "
                           "or 4 bytes")  # fmt: skip
        elif escape == (0x0F, 0x3A):
            self.error(insn.mark("encoding"), "the 0F 3A map takes a 1-byte immediate, and the "
                       "encoding has none")  # fmt: skip
        if self.problems[before:]:
            return
        data = bytes(b.byte for b in insn.encoding)
        found = x86.encoding_problem(data, insn.mnemonic)
        if found:
            at, message = found
            self.error(insn.mark("encoding" if at is None else f"encoding[{at}]"), message)

    def operands(self, insn: model.Instruction) -> None:
        self.unique(((i.register, i.mark("register")) for i in insn.inputs), "input register")
        self.unique(((i.name, i.mark("name")) for i in insn.inputs), "input name")
        self.unique(((o.name, o.mark("name")) for o in insn.outputs), "output name")
        for i in insn.inputs:
            if (i.type == "pointer") != (i.points_to is not None):
                self.error(i.mark("type"), "type 'pointer' and points_to go together")
            if (i.type == "pointer") != (i.access is not None):
                self.error(i.mark("type"), "type 'pointer' and access go together")
            if (i.type == "pointer") != (i.bytes is not None):
                self.error(i.mark("type"), "type 'pointer' and bytes go together")
            defined = model.OPERAND_BITS.get(i.type, 64)
            if i.width > defined:
                self.error(
                    i.mark("width" if "width" in i.marks else "type"),
                    f"the instruction reads {i.width} bits of {i.register.upper()}, but a "
                    f"{i.type} operand defines only the low {defined}; give the input a wider "
                    f"type or say how many bits the instruction reads (width)",
                )
            if i.align == "region" and insn.table is None:
                self.error(i.mark("align"), "align: region needs a table with a region_size")
        for o in insn.outputs:
            if (o.register is None) == (o.flag is None):
                self.error(o.mark(), "an output has exactly one of register or flag")
            if o.codes and o.register is None:
                self.error(o.mark("codes"), "return codes belong to a register output")
            if o.software_code and o.flag is None:
                self.error(o.mark("software_code"), "software_code belongs to a flag output")
            if o.flag and o.type != "bool" and o.software_code is None:
                self.error(o.mark("type"), "a flag output without software_code is a bool")
            self.unique(((c.name, c.mark("name")) for c in o.codes), "return code name")
            self.unique(((c.value, c.mark("value")) for c in o.codes), "return code value")
        registers = [o for o in insn.outputs if o.register and not o.flag]
        if len(registers) > 1:
            self.error(
                registers[1].mark("register"), "a helper returns one register output, not two"
            )
        for o in insn.outputs:
            if o.flag and registers and o.software_code is None:
                self.error(
                    o.mark("flag"),
                    "a flag output beside a register output needs a software_code to return",
                )
            if o.software_code and any(
                o.software_code.value == c.value for r in registers for c in r.codes
            ):
                self.error(
                    o.software_code.mark("value"), "software_code repeats a return code's value"
                )
        flags = [o.flag for o in insn.outputs if o.flag]
        if flags and "cc" not in insn.clobbers:
            self.error(insn.mark("clobbers"), "a flag output needs the 'cc' clobber")
        self.unique(
            ((c, insn.mark(f"clobbers[{n}]")) for n, c in enumerate(insn.clobbers)), "clobber"
        )
        inputs = {i.register for i in insn.inputs}
        outputs = {o.register for o in insn.outputs if o.register}
        for n, reg in enumerate(insn.preserved):
            where = insn.mark(f"preserved[{n}]")
            if reg not in inputs:
                self.error(where, f"preserved register '{reg}' is not an input")
            if reg in outputs:
                self.error(where, f"register '{reg}' cannot be both preserved and an output")

    def function_codes(self, insn: model.Instruction) -> None:
        fc = insn.function_codes
        if fc is None:
            return
        operand = next((i for i in insn.inputs if i.register == fc.operand), None)
        if operand is None:
            self.error(fc.mark("operand"), f"'{fc.operand}' is not one of the inputs")
        elif operand.kind != "function-code":
            self.error(fc.mark("operand"), f"input '{fc.operand}' is not of kind function-code")
        if not fc.codes:
            self.error(fc.mark("codes"), "at least one function code is needed")
        self.unique(((c.name, c.mark("name")) for c in fc.codes), "function code name")
        self.unique(((c.value, c.mark("value")) for c in fc.codes), "function code value")
        if operand is not None:
            for c in fc.codes:
                if c.value >= 1 << operand.width:
                    self.error(
                        c.mark("value"),
                        f"function code {c.value:#x} does not fit the {operand.width}-bit "
                        f"operand {fc.operand}",
                    )

    def table_and_msr(self, insn: model.Instruction) -> None:
        t = insn.table
        if t is not None and t.region_size * t.entries != t.coverage:
            self.error(
                t.mark("coverage"),
                f"coverage {t.coverage:#x} is not region_size {t.region_size:#x} x entries "
                f"{t.entries} = {t.region_size * t.entries:#x}",
            )
        msr = insn.msr
        if msr is None or msr.base is None:
            return
        base = msr.base
        if base.low_bit > base.high_bit:
            self.error(base.mark("low_bit"), "low_bit is above high_bit")
        if base.low_bit <= msr.enable.bit <= base.high_bit:
            self.error(msr.enable.mark("bit"), "the enable bit lies inside the base field")
        if t is not None and base.low_bit > t.region_size.bit_length() - 1:
            self.error(
                base.mark("low_bit"),
                f"a base starting at bit {base.low_bit} cannot hold every "
                f"{t.region_size:#x}-aligned address",
            )

    def out_of_line(self, f: model.OutOfLine, insn: model.Instruction) -> None:
        from .kernelapi import ERRNO

        inputs = {i.name: i for i in insn.inputs}
        used: dict[str, object] = {}
        params: set[str] = set()
        for a in f.arguments:
            if a.name in params:
                self.error(a.mark("name"), f"parameter {quote(a.name)} is named twice")
            params.add(a.name)
            i = inputs.get(a.input)
            if i is None:
                known = ", ".join(inputs) or "none"
                self.error(a.mark("input"), f"{quote(a.input)} is not an input ({known})")
                continue
            if a.input in used:
                self.error(a.mark("input"), f"input {quote(a.input)} is carried by two parameters")
            used[a.input] = a
            if a.shift and i.type == "pointer":
                self.error(a.mark("shift"), f"pointer input {quote(a.input)} cannot be shifted")
        missing = [name for name in inputs if name not in used]
        if missing and all(a.input in inputs for a in f.arguments):
            self.error(f.mark("arguments"), f"no parameter carries input {quote(missing[0])}: "
                       f"{f.name}() would not pass it to the instruction")  # fmt: skip
        if f.failure is not None:
            if f.failure not in ERRNO:
                self.error(f.mark("failure"), f"{quote(f.failure)} is not an errno kgen knows "
                           f"({', '.join(sorted(ERRNO))})")  # fmt: skip
            if insn.return_output() is None:
                self.error(f.mark("failure"), "failure needs a register output: the return code")

    def kernel(self, k: model.Kernel, insn: model.Instruction) -> None:
        codes = {c.name for c in insn.function_codes.codes} if insn.function_codes else set()
        if k.helper is not None and k.helper.function not in codes:
            known = ", ".join(sorted(codes)) or "none are declared"
            self.error(
                k.helper.mark("function"),
                f"helper function {quote(k.helper.function)} is not a function code ({known})",
            )
        retry = [c for o in insn.outputs for c in o.codes if c.retry]
        if retry and k.raw_helper.max_retries is None:
            self.error(
                k.raw_helper.mark(),
                f"return code {retry[0].name} is retried: raw_helper needs max_retries to bound the loop",
            )
        if not retry and k.raw_helper.max_retries is not None:
            self.error(k.raw_helper.mark("max_retries"), "max_retries without a retry code")
        if k.out_of_line is not None:
            self.out_of_line(k.out_of_line, insn)
        if k.enum is not None and insn.function_codes is None:
            self.error(k.enum.mark(), "an enum needs instruction.function_codes")
        if (
            k.sweep is not None
            and k.helper is not None
            and insn.function_codes is not None
            and k.helper.function in codes
        ):
            code = next(c for c in insn.function_codes.codes if c.name == k.helper.function)
            if code.effect != "scan-and-set":
                self.error(
                    k.helper.mark("function"),
                    f"the sweep calls {k.helper.name}(), whose function "
                    f"{quote(code.name)} only reads: it would never optimize a region",
                )
        if k.sweep is not None:
            if insn.table is None:
                self.error(k.sweep.mark(), "a sweep needs instruction.table")
            if k.helper is None:
                self.error(k.sweep.mark(), "a sweep needs kernel.helper")
            self.workers(k.sweep)
            if k.enable is None:
                self.error(k.sweep.mark(), f"a sweep needs kernel.enable: how setup checks the "
                           f"feature and programs the MSR before the first "
                           f"{insn.mnemonic.upper()}")  # fmt: skip
        if k.enable is not None:
            self.enable(k.enable, insn, k)
        names = kernel_names(self.spec)
        self.unique(names, "kernel name")
        # each worker form is compiled on its own beside the common names
        common = {name for name, _ in names}
        for w in k.sweep.workers if k.sweep else ():
            own = [(getattr(w, key), w.mark(key)) for key in WORKER_NAME_KEYS if getattr(w, key)]
            for name, mark in own:
                if name in common:
                    self.error(mark, f"kernel name {quote(name)} is already used by the helpers")
            self.unique(own, "worker name")
        # the feature bit's and the MSR's #defines are names of the kernel's too: a helper, a
        # code or a worker of the same name would be macro-expanded into them
        defines = []
        if insn.cpuid is not None:
            defines.append((insn.cpuid.feature, insn.cpuid.mark("feature"), "the CPUID feature"))
        if insn.msr is not None:
            defines += [(insn.msr.name, insn.msr.mark("name"), "the MSR"),
                        (insn.msr.enable.name, insn.msr.enable.mark("name"), "the MSR's enable bit")]  # fmt: skip
        workers = [(getattr(w, key), w.mark(key)) for w in (k.sweep.workers if k.sweep else ())
                   for key in WORKER_NAME_KEYS if getattr(w, key)]  # fmt: skip
        for name, mark, what in defines:
            for other, where in names + workers:
                if other == name:
                    self.error(where, f"kernel name {quote(name)} is also the name of {what} "
                                      f"(line {mark.line})")  # fmt: skip
        # a name the kernel's headers define as a macro is rewritten wherever the code uses it
        from .kernel_macros import NAMES as MACROS

        local = [(i.name, i.mark("name")) for i in insn.inputs]
        local += [(o.name, o.mark("name")) for o in insn.outputs]
        local += [(k.helper.parameter, k.helper.mark("parameter"))] if k.helper else []
        for name, where in names + workers + local:
            if name in MACROS:
                self.error(where, f"{quote(name)} is a macro of the kernel's headers: the "
                                  "preprocessor would rewrite it wherever the code uses it")  # fmt: skip

    def enable(self, e: model.Enable, insn: model.Instruction, k: model.Kernel) -> None:
        """Enabling needs the feature bit and the MSR, with the facts that say how to program it."""
        if k.sweep is None:
            self.error(e.mark(), "kernel.enable belongs to a sweep: it has no worker to guard")
        if insn.cpuid is None:
            self.error(e.mark("check"), "kernel.enable needs instruction.cpuid: the feature "
                       "setup checks before anything else")  # fmt: skip
        if insn.msr is None:
            self.error(e.mark(), "kernel.enable needs instruction.msr: the MSR setup programs "
                       "on every core")  # fmt: skip
            return
        for key, what in (("scope", "whether each core or each thread has the MSR"),
                          ("value", "what enabling writes to it"),
                          ("fault", "what the instruction raises while it is not enabled")):  # fmt: skip
            if getattr(insn.msr, key) is None:
                self.error(insn.msr.mark(), f"kernel.enable needs instruction.msr.{key}: {what}")
        if insn.msr.value == "base | enable" and insn.msr.base is None:
            self.error(insn.msr.mark("value"), "value 'base | enable' needs instruction.msr.base")
        for p in e.requires:
            prefix = model.PREREQUISITE_CHECKS[p.check][1]
            if not p.argument.startswith(prefix) or p.argument == prefix:
                self.error(p.mark("argument"), f"{quote(p.argument)} is not an argument of "
                           f"{p.check}(): its constants start with {prefix}")  # fmt: skip
        self.unique(((p.name, p.mark("name")) for p in e.requires), "prerequisite name")
        self.unique(((f"{p.check}({p.argument})", p.mark("argument")) for p in e.requires),
                    "prerequisite check")  # fmt: skip

    def workers(self, sweep: model.Sweep) -> None:
        if sweep.config is not None and not sweep.config.startswith("CONFIG_"):
            self.error(sweep.mark("config"), f"{quote(sweep.config)} is not a Kconfig symbol: write "
                                             f"it as the preprocessor sees it, CONFIG_{sweep.config}")  # fmt: skip
        if not sweep.workers:
            self.error(sweep.mark("workers"), "at least one worker is needed")
        self.unique(((w.kind, w.mark("kind")) for w in sweep.workers), "worker kind")
        for w in sweep.workers:
            if w.kind == "delayed-work":
                for key in ("workqueue", "first_delay_ms", "rearm_delay_ms"):
                    if getattr(w, key) is None:
                        self.error(w.mark(), f"a delayed-work worker needs '{key}'")
            else:
                for key in ("workqueue", "first_delay_ms", "rearm_delay_ms"):
                    if getattr(w, key) is not None:
                        self.error(w.mark(key), f"a kthread worker takes no '{key}'")


# --- entry points -----------------------------------------------------------


def convert_document(text: str, path: str, cls: type, what: str = "file") -> Any:
    """Parse ``text`` as one ``cls`` mapping with the spec loader's rules and messages."""
    node, problems = compose(text, path)
    if node is None:
        raise SpecError([Diagnostic(Mark(path, 1, 1), f"the {what} is empty")])
    conv = _Converter(path)
    value = conv.convert(node, cls)
    if problems or conv.problems:
        raise SpecError(problems + conv.problems)
    return value


def encoding_problems(spec: Spec) -> list[Diagnostic]:
    """The encoding rules alone, for a spec however it was made (the loader runs them too)."""
    rules = _Rules(spec)
    rules.encoding(spec.instruction)
    return rules.problems


def parse(text: str, path: str) -> Spec:
    """Parse spec text; ``path`` is only used in messages."""
    spec = convert_document(text, path, Spec, what="spec")
    problems = _Rules(spec).run()
    if problems:
        raise SpecError(problems)
    return dataclasses.replace(spec, path=path, source=text)


def load(path: str | Path, cached: bool = False) -> Spec:
    """Load and check one spec file; with ``cached``, through :mod:`codegen.loadcache`."""
    display = str(path)
    text = read_text(Path(path), display)
    if cached:
        from .loadcache import remembered

        with x86.remembered_decodes():  # a spec edited but for its bytes needs no decoder
            return remembered("spec", (display, text), lambda: parse(text, display))
    return parse(text, display)


def load_all(paths: Iterable[str | Path], cached: bool = False) -> list[Spec]:
    """Load several spec files, reporting the problems of all of them at once."""
    specs, problems = [], []
    for p in paths:
        try:
            specs.append(load(p, cached))
        except SpecError as exc:
            problems += exc.diagnostics
    if problems:
        raise SpecError(problems)
    return specs
