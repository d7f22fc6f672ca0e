"""How fast the mirror computes a full sweep.

    .venv/bin/python benchmarks/bench_mirror.py

A 2 TB machine (the whole RMPOPT table) with 256 cores and SMT-2: 2048
regions, each run by the leader and then by 255 followers, over 500 000
events.  Prints the best of five runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codegen import mirror  # noqa: E402
from codegen.spec import load  # noqa: E402


def main() -> None:
    spec = load(Path(__file__).resolve().parent.parent / "isa" / "rmpopt.yaml")
    coverage = spec.instruction.table.coverage
    machine = mirror.Machine(0, coverage >> mirror.PAGE_SHIFT, cores=256, threads_per_core=2)
    best, events = float("inf"), 0
    for _ in range(5):
        start = time.perf_counter()
        events = sum(1 for _ in mirror.sweep(spec, machine))
        best = min(best, time.perf_counter() - start)
    print(
        f"mirror sweep: {events} events (256 cores x 2 threads, "
        f"{spec.instruction.table.entries} regions) in {best * 1000:.0f} ms "
        f"= {events / best / 1e6:.2f} M events/s"
    )


if __name__ == "__main__":
    main()
