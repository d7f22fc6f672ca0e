"""Generated code in a real kernel tree: what kgen changes there, found by name, and how.

A spec's code goes into a tree as *operations* on the tree's own files.  Each one finds
what it owns by name (a function, a #define, an #include, an entry of scattered.c's
table, a call in a named function) and leaves it as the render says: a second run changes
nothing, and after a spec change exactly the generated parts change.  Every operation
belongs to one patch of the series ``kgen patch`` writes, so applying the operations of
the first N patches gives the tree as it is after N commits.

The tree's conventions win where kernels differ: the API spellings and compiler floor
come from :func:`codegen.kernelapi.detect`; the feature bit takes a free slot of the
tree's scattered words when the spec's own slot is taken; new #defines go beside their
neighbours by number; includes go into the tree's include block in its order.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import ctext
from .kernelapi import Profile, detect
from .model import CONSTRAINT_LETTER, CallSite, Spec
from .record import record
from .render import TEMPLATES, outputs, render_spec, worker_functions
from .treeio import Refused, read_below, read_regular


class TreeError(Exception):
    """Something kgen must change in the tree is not there as expected."""

    def __init__(self, path: str, message: str, line: int | None = None, col: int | None = None):
        where = path if line is None else f"{path}:{line}:{col or 1}"
        super().__init__(f"{where}: error: {message}")
        self.path = path
        self.message = message


# --- the tree ---------------------------------------------------------------


@dataclass
class KernelTree:
    root: Path
    version: str
    profile: Profile
    _cache: dict[str, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root: Path) -> KernelTree:
        root = Path(root)
        makefile = root / "Makefile"
        try:
            head = read_regular(makefile)[:4096].decode("ascii", "replace")
        except OSError:
            head = ""
        fields = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL)\s*=\s*(\d*)\s*$", head, re.M))
        if not fields.get("VERSION") or not (root / "arch" / "x86" / "include").is_dir():
            raise TreeError(str(root), "not a Linux kernel tree: kgen looked for a Makefile with "
                                       "VERSION and for arch/x86/include")  # fmt: skip
        version = ".".join(
            fields[k] for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL") if fields.get(k)
        )
        return cls(root, version, detect(root=root))

    def data(self, rel: str) -> bytes:
        """The bytes of the tree's regular file ``rel``, read through no link below the root."""
        if rel not in self._cache:
            path = self.root / rel
            try:
                self._cache[rel] = read_below(self.root, rel)
            except Refused as exc:
                what = "this file" if exc.filename in (None, str(path)) else f"{rel} below it"
                raise TreeError(exc.filename or str(path), f"kgen must change {what}, but it "
                                                           f"{exc.reason}") from None  # fmt: skip
            except OSError:
                raise TreeError(str(path), "kgen must change this file, but it is not in the tree "
                                           "(moved or renamed upstream?)") from None  # fmt: skip
        return self._cache[rel]

    def text(self, rel: str) -> str:
        """The file as text with LF line endings and no byte order mark: see :func:`decode`."""
        try:
            text = decode(self.data(rel))[0]
        except UnicodeDecodeError:
            raise TreeError(str(self.root / rel), "is not UTF-8 text") from None
        if (at := _LONE_CR.search(text)) is not None:
            line = text.count("\n", 0, at.start()) + 1
            raise TreeError(f"{self.root / rel}:{line}", "has a carriage return that ends no CRLF "
                            "line: the compiler breaks the line there and kgen would not")  # fmt: skip
        return text

    def encode(self, rel: str, text: str) -> bytes:
        """``text`` (as :meth:`text` gives it) in the file's own form: its line ending, its BOM."""
        return encode(text, decode(self.data(rel))[1])


BOM = "\ufeff"
_LONE_CR = re.compile(r"\r(?!\n)")


def decode(data: bytes) -> tuple[str, tuple[bool, bool]]:
    """Text with LF line endings and without a UTF-8 byte order mark, and the form to restore:
    (had a BOM, had CRLF line endings).  A file is CRLF when every line ends so; a file of
    mixed endings is left as it is."""
    text = data.decode("utf-8")
    bom = text.startswith(BOM)
    if bom:
        text = text[1:]
    crlf = "\r\n" in text and text.count("\r\n") == text.count("\n")
    if crlf:
        text = text.replace("\r\n", "\n")
    return text, (bom, crlf)


def encode(text: str, form: tuple[bool, bool]) -> bytes:
    bom, crlf = form
    if crlf:
        text = text.replace("\n", "\r\n")
    return ((BOM if bom else "") + text).encode("utf-8")


# --- operations --------------------------------------------------------------


@record
class Patch:
    """One commit of the series: which spec, which step, and what it is about."""

    spec: Spec
    key: str  # cpufeature, msr, helpers, setup, trigger, call:<file>, sibling
    order: int


@record
class Op:
    patch: Patch
    path: str
    what: str  # for messages: "function pvalidate()", "#define MSR_..."

    def apply(self, text: str, tree: KernelTree) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def fail(self, tree: KernelTree, message: str) -> TreeError:
        return TreeError(str(tree.root / self.path), message)


def _header_end(text: str, found: Sequence[ctext.Item]) -> int:
    """Where new code goes in a header: before its include guard's #endif (inside __KERNEL__)."""
    pps = [i for i in found if i.kind == "pp"]
    if not pps or not pps[-1].name.startswith("endif") or text[pps[-1].end :].strip():
        return len(text)
    at = pps[-1].start
    # a block that is always on in the kernel (#ifdef __KERNEL__) ending right before it
    if len(pps) >= 2 and pps[-2].name.startswith("endif") and not text[pps[-2].end : at].strip():
        opener = _opener_of(found, pps[-2])
        if opener is not None and opener.name == "ifdef __KERNEL__":
            at = pps[-2].start
    return at


def default_place(path: str) -> Callable[[str, Sequence[ctext.Item]], int]:
    if path.endswith(".h"):
        return _header_end
    return lambda text, found: len(text)


def _insert(text: str, at: int, block: str, gap: bool) -> str:
    """``block`` (whole lines) at line offset ``at``, with a blank line before it when ``gap``."""
    before = text[:at]
    after = text[at:]
    if before and not before.endswith("\n"):
        before += "\n"
    lead = "\n" if gap and before and not before.endswith("\n\n") else ""
    trail = "\n" if gap and after and not after.startswith("\n") else ""
    return before + lead + block + trail + after


@record
class Upsert(Op):
    """One item found by kind and name: replaced when it differs, inserted when absent."""

    kind: str = ""
    name: str = ""
    body: str = ""  # the item's text, whole lines
    after: tuple[tuple[str, str], ...] = ()  # items it follows, nearest last
    gap: bool = True
    block: tuple[str, str] | None = None  # (conditional, branch) it lives in
    same_value_stays: bool = False  # a #define the tree has with this value is left as it is
    place: Callable[[str, Sequence[ctext.Item]], int] | None = None

    def _eligible(self, item: ctext.Item) -> bool:
        if self.block is not None:
            return item.conditions[-1:] == (self.block,)
        return not any(branch == "else" for _, branch in item.conditions)

    def _found(self, text: str, found: Sequence[ctext.Item], tree: KernelTree) -> ctext.Item | None:
        kinds = {self.kind}
        if self.kind in ("struct-declaration", "struct"):
            kinds = {"struct-declaration", "struct"}
        hits = [i for i in found if i.kind in kinds and i.name == self.name and self._eligible(i)]
        if len(hits) > 1 and self.kind == "function":
            hits = [i for i in hits if "asm" in ctext.tokens(i.code_text(text))] or hits
        if len(hits) > 1:
            lines = ", ".join(str(ctext.line_of(text, i.code)) for i in hits)
            raise self.fail(tree, f"{self.what} is defined {len(hits)} times (lines {lines}): "
                                  "kgen cannot tell which one it owns")  # fmt: skip
        return hits[0] if hits else None

    def apply(self, text: str, tree: KernelTree) -> str:
        found = ctext.items(text)
        hit = self._found(text, found, tree)
        if hit is not None:
            if self.kind == "struct-declaration":
                return text  # the tree declares or defines it already
            if self.same_value_stays and _define_value(hit.code_text(text)) == _define_value(
                self.body
            ):
                return text
            body = self.body
            if self.kind == "define":
                before = [i for i in found if i.end <= hit.start]
                body = _aligned_define(body, text, before[-1] if before else None)
            if self.kind in ("function", "struct", "enum") and self.body.count("\n") > 1:
                # a blank line on either side, as checkpatch wants after a function
                if _starts_item(text, hit.end):
                    body += "\n"
                if _ends_item(text, hit.start):
                    body = "\n" + body
            if text[hit.start : hit.end] == body:
                return text
            return text[: hit.start] + body + text[hit.end :]
        for kind, name in reversed(self.after):
            prev = [i for i in found if i.kind == kind and i.name == name and self._eligible(i)]
            if prev:
                body = self.body
                if self.kind == "define":
                    body = _aligned_define(body, text, prev[-1])
                return _insert(text, prev[-1].end, body, self.gap)
        place = self.place or default_place(self.path)
        return _insert(text, place(text, found), self.body, self.gap)


def _starts_item(text: str, at: int) -> bool:
    """The line at ``at`` starts code or a comment (not a blank line, #else/#endif or a brace)."""
    line = text[at : text.find("\n", at) if "\n" in text[at:] else len(text)]
    return bool(line.strip()) and not re.match(r"\s*(#\s*(else|elif|endif)|[}])", line)


def _ends_item(text: str, at: int) -> bool:
    """The line before ``at`` closes a function, struct or enum."""
    start = text.rfind("\n", 0, max(at - 1, 0)) + 1
    return text[start:at].strip() in ("}", "};")


_DEFINE_LINE = re.compile(r"^(#define[ \t]+\w+)([ \t]+)(\S.*)$", re.M)


def _aligned_define(body: str, text: str, neighbour: ctext.Item | None) -> str:
    """``body``'s #define with its value at the column of the #define it follows in the tree,
    where that one aligns its value with tabs and the name leaves room: a new line among the
    tree's defines keeps their column, not the one its own fragment chose."""
    if neighbour is None or neighbour.kind != "define":
        return body
    theirs = _DEFINE_LINE.search(neighbour.code_text(text))
    mine = _DEFINE_LINE.search(body)
    if theirs is None or mine is None or theirs.group(2).strip("\t"):
        return body
    column = len((theirs.group(1) + theirs.group(2)).expandtabs(8))
    head = mine.group(1)
    width = len(head.expandtabs(8))
    if column % 8 or width >= column:
        return body
    tabs = "\t" * (column // 8 - width // 8)
    return body[: mine.start()] + head + tabs + mine.group(3) + body[mine.end() :]


def _define_value(text: str) -> list[str]:
    toks = ctext.tokens(text)
    return toks[3:] if toks[:2] == ["#", "define"] else toks


@record
class Block(Op):
    """A conditional block of declarations (#ifdef CONFIG_X / #else / #endif), merged into the
    tree's block of the same condition, or added whole when the tree has none."""

    condition: str = ""  # e.g. "ifdef CONFIG_KVM_AMD_SEV"
    then: tuple[Upsert, ...] = ()
    otherwise: tuple[Upsert, ...] = ()
    whole: str = ""
    own: bool = False  # a block of kgen's own, never one the tree has for its code

    def patches(self) -> set[int]:
        return {id(op.patch) for op in self.then + self.otherwise} | {id(self.patch)}

    def apply(self, text: str, tree: KernelTree, chosen: set[int] | None = None) -> str:
        found = ctext.items(text)
        openers = [i for i in found if i.kind == "pp" and i.name == self.condition]
        if self.own:  # the one that holds what it owns, if any
            mine = {(op.kind, op.name) for op in self.then}
            openers = [o for o in openers if any(
                (i.kind, i.name) in mine and i.conditions[-1:] == ((self.condition, "then"),)
                and i.start > o.start and _opener_of(found, i) is o for i in found)]  # fmt: skip
        if not openers:
            if not self.then:
                return text
            if chosen is None or all(id(op.patch) in chosen for op in self.then + self.otherwise):
                return _insert(text, _header_end(text, found), self.whole, True)
            # only some of its declarations yet: open the block with those
            text = _insert(text, _header_end(text, found),
                           f"#{self.condition}\n#else\n#endif /* {self.condition.split()[-1]} */\n", True)  # fmt: skip
            found = ctext.items(text)
            openers = [i for i in found if i.kind == "pp" and i.name == self.condition]
        opener = openers[-1] if len(openers) == 1 else None
        if opener is None:
            raise self.fail(tree, f"#{self.condition} opens {len(openers)} blocks: kgen cannot tell "
                                  "which one holds its declarations")  # fmt: skip
        at = opener.start
        for ops, branch in ((self.then, "then"), (self.otherwise, "else")):
            for op in ops:
                if chosen is None or id(op.patch) in chosen:
                    text = _with_block_place(op, self.condition, branch, at).apply(text, tree)
        return text


def _opener_of(found, item: ctext.Item) -> ctext.Item | None:
    """The #if line that opens the innermost block holding ``item``."""
    depth = 0
    for other in reversed(found[: found.index(item)]):
        if other.kind != "pp":
            continue
        word = other.name.split()[0] if other.name else ""
        if word == "endif":
            depth += 1
        elif word in ("if", "ifdef", "ifndef"):
            if depth == 0:
                return other
            depth -= 1
    return None


def _with_block_place(op: Upsert, condition: str, branch: str, opener_at: int) -> Upsert:
    def place(text: str, found: Sequence[ctext.Item]) -> int:
        depth, inside = 0, False
        for item in found:
            if item.kind != "pp":
                continue
            word = item.name.split()[0] if item.name else ""
            if not inside:
                inside = item.name == condition and item.start >= opener_at
                continue
            if word in ("if", "ifdef", "ifndef"):
                depth += 1
            elif word == "endif" and depth:
                depth -= 1
            elif depth == 0 and (
                (word in ("else", "elif") and branch == "then") or word == "endif"
            ):
                if branch == "else" and word != "endif":
                    continue
                # after the last line of the branch, before the #else / #endif
                return item.start
        return _header_end(text, found)

    return dataclasses.replace(op, gap=False, block=(condition, branch), place=place)


@record
class Include(Op):
    header: str = ""

    def apply(self, text: str, tree: KernelTree) -> str:
        found = ctext.items(text)
        top = [
            i
            for i in found
            if i.kind == "include" and not any(b == "else" for _, b in i.conditions)
        ]
        if any(i.name == self.header for i in found if i.kind == "include"):
            return text
        line = f"#include <{self.header}>\n"
        prefix = self.header.split("/")[0] + "/"
        group = (
            [
                i
                for i in top
                if i.name.startswith(prefix) and len(i.conditions) == len(top[0].conditions)
            ]
            if top
            else []
        )
        if group:
            names = [i.name for i in group]
            if names == sorted(names):
                for i in group:
                    if i.name > self.header:
                        return text[: i.start] + line + text[i.start :]
            return text[: group[-1].end] + line + text[group[-1].end :]
        if top:
            return _insert(text, top[-1].end, line, True)
        raise self.fail(
            tree, f"has no #include lines: kgen looked for where to add <{self.header}>"
        )


@record
class FeatureBit(Op):
    """X86_FEATURE_*: the spec's slot when the tree has it free, else a free scattered slot."""

    name: str = ""
    comment: str = ""

    def apply(self, text: str, tree: KernelTree) -> str:
        found = ctext.items(text)
        if [i for i in found if i.kind == "define" and i.name == self.name]:
            return text
        word, bit = self.slot(text, tree)
        value = f"({word} * 32 + {bit})"
        column = _value_column(text, r"^#define[ \t]+X86_FEATURE_\w+[ \t]+\(")
        line = f"#define {self.name}"
        line += _tabs_to(len(line), column) + f"{value} /* {self.comment} */\n"
        # after the highest bit below ours in the same word
        best = None
        for i in found:
            m = _SLOT.search(i.code_text(text)) if i.kind == "define" else None
            if m and int(m.group(1)) == word and int(m.group(2)) < bit:
                best = i
        if best is not None:
            at = best.end
        else:  # before the lowest bit above ours in the word
            above = [i for i in found if i.kind == "define" and (m := _SLOT.search(i.code_text(text)))
                     and int(m.group(1)) == word and int(m.group(2)) > bit]  # fmt: skip
            at = above[0].code if above else _header_end(text, found)
        return text[:at] + line + text[at:]

    def slot(self, text: str, tree: KernelTree) -> tuple[int, int]:
        spec = self.patch.spec.as_sweep().cpuid
        taken = {(int(w), int(b)) for w, b in _SLOT.findall(text)}
        if (spec.word, spec.word_bit) not in taken:
            return spec.word, spec.word_bit
        ncap = re.search(r"#define\s+NCAPINTS\s+(\d+)", text)
        scattered = tree.text(SCATTERED)
        words = sorted({w for w, _ in taken if _scattered_word(w, text, scattered)}, reverse=True)
        for w in words:
            if ncap and w >= int(ncap.group(1)):
                continue
            for b in range(32):
                if (w, b) not in taken:
                    return w, b
        raise self.fail(tree, f"has no free bit for {self.name}: the spec's ({spec.word}*32+"
                              f"{spec.word_bit}) is taken and every scattered word is full")  # fmt: skip


_SLOT = re.compile(r"\(\s*(\d+)\s*\*\s*32\s*\+\s*(\d+)\s*\)")
SCATTERED = "arch/x86/kernel/cpu/scattered.c"


def _scattered_word(word: int, cpufeatures: str, scattered: str) -> bool:
    """Whether scattered.c sets some feature of ``word`` from CPUID (so a new one can be set there)."""
    names = re.findall(rf"#define\s+(X86_FEATURE_\w+)\s+\(\s*{word}\s*\*\s*32\s*\+", cpufeatures)
    return any(re.search(rf"\{{\s*{n}\s*,", scattered) for n in names)


def _column(text: str) -> int:
    col = 0
    for c in text:
        col = (col // 8 + 1) * 8 if c == "\t" else col + 1
    return col


def _value_column(text: str, pattern: str) -> int:
    """The column where most lines matching ``pattern`` (which ends at the value) put it."""
    cols: dict[int, int] = {}
    for m in re.finditer(pattern, text, re.M):
        col = _column(m.group()[:-1])
        cols[col] = cols.get(col, 0) + 1
    return max(cols, key=cols.__getitem__) if cols else 40


def _tabs_to(col: int, target: int) -> str:
    tabs = ""
    while col < target:
        tabs += "\t"
        col = (col // 8 + 1) * 8
    return tabs or " "


@record
class ScatteredEntry(Op):
    """The entry of scattered.c's cpuid_bits[] that sets the feature from CPUID."""

    name: str = ""

    def apply(self, text: str, tree: KernelTree) -> str:
        c = self.patch.spec.as_sweep().cpuid
        entry = f"\t{{ {self.name},"
        entry += _tabs_to(_column(entry), _value_column(text, r"^\t\{ X86_FEATURE_\w+,[ \t]+C"))
        entry += f"CPUID_{c.register.upper()}, {c.bit:2d}, {c.leaf:#010x}, {c.subleaf or 0} }},\n"
        lines = text.splitlines(keepends=True)
        start = next(
            (n for n, line in enumerate(lines) if re.search(r"\bcpuid_bits\s*\[\]\s*=", line)), None
        )
        if start is None:
            raise self.fail(tree, "has no cpuid_bits[] table: kgen looked for it to add "
                                  f"{self.name}")  # fmt: skip
        end = start
        for n in range(start + 1, len(lines)):
            if lines[n].startswith("};"):
                end = n
                break
        for n in range(start + 1, end):
            if re.search(rf"\{{\s*{self.name}\s*,", lines[n]):
                if lines[n] == entry:
                    return text
                lines[n] = entry
                return "".join(lines)
        at = end
        for n in range(start + 1, end):
            m = re.search(r"\{\s*(\w+)\s*,\s*\w+\s*,\s*\d+\s*,\s*(0x[0-9a-fA-F]+|\d+)", lines[n])
            if m and m.group(1) != "0" and int(m.group(2), 0) > c.leaf:
                at = n
                break
            if re.search(r"\{\s*0\s*,\s*0\s*,", lines[n]):
                at = n
                break
        lines.insert(at, entry)
        return "".join(lines)


@record
class MsrDefine(Op):
    """The MSR's #defines, placed after the tree's MSR with the nearest lower number."""

    ops: tuple[Upsert, ...] = ()
    number: int = 0

    def apply(self, text: str, tree: KernelTree) -> str:
        def place(text: str, found: Sequence[ctext.Item]) -> int:
            best, best_value = None, -1
            for i in found:
                if i.kind != "define":
                    continue
                m = re.fullmatch(r"#define\s+MSR_\w+\s+(0x[0-9a-fA-F]+)\s*", i.code_text(text))
                if m and best_value < int(m.group(1), 16) < self.number:
                    best, best_value = i, int(m.group(1), 16)
            return best.end if best is not None else _header_end(text, found)

        for n, op in enumerate(self.ops):
            text = dataclasses.replace(op, gap=False, place=place if n == 0 else None).apply(
                text, tree
            )
        return text


def _indent(text: str, at: int) -> str:
    start = text.rfind("\n", 0, at) + 1
    rest = text[start:]
    return rest[: len(rest) - len(rest.lstrip(" \t"))]


@record
class Call(Op):
    """A call statement in a named function, after a named statement."""

    function: str = ""
    after: str = ""
    call: str = ""
    unless: str | None = None

    def apply(self, text: str, tree: KernelTree) -> str:
        statement = self.call if self.unless is None else f"if (!{self.unless})\n\t{self.call}"
        want = ctext.tokens(statement)
        anchor = ctext.tokens(self.after)
        stmts = _function_statements(self, text, tree, self.function,
                                     lambda flat: any(ctext.tokens(text[s.code : s.end]) in (want, anchor)
                                                      for s in flat))  # fmt: skip
        if any(ctext.tokens(text[s.code : s.end]) == want for s in ctext.walk(stmts)):
            return text
        hits = [s for s in ctext.walk(stmts) if ctext.tokens(text[s.code : s.end]) == anchor]
        if len(hits) != 1:
            found = "is not there" if not hits else f"is there {len(hits)} times"
            raise self.fail(tree, f"in {self.function}(), the statement `{self.after}` that the call "
                                  f"to {self.call.rstrip(';')} follows {found}")  # fmt: skip
        s = hits[0]
        indent = _indent(text, s.code)
        line = indent + statement.replace("\n", "\n" + indent) + "\n"
        end = s.end
        # after a paragraph or a compound statement, the call stands in a paragraph of its own
        if (
            text.startswith("\n", end)
            or s.keyword in ("if", "for", "while", "do", "switch")
            or self.unless
        ):
            if self.unless and _starts_item(
                text, end
            ):  # an if of its own: a blank line after it too
                line += "\n"
            return text[:end] + "\n" + line + text[end:]
        return text[:end] + line + text[end:]


def _function_statements(op: Op, text: str, tree: KernelTree, name: str, holds):
    """The statements of the function ``name``.  Of several definitions (the branches of an
    #ifdef, a stub and the real one in either order) the one whose statements ``holds``
    what ``op`` changes (or has changed); where none does, the first outside an #else, so
    that the message says what is missing; where more than one does, an error."""
    found = [i for i in ctext.items(text) if i.kind == "function" and i.name == name]
    if not found:
        raise op.fail(tree, f"has no function {name}(): kgen looked for it to change it")
    bodies = [ctext.statements(text, *ctext.function_body(text, i)) for i in found]
    if len(found) == 1:
        return bodies[0]
    holding = [n for n, stmts in enumerate(bodies) if holds(list(ctext.walk(stmts)))]
    if len(holding) > 1:
        lines = ", ".join(str(ctext.line_of(text, found[n].code)) for n in holding)
        raise op.fail(tree, f"{name}() is defined {len(holding)} times (lines {lines}) with what "
                            "kgen changes in each: kgen cannot tell which one it owns")  # fmt: skip
    if holding:
        return bodies[holding[0]]
    return next((b for i, b in zip(found, bodies, strict=True)
                 if not any(branch == "else" for _, branch in i.conditions)), bodies[0])  # fmt: skip


@record
class AsmToHelper(Op):
    """The hand-written asm of the instruction in a kernel function becomes a call of the
    generated low-level helper (a retry loop the helper now does goes with it)."""

    function: str = ""

    def apply(self, text: str, tree: KernelTree) -> str:
        spec = self.patch.spec
        raw = spec.kernel.raw_helper
        want = [b.byte for b in spec.instruction.encoding]

        def holds(flat) -> bool:
            return any(raw.name in ctext.tokens(text[s.code : s.end])
                       or s.keyword in ("asm", "__asm__") and _asm_bytes(text[s.code : s.end]) == want
                       for s in flat)  # fmt: skip

        stmts = _function_statements(self, text, tree, self.function, holds)
        flat = list(ctext.walk(stmts))
        if any(raw.name in ctext.tokens(text[s.code : s.end]) for s in flat):
            return text
        asms = [
            s
            for s in flat
            if s.keyword in ("asm", "__asm__") and _asm_bytes(text[s.code : s.end]) == want
        ]
        if len(asms) != 1:
            found = "none" if not asms else f"{len(asms)}"
            raise self.fail(tree, f"in {self.function}(), kgen looked for one asm statement with the "
                                  f"bytes {' '.join(f'{b:02X}' for b in want)} and found {found}")  # fmt: skip
        asm = asms[0]
        outs, ins = _asm_operands(text[asm.code : asm.end])
        result, call = self._call(outs, ins, tree)
        target = asm
        # the retry loop the generated helper does itself
        for s in flat:
            if s.keyword == "do" and len(s.inner) == 1 and s.inner[0] == asm and raw.max_retries:
                target = s
        indent = _indent(text, target.code)
        start = target.start
        # drop a comment above it that is about the mnemonic (the helper's kernel-doc says it)
        comment = text[target.start : target.code]
        if comment.strip() and not re.search(r"mnemonic|binutils", comment, re.I):
            start = target.code - len(_indent(text, target.code))
        end, line = target.end, f"{result} = {call};"
        drop: tuple[int, int] | None = None
        only_returned = _only_returned(text, stmts, target, result)
        if only_returned is not None:
            # `ret = helper(...); return ret;` is `return helper(...);`, without ret
            (end, drop), line = only_returned, f"return {call};"
        text = text[:start] + indent + line + "\n" + text[end:]
        return text if drop is None else text[: drop[0]] + text[drop[1] :]

    def _call(self, outs: dict[str, str], ins: dict[str, str], tree: KernelTree) -> tuple[str, str]:
        spec = self.patch.spec
        raw = spec.kernel.raw_helper
        args = []
        for i in spec.instruction.inputs:
            expr = ins.get(i.register)
            if expr is None:
                raise self.fail(tree, f"in {self.function}(), the asm passes nothing in "
                                      f"{i.register.upper()} for {i.name}")  # fmt: skip
            if i.type == "pointer":
                expr = re.sub(r"^\(\s*(unsigned\s+long|u64|void\s*\*)\s*\)\s*", "", expr)
            args.append(expr)
        result = outs.get("rax")
        if result is None:
            raise self.fail(tree, f"in {self.function}(), the asm writes no RAX output to assign "
                                  f"from {raw.name}()")  # fmt: skip
        return result, f"{raw.name}({', '.join(args)})"


def _only_returned(text: str, stmts, target, result: str) -> tuple[int, tuple[int, int]] | None:
    """Where a function's asm result is only returned (`ret = ...; return ret;`, and `ret`
    declared alone and used nowhere else): the end of that return statement, and the lines of
    the declaration to drop (with the blank line after it when it was the only one)."""
    top = list(stmts)
    if target not in top or top.index(target) + 1 >= len(top) or not re.fullmatch(r"\w+", result):
        return None
    after = top[top.index(target) + 1]
    if ctext.tokens(text[after.code : after.end]) != ["return", result, ";"]:
        return None
    decls = [s for s in top if s.keyword not in ("return", "") and s is not after
             and (toks := ctext.tokens(text[s.code : s.end]))[-2:] == [result, ";"]
             and all(re.fullmatch(r"[A-Za-z_]\w*", t) for t in toks[:-1])]  # fmt: skip
    if len(decls) != 1:
        return None
    others = [s for s in ctext.walk(stmts) if s not in (target, after, decls[0])
              and not _inside(s, target) and result in ctext.tokens(text[s.code : s.end])]  # fmt: skip
    if others:
        return None
    decl = decls[0]
    drop_end = decl.end
    if top.index(decl) == 0 and text.startswith("\n", drop_end):
        drop_end += 1  # it was the only declaration: no blank line opens the body
    if decl.start < target.start:
        return after.end, (decl.start, drop_end)
    return None


def _inside(s, outer) -> bool:
    return outer.start <= s.start and s.end <= outer.end


def _asm_bytes(stmt: str) -> list[int]:
    strings = re.findall(r'"((?:\\.|[^"\\])*)"', stmt.split(":")[0])
    body = "".join(strings)
    m = re.match(r"\s*\.byte\s+([0-9a-fA-Fx,\s]+?)\s*(\\n|\\t|$)", body)
    if not m:
        return []
    try:
        return [int(b, 0) for b in m.group(1).replace(" ", "").split(",") if b]
    except ValueError:
        return []


_LETTER = {letter: register for register, letter in CONSTRAINT_LETTER.items()}


def _asm_operands(stmt: str) -> tuple[dict[str, str], dict[str, str]]:
    """Register -> C expression of an asm statement's outputs and inputs."""
    masked = ctext.mask(stmt)
    open_ = masked.find("(")
    close = ctext._match_close(masked, open_)
    inner, mask_inner = stmt[open_ + 1 : close], masked[open_ + 1 : close]
    sections, depth, last = [], 0, 0
    for n, c in enumerate(mask_inner):
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == ":" and depth == 0:
            sections.append(inner[last:n])
            last = n + 1
    sections.append(inner[last:])
    result: list[dict[str, str]] = []
    for sec in sections[1:3]:
        ops: dict[str, str] = {}
        for m in re.finditer(r'"([^"]*)"\s*\(', sec):
            letters = m.group(1).lstrip("=+&")
            start = m.end() - 1
            end = ctext._match_close(ctext.mask(sec), start)
            expr = sec[start + 1 : end].strip()
            reg = _LETTER.get(letters[:1])
            if reg:
                ops[reg] = expr
        result.append(ops)
    while len(result) < 2:
        result.append({})
    return result[0], result[1]


# --- a spec's operations -----------------------------------------------------

BANNER = re.compile(r"Generated by kgen")


def _fragment_items(text: str) -> tuple[list[str], list[tuple[ctext.Item, bool]]]:
    """Includes, then items (each with whether a blank line precedes it), of a rendered file."""
    found = ctext.items(text)
    includes: list[str] = []
    body: list[tuple[ctext.Item, bool]] = []
    prev_end = 0
    for item in found:
        own = item.text(text)
        if BANNER.search(own) or (item.start == 0 and "SPDX-License-Identifier" in own):
            prev_end = item.end
            continue
        if item.kind == "include":
            includes.append(item.name)
            prev_end = item.end
            continue
        gap = "\n\n" in text[prev_end - 1 : item.start + 1] or (
            text[prev_end : item.start].strip() == "" and text.count("\n", prev_end, item.start) > 0
        )
        body.append((item, gap or not body))
        prev_end = item.end
    return includes, body


def _upserts(patch_of: Callable[[ctext.Item], Patch], path: str, text: str,
             body: list[tuple[ctext.Item, bool]]) -> list[Op]:  # fmt: skip
    ops: list[Op] = []
    after: list[tuple[str, str]] = []
    pending_block: list[tuple[ctext.Item, bool]] = []
    block_open: ctext.Item | None = None
    for item, gap in body:
        if item.kind == "pp":
            word = item.name.split()[0]
            if word in ("if", "ifdef", "ifndef"):
                block_open, pending_block = item, []
                continue
            if word in ("else", "elif", "endif"):
                if word == "endif" and block_open is not None:
                    ops.append(_block(patch_of, path, text, block_open, pending_block, item))
                    block_open = None
                else:
                    pending_block.append((item, gap))
                continue
        if block_open is not None:
            pending_block.append((item, gap))
            continue
        what = _what(item)
        # a new function does not go among #defines the tree may have elsewhere (a header's
        # return codes): it follows the nearest other item, or goes to the default place
        chain = tuple(a for a in after if item.kind != "function" or a[0] != "define")
        ops.append(Upsert(patch_of(item), path, what, item.kind, item.name, item.text(text), chain,
                          gap, None, item.kind == "define"))  # fmt: skip
        after.append((item.kind, item.name))
    return ops


def _block(patch_of, path, text, opener, inner, closer) -> Block:
    then: list[Upsert] = []
    otherwise: list[Upsert] = []
    branch = "then"
    for item, _ in inner:
        if item.kind == "pp":
            branch = "else"
            continue
        op = Upsert(
            patch_of(item), path, _what(item), item.kind, item.name, item.text(text), (), False
        )
        (then if branch == "then" else otherwise).append(op)
    whole = text[opener.start : closer.end]
    first = then[0].patch if then else patch_of(opener)
    # declarations join the tree's block of their Kconfig symbol; code that only builds for
    # x86-64 stands in a block of kgen's own, never in one the tree has for its code
    own = opener.name in OWN_BLOCKS
    return Block(first, path, f"#{opener.name} block", opener.name, tuple(then), tuple(otherwise),
                 whole, own)  # fmt: skip


OWN_BLOCKS = {"ifdef CONFIG_X86_64"}


def _what(item: ctext.Item) -> str:
    return {
        "function": f"function {item.name}()",
        "define": f"#define {item.name}",
        "prototype": f"declaration of {item.name}()",
        "enum": f"enum {item.name}",
        "macro": f"{item.name}",
    }.get(item.kind, f"{item.kind} {item.name}")


def default_worker(spec: Spec):
    workers = spec.as_sweep().sweep.workers
    return next((w for w in workers if w.kind == "delayed-work"), workers[0])


PATCH_ORDER = (
    "cpufeature",
    "msr",
    "helpers",
    "setup",
    "trigger",
    "call-setup",
    "call-trigger",
    "sibling",
)


def operations(
    spec: Spec, tree: KernelTree, order_base: int = 0, templates: Path = TEMPLATES
) -> list[Op]:
    """Everything ``spec`` changes in ``tree``, in patch order."""
    files = render_spec(spec, templates, profile=tree.profile)
    patches: dict[str, Patch] = {}

    def patch(key: str) -> Patch:
        if key not in patches:
            base = key.split(":")[0]
            patches[key] = Patch(
                spec, key, order_base + PATCH_ORDER.index(base) * 10 + len(patches)
            )
        return patches[key]

    ops: list[Op] = []
    k = spec.kernel
    sweep = k.sweep
    worker = default_worker(spec) if sweep is not None else None
    trigger_names: set[str] = set()
    if worker is not None:
        trigger_names = {worker.trigger, worker_functions(worker)["request"]}
    for out in outputs(spec):
        if out.worker is not None and out.worker is not worker:
            continue
        text = files[out.path]
        includes, body = _fragment_items(text)
        dest = out.destination
        if dest.endswith("cpufeatures.h"):
            item = next(i for i, _ in body if i.kind == "define")
            c = spec.as_sweep().cpuid
            comment = f"{spec.instruction.title}: CPUID {c.leaf:#x} {c.register.upper()}[{c.bit}]"
            ops.append(
                FeatureBit(patch("cpufeature"), dest, f"#define {item.name}", item.name, comment)
            )
            ops.append(
                ScatteredEntry(
                    patch("cpufeature"), SCATTERED, f"cpuid_bits[] entry {item.name}", item.name
                )
            )
            continue
        if dest.endswith("msr-index.h"):
            ups = _upserts(lambda i: patch("msr"), dest, text, body)
            defines = tuple(u for u in ups if isinstance(u, Upsert))
            assert len(defines) == len(ups), "msr-index.h's fragment holds only #defines"
            ops.append(
                MsrDefine(patch("msr"), dest, "MSR #defines", defines, spec.as_sweep().msr.number)
            )
            continue
        if sweep is None:
            key = "sibling"
        elif out.worker is not None:
            key = "setup"
        elif dest == k.raw_helper.header:
            key = "helpers"
        else:
            key = "setup"

        def patch_of(item: ctext.Item, key: str = key) -> Patch:
            if key == "setup" and item.name in trigger_names:
                return patch("trigger")
            return patch(key)

        if key == "setup":
            trigger_names.update(_used_only_by(body, text, trigger_names))
        first = patch(key)
        for header in includes:
            ops.append(Include(first, dest, f"#include <{header}>", header))
        ops += _upserts(patch_of, dest, text, body)
    if sweep is None and k.out_of_line is not None:
        ool = k.out_of_line
        ops.append(AsmToHelper(patch("sibling"), ool.source, f"{ool.name}()", ool.name))
    if k.enable is not None and worker is not None:
        for site in k.enable.call_sites:
            ops.append(_call_op(patch, site, worker))
    ops.sort(key=lambda op: op.patch.order)
    return ops


def _used_only_by(body: list[tuple[ctext.Item, bool]], text: str, names: set[str]) -> set[str]:
    """The items of a fragment that only the items `names` use, directly or through each
    other (a delay #define only the request reads): they belong to the patch of `names`, not
    to an earlier one that would add them unused."""
    items = [i for i, _ in body if i.kind != "pp" and i.name]
    owned = set(names)
    changed = True
    while changed:
        changed = False
        for item in items:
            if item.name in owned:
                continue
            word = re.compile(rf"\b{re.escape(item.name)}\b")
            users = {i.name for i in items if i is not item and word.search(i.code_text(text))}
            if users and users <= owned:
                owned.add(item.name)
                changed = True
    return owned - names


def _call_op(patch, site: CallSite, worker) -> Call:
    function = {"setup": worker.setup, "trigger": worker.trigger, "teardown": worker.teardown}[
        site.call
    ]
    key = "call-trigger" if site.call == "trigger" else "call-setup"
    return Call(patch(f"{key}:{site.source}"), site.source, f"call of {function}()", site.function,
                site.after, f"{function}();", site.unless)  # fmt: skip


# --- plans -------------------------------------------------------------------


@dataclass
class Plan:
    tree: KernelTree
    ops: list[Op]
    skipped: list[tuple[Spec, str]] = field(
        default_factory=list
    )  # specs with nothing to do, and why

    def patches(self) -> list[Patch]:
        seen: dict[tuple[int, str, int], Patch] = {}
        for op in self.ops:
            seen.setdefault((op.patch.order, op.patch.key, id(op.patch.spec)), op.patch)
        return [seen[k] for k in sorted(seen, key=lambda k: k[0])]

    def files(self) -> list[str]:
        return sorted({op.path for op in self.ops})

    def result(self, upto: Iterable[Patch] | None = None) -> tuple[dict[str, str], list[TreeError]]:
        """The new text of every file the plan touches (with only ``upto``'s operations, if given)."""
        chosen = None if upto is None else {id(p) for p in upto}
        texts: dict[str, str] = {}
        errors: list[TreeError] = []
        for path in self.files():
            try:
                texts[path] = self.tree.text(path)
            except TreeError as exc:
                errors.append(exc)
        for op in self.ops:
            mine = op.patches() if isinstance(op, Block) else {id(op.patch)}
            if op.path not in texts or (chosen is not None and not mine & chosen):
                continue
            try:
                if isinstance(op, Block):
                    texts[op.path] = op.apply(texts[op.path], self.tree, chosen)
                else:
                    texts[op.path] = op.apply(texts[op.path], self.tree)
            except TreeError as exc:
                errors.append(exc)
            except ctext.CTextError as exc:
                errors.append(_unreadable(self.tree, op.path, texts[op.path], exc))
        if not errors:
            for path, text in texts.items():
                errors += _added_again(self.tree, path, text)
        return texts, errors


_NAMED = ("function", "prototype", "define", "macro", "variable")  # items that define a C name


def _added_again(tree: KernelTree, path: str, text: str) -> list[TreeError]:
    """A C name the file has already (in another #if branch, or as another kind of item than
    the one kgen replaces) and that kgen adds once more: a second definition breaks the
    build, and kgen said it had changed the file."""
    old = [i for i in ctext.items(tree.text(path)) if i.kind in _NAMED and i.name]
    before = collections.Counter(i.name for i in old)
    after = collections.Counter(i.name for i in ctext.items(text) if i.kind in _NAMED and i.name)
    errors = []
    for name in after:
        if before[name] and after[name] > before[name]:
            first = next(i for i in old if i.name == name)
            errors.append(TreeError(str(tree.root / path), f"{name} is in this file already: kgen "
                                    "would add another; choose another name in the spec",
                                    ctext.line_of(tree.text(path), first.code), 1))  # fmt: skip
    return errors


def _unreadable(tree: KernelTree, path: str, text: str, exc: ctext.CTextError) -> TreeError:
    """path:line:col of C kgen cannot read: where the tree's own file fails, if it does."""
    try:
        ctext.items(tree.text(path))
    except ctext.CTextError as own:
        text, exc = tree.text(path), own
    at = min(max(exc.offset, 0), len(text))
    line = ctext.line_of(text, at)
    return TreeError(str(tree.root / path), f"kgen cannot read this C: {exc}", line,
                     at - text.rfind("\n", 0, at))  # fmt: skip


def plan(specs: list[Spec], tree: KernelTree, templates: Path = TEMPLATES) -> Plan:
    """What ``specs`` change in ``tree``; a TreeError when a file kgen reads to plan (a
    sibling's header) is missing, refused or not C it can read."""
    ops: list[Op] = []
    skipped: list[tuple[Spec, str]] = []
    # RMPOPT-like specs (with a sweep) first, then the siblings, each in file order
    ordered = sorted(specs, key=lambda s: (s.kernel.sweep is None, s.instruction.mnemonic))
    for n, spec in enumerate(ordered):
        why = _nothing_to_replace(spec, tree)
        if why:
            skipped.append((spec, why))
            continue
        ops += operations(spec, tree, n * 1000, templates)
    return Plan(tree, ops, skipped)


def _nothing_to_replace(spec: Spec, tree: KernelTree) -> str | None:
    """Why a helper-only spec has nothing to do in this tree: no hand-written helper of its
    name to replace and no kernel function that executes the instruction (a helper with no
    user would be dead code, and its operand types may not be the tree's)."""
    k = spec.kernel
    if k.sweep is not None or k.out_of_line is not None:
        return None
    header = k.raw_helper.header
    text = tree.text(header)
    try:
        items = ctext.items(text)
    except ctext.CTextError as exc:
        raise _unreadable(tree, header, text, exc) from None
    if any(i.kind == "function" and i.name == k.raw_helper.name for i in items):
        return None
    return (
        f"{header} has no {k.raw_helper.name}() to replace and the spec names no kernel function "
        f"that executes {spec.instruction.mnemonic.upper()} (kernel.out_of_line): nothing to do"
    )
