"""Proof that ``kgen compare --reference DIR`` runs the kernel's helper from DIR.

The reference unit includes the spec's header (``#include <asm/sev.h>``) with
the reference directories searched first; the generated tree is on the
include path behind them (the sweep forms need it).  A directory without the
header would let the generated header stand in for the kernel's, and the
comparison would pass without testing anything.  So before anything runs:

* some reference directory must hold the header, and the first that does
  (the preprocessor's choice) must define the helper;
* the reference unit is preprocessed with the flags it is compiled with, and
  the preprocessor's record of the files it read (its line markers) must
  show the helper's definition in a file under a reference directory, and no
  file of the generated tree at all.

What it found is the report's ``references``: each directory, the files it
supplied, and where the helper's definition is.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from .build import SHIM_DIR, BuildError, quoted_include, unit_flags, units, write_files
from .model import Spec
from .record import record
from .render import include_split
from .toolchain import Compiler


class ReferenceProblem(BuildError):
    """A --reference directory that cannot be what the comparison tests."""


@record
class Reference:
    """One reference directory and what the helper unit took from it."""

    directory: str
    files: tuple[str, ...]  # the files it supplied, relative to it, in order of inclusion
    definition: str | None  # "path:line" of the helper's definition, where it is in this directory

    def json(self) -> dict:
        return {
            "directory": self.directory,
            "files": list(self.files),
            "definition": self.definition,
        }


def _definition(name: str) -> re.Pattern[str]:
    """A C function definition of ``name``: its name, a parameter list, then a body."""
    return re.compile(rf"\b{re.escape(name)}\s*\((?:[^;{{}}()]|\([^;{{}}()]*\))*\)\s*\{{")


def _defines(text: str, name: str) -> bool:
    text = re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)
    return _definition(name).search(text) is not None


def check_directories(spec: Spec, reference: tuple[Path, ...]) -> Path:
    """The header the preprocessor will take from the reference directories; else why not."""
    header = include_split(spec.kernel.raw_helper.header)[1]
    helper = spec.kernel.raw_helper.name
    found = next((d / header for d in reference if (d / header).is_file()), None)
    if found is None:
        dirs = ", ".join(str(d) for d in reference)
        hint = next((f"; did you mean {d / 'include'}?" for d in reference
                     if (d / "include" / header).is_file()), "")  # fmt: skip
        raise ReferenceProblem(
            f"no {header} in the --reference director{'y' if len(reference) == 1 else 'ies'} "
            f"({dirs}): the kernel's {helper}() cannot be compared{hint}"
        )
    if not _defines(found.read_text(errors="replace"), helper):
        raise ReferenceProblem(
            f"{found} does not define {helper}(): nothing of the kernel's to compare"
        )
    return found


def _markers(text: str) -> list[tuple[int, str, int]]:
    """(offset in ``text``, file, line) of each of the preprocessor's line markers."""
    out = []
    for m in re.finditer(r'^# (\d+) "((?:[^"\\]|\\.)*)"[^\n]*$', text, re.M):
        out.append((m.end() + 1, re.sub(r"\\(.)", r"\1", m.group(2)), int(m.group(1))))
    return out


def _where(text: str, markers, offset: int) -> tuple[str, int]:
    start, path, line = next(
        ((s, p, ln) for s, p, ln in reversed(markers) if s <= offset), (0, "", 1)
    )
    return path, line + text.count("\n", start, offset)


def _under(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _is_kgen_output(path: Path) -> bool:
    """Whether a file starts with kgen's banner, as every file kgen renders does."""
    from .outtree import BANNER_MARK

    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return BANNER_MARK.encode() in head


def prove(
    compiler: Compiler, spec: Spec, files: dict[str, str], reference: tuple[Path, ...]
) -> list[Reference]:
    """Check that the reference unit compiles the kernel's helper from ``reference``."""
    tree = tree_of(reference)
    if tree is None:
        check_directories(spec, reference)
        helper = spec.kernel.raw_helper.name
    else:
        helper = kernel_function(spec).name
        copied = tree_unit(spec, tree)  # fails here, with its reason, where the tree lacks it
    with tempfile.TemporaryDirectory(prefix="kgen-reference-") as tmp:
        work = Path(tmp)
        gen_root = work / "gen"
        write_files(files, gen_root)
        unit = next(
            u for u in units(spec, gen_root, work, reference) if u.name.endswith("-reference")
        )
        cmd = compiler.command(*unit_flags(spec, unit, gen_root), "-E", str(unit.source))
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BuildError(
                f"{compiler.name} cannot preprocess the kernel's {helper}():\n{proc.stderr.strip()}"
            )
        text = proc.stdout
        markers = _markers(text)
        read = list(
            dict.fromkeys(Path(p).resolve() for _, p, _ in markers if p and not p.startswith("<"))
        )
        generated = [p for p in read if _under(p, gen_root.resolve())]
        if generated:
            raise ReferenceProblem(
                f"the reference unit includes kgen's own {generated[0].relative_to(gen_root.resolve())}: "
                f"the kernel's {helper}() would not be what is compared"
            )
        definitions = [_where(text, markers, m.start()) for m in _definition(helper).finditer(text)]
    dirs = [d.resolve() for d in reference]
    located = [(Path(p).resolve(), line) for p, line in definitions]
    inside = [(p, line) for p, line in located if any(_under(p, d) for d in dirs)]
    if len(located) != 1 or not inside:
        where = ", ".join(f"{p}:{line}" for p, line in located) or "nowhere"
        raise ReferenceProblem(f"the kernel's {helper}() must be defined once in a --reference "
                               f"directory; the preprocessor finds it {where}")  # fmt: skip
    defined_in = inside[0][0]
    if _is_kgen_output(defined_in):
        raise ReferenceProblem(f"{defined_in} defines {helper}() but is kgen's own output (it "
                               "carries kgen's banner): compare would hold kgen to itself")  # fmt: skip
    if tree is not None:
        fn = copied.function
        path, line = inside[0]
        if path != fn.path.resolve() or not fn.line <= line <= fn.line + fn.text.count("\n"):
            raise ReferenceProblem(f"the kernel's {helper}() is compiled from {inside[0][0]}:{inside[0][1]}, "
                                   f"not from {fn.path}:{fn.line}")  # fmt: skip
        return [Reference(str(tree), tuple(str(p.relative_to(tree)) for p in copied.files),
                          f"{fn.path}:{fn.line}")]  # fmt: skip
    out = []
    for given, d in zip(reference, dirs, strict=True):
        mine = [p for p in read if _under(p, d)]
        here = next(
            (f"{given / p.relative_to(d)}:{line}" for p, line in inside if _under(p, d)), None
        )
        out.append(Reference(str(given), tuple(str(p.relative_to(d)) for p in mine), here))
    return out


# --- a kernel tree's own function, taken from its source ------------------------------------
#
# ``--reference TREE`` (a tree's top directory) runs the kernel function that executes
# the spec's instruction as the tree defines it: the spec's out_of_line function (e.g.
# rmpupdate() of arch/x86/virt/svm/sev.c), else its raw helper in its header (pvalidate()
# of asm/sev.h).  Its text is copied from the file, under ``#line`` so that the compiler
# and the proof name the tree's file and line; the macros and structs it uses come with
# it from that file and from the spec's header, and the kernel functions it calls are
# kgen's stubs (codegen/shim/kstubs.h).  Preprocessor conditionals are read as a kernel
# configured with every option they test (an SNP host and guest build).

STUBS_HEADER = SHIM_DIR / "kstubs.h"


def is_tree(path: Path) -> bool:
    """Whether ``path`` is the top directory of a kernel tree (not an include directory)."""
    return (path / "arch" / "x86" / "include").is_dir() and (path / "include").is_dir()


def tree_of(reference: tuple[Path, ...]) -> Path | None:
    """The kernel tree among the --reference directories; a tree comes alone."""
    trees = [d for d in reference if is_tree(d)]
    if trees and len(reference) > 1:
        raise ReferenceProblem(f"{trees[0]} is a kernel tree, which supplies everything the "
                               "comparison takes from the kernel: give it as the only --reference")  # fmt: skip
    return trees[0] if trees else None


@record
class KernelFunction:
    """The kernel function a tree reference runs, and how it takes the spec's inputs."""

    name: str
    source: str  # path in the tree
    parameters: tuple[tuple[int, int], ...]  # (index of the spec input, right shift), in order
    failure: str | None  # errno returned negated for any return code but 0


def kernel_function(spec: Spec) -> KernelFunction:
    k, inputs = spec.kernel, [i.name for i in spec.instruction.inputs]
    if k.out_of_line is None:
        return KernelFunction(k.raw_helper.name, k.raw_helper.header,
                              tuple((n, 0) for n in range(len(inputs))), None)  # fmt: skip
    f = k.out_of_line
    return KernelFunction(f.name, f.source, tuple((inputs.index(a.input), a.shift) for a in f.arguments),
                          f.failure)  # fmt: skip


def kernel_args(spec: Spec, args: list[int]) -> list[int]:
    """The spec's inputs as the kernel function can pass them: the bits a shifted parameter
    drops are zero (pfn = paddr >> 12 gives back paddr & ~0xfff)."""
    out = list(args)
    for n, shift in kernel_function(spec).parameters:
        out[n] &= (1 << 64) - (1 << shift)
    return out


def kernel_case(spec: Spec, case):
    """``case`` with each call's arguments as the kernel function can take them (kernel_args)."""
    import dataclasses

    actions = []
    for action in case.actions:
        kind, cpu, *args = action.split(":")
        args = (
            kernel_args(spec, [int(a, 0) for a in args])
            if kind == "r"
            else [int(a, 0) for a in args]
        )
        actions.append(":".join([kind, cpu, *(f"{a:#x}" for a in args)]))
    return dataclasses.replace(case, actions=tuple(actions))


def kernel_result(spec: Spec, value: int) -> int:
    """What the kernel function returns (as u64) where the low-level helper returns ``value``."""
    from .kernelapi import ERRNO

    failure = kernel_function(spec).failure
    if failure is None or value == 0:
        return value
    return -ERRNO[failure] & ((1 << 64) - 1)


def _blank(text: str) -> str:
    """``text`` with comments, strings and character constants as spaces (newlines kept)."""
    pattern = r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\''
    return re.sub(pattern, lambda m: re.sub(r"[^\n]", " ", m.group()), text, flags=re.S)


_ON = {"__KERNEL__": True, "__ASSEMBLY__": False, "__ASSEMBLER__": False}


def _truth(expr: str) -> bool | None:
    """An #if expression, every CONFIG_ option on; None where it tests anything else."""

    def known(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        value = True if name.startswith("CONFIG_") else _ON.get(name)
        return "?" if value is None else str(int(value))

    expr = re.sub(
        r"\b(?:defined|IS_ENABLED|IS_BUILTIN)\s*\(\s*(\w+)\s*\)|\bdefined\s+(\w+)", known, expr
    )
    if not re.fullmatch(r"[01()!&|\s]*", expr):
        return None
    # nothing but 0, 1, !, &&, || and parentheses is left: Python reads it the same
    try:
        return bool(eval(expr.replace("&&", " and ").replace("||", " or ").replace("!", " not "),
                         {"__builtins__": {}}))  # fmt: skip
    except SyntaxError:
        return None


def _active_lines(blank: str) -> list[bool | None]:
    """For each line, whether a kernel with every option on compiles it (None: cannot tell)."""
    lines = blank.split("\n")
    stack: list[list] = []  # [value of this branch, whether an earlier branch was taken]
    out = []
    for n, line in enumerate(lines):
        m = re.match(r"\s*#\s*(ifdef|ifndef|if|elif|else|endif)\b\s*(.*?)\s*$", line)
        if m:
            kind, arg = m.groups()
            if kind in ("ifdef", "ifndef"):
                name = arg.split()[0] if arg else ""
                guard = kind == "ifndef" and any(re.match(rf"\s*#\s*define\s+{re.escape(name)}\b", later)
                                                 for later in lines[n + 1 : n + 3])  # fmt: skip
                value = True if guard else _truth(f"defined({name})")
                if kind == "ifndef" and not guard and value is not None:
                    value = not value
                stack.append([value, value])
            elif kind == "if":
                value = _truth(arg)
                stack.append([value, value])
            elif kind == "elif" and stack:
                taken = stack[-1][1]
                value = False if taken else None if taken is None else _truth(arg)
                stack[-1] = [value, True if taken or value else None if value is None else False]
            elif kind == "else" and stack:
                taken = stack[-1][1]
                stack[-1] = [None if taken is None else not taken, True]
            elif kind == "endif" and stack:
                stack.pop()
        values = [v for v, _ in stack]
        out.append(False if False in values else None if None in values else True)
    return out


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _body_end(blank: str, brace: int) -> int:
    depth = 0
    for at in range(brace, len(blank)):
        if blank[at] == "{":
            depth += 1
        elif blank[at] == "}":
            depth -= 1
            if depth == 0:
                return at + 1
    raise ReferenceProblem("unbalanced braces")


def _start_of(blank: str, name_at: int) -> int:
    """Where the definition whose name is at ``name_at`` starts: its line, or the line of its
    return type above (kernel style puts ``static int`` on a line of its own)."""
    start = blank.rfind("\n", 0, name_at) + 1
    while start > 0:
        prev = blank.rfind("\n", 0, start - 1) + 1
        line = blank[prev : start - 1].strip()
        if not line or line.endswith((";", "}", "{", ")", "\\")) or line.startswith("#"):
            break
        start = prev
    return start


@record
class Extracted:
    path: Path
    line: int
    text: str


def find_function(path: Path, name: str, shown: str) -> Extracted:
    """The definition of ``name`` in ``path`` that a kernel with every option on compiles."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise ReferenceProblem(f"{shown}: cannot be read ({exc.strerror}): the kernel's {name}() "
                               "cannot be compared") from None  # fmt: skip
    blank = _blank(text)
    active = _active_lines(blank)
    found = []
    for m in _definition(name).finditer(blank):
        start = _start_of(blank, m.start())
        line = _line_of(blank, m.start())
        found.append((active[line - 1], start, m.end() - 1, _line_of(blank, start)))
    chosen = [f for f in found if f[0] is True]
    if len(chosen) != 1:
        where = ", ".join(f"{shown}:{f[3]}" + ("" if f[0] else " (not built)" if f[0] is False
                          else " (under a condition kgen cannot decide)") for f in found)  # fmt: skip
        if not found:
            raise ReferenceProblem(
                f"{shown} does not define {name}(): nothing of the kernel's to compare"
            )
        raise ReferenceProblem(f"{shown} must define {name}() once where every CONFIG_ option is on; "
                               f"it has {where}")  # fmt: skip
    _, start, brace, line = chosen[0]
    return Extracted(path, line, text[start : _body_end(blank, brace)])


def _definitions(path: Path) -> dict[str, Extracted]:
    """The macros and structs a file defines where every CONFIG_ option is on, by name
    (``struct rmp_state`` as ``struct rmp_state``)."""
    text = path.read_text(errors="replace")
    blank = _blank(text)
    active = _active_lines(blank)
    out: dict[str, Extracted] = {}
    for m in re.finditer(r"^[ \t]*#[ \t]*define[ \t]+(\w+)(?:\\\n|[^\n])*", blank, re.M):
        line = _line_of(blank, m.start())
        if active[line - 1] is True:
            out.setdefault(m.group(1), Extracted(path, line, text[m.start() : m.end()]))
    for m in re.finditer(r"^(struct|enum|union)[ \t]+(\w+)[ \t]*\{", blank, re.M):
        line = _line_of(blank, m.start())
        end = _body_end(blank, m.end() - 1)
        tail = re.match(r"[^;{}]*;", blank[end:])
        if active[line - 1] is True and tail:
            out.setdefault(f"{m.group(1)} {m.group(2)}",
                           Extracted(path, line, text[m.start() : end + tail.end()]))  # fmt: skip
    return out


def _uses(text: str) -> set[str]:
    blank = _blank(text)
    names = set(re.findall(r"\b[A-Za-z_]\w*\b", blank))
    names |= {
        f"{m.group(1)} {m.group(2)}" for m in re.finditer(r"\b(struct|enum|union)\s+(\w+)", blank)
    }
    return names


def _line_directive(e: Extracted) -> str:
    return f"#line {e.line} {quoted_include(e.path)[len('#include ') :]}\n"


@record
class TreeUnit:
    source: str  # the C of the reference unit
    function: Extracted
    files: tuple[Path, ...]  # the tree's files it took text from


def tree_unit(spec: Spec, tree: Path) -> TreeUnit:
    """The reference unit of a tree: the kernel function with what it uses, and the call."""
    from .kernelapi import ERRNO

    f = kernel_function(spec)
    path = tree / f.source
    fn = find_function(path, f.name, str(tree / f.source))
    header = tree / spec.kernel.raw_helper.header
    known: dict[str, Extracted] = {}
    for p in dict.fromkeys((header, path)):
        if p.is_file():
            for key, e in _definitions(p).items():
                known.setdefault(key, e)
    wanted, todo = {}, [fn.text]
    while todo:
        for key in _uses(todo.pop()):
            if key in known and key not in wanted and key != f.name:
                wanted[key] = known[key]
                todo.append(known[key].text)
    order = sorted(wanted.values(), key=lambda e: (e.path != header, e.line))
    insn = spec.instruction
    args = []
    for n, shift in f.parameters:
        i = insn.inputs[n]
        if i.type == "pointer":
            args.append(f"(struct {i.points_to} *)kgen_pointer_arg(args[{n}])")
        else:
            args.append(f"args[{n}] >> {shift}" if shift else f"args[{n}]")
    errno = "".join(f"#ifndef {k}\n#define {k}\t{v}\n#endif\n" for k, v in ERRNO.items())
    text = (
        f'#include "kharness.h"\n{quoted_include(STUBS_HEADER)}\n{errno}\n'
        + "".join(f"{_line_directive(e)}{e.text}\n" for e in order)
        + f"{_line_directive(fn)}{fn.text}\n"
        + '#line 1 "kgen-reference-call.c"\n'
        + f"const int kgen_raw_nargs = {len(insn.inputs)};\n\n"
        + "u64 kgen_call_helper(u64 pa)\n{\n\t(void)pa;\n\treturn 0;\n}\n\n"
        + f"u64 kgen_call_raw(const u64 *args)\n{{\n\treturn (u64){f.name}({', '.join(args)});\n}}\n"
    )
    files = tuple(dict.fromkeys([e.path for e in order] + [path]))
    return TreeUnit(text, fn, files)
