"""Kernel C text as named items, so that generated parts can be found and replaced by name.

Kernel files carry no kgen markers: a part kgen owns is found as the tree's own code is
read by a maintainer, by what it defines.  :func:`items` splits a C file into top-level
items (a function with its kernel-doc comment and its EXPORT_SYMBOL line, a #define with
its comment, a declaration, a preprocessor line), each with a kind, a name and the span of
text it covers; :func:`statements` does the same for the statements of a function body.
This is a reader for the kernel's own style, not a C parser: comments, string and character
literals and bracket nesting are honoured, macros are not expanded.
"""

from __future__ import annotations

import functools
import re

from .record import record

IDENT = re.compile(r"[A-Za-z_]\w*")
_ATTRIBUTES = {
    "__attribute__", "__aligned", "__printf", "__section", "__must_hold", "__acquires",
    "__releases", "__cond_acquires", "__alloc_size", "__nonstring", "__counted_by",
}  # fmt: skip
MAX_NESTING = (
    200  # brackets, #if blocks or statements within one another; the kernel's deepest is far less
)
_TOO_DEEP = f"nesting deeper than {MAX_NESTING} levels"


class CTextError(ValueError):
    """The text is not C this reader can follow (an unterminated comment, string or bracket)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@record
class _Condition:
    """One open #if (its line and branch) and the ones around it: shared, not copied, by the
    items inside, so that deep nesting costs no more memory than shallow."""

    line: str
    branch: str  # "then" / "else"
    up: _Condition | None
    depth: int


@record
class Item:
    """One top-level item: ``text[start:end]`` is the item with its attached comment."""

    kind: (
        str  # define, include, pp, function, prototype, macro, export, variable, struct, enum, ...
    )
    name: str
    start: int  # where its attached comment (or the code) starts, at a line start
    code: int  # where the code starts
    end: int  # after its last line's newline
    where: _Condition | None = None  # the innermost #if around the item

    @property
    def conditions(self) -> tuple[tuple[str, str], ...]:
        """(#if line, "then"/"else") of each #if around the item, outermost first."""
        out, c = [], self.where
        while c is not None:
            out.append((c.line, c.branch))
            c = c.up
        return tuple(reversed(out))

    def text(self, source: str) -> str:
        return source[self.start : self.end]

    def code_text(self, source: str) -> str:
        return source[self.code : self.end]


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _skip_comment(text: str, i: int) -> int:
    """Past the comment at ``text[i]`` (``/*`` or ``//``); a line comment stops before its newline."""
    if text.startswith("//", i):
        j = text.find("\n", i)
        return len(text) if j < 0 else j
    j = text.find("*/", i + 2)
    if j < 0:
        raise CTextError("unterminated comment", i)
    return j + 2


def _pp_end(text: str, i: int) -> int:
    """Offset of the newline that ends the preprocessor line starting at ``i`` (continuations joined)."""
    j = i
    while True:
        nl = text.find("\n", j)
        if nl < 0:
            return len(text)
        # a comment opened on the line may run past the newline
        k = j
        while True:
            c = text.find("/*", k, nl)
            if c < 0:
                break
            k = _skip_comment(text, c)
            if k > nl:
                nl = text.find("\n", k)
                if nl < 0:
                    return len(text)
        if nl > 0 and text[nl - 1] == "\\":
            j = nl + 1
            continue
        return nl


_MASKED = re.compile(
    r"^[ \t]*\#(?:/\*.*?\*/|\\\n|[^\n])*"  # a preprocessor line, continuations and comments joined
    r"|//[^\n]*"
    r"|/\*.*?\*/"
    r'|"(?:\\.|[^"\\\n])*"'
    r"|'(?:\\.|[^'\\\n])*'",
    re.M | re.S,
)


def _blank(m: re.Match) -> str:
    return re.sub(r"[^\n]", " ", m.group())


@functools.lru_cache(maxsize=64)
def mask(text: str) -> str:
    """``text`` with comments, literals and preprocessor lines blanked (newlines kept), same length."""
    masked = _MASKED.sub(_blank, text)
    for token, what in (("/*", "unterminated comment"), ('"', "unterminated string or character literal"),
                        ("'", "unterminated string or character literal")):  # fmt: skip
        at = masked.find(token)
        if at >= 0:
            raise CTextError(what, at)
    return masked


def _line_start(text: str, offset: int) -> int:
    return text.rfind("\n", 0, offset) + 1


def _line_end(text: str, offset: int) -> int:
    """After the newline of the line holding ``offset`` (or the end of the text)."""
    nl = text.find("\n", offset)
    return len(text) if nl < 0 else nl + 1


def _match_close(masked: str, i: int) -> int:
    """Offset of the bracket that closes the one at ``masked[i]``."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[masked[i]]]
    j = i + 1
    while j < len(masked):
        c = masked[j]
        if c in pairs:
            stack.append(pairs[c])
            if len(stack) > MAX_NESTING:
                raise CTextError(_TOO_DEEP, j)
        elif c in ")]}":
            if c != stack[-1]:
                raise CTextError(f"'{c}' closes '{masked[i]}'", j)
            stack.pop()
            if not stack:
                return j
        j += 1
    raise CTextError(f"unclosed '{masked[i]}'", i)


def _first_call_name(head: str) -> tuple[str, int]:
    """The identifier before the first parenthesis of ``head`` that is not an attribute."""
    depth = 0
    for m in re.finditer(r"[()]", head):
        if m.group() == ")":
            depth -= 1
            continue
        if depth == 0:
            before = IDENT.findall(head[: m.start()])
            if before and before[-1] not in _ATTRIBUTES:
                return before[-1], m.start()
        depth += 1
    return "", -1


def _classify(code: str, masked: str) -> tuple[str, str]:
    """Kind and name of a top-level C item (``masked``: the same text with literals blanked)."""
    brace = masked.find("{")
    head = masked if brace < 0 else masked[:brace]
    words = IDENT.findall(head)
    if (
        brace >= 0
        and words[:1] in (["enum"], ["struct"], ["union"])
        and "=" not in head
        and len(words) > 1
    ):
        return words[0], words[1]
    if brace >= 0 and words and words[0] in ("static", "const") and "=" in head:
        pass
    name, paren = _first_call_name(head)
    if brace >= 0 and head.rstrip().endswith(")") and "=" not in head and name:
        return "function", name
    if name and "=" not in head[:paren] and (brace < 0 or "=" not in head):
        if re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
            close = _match_close(masked, paren)
            words_of = [IDENT.findall(a) for a in masked[paren + 1 : close].split(",")]
            args = [w[-1] for w in words_of if w]
            if name.startswith("EXPORT_SYMBOL"):
                return "export", args[0] if args else ""
            if name.startswith("DEFINE_PER_CPU") and args:
                return "macro", args[-1]
            return "macro", args[0] if args else name
        return "prototype", name
    if words[:1] in (["struct"], ["enum"], ["union"]) and len(words) == 2 and brace < 0:
        return words[0] + "-declaration", words[1]
    assign = head.find("=")
    decl = head if assign < 0 else head[:assign]
    decl = re.sub(r"\[[^\]]*\]", "", decl)
    names = IDENT.findall(decl)
    return "variable", names[-1] if names else ""


@functools.lru_cache(maxsize=64)
def items(text: str) -> tuple[Item, ...]:
    """The top-level items of ``text``, in order (blank lines and stray comments belong to none)."""
    return tuple(_items(text))


def _items(text: str) -> list[Item]:
    masked = mask(text)
    result: list[Item] = []
    conditions: _Condition | None = None
    i, n = 0, len(text)
    pending: int | None = None  # start of a comment block directly above the next item
    while i < n:
        c = text[i]
        if c == "\n":
            # a blank line detaches a comment from what follows
            if pending is not None and text[_line_start(text, i) : i].strip() == "":
                pending = None
            i += 1
            continue
        if c in " \t\r\f\v":
            i += 1
            continue
        at_line_start = text[_line_start(text, i) : i].strip() == ""
        if c == "#" and at_line_start:
            end = _pp_end(text, i)
            line = text[i:end]
            directive = re.match(r"#\s*(\w*)\s*(.*)", line, re.S)
            assert directive is not None  # the line starts with '#'
            word, rest = directive.group(1), re.sub(r"\s+", " ", directive.group(2)).strip()
            start = pending if pending is not None else _line_start(text, i)
            if word == "define":
                m = IDENT.match(rest)
                kind, name = "define", m.group() if m else ""
            elif word == "include":
                kind, name = "include", rest.strip('<>"').split(">")[0].split('"')[0]
            else:
                kind, name = "pp", f"{word} {rest}".strip()
                start = _line_start(text, i)  # a conditional owns no comment
            if word in ("else", "elif", "endif"):
                kind = "pp"
            result.append(Item(kind, name, start, i, min(end + 1, n), conditions))
            if word in ("if", "ifdef", "ifndef"):
                depth = conditions.depth + 1 if conditions else 1
                if depth > MAX_NESTING:
                    raise CTextError(_TOO_DEEP, i)
                conditions = _Condition(f"{word} {rest}".strip(), "then", conditions, depth)
            elif word in ("else", "elif") and conditions:
                conditions = _Condition(conditions.line, "else", conditions.up, conditions.depth)
            elif word == "endif" and conditions:
                conditions = conditions.up
            pending = None
            i = end + 1
            continue
        if text.startswith("/*", i) or text.startswith("//", i):
            j = _skip_comment(text, i)
            if at_line_start and pending is None:
                pending = _line_start(text, i)
            elif not at_line_start:
                pending = None
            i = j
            continue
        # code: to the ';' at depth 0, or the '}' that closes a function body
        start = pending if pending is not None else _line_start(text, i)
        j = i
        end = -1
        while j < n:
            ch = masked[j]
            if ch in "([":
                j = _match_close(masked, j) + 1
                if ch == "(" and _bare_macro_call(text, masked, i, j):
                    end = j
                    break
                continue
            if ch == "{":
                close = _match_close(masked, j)
                head = masked[i:j].rstrip()
                if head.endswith(")") and "=" not in head:
                    end = close + 1
                    break
                j = close + 1
                continue
            if ch == ";":
                end = j + 1
                break
            if ch in ")]}":
                raise CTextError(f"unbalanced '{ch}'", j)
            j += 1
        if end < 0:
            raise CTextError("unterminated declaration", i)
        # a trailing "__packed;" or similar after a struct's brace stays with it
        end = _line_end(text, end - 1)
        kind, name = _classify(text[i:end], masked[i:end])
        result.append(Item(kind, name, start, i, end, conditions))
        pending = None
        i = end
    return _attach_exports(text, result)


def _bare_macro_call(text: str, masked: str, i: int, j: int) -> bool:
    """``masked[i:j]`` is ``NAME(...)`` alone, ending its line, and the next line starts an item."""
    if not re.fullmatch(r"[A-Za-z_]\w*\s*\(.*\)", masked[i:j], re.S):
        return False
    nl = masked.find("\n", j)
    if nl < 0:
        return masked[j:].strip() == ""
    if masked[j:nl].strip():
        return False
    k = nl + 1
    while k < len(masked) and masked[k] == "\n":
        k += 1
    return k >= len(masked) or masked[k] not in " \t{;" or text[k] in "#/"


def _attach_exports(text: str, found: list[Item]) -> list[Item]:
    """A function and the EXPORT_SYMBOL line right below it are one item."""
    out: list[Item] = []
    for item in found:
        prev = out[-1] if out else None
        if (
            item.kind == "export"
            and prev is not None
            and prev.kind == "function"
            and prev.name == item.name
            and text[prev.end : item.code].strip() == ""
            and text.count("\n", prev.end, item.code) == 0
        ):
            out[-1] = Item(prev.kind, prev.name, prev.start, prev.code, item.end, prev.where)
            continue
        out.append(item)
    return out


def find(found: list[Item], kind: str, name: str) -> list[Item]:
    return [i for i in found if i.kind == kind and i.name == name]


@record
class Statement:
    start: int  # line start of the statement (with a comment directly above it)
    code: int
    end: int  # after its last newline
    keyword: str  # the first word: asm, do, if, return, ... or "" for an expression
    inner: tuple[Statement, ...] = ()  # statements of a block it holds


def function_body(text: str, item: Item) -> tuple[int, int]:
    """Offsets just inside the braces of a function item's body."""
    masked = mask(text)
    open_ = masked.find("{", item.code, item.end)
    close = _match_close(masked, open_)
    return open_ + 1, close


def statements(
    text: str, start: int, end: int, masked: str | None = None, depth: int = 0
) -> list[Statement]:
    """The statements between ``start`` and ``end`` (inside a block), nested blocks included."""
    masked = mask(text) if masked is None else masked
    if depth > MAX_NESTING:
        raise CTextError(_TOO_DEEP, start)
    result: list[Statement] = []
    i = start
    pending: int | None = None
    while i < end:
        c = masked[i]
        if c == "\n":
            if pending is not None and text[_line_start(text, i) : i].strip() == "":
                pending = None
            i += 1
            continue
        if text[i] in "/#":
            if text.startswith("/*", i) or text.startswith("//", i):
                if pending is None and text[_line_start(text, i) : i].strip() == "":
                    pending = _line_start(text, i)
                i = _skip_comment(text, i)
                continue
            if text[i] == "#":
                i = _pp_end(text, i) + 1
                pending = None
                continue
        if c in " \t\r\f\v":
            i += 1
            continue
        word = IDENT.match(masked, i)
        keyword = word.group() if word else ""
        s_start = pending if pending is not None else _line_start(text, i)
        j, inner = _statement_end(text, masked, i, keyword, depth)
        result.append(Statement(s_start, i, _line_end(text, j - 1), keyword, tuple(inner)))
        pending = None
        i = j
    return result


def _statement_end(
    text: str, masked: str, i: int, keyword: str, depth: int = 0
) -> tuple[int, list[Statement]]:
    """End offset of the statement at ``i`` and the statements of the blocks it holds."""
    if depth > MAX_NESTING:
        raise CTextError(_TOO_DEEP, i)
    inner: list[Statement] = []
    j = i
    if masked[i] == "{":
        close = _match_close(masked, i)
        return close + 1, statements(text, i + 1, close, masked, depth + 1)
    label = re.match(r"(?:case\b[^;{}]*?|default\s*|[A-Za-z_]\w*\s*):(?!:)", masked[i:])
    if (
        label
        and (keyword in ("case", "default") or not label.group().startswith(("default",)))
        and (keyword in ("case", "default") or re.fullmatch(r"[A-Za-z_]\w*\s*:", label.group()))
    ):
        return i + label.end(), inner
    if keyword in ("if", "while", "for", "switch"):
        paren = masked.find("(", i)
        j = _match_close(masked, paren) + 1
        k = _skip_space(masked, j)
        end, sub = _statement_end(text, masked, k, _word(masked, k), depth + 1)
        inner += (
            sub
            if masked[k] == "{"
            else [Statement(_line_start(text, k), k, end, _word(masked, k), tuple(sub))]
        )
        if keyword == "if":
            k = _skip_space(masked, end)
            if masked.startswith("else", k) and not (
                masked[k + 4 : k + 5].isalnum() or masked[k + 4 : k + 5] == "_"
            ):
                k2 = _skip_space(masked, k + 4)
                end, sub = _statement_end(text, masked, k2, _word(masked, k2), depth + 1)
                inner += sub
        return end, inner
    if keyword == "do":
        k = _skip_space(masked, i + 2)
        end, sub = _statement_end(text, masked, k, _word(masked, k), depth + 1)
        inner += sub
        semi = masked.find(";", end)
        return semi + 1, inner
    while j < len(masked):
        m = masked[j]
        if (
            m == "{"
            and keyword not in ("return", "sizeof")
            and re.fullmatch(r"[A-Za-z_]\w*\s*\(.*\)\s*", masked[i:j], re.S)
        ):
            # a loop macro: for_each_online_cpu(cpu) { ... }
            close = _match_close(masked, j)
            return close + 1, statements(text, j + 1, close, masked, depth + 1)
        if m in "([{":
            j = _match_close(masked, j) + 1
            continue
        if m == ";":
            return j + 1, inner
        if m in ")]}":
            raise CTextError(f"unbalanced '{m}'", j)
        j += 1
    raise CTextError("unterminated statement", i)


def _skip_space(masked: str, i: int) -> int:
    while i < len(masked) and masked[i] in " \t\r\n\f\v":
        i += 1
    return i


def _word(masked: str, i: int) -> str:
    m = IDENT.match(masked, i)
    return m.group() if m else ""


def walk(found: list[Statement]):
    for s in found:
        yield s
        yield from walk(list(s.inner))


def tokens(text: str) -> list[str]:
    """The tokens of C text, comments dropped: for comparing code regardless of layout."""
    out: list[str] = []
    pattern = re.compile(
        r"\s+|/\*.*?\*/|//[^\n]*|\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|[A-Za-z_]\w*"
        r"|0[xX][0-9a-fA-F]+\w*|\d+\w*|->|<<=|>>=|\+\+|--|&&|\|\||[<>=!+\-*/%&|^]=|<<|>>|.",
        re.S,
    )
    for m in pattern.finditer(text):
        tok = m.group()
        if tok.isspace() or tok.startswith("/*") or tok.startswith("//"):
            continue
        out.append(tok)
    return out
