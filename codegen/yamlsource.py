"""Safe YAML reading that keeps the position of every node.

PyYAML's safe loader silently keeps the last of two equal keys and expands
aliases without limit; a spec must do neither.  This module composes the
document into nodes (never constructing arbitrary objects), reports duplicate
keys and aliases with their positions, and turns scalar nodes into plain
Python values on request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import Node, ScalarNode

from .diagnostics import Diagnostic, Mark, SpecError


def mark_of(path: str, yaml_mark: Any) -> Mark:
    """Convert PyYAML's 0-based mark into a 1-based :class:`Mark`."""
    return Mark(path, yaml_mark.line + 1, yaml_mark.column + 1)


def node_mark(path: str, node: Node) -> Mark:
    return mark_of(path, node.start_mark)


class _Loader(yaml.SafeLoader):
    """SafeLoader's composer with duplicate-key and alias detection."""

    def __init__(self, stream: str, path: str):
        super().__init__(stream)
        self.path = path
        self.problems: list[Diagnostic] = []

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(AliasEvent):
            event = self.peek_event()
            self.problems.append(
                Diagnostic(
                    mark_of(self.path, event.start_mark),
                    f"alias '*{event.anchor}' is not allowed in a spec; write the value out",
                )
            )
        return super().compose_node(parent, index)

    def compose_mapping_node(self, anchor):  # type: ignore[override]
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


def _offset_mark(path: str, text: str, offset: int) -> Mark:
    before = text[:offset]
    line = before.count("\n") + 1
    col = offset - (before.rfind("\n") + 1) + 1
    return Mark(path, line, col)


def read_text(path: Path, display: str) -> str:
    """Read a spec file as UTF-8, reporting missing files and bad bytes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecError([Diagnostic(Mark(display, 0, 0), "no such file")]) from None
    except IsADirectoryError:
        raise SpecError([Diagnostic(Mark(display, 0, 0), "is a directory, not a spec file")]) from None
    except OSError as exc:
        raise SpecError([Diagnostic(Mark(display, 0, 0), f"cannot read: {exc.strerror}")]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = data[: exc.start].decode("utf-8", errors="replace")
        raise SpecError(
            [Diagnostic(_offset_mark(display, prefix, len(prefix)), "file is not valid UTF-8")]
        ) from None


def compose(text: str, path: str) -> tuple[Node | None, list[Diagnostic]]:
    """Compose one YAML document into position-carrying nodes.

    Syntax errors raise :class:`SpecError`; duplicate keys and aliases are
    returned as problems beside the nodes, so the caller can report them
    together with everything else it finds.
    """
    loader = None
    try:
        loader = _Loader(text, path)  # the reader rejects bad characters here already
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if exc.problem and exc.context and exc.problem.startswith("but "):
            problem = f"{exc.context}, {exc.problem}"
        elif exc.problem and exc.context and exc.context_mark:
            ctx = mark_of(path, exc.context_mark)
            problem += f" ({exc.context} that starts at line {ctx.line}, column {ctx.col})"
        where = mark_of(path, mark) if mark else Mark(path, 1, 1)
        raise SpecError((loader.problems if loader else []) + [Diagnostic(where, f"invalid YAML: {problem}")]) from None
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


def scalar_value(node: ScalarNode) -> Any:
    """The plain Python value of a scalar node (int, str, bool, None, ...).

    Raises ValueError with a short reason when the scalar cannot be read.
    """
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        raise ValueError(exc.problem or "unsupported value") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]}") from exc
