"""Line and branch coverage of the generated C, from gcov.

A coverage run builds the units with ``gcc --coverage`` (build.COVERAGE_FLAGS)
and runs them in the native harness, whose exit writes the arc counts
(.gcda) beside each object.  gcov then maps the counts back to the source
lines; only the lines of the generated files are kept, merged over the
units that include the same file (a header is included by several).
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .build import BuildError
from .toolchain import Compiler


@dataclass
class FileCoverage:
    path: str  # as the generated tree names it, e.g. rmpopt/arch/x86/virt/svm/rmpopt.c
    lines: dict[int, int] = field(default_factory=dict)  # executable line -> times run
    branches: dict[int, list[int]] = field(default_factory=dict)  # line -> times each arc taken

    @property
    def lines_hit(self) -> int:
        return sum(1 for n in self.lines.values() if n)

    @property
    def branch_count(self) -> int:
        return sum(len(b) for b in self.branches.values())

    @property
    def branches_taken(self) -> int:
        return sum(1 for b in self.branches.values() for n in b if n)

    def missed(self) -> list[tuple[int, str]]:
        """(line, what was never done there), in line order."""
        found = []
        for line in sorted(set(self.lines) | set(self.branches)):
            if line in self.lines and not self.lines[line]:
                found.append((line, "never run"))
                continue
            arcs = self.branches.get(line, [])
            idle = [i for i, n in enumerate(arcs) if not n]
            if idle:
                which = ", ".join(str(i) for i in idle)
                found.append((line, f"branch {which} of {len(arcs)} never taken"))
        return found

    def json(self) -> dict:
        return {
            "file": self.path, "lines": len(self.lines), "lines_hit": self.lines_hit,
            "branches": self.branch_count, "branches_taken": self.branches_taken,
            "missed": [{"line": n, "what": what} for n, what in self.missed()],
        }  # fmt: skip


def gcov_command(gcc: Compiler) -> str:
    """The gcov of ``gcc`` (gcc-12 -> gcov-12 beside it), which reads its notes; else gcov."""
    path = Path(shutil.which(gcc.argv[0]) or gcc.argv[0])
    if path.name.startswith("gcc"):
        mate = path.with_name("gcov" + path.name[3:])
        if mate.exists():
            return str(mate)
    return "gcov"


def measure(gcc: Compiler, objects: list[Path], gen_root: Path, files: dict[str, str],
            work: Path) -> list[FileCoverage]:  # fmt: skip
    """Coverage of each generated file in ``files`` (written under ``gen_root``) by the runs of
    the instrumented ``objects``; a file with no code to run (macros, declarations) has no lines."""
    root = gen_root.resolve()
    merged: dict[str, FileCoverage] = {}
    counted = [o for o in objects if o.with_suffix(".gcda").exists()]
    if not counted:  # a unit of data only (the forms table) has nothing to count; the rest must
        raise BuildError("the harness wrote no coverage counts (.gcda)")
    for obj in counted:
        for entry in _gcov(gcov_command(gcc), obj, work)["files"]:
            try:
                rel = str(Path(entry["file"]).resolve().relative_to(root))
            except ValueError:
                continue  # the harness, the shim, the unit's own lines
            if rel not in files:
                continue
            cov = merged.setdefault(rel, FileCoverage(rel))
            for line in entry["lines"]:
                n = line["line_number"]
                cov.lines[n] = cov.lines.get(n, 0) + line["count"]
                arcs = [b["count"] for b in line["branches"] if not b.get("throw")]
                if arcs:
                    had = cov.branches.get(n)
                    if had is not None and len(had) == len(arcs):
                        cov.branches[n] = [a + b for a, b in zip(had, arcs, strict=True)]
                    elif had is None:
                        cov.branches[n] = arcs
                    else:  # another unit made other arcs of the line: count each apart
                        cov.branches[n] = had + arcs
    return [merged.get(k) or FileCoverage(k) for k in sorted(files)]


def _gcov(gcov: str, obj: Path, work: Path) -> dict:
    """gcov's JSON for one object (its .gcno and .gcda beside it)."""
    proc = subprocess.run(
        [gcov, "--json-format", "--stdout", "--branch-probabilities", "--branch-counts",
         "--object-file", str(obj), str(obj)],
        capture_output=True, cwd=work, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise BuildError(
            f"gcov could not read {obj.name}:\n{proc.stderr.decode(errors='replace').strip()}"
        )
    out = proc.stdout
    if out[:2] == b"\x1f\x8b":
        out = gzip.decompress(out)
    # one JSON document per source gcov was given
    doc = json.loads(out.decode().splitlines()[0])
    return doc
