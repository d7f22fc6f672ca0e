"""The full mutation run: every mutant of every bundled spec through compare.

    .venv/bin/python benchmarks/bench_mutation.py [--jobs N] [SPEC]...

Runs `kgen mutate` (all operators, no sample) and records its wall time and score, per spec
and per operator, in benchmarks/mutation.txt; exits as kgen mutate does (1 on a survivor
that tests/mutation/equivalent.yaml does not list).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KGEN = ROOT / ".venv" / "bin" / "kgen"


def main(argv: list[str]) -> int:
    start = time.perf_counter()
    proc = subprocess.run(
        [str(KGEN), "mutate", "--json", *argv], cwd=ROOT, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if not proc.stdout.strip():
        sys.stderr.write(proc.stderr)
        return proc.returncode or 1
    report = json.loads(proc.stdout)
    t = report["total"]
    lines = [
        f"kgen mutate {' '.join(argv)}".rstrip() + f": {wall:.0f} s wall on {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), {datetime.now(UTC):%Y-%m-%d}",
        f"plan: {' and '.join(report['plan']['compilers'])} at {' '.join(report['plan']['opts'])}, "
        f"seed {report['plan']['seed']}, {report['plan']['cases']} cases a mutant",
        _row("total", t),
        f"  of the killed: {t['killed_by_review']} only by a review rule (compare passed them), "
        f"{t['hangs']} by a hang",
        *(_row(s["spec"], s) for s in report["specs"]),
        *(_row(op, s) for op, s in report["operators"].items()),
    ]
    survivors = [m["id"] for m in report["mutants"] if m["status"] in ("survived", "error")]
    lines += [f"survivor: {m}" for m in survivors]
    lines += [f"review only: {m['id']} {m['detail'].split(':')[0]}" for m in report["mutants"]
              if m["status"] == "killed" and m["detail"].startswith("review [")]  # fmt: skip
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "mutation.txt").write_text(text)
    sys.stdout.write(text)
    return proc.returncode


def _row(name: str, s: dict) -> str:
    score = "n/a" if s["score"] is None else f"{100 * s['score']:.1f} %"
    return (
        f"  {name:<22} {score:>8}  {s['killed']} killed, {s['survived']} survived, "
        f"{s['equivalent']} equivalent, {s['stillborn']} stillborn, {s['mutants']} mutants"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
