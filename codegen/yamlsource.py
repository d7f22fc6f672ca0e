"""Safe YAML reading that keeps the position of every node.

PyYAML's safe loader silently keeps the last of two equal keys and expands
aliases without limit; a spec must do neither.  This module composes the
document into nodes (never constructing arbitrary objects), reports duplicate
keys and aliases with their positions, and turns scalar nodes into plain
Python values on request.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
from yaml.nodes import Node, ScalarNode

from .diagnostics import Diagnostic, Mark, SpecError, quote

# What a spec may be; each limit is named in its message and in the README ("Limits").
MAX_FILE_BYTES = 128 << 10  # 32 times the largest bundled spec; validates in a fraction of a second
MAX_DEPTH = 32  # nested mappings and lists; a spec needs 6
MAX_TEXT = 4096  # characters in one value (a title, a description, a key)
MAX_LINE = 4096  # characters in one line; fold longer text with '>-'
INT_BITS = 64  # every integer, negative ones included, fits 64 bits


def _bytes_text(n: int) -> str:
    return f"{n >> 10} KiB" if n % 1024 == 0 else f"{n} bytes"


class _TooDeep(Exception):
    def __init__(self, mark: Any):
        self.mark = mark


def mark_of(path: str, yaml_mark: Any) -> Mark:
    """Convert PyYAML's 0-based mark into a 1-based :class:`Mark`."""
    return Mark(path, yaml_mark.line + 1, yaml_mark.column + 1)


def node_mark(path: str, node: Node) -> Mark:
    return mark_of(path, node.start_mark)


class _Checks(yaml.composer.Composer):
    """The composer's checks: duplicate keys, aliases, depth and length limits."""

    path: str
    problems: list[Diagnostic]
    depth: int
    check_event: Any  # the parser's, whichever parser reads the events
    peek_event: Any

    def compose_node(self, parent, index):
        # the composer recurses once per level: stop at the limit, before Python's own
        if self.depth >= MAX_DEPTH and self.check_event(MappingStartEvent, SequenceStartEvent):
            raise _TooDeep(self.peek_event().start_mark)
        self.depth += 1
        try:
            return self._compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_scalar_node(self, anchor):
        node = super().compose_scalar_node(anchor)
        if len(node.value) > MAX_TEXT:
            self.problems.append(
                Diagnostic(
                    node_mark(self.path, node),
                    f"a value of {len(node.value)} characters is longer than the limit of {MAX_TEXT}",
                )
            )
            node.value = node.value[:MAX_TEXT]  # keep checking the rest at the usual cost
        return node

    def _compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            event = self.peek_event()
            self.problems.append(
                Diagnostic(
                    mark_of(self.path, event.start_mark),
                    f"alias '*{event.anchor}' is not allowed in a spec; write the value out",
                )
            )
        return super().compose_node(parent, index)

    def compose_mapping_node(self, anchor):
        node = super().compose_mapping_node(anchor)
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode):
                continue
            first = seen.setdefault(key_node.value, key_node)
            if first is not key_node:
                where = node_mark(self.path, first)
                self.problems.append(
                    Diagnostic(
                        node_mark(self.path, key_node),
                        f"duplicate key '{key_node.value}' (first defined at line {where.line})",
                    )
                )
        return node


class _Loader(_Checks, yaml.SafeLoader):
    """PyYAML's own reader, scanner and parser: the reference reading of every text."""

    def __init__(self, stream: str, path: str):
        super().__init__(stream)
        self.path = path
        self.problems = []
        self.depth = 0


# libyaml (PyYAML's C parser) reads the same nodes as PyYAML's Python parser, about ten times
# faster, for the texts it is trusted with here: printable ASCII lines without '?' (tabs,
# carriage returns, byte order marks and '?' in flow context are read otherwise by the two),
# no empty plain scalar (libyaml marks it at the next token, PyYAML after the ':'), and no
# problem found.  Any other text, and any failure, is read again by _Loader, so every node
# and every message is PyYAML's (tests/test_yaml_fast.py holds the two to the same nodes).
_FAST_TEXT = re.compile(r"[\n\x20-\x3e\x40-\x7e]*")
_CParser: Any = getattr(getattr(yaml, "_yaml", None), "CParser", None)


class _Unsure(Exception):
    """The fast reading cannot vouch for this text."""


if _CParser is not None:

    class _FastLoader(_Checks, _CParser, yaml.resolver.Resolver):
        def __init__(self, stream: str, path: str):
            _CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self.path = path
            self.problems = []
            self.depth = 0

        def compose_scalar_node(self, anchor):
            node = super().compose_scalar_node(anchor)
            if node.style == "":  # libyaml's plain style; PyYAML's is None
                node.style = None
            if node.style is None and not node.value:
                raise _Unsure
            return node


def compose_fast(text: str, path: str) -> Node | None:
    """The nodes of ``text`` read by libyaml, or None where only PyYAML's reading will do."""
    if _CParser is None or not _FAST_TEXT.fullmatch(text):
        return None
    loader = _FastLoader(text, path)
    try:
        node = loader.get_single_node()
    except Exception:  # a syntax error, a limit, an empty scalar: PyYAML says what it is
        return None
    finally:
        loader.dispose()
    return None if loader.problems or node is None else node


def _offset_mark(path: str, text: str, offset: int) -> Mark:
    before = text[:offset]
    line = before.count("\n") + 1
    col = offset - (before.rfind("\n") + 1) + 1
    return Mark(path, line, col)


def read_text(path: Path, display: str) -> str:
    """Read a spec file as UTF-8, reporting missing files, bad bytes and broken limits.

    Only a regular file is read (a FIFO or a device would block or never end), and
    at most one byte more than the size limit.
    """
    whole = Mark(display, 0, 0)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise SpecError([Diagnostic(whole, "no such file")]) from None
    except IsADirectoryError:
        raise SpecError([Diagnostic(whole, "is a directory, not a spec file")]) from None
    except OSError as exc:
        raise SpecError([Diagnostic(whole, f"cannot read: {exc.strerror}")]) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise SpecError([Diagnostic(whole, "is a directory, not a spec file")])
        if not stat.S_ISREG(mode):
            raise SpecError([Diagnostic(whole, "not a regular file")])
        with os.fdopen(os.dup(fd), "rb", buffering=0) as stream:
            data = read_limited(stream)
    except OSError as exc:
        raise SpecError([Diagnostic(whole, f"cannot read: {exc.strerror}")]) from None
    finally:
        os.close(fd)
    return decode_text(data, display)


def read_limited(stream: Any) -> bytes:
    """At most one byte more than the size limit from a binary stream."""
    chunks, left = [], MAX_FILE_BYTES + 1
    while left > 0:
        chunk = stream.read(min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def decode_text(data: bytes, display: str) -> str:
    """Spec bytes as text: within the size limit, and UTF-8."""
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(
            [
                Diagnostic(
                    Mark(display, 0, 0),
                    f"file is larger than the limit of {_bytes_text(MAX_FILE_BYTES)}",
                )
            ]
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = data[: exc.start].decode("utf-8", errors="replace")
        raise SpecError(
            [Diagnostic(_offset_mark(display, prefix, len(prefix)), "file is not valid UTF-8")]
        ) from None


def long_line(text: str, path: str) -> Diagnostic | None:
    """The first line longer than the limit, at its first character past it."""
    if "\r" in text:  # YAML's other line breaks, as the reader counts them
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    start, n = 0, len(text)
    while start <= n:
        end = text.find("\n", start)
        end = n if end < 0 else end
        if end - start > MAX_LINE:
            line = text.count("\n", 0, start) + 1
            return Diagnostic(
                Mark(path, line, MAX_LINE + 1),
                f"line longer than the limit of {MAX_LINE} characters (fold long text with '>-')",
            )
        start = end + 1
    return None


def compose(text: str, path: str) -> tuple[Node | None, list[Diagnostic]]:
    """Compose one YAML document into position-carrying nodes.

    Syntax errors raise :class:`SpecError`; duplicate keys and aliases are
    returned as problems beside the nodes, so the caller can report them
    together with everything else it finds.
    """
    if len(text) > MAX_FILE_BYTES:  # text that did not come through read_text
        where = _offset_mark(path, text, MAX_FILE_BYTES)  # the first character past the limit
        raise SpecError(
            [Diagnostic(where, f"text is longer than the limit of {_bytes_text(MAX_FILE_BYTES)}")]
        )
    too_long = long_line(text, path)
    if too_long is not None:
        raise SpecError([too_long])
    fast = compose_fast(text, path)
    if fast is not None:
        return fast, []
    return compose_reference(text, path)


def compose_reference(text: str, path: str) -> tuple[Node | None, list[Diagnostic]]:
    """:func:`compose` by PyYAML's Python reader alone (the limits checked by the caller)."""
    loader = None
    try:
        loader = _Loader(text, path)  # the reader rejects bad characters here already
        node = loader.get_single_node()
    except _TooDeep as exc:
        raise SpecError(
            [
                Diagnostic(
                    mark_of(path, exc.mark), f"nested deeper than the limit of {MAX_DEPTH} levels"
                )
            ]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if exc.problem and exc.context and exc.problem.startswith("but "):
            problem = f"{exc.context}, {exc.problem}"
        elif exc.problem and exc.context and exc.context_mark:
            ctx = mark_of(path, exc.context_mark)
            problem += f" ({exc.context} that starts at line {ctx.line}, column {ctx.col})"
        where = mark_of(path, mark) if mark else Mark(path, 1, 1)
        raise SpecError(
            (loader.problems if loader else []) + [Diagnostic(where, f"invalid YAML: {problem}")]
        ) from None
    except yaml.reader.ReaderError as exc:
        raise SpecError(
            [
                Diagnostic(
                    _offset_mark(path, text, exc.position),
                    f"invalid YAML: character {exc.character!r} is not allowed",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:  # any other PyYAML failure still names the file
        raise SpecError([Diagnostic(Mark(path, 1, 1), f"invalid YAML: {exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return node, loader.problems


# YAML 1.1 readings that YAML 1.2 (and most people) read otherwise; a spec must not
# depend on which one its reader follows.
_YAML11_BOOL = re.compile(r"(?i:yes|no|on|off|y|n)\Z")
_YAML11_OCTAL = re.compile(r"[-+]?0[0-7_]+\Z")
_BASE60 = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?\Z")
_OCTAL_12 = re.compile(r"([-+]?)0o([0-7_]+)\Z")  # YAML 1.2's octal, which PyYAML reads as text
# an integer in YAML 1.2's core schema: no digit separators, no 0b, no sign on 0x or 0o
_INT_12 = re.compile(r"[-+]?[0-9]+\Z|0o[0-7]+\Z|0x[0-9a-fA-F]+\Z")
_INT_TEXT = 2 + INT_BITS + INT_BITS // 4  # sign, 0b, 64 binary digits and underscores


def yaml11_problem(node: ScalarNode) -> str | None:
    """Why a plain scalar means something else in YAML 1.1 than in YAML 1.2, or None."""
    if node.style is not None:  # quoted or block text is always a string
        return None
    text = node.value
    if (
        node.tag.endswith(":bool")
        and text.lower() not in ("true", "false")
        or (_YAML11_BOOL.match(text))
    ):
        return (
            f"{quote(text)} is a boolean only in YAML 1.1: write true or false "
            "(or quote it for text)"
        )
    if _YAML11_OCTAL.match(text) and text.lstrip("+-").strip("0_"):
        sign = "-" if text.startswith("-") else ""
        digits = text.lstrip("+-").replace("_", "")
        value = int(digits, 8)
        return (
            f"{quote(text)} is octal in YAML 1.1 ({sign}{value}) but decimal in YAML 1.2: write "
            f"{sign}0o{value:o} or {sign}{value:#x}, or {sign}{int(digits)} without the leading zero"
        )
    if _BASE60.match(text):
        return (
            f"{quote(text)} is a base-60 number in YAML 1.1: write a plain number "
            "(or quote it for text)"
        )
    octal = _OCTAL_12.match(text)
    if (node.tag.endswith(":int") or octal) and len(text) <= _INT_TEXT and not _INT_12.match(text):
        try:
            value = (
                int(octal.group(1) + octal.group(2).replace("_", ""), 8)
                if octal
                else _construct(node)
            )
        except ValueError:
            return None  # not an integer in either: the reader says why
        if not -(1 << INT_BITS) < value < 1 << INT_BITS:
            return None  # the reader says it does not fit
        return (
            f"{quote(text)} is an integer only in YAML 1.1 ({value}): YAML 1.2 reads it as text; "
            f"write {value}" + (f" or {value:#x}" if value >= 0 else "")
        )
    return None


def scalar_value(node: ScalarNode, text_ok: bool = False) -> Any:
    """The plain Python value of a scalar node (int, str, bool, None, ...).

    YAML 1.2's ``0o`` octal is an integer; a YAML 1.1 reading that YAML 1.2 reads
    otherwise (``yes``, ``04000``, ``34:08``) is refused, or kept as the text it is
    when ``text_ok`` (the key holds text).  Integers must fit 64 bits.  Raises
    ValueError with a short reason when the scalar cannot be read.
    """
    why = yaml11_problem(node)
    if why is not None:
        if text_ok:
            return node.value
        raise ValueError(why)
    if node.style is None and node.tag.endswith((":int", ":str")):
        octal = _OCTAL_12.match(node.value)
        if node.tag.endswith(":str") and not octal:
            return node.value
        if len(node.value) > _INT_TEXT:
            raise ValueError(f"integer {quote(node.value)} does not fit {INT_BITS} bits")
        if octal:
            digits = octal.group(2).replace("_", "")
            if not digits:
                raise ValueError(f"cannot read {quote(node.value)} as an integer")
            value = int(octal.group(1) + digits, 8)
        else:
            value = _construct(node)
        if not -(1 << INT_BITS) < value < 1 << INT_BITS:
            raise ValueError(f"integer {quote(node.value)} does not fit {INT_BITS} bits")
        return value
    return _construct(node)


def _construct(node: ScalarNode) -> Any:
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        raise ValueError(exc.problem or "unsupported value") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]}") from exc
