"""Mutation testing of the generated C: how much of it compare actually holds to the mirror.

Each mutant is one small change to one rendered file, made by an operator a kernel reviewer
would recognise (a relational or arithmetic operator swapped, a constant changed, a condition
negated, a statement deleted, call arguments swapped, an asm constraint or a ``.byte`` value
changed).  Mutants are enumerated deterministically over the code that compare compiles, each
with an id ``file:anchor:operator:n`` anchored to content, not position: the anchor is the
top-level item the mutant is in (a function, a macro, a file-scope initialiser, by name) and n
counts that operator's mutants within it, so an edit elsewhere in the file leaves the id alone.
Each one runs through compare's own pipeline, after the unmutated code has passed it. A mutant
compare catches is killed; one that does not compile is stillborn (counted apart); one that
runs past its time is a hang, which compare would report too, so it counts as killed. A
survivor must be killed by better cases, a truer harness or model, or be listed with its reason
in the reviewed file of equivalent mutants (``tests/mutation/equivalent.yaml``), where an entry
that matches no mutant any more is an error.
"""

from __future__ import annotations

import difflib
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import ctext
from .diagnostics import Diagnostic, Mark, SpecError, plural
from .model import Spec
from .mutation_ops import OPERATORS
from .record import record

# What each mutant runs: seed and case count of tests/test_mutants.py, whose hand-written
# defects are all caught at this count (every boundary case comes first), at -O2.
SEED = 7
CASES = 160
OPTS = ("-O2",)
MUTANT_TIMEOUT = 180  # seconds a mutant may take in all; past that it is a hang (killed)


# --- a small C tokenizer ---------------------------------------------------------------------


@record
class Tok:
    kind: str  # ident, number, string, char, punct
    text: str
    start: int
    end: int


_TOKEN = re.compile(
    r"(?P<space>[ \t\r\f\v]+|\\\n)"
    r"|(?P<newline>\n)"
    r"|(?P<comment>/\*.*?\*/|//[^\n]*)"
    r'|(?P<string>"(?:\\.|[^"\\\n])*")'
    r"|(?P<char>'(?:\\.|[^'\\\n])*')"
    r"|(?P<number>(?:0[xX][0-9a-fA-F]+|\d+)[uUlL]*\b)"
    r"|(?P<ident>[A-Za-z_]\w*)"
    r"|(?P<punct><<=|>>=|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^]=|\.\.\.|[^\s])",
    re.S,
)


def tokenize(text: str) -> list[Tok]:
    """The tokens of C code in ``text``: comments dropped; preprocessor lines dropped except
    the body of a ``#define`` (after its name and parameters), which is code."""
    out: list[Tok] = []
    i, n = 0, len(text)
    line_start = True
    while i < n:
        m = _TOKEN.match(text, i)
        if m is None:  # an unterminated literal or comment: not code this reader follows
            raise ctext.CTextError("unterminated comment or literal", i)
        kind = m.lastgroup or "punct"
        if kind == "newline":
            line_start = True
        elif kind == "punct" and m.group() == "#" and line_start:
            end = ctext._pp_end(text, i)
            d = re.match(r"#\s*define\s+[A-Za-z_]\w*(\([^)]*\))?", text[i:end])
            if d:
                at = i + d.end()
                out += [
                    Tok(t.kind, t.text, t.start + at, t.end + at) for t in tokenize(text[at:end])
                ]
            i = end
            continue
        elif kind not in ("space", "comment"):
            line_start = False
            out.append(Tok(kind, m.group(), m.start(), m.end()))
        i = m.end()
    return out


# --- mutants ---------------------------------------------------------------------------------


@record
class Mutant:
    id: str  # file:anchor:operator:n (the item around it: see _anchors)
    spec: str  # the spec's path
    file: str  # the generated file, as render names it: "pvalidate/arch/x86/include/asm/sev.h"
    operator: str
    start: int
    end: int
    replacement: str

    def apply(self, text: str) -> str:
        return text[: self.start] + self.replacement + text[self.end :]

    def diff(self, text: str, context: int = 2) -> str:
        return "".join(difflib.unified_diff(
            text.splitlines(True), self.apply(text).splitlines(True),
            f"a/generated/{self.file}", f"b/generated/{self.file}", n=context))  # fmt: skip

    def changed_lines(self, text: str) -> list[str]:
        """The - and + lines of its diff: what an equivalents entry names."""
        return [ln.rstrip("\n") for ln in self.diff(text, 0).splitlines(True)[2:]
                if ln[:1] in "-+"]  # fmt: skip


RELATIONAL = ("<", "<=", ">", ">=", "==", "!=")
ARITHMETIC = {
    "+": ("-", "*"), "-": ("+",), "*": ("/", "+"), "/": ("*",), "%": ("*",),
    "<<": (">>",), ">>": ("<<",), "&": ("|", "^"), "|": ("&", "^"), "^": ("|", "&"),
    "+=": ("-=",), "-=": ("+=",), "*=": ("/=",), "/=": ("*=",), "<<=": (">>=",), ">>=": ("<<=",),
    "&=": ("|=",), "|=": ("&=",), "^=": ("|=",), "++": ("--",), "--": ("++",),
}  # fmt: skip
KEYWORDS = {
    "if", "while", "for", "switch", "return", "sizeof", "asm", "__asm__", "__asm", "volatile",
    "__volatile__", "typeof", "__typeof__", "__attribute__", "_Static_assert", "do", "else",
    "case", "goto", "defined", "alignof", "_Alignof", "__alignof__",
}  # fmt: skip
TYPES = {
    "void", "char", "short", "int", "long", "unsigned", "signed", "bool", "_Bool", "u8", "u16",
    "u32", "u64", "s8", "s16", "s32", "s64", "phys_addr_t", "size_t", "const", "struct", "union",
    "enum",
}  # fmt: skip
REGISTERS = "abcdSD"  # the constraint letters of RAX, RBX, RCX, RDX, RSI, RDI
_OPERAND_END = ("ident", "number", "string", "char")


def _is_binary(toks: list[Tok], i: int) -> bool:
    """Whether the operator at ``toks[i]`` is binary (not unary, not a pointer declarator)."""
    if i == 0 or i + 1 >= len(toks):
        return False
    prev, nxt = toks[i - 1], toks[i + 1]
    if not (prev.kind in _OPERAND_END or prev.text in (")", "]")):
        return False
    if prev.kind == "ident" and (prev.text in KEYWORDS or prev.text in TYPES):
        return False
    declarator = nxt.text in (")", ",", "*") or (
        i >= 2 and toks[i - 2].text in ("struct", "union", "enum")
    )
    return not (toks[i].text in ("*", "&") and declarator)


def _literal(value: int, like: str) -> str:
    """``value`` written as the literal ``like`` is: hex stays hex, the suffix stays."""
    suffix = re.search(r"[uUlL]*$", like).group()  # type: ignore[union-attr]  # matches "" at worst
    hexa = like[:2].lower() == "0x"
    mag = f"{abs(value):#x}" if hexa else str(abs(value))
    return f"(-{mag}{suffix})" if value < 0 else mag + suffix


def _constants(value: int) -> list[int]:
    out = []
    for v in (0, 1, -1, value - 1, value + 1, 2 * value):
        if v != value and v not in out and (v >= -1):
            out.append(v)
    return out


def _close(toks: list[Tok], i: int) -> int:
    """Index of the token that closes the bracket at ``toks[i]``."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    depth = 0
    for j in range(i, len(toks)):
        t = toks[j].text
        if t in pairs:
            depth += 1
        elif t in (")", "]", "}"):
            depth -= 1
            if depth == 0:
                return j
    raise ctext.CTextError("unclosed bracket", toks[i].start)


def _split_args(toks: list[Tok], open_: int, close: int) -> list[tuple[int, int]]:
    """(first, last+1) token index of each comma-separated argument between the brackets."""
    out, depth, first = [], 0, open_ + 1
    for j in range(open_ + 1, close):
        t = toks[j].text
        if t in "([{":
            depth += 1
        elif t in ")]}":
            depth -= 1
        elif t == "," and depth == 0:
            out.append((first, j))
            first = j + 1
    if first < close:
        out.append((first, close))
    return out


def _compiled_spans(text: str, defined: set[str]) -> list[tuple[int, int]]:
    """The spans of ``text`` the compare build compiles.  The branch of an #ifdef or #ifndef
    (or ``#if [!]defined(X)``) on a symbol that build leaves out, and the other branch of one
    it keeps, are not code compare can run; any other #if is taken as compiled both ways."""
    spans, start, pos = [], 0, 0
    stack: list[tuple[bool, bool | None]] = []  # (live around it, its condition: None unknown)
    live = True
    for line in text.splitlines(True):
        m = re.match(r"\s*#\s*(ifdef|ifndef|if|else|elif|endif)\b\s*(.*)", line)
        if m:
            word, rest = m.groups()
            was = live
            if word in ("ifdef", "ifndef", "if"):
                cond: bool | None = None
                d = re.fullmatch(r"(!?)\s*defined\s*\(?\s*([A-Za-z_]\w*)\s*\)?\s*", rest)
                if word != "if":
                    cond = rest.split()[0] in defined if rest.split() else None
                    cond = cond if word == "ifdef" or cond is None else not cond
                elif d:
                    cond = (d.group(2) in defined) != bool(d.group(1))
                stack.append((live, cond))
                live = live and cond is not False
            elif word in ("else", "elif") and stack:
                around, cond = stack[-1]
                live = around and cond is not True
            elif word == "endif" and stack:
                live = stack.pop()[0]
            if was and not live:
                spans.append((start, pos))
            elif live and not was:
                start = pos + len(line)
        pos += len(line)
    if live:
        spans.append((start, pos))
    return spans


def enumerate_file(spec_path: str, name: str, text: str,
                   defined: frozenset[str] | set[str] = frozenset()) -> list[Mutant]:  # fmt: skip
    """Every mutant of one generated file, in a fixed order."""
    toks = tokenize(text)
    spans = _compiled_spans(text, set(defined))
    toks = [t for t in toks if any(a <= t.start < b for a, b in spans)]
    found: list[
        tuple[int, str, int, int, str]
    ] = []  # (position, operator, start, end, replacement)

    def add(pos: int, op: str, start: int, end: int, new: str) -> None:
        found.append((pos, op, start, end, new))

    bodies = _function_bodies(text)
    in_body = lambda off: any(a <= off < b for a, b in bodies)  # noqa: E731
    asm_spans: list[tuple[int, int]] = []
    for i, t in enumerate(toks):
        if t.text in ("asm", "__asm__", "__asm"):
            j = i + 1
            while j < len(toks) and toks[j].text in ("volatile", "__volatile__", "inline", "goto"):
                j += 1
            if j < len(toks) and toks[j].text == "(":
                close = _close(toks, j)
                asm_spans.append((toks[j].start, toks[close].end))
                _asm_mutants(text, toks, j, close, add)
    in_asm = lambda off: any(a <= off < b for a, b in asm_spans)  # noqa: E731
    for i, t in enumerate(toks):
        if in_asm(t.start):
            continue
        if t.kind == "punct" and t.text in RELATIONAL and _is_binary(toks, i):
            for new in RELATIONAL:
                if new != t.text:
                    add(t.start, "relational", t.start, t.end, new)
        elif t.kind == "punct" and t.text in ("&&", "||"):
            add(t.start, "logical", t.start, t.end, "||" if t.text == "&&" else "&&")
        elif t.kind == "punct" and t.text in ARITHMETIC and (t.text in ("++", "--") or "=" in t.text
                                                             or _is_binary(toks, i)):  # fmt: skip
            for new in ARITHMETIC[t.text]:
                add(t.start, "arithmetic", t.start, t.end, new)
        elif t.kind == "number":
            value = int(re.sub(r"[uUlL]+$", "", t.text), 0)
            for v in _constants(value):
                add(t.start, "constant", t.start, t.end, _literal(v, t.text))
        elif t.kind == "ident" and t.text in ("true", "false"):
            add(t.start, "boolean", t.start, t.end, "false" if t.text == "true" else "true")
        elif t.kind == "ident" and t.text in ("if", "while", "for") and in_body(t.start):
            j = i + 1
            if j < len(toks) and toks[j].text == "(":
                close = _close(toks, j)
                if t.text == "for":
                    semis = [k for k in range(j + 1, close) if toks[k].text == ";"]
                    if len(semis) != 2 or semis[1] == semis[0] + 1:
                        continue
                    a, b = semis[0] + 1, semis[1] - 1
                else:
                    a, b = j + 1, close - 1
                s, e = toks[a].start, toks[b].end
                add(t.start, "negate", s, e, f"!({text[s:e]})")
        elif (
            t.kind == "ident"
            and t.text not in KEYWORDS
            and in_body(t.start)
            and i + 1 < len(toks)
            and toks[i + 1].text == "("
            and not (i and (toks[i - 1].text in TYPES or toks[i - 1].kind == "ident"))
        ):
            close = _close(toks, i + 1)
            args = _split_args(toks, i + 1, close)
            for (a1, b1), (a2, b2) in zip(args, args[1:], strict=False):
                x, y = (
                    text[toks[a1].start : toks[b1 - 1].end],
                    text[toks[a2].start : toks[b2 - 1].end],
                )
                if x != y:
                    add(
                        t.start,
                        "swap-args",
                        toks[a1].start,
                        toks[b2 - 1].end,
                        y + text[toks[b1 - 1].end : toks[a2].start] + x,
                    )
    for a, b in bodies:
        if any(s <= a < e for s, e in spans):
            _delete_mutants(text, a, b, add)
    found.sort(key=lambda f: f[0])
    anchor = _anchors(text)
    counts: dict[tuple[str, str], int] = {}
    out = []
    for pos, op, start, end, new in found:
        where = anchor(pos)
        n = counts.get((where, op), 0)
        counts[(where, op)] = n + 1
        out.append(Mutant(f"{name}:{where}:{op}:{n}", spec_path, name, op, start, end, new))
    return out


def _anchors(text: str):
    """The anchor of a mutant's id at an offset: the name of the top-level item around it (a
    function, a #define, a file-scope variable or initialiser, an enum: ``ctext.items``), or its
    kind when it has no name.  Mutants are numbered per anchor and operator, so an edit outside
    an item leaves the ids of the mutants inside it alone."""
    spans = [(it.code, it.end, it.name or it.kind) for it in ctext.items(text)]

    def anchor(pos: int) -> str:
        for a, b, what in spans:
            if a <= pos < b:
                return what
        return "file-scope"

    return anchor


def _function_bodies(text: str) -> list[tuple[int, int]]:
    return [ctext.function_body(text, it) for it in ctext.items(text) if it.kind == "function"]


_FLAG_ALTERNATIVES = {"c": ("nc", "z"), "nc": ("c", "nz"), "z": ("nz", "c"), "nz": ("z", "nc")}


def _asm_mutants(text: str, toks: list[Tok], open_: int, close: int, add) -> None:
    """Constraint letters swapped or changed, clobbers dropped, .byte values changed."""
    sections: list[list[int]] = [[]]
    depth = 0
    for j in range(open_ + 1, close):
        punct = toks[j].text
        if punct in ("(", "[", "{"):
            depth += 1
        elif punct in (")", "]", "}"):
            depth -= 1
        if punct == ":" and depth == 0:
            sections.append([])
        else:
            sections[-1].append(j)
    template = [toks[j] for j in sections[0] if toks[j].kind == "string"]
    for s in template:
        body = s.text[1:-1]
        m = re.match(r"\s*\.byte\s+", body)
        if not m:
            continue
        for b in re.finditer(r"0[xX][0-9a-fA-F]+|\d+", body[m.end() :]):
            value = int(b.group(), 0)
            at = s.start + 1 + m.end() + b.start()
            for v in ((value + 1) & 0xFF, (value - 1) & 0xFF):
                add(at, "byte", at, at + len(b.group()), f"{v:#04x}")
    operands = []  # (string token, prefix, letter)
    for sec in sections[1:3]:
        for j in sec:
            t = toks[j]
            if t.kind == "string" and j + 1 < len(toks) and toks[j + 1].text == "(":
                c = re.fullmatch(r'"([=+&]*)(@cc)?([a-zA-Z]+)"', t.text)
                if c:
                    operands.append((t, c.group(1) + (c.group(2) or ""), c.group(3)))
    letters = {letter for _, pre, letter in operands if "@cc" not in pre and letter in REGISTERS}
    for k, (t, pre, letter) in enumerate(operands):
        if "@cc" in pre:
            for new in _FLAG_ALTERNATIVES.get(letter, ()):
                add(t.start, "constraint", t.start, t.end, f'"{pre}{new}"')
            continue
        if letter not in REGISTERS:
            continue
        for t2, pre2, letter2 in operands[k + 1 :]:
            if "@cc" not in pre2 and letter2 in REGISTERS and letter2 != letter:
                # one mutant that exchanges two operands' registers
                add(
                    t.start,
                    "constraint",
                    t.start,
                    t2.end,
                    f'"{pre}{letter2}"' + text[t.end : t2.start] + f'"{pre2}{letter}"',
                )
        for new in REGISTERS:
            if new not in letters:
                add(t.start, "constraint", t.start, t.end, f'"{pre}{new}"')
    if len(sections) > 3:
        clob = [toks[j] for j in sections[3] if toks[j].kind == "string"]
        for k, t in enumerate(clob):
            if len(clob) == 1:
                continue  # an empty clobber list: the same as dropping the section
            if k + 1 < len(clob):
                add(t.start, "constraint", t.start, clob[k + 1].start, "")
            else:
                add(t.start, "constraint", clob[k - 1].end, t.end, "")


_DECLARATION = re.compile(
    r"(?:(?:const|static|unsigned|signed|volatile|struct|union|enum)\s+)*[A-Za-z_]\w*[\s*]+"
    r"[A-Za-z_]\w*\s*(?:=|;|,|\[)", re.S)  # fmt: skip


def _delete_mutants(text: str, a: int, b: int, add) -> None:
    masked = ctext.mask(text)
    for s in ctext.walk(ctext.statements(text, a, b, masked)):
        code = text[s.code : s.end].rstrip()
        end = s.code + len(code)
        if not code or code == ";" or code.endswith(":") or code.startswith("{"):
            continue
        if s.keyword not in ("return", "goto") and _DECLARATION.match(code):
            continue
        before = masked[: s.code].rstrip()
        body = before.endswith(")") or re.search(r"\b(?:else|do)$", before)
        if body:  # the only statement of an if, a loop or an else: an empty block instead
            add(s.code, "delete", s.code, end, "{}")
            continue
        ls = text.rfind("\n", 0, s.code) + 1
        le = text.find("\n", end)
        le = len(text) if le < 0 else le + 1
        if text[ls : s.code].strip() == "" and text[end:le].strip() == "":
            add(s.code, "delete", ls, le, "")
        else:
            add(s.code, "delete", s.code, end, "")


def kconfig_symbols(spec: Spec) -> set[str]:
    """What the compare build defines (build._kconfig): the code under other #ifdef branches
    is never compiled there, so it holds no mutant."""
    from .build import _kconfig

    return set(re.findall(r"#define (\w+)", _kconfig(spec)))


def spec_mutants(spec: Spec, files: dict[str, str]) -> list[Mutant]:
    """Every mutant of the files rendered for ``spec`` (each one compare compiles: the sweep
    includes every header fragment, the helper unit the helper header)."""
    defined = kconfig_symbols(spec)
    return [
        m for path in sorted(files) for m in enumerate_file(spec.path, path, files[path], defined)
    ]


# --- the reviewed equivalents -------------------------------------------------------------------


@record
class Equivalent:
    id: str
    diff: tuple[str, ...]  # the - and + lines of the mutant's diff
    reason: str
    mark: Mark


def load_equivalents(path: Path) -> list[Equivalent]:
    """The entries of an equivalents file: a list of {id, diff, reason}; problems as SpecError."""
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    from .yamlsource import compose, node_mark, read_text

    shown = str(path)
    text = read_text(path, shown)
    node, problems = compose(text, shown)
    if problems:
        raise SpecError(problems)
    if node is None:
        return []
    if not isinstance(node, SequenceNode):
        raise SpecError(
            [Diagnostic(node_mark(shown, node), "expected a list of {id, diff, reason}")]
        )
    out: list[Equivalent] = []
    errors: list[Diagnostic] = []
    seen: dict[str, Mark] = {}
    for item in node.value:
        where = node_mark(shown, item)
        if not isinstance(item, MappingNode):
            errors.append(Diagnostic(where, "expected a mapping with id, diff and reason"))
            continue
        fields = {}
        for k, v in item.value:
            if not isinstance(k, ScalarNode) or k.value not in ("id", "diff", "reason"):
                errors.append(Diagnostic(node_mark(shown, k), f"unknown key {getattr(k, 'value', k)!r}: "
                                         "an entry has id, diff and reason"))  # fmt: skip
            elif not isinstance(v, ScalarNode) or not str(v.value).strip():
                errors.append(Diagnostic(node_mark(shown, v), f"{k.value} must be non-empty text"))
            else:
                fields[k.value] = str(v.value)
        missing = [f for f in ("id", "diff", "reason") if f not in fields]
        if missing:
            errors.append(Diagnostic(where, f"missing {', '.join(missing)}"))
            continue
        if fields["id"] in seen:
            errors.append(Diagnostic(where, f"{fields['id']} is listed twice (first at line "
                                     f"{seen[fields['id']].line})"))  # fmt: skip
            continue
        seen[fields["id"]] = where
        diff = tuple(ln for ln in fields["diff"].splitlines() if ln.strip())
        out.append(Equivalent(fields["id"], diff, fields["reason"].strip(), where))
    if errors:
        raise SpecError(errors)
    return out


def _entry_scope(entry_id: str) -> tuple[str, str]:
    """(spec mnemonic, operator) of a mutant id: "pvalidate/...h:pvalidate:negate:0" -> (pvalidate, negate)."""
    parts = entry_id.rsplit(":", 3)
    return entry_id.split("/", 1)[0], parts[2] if len(parts) == 4 else ""


def stale(entries: list[Equivalent], mutants: list[Mutant], files: dict[str, str],
          scope: set[tuple[str, str]]) -> list[Diagnostic]:  # fmt: skip
    """Entries of ``scope`` ((spec mnemonic, operator) enumerated) that name no mutant, or whose
    mutant's diff is no longer the one that was reviewed: each an error, so the file cannot rot.
    ``files`` holds the rendered files by the name the mutants give them."""
    by_id = {m.id: m for m in mutants}
    out = []
    for e in entries:
        if _entry_scope(e.id) not in scope:
            continue
        m = by_id.get(e.id)
        if m is None:
            out.append(Diagnostic(e.mark, f"stale: no mutant {e.id} any more; remove the entry or "
                                  "review the mutant that replaced it"))  # fmt: skip
            continue
        now = tuple(m.changed_lines(files[m.file]))
        if tuple(x.strip() for x in now) != tuple(x.strip() for x in e.diff):
            out.append(Diagnostic(e.mark, f"stale: mutant {e.id} is now {' / '.join(now)!r}, not the "
                                  "one reviewed; review it again"))  # fmt: skip
    return out


# --- running the mutants ------------------------------------------------------------------------


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed, survived, stillborn, equivalent, error
    detail: str = ""  # how it was killed (the first mismatch, a hang), why it is stillborn
    seconds: float = 0.0


@dataclass
class Plan:
    """What a run compiles and executes for each mutant."""

    compilers: tuple
    seed: int = SEED
    cases: int = CASES
    opts: tuple[str, ...] = OPTS
    timeout: float = MUTANT_TIMEOUT


def engines(spec: Spec):
    """(native or None, emulator): natively where the host can trap the spec's bytes."""
    from .host import EngineRefused, choose_engine

    try:
        native = choose_engine("native", spec)
    except EngineRefused:
        native = None
    emulator = choose_engine("emulator", spec)
    return (native if native is not None and native.engine == "native" else None), emulator


def run_mutant(spec: Spec, files: dict[str, str], m: Mutant, plan: Plan) -> tuple[str, str]:
    """Compare one mutant, then hold a survivor to the review rules: its status and a detail."""
    from . import compare as cmp
    from .build import BuildError
    from .execcheck import UnsafeCode, check_sources

    mutated = dict(files)
    mutated[m.file] = m.apply(files[m.file])
    native, emulator = engines(spec)
    engine = native or emulator
    if native is not None:
        try:
            check_sources(spec, mutated)
        except UnsafeCode:  # an asm statement that is not the spec's: only the emulator runs it
            engine = emulator
    for attempt in (engine, emulator):
        try:
            result = cmp.compare(spec, plan.compilers, attempt, plan.seed, plan.cases, plan.opts,
                                 files=mutated, workers=0)  # fmt: skip
        except BuildError as exc:
            return "stillborn", str(exc).splitlines()[-1][:200] if str(exc) else "does not compile"
        except UnsafeCode as exc:
            if attempt is emulator:
                return "error", str(exc)
            continue  # code the native engine will not run: emulate it
        if result.ok:  # compare cannot tell: kgen validate's review rules may
            found = review_kill(spec, files, mutated)
            return ("killed", found) if found else ("survived", "")
        x = result.mismatches[0]
        return "killed", f"case {x.case} at {x.opt}: expected {x.expected!r}, got {x.got!r}"[:300]
    return "error", "no engine ran it"


def review_kill(spec: Spec, files: dict[str, str], mutated: dict[str, str]) -> str:
    """The first kernel review rule (kgen validate) the mutant breaks and the original keeps."""
    from .review import review

    skip = frozenset(r.rule for r in spec.kernel.review.skip) if spec.kernel.review else frozenset()
    before = set(review(spec, files, skip))
    new = [(rule, msg) for rule, msg in review(spec, mutated, skip) if (rule, msg) not in before]
    return f"review [{new[0][0]}]: {new[0][1]}"[:300] if new else ""


def _child(conn, spec: Spec, files: dict[str, str], m: Mutant, plan: Plan) -> None:
    from .compare import _worker_init

    _worker_init()
    try:
        status, detail = run_mutant(spec, files, m, plan)
    except Exception as exc:  # reported, never lost
        status, detail = "error", f"{type(exc).__name__}: {exc}"
    conn.send((status, detail))
    conn.close()


def run(work: list[tuple[Spec, dict[str, str], Mutant]], plan: Plan, jobs: int,
        progress=None) -> list[Outcome]:  # fmt: skip
    """Run every mutant in its own process, ``jobs`` at a time; one that runs past
    ``plan.timeout`` is killed with what it started, and counted as a hang (killed)."""
    import multiprocessing
    from multiprocessing.connection import wait

    from .compare import remember_expected

    for spec in {id(s): s for s, _, _ in work}.values():
        remember_expected(spec, plan.seed, plan.cases)  # once, inherited by every fork
    ctx = multiprocessing.get_context("fork")
    pending = list(enumerate(work))[::-1]
    running: dict = {}  # sentinel -> (index, process, connection, start)
    outcomes: list[Outcome | None] = [None] * len(work)
    done = 0
    try:
        while pending or running:
            while pending and len(running) < max(jobs, 1):
                k, (spec, files, m) = pending.pop()
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(send, spec, files, m, plan))
                proc.start()
                send.close()
                running[proc.sentinel] = (k, proc, recv, time.monotonic())
            ready = wait(list(running), timeout=0.5)
            now = time.monotonic()
            for sentinel in list(running):
                k, proc, recv, start = running[sentinel]
                m = work[k][2]
                if sentinel in ready:
                    try:
                        status, detail = recv.recv() if recv.poll() else ("error", "")
                    except (EOFError, OSError):
                        status, detail = "error", ""
                    proc.join()
                    if status == "error" and not detail:
                        detail = f"the run died ({proc.exitcode})"
                elif now - start > plan.timeout:
                    _terminate(proc)
                    status, detail = "killed", f"hang: still running after {plan.timeout:.0f} s"
                else:
                    continue
                recv.close()
                del running[sentinel]
                outcomes[k] = Outcome(m, status, detail, now - start)
                done += 1
                if progress:
                    progress(done, len(work), outcomes[k])
    finally:
        for _, proc, recv, _ in running.values():
            _terminate(proc)
            recv.close()
    return [o for o in outcomes if o is not None]


def _terminate(proc) -> None:
    """SIGTERM: the run kills the harness it started (compare._worker_init); then SIGKILL."""
    if proc.is_alive():
        proc.terminate()
        proc.join(1)
    if proc.is_alive():
        proc.kill()
        proc.join(1)


# --- the report ---------------------------------------------------------------------------------


@dataclass
class Score:
    mutants: int = 0
    killed: int = 0
    survived: int = 0
    equivalent: int = 0
    stillborn: int = 0
    errors: int = 0

    def add(self, status: str) -> None:
        self.mutants += 1
        setattr(self, {"error": "errors"}.get(status, status),
                getattr(self, {"error": "errors"}.get(status, status)) + 1)  # fmt: skip

    @property
    def score(self) -> float | None:
        """Killed among the mutants that compiled and are not equivalent."""
        live = self.killed + self.survived + self.errors
        return self.killed / live if live else None

    def text(self) -> str:
        s = self.score
        pct = "n/a" if s is None else f"{100 * s:.1f} %"
        live = self.killed + self.survived + self.errors
        return (f"{pct} ({self.killed} killed of {live}; {self.equivalent} equivalent, "
                f"{self.stillborn} stillborn, {plural(self.mutants, 'mutant')})")  # fmt: skip

    def json(self) -> dict:
        return {"mutants": self.mutants, "killed": self.killed, "survived": self.survived,
                "equivalent": self.equivalent, "stillborn": self.stillborn, "errors": self.errors,
                "score": self.score}  # fmt: skip


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    texts: dict[str, str] = field(default_factory=dict)  # the rendered files, by mutant file name
    plan: Plan | None = None

    def by(self, key) -> dict[str, Score]:
        out: dict[str, Score] = {}
        for o in self.outcomes:
            out.setdefault(key(o), Score()).add(o.status)
        return out

    @property
    def total(self) -> Score:
        s = Score()
        for o in self.outcomes:
            s.add(o.status)
        return s

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in ("survived", "error")]

    @property
    def ok(self) -> bool:
        return not self.failures


class BaselineFailed(Exception):
    """The unmutated code fails the run a mutant gets: every mutant would count as killed."""


def baseline(
    rendered: list[tuple[Spec, dict[str, str]]], plan: Plan, jobs: int | None = None
) -> None:
    """Run each spec's unmutated files as a mutant is run (same plan, engine and timeout);
    raise BaselineFailed unless every one passes: a kill means something only when the
    original is not killed too."""
    work = []
    for spec, files in rendered:
        first = sorted(files)[0]
        work.append((spec, files, Mutant(f"{first}:unmutated", spec.path, first, "none", 0, 0, "")))
    failed = [o for o in run(work, plan, jobs or os.cpu_count() or 1) if o.status != "survived"]
    if failed:
        raise BaselineFailed("\n".join(
            f"{o.mutant.spec}: error: the unmutated code does not pass what each mutant runs "
            f"({o.status}: {o.detail}); every mutant would count as killed" for o in failed))  # fmt: skip


def select(
    mutants: list[Mutant], operators: tuple[str, ...], sample: int | None, seed: int
) -> list[Mutant]:
    """The mutants of the named operators; with ``sample``, that many of them drawn with ``seed``
    (the same ones on every run), in enumeration order."""
    chosen = [m for m in mutants if not operators or m.operator in operators]
    if sample is not None and sample < len(chosen):
        keep = set(random.Random(seed).sample(range(len(chosen)), sample))
        chosen = [m for k, m in enumerate(chosen) if k in keep]
    return chosen


def mutate(specs: list[Spec], plan: Plan, equivalents: list[Equivalent],
           operators: tuple[str, ...] = (), sample: int | None = None, sample_seed: int = 0,
           jobs: int | None = None, progress=None) -> Report:  # fmt: skip
    """Enumerate, check the equivalents for staleness (SpecError), check that the unmutated
    code passes (BaselineFailed), and run what is left."""
    from .render import render_spec

    start = time.perf_counter()
    every, texts, rendered = [], {}, []
    for spec in specs:
        files = render_spec(spec)
        texts.update(files)
        rendered.append((spec, files))
        every += [(spec, files, m) for m in spec_mutants(spec, files)]
    scope = {(spec.instruction.mnemonic, op) for spec in specs for op in operators or OPERATORS}
    problems = stale(equivalents, [m for _, _, m in every], texts, scope)
    if problems:
        raise SpecError(problems)
    baseline(rendered, plan, jobs)
    reasons = {e.id: e.reason for e in equivalents}
    chosen = {id(m) for m in select([m for _, _, m in every], operators, sample, sample_seed)}
    report = Report(texts=texts, plan=plan)
    todo = []
    for spec, files, m in every:
        if id(m) not in chosen:
            continue
        if m.id in reasons:
            report.outcomes.append(Outcome(m, "equivalent", reasons[m.id]))
        else:
            todo.append((spec, files, m))
    report.outcomes += run(todo, plan, jobs or os.cpu_count() or 1, progress)
    order = {id(m): k for k, (_, _, m) in enumerate(every)}
    report.outcomes.sort(key=lambda o: order[id(o.mutant)])
    report.seconds = time.perf_counter() - start
    return report


def text_report(report: Report) -> list[str]:
    """The score of each spec and operator, then each survivor with its diff."""
    out = []
    specs = report.by(lambda o: o.mutant.spec)
    for spec, score in specs.items():
        out.append(f"{spec}: {score.text()}")
        ops = report.by(lambda o, spec=spec: o.mutant.operator if o.mutant.spec == spec else "")
        for op in OPERATORS:
            if op in ops:
                out.append(f"  {op:<11} {ops[op].text()}")
    review = sum(o.status == "killed" and o.detail.startswith("review [") for o in report.outcomes)
    hangs = sum(o.status == "killed" and o.detail.startswith("hang") for o in report.outcomes)
    total = report.total
    out.append(f"total: {total.text()}")
    plan = report.plan
    if plan is not None:
        out.append(f"  each mutant: compare with {' and '.join(c.family for c in plan.compilers)} at "
                   f"{' '.join(plan.opts)}, seed {plan.seed}, {plan.cases} cases, then kgen validate's "
                   f"review rules; {review} killed only by a review rule, "
                   f"{hangs} by a hang; {report.seconds:.1f} s")  # fmt: skip
    for o in report.failures:
        what = "survivor" if o.status == "survived" else f"error ({o.detail})"
        out.append(f"{what}: {o.mutant.id}")
        out.append(o.mutant.diff(report.texts[o.mutant.file]).rstrip("\n"))
    return out


def json_report(report: Report) -> dict:
    by_op = report.by(lambda o: o.mutant.operator)
    return {
        "ok": report.ok,
        "seconds": round(report.seconds, 3),
        "plan": None if report.plan is None else {
            "compilers": [c.family for c in report.plan.compilers], "opts": list(report.plan.opts),
            "seed": report.plan.seed, "cases": report.plan.cases},
        "total": report.total.json() | {
            "killed_by_review": sum(o.status == "killed" and o.detail.startswith("review [") for o in report.outcomes),
            "hangs": sum(o.status == "killed" and o.detail.startswith("hang") for o in report.outcomes)},
        "specs": [{"spec": k} | v.json() for k, v in report.by(lambda o: o.mutant.spec).items()],
        "operators": {op: by_op[op].json() for op in OPERATORS if op in by_op},
        "mutants": [{"id": o.mutant.id, "operator": o.mutant.operator, "status": o.status,
                     "detail": o.detail, "seconds": round(o.seconds, 3),
                     **({"diff": o.mutant.diff(report.texts[o.mutant.file])}
                        if o.status in ("survived", "error") else {})}
                    for o in report.outcomes],
    }  # fmt: skip
