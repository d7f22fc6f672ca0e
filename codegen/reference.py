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
from dataclasses import dataclass
from pathlib import Path

from .build import BuildError, unit_flags, units, write_files
from .model import Spec
from .render import include_split
from .toolchain import Compiler


class ReferenceProblem(BuildError):
    """A --reference directory that cannot be what the comparison tests."""


@dataclass(frozen=True)
class Reference:
    """One reference directory and what the helper unit took from it."""

    directory: str
    files: tuple[str, ...]  # the files it supplied, relative to it, in order of inclusion
    definition: str | None  # "path:line" of the helper's definition, where it is in this directory

    def json(self) -> dict:
        return {"directory": self.directory, "files": list(self.files), "definition": self.definition}


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
        raise ReferenceProblem(f"{found} does not define {helper}(): nothing of the kernel's to compare")
    return found


def _markers(text: str) -> list[tuple[int, str, int]]:
    """(offset in ``text``, file, line) of each of the preprocessor's line markers."""
    out = []
    for m in re.finditer(r'^# (\d+) "((?:[^"\\]|\\.)*)"[^\n]*$', text, re.M):
        out.append((m.end() + 1, re.sub(r"\\(.)", r"\1", m.group(2)), int(m.group(1))))
    return out


def _where(text: str, markers, offset: int) -> tuple[str, int]:
    start, path, line = next(((s, p, l) for s, p, l in reversed(markers) if s <= offset), (0, "", 1))
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


def prove(compiler: Compiler, spec: Spec, files: dict[str, str], reference: tuple[Path, ...]) -> list[Reference]:
    """Check that the reference unit compiles the kernel's helper from ``reference``."""
    check_directories(spec, reference)
    helper = spec.kernel.raw_helper.name
    with tempfile.TemporaryDirectory(prefix="kgen-reference-") as tmp:
        work = Path(tmp)
        gen_root = work / "gen"
        write_files(files, gen_root)
        unit = next(u for u in units(spec, gen_root, work, reference) if u.includes)
        cmd = compiler.command(*unit_flags(spec, unit, gen_root), "-E", str(unit.source))
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BuildError(f"{compiler.name} cannot preprocess the kernel's {helper}():\n{proc.stderr.strip()}")
        text = proc.stdout
        markers = _markers(text)
        read = list(dict.fromkeys(Path(p).resolve() for _, p, _ in markers if p and not p.startswith("<")))
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
    out = []
    for given, d in zip(reference, dirs):
        mine = [p for p in read if _under(p, d)]
        here = next((f"{given / p.relative_to(d)}:{line}" for p, line in inside if _under(p, d)), None)
        out.append(Reference(str(given), tuple(str(p.relative_to(d)) for p in mine), here))
    return out
