"""Positions in spec files and the problems found there."""

from __future__ import annotations

from functools import total_ordering

from .record import record


@total_ordering
@record
class Mark:
    """A 1-based line and column in a file; line 0 stands for the whole file.

    Marks sort by path, then line, then column (problems are reported in that order)."""

    path: str
    line: int
    col: int

    def __lt__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Mark)
        return (self.path, self.line, self.col) < (other.path, other.line, other.col)

    def __str__(self) -> str:
        path = shown_path(self.path)
        if self.line == 0:
            return path
        return f"{path}:{self.line}:{self.col}"


def shown_path(path: str) -> str:
    """A path as a one-line message shows it: control characters escaped."""
    if path.isprintable():
        return path
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)


def quote(value: object, limit: int = 48) -> str:
    """A user's value, quoted and escaped for a one-line message."""
    text = repr(str(value))
    return text if len(text) <= limit else text[: limit - 4] + "...'"


@record
class Diagnostic:
    """One problem, printed as gcc prints one: ``path:line:col: error: message``."""

    mark: Mark
    message: str
    severity: str = "error"  # or "note"

    def __str__(self) -> str:
        return f"{self.mark}: {self.severity}: {self.message}"


class SpecError(Exception):
    """Every problem found in one or more spec files."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.mark, d.message))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def size_text(n: int) -> str:
    """A size in bytes for people: ``1 GB``, ``2 TB``, ``4 KB``; ``3000 bytes`` when no unit
    divides it."""
    for shift, unit in ((40, "TB"), (30, "GB"), (20, "MB"), (10, "KB")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` and the noun agreeing with it: ``1 file``, ``2 files``, ``0 cores``, ``2 entries``."""
    return f"{n} {word if n == 1 else many or word + 's'}"
