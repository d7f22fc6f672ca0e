"""Every row of the performance table, measured now: ``make bench``.

    .venv/bin/python benchmarks/run.py [--runs N] [--compare-runs M] [--suite] [ROW]...

The machine is shared and noisy, so nothing here is an absolute time alone:
a start-up row is the median, over N paired runs, of the command's wall time
divided by its baseline's, both measured back to back in the same run (the
baseline is Python importing the libraries kgen needs, in the same venv).
Compare rows are whole processes, warm (one run first fills the object
cache), medians of M runs.  ``--suite`` adds the test suite (``make quick``
and ``make test``), once each: minutes of both cores.

ROW picks rows by name (render, sweep-json, sweep-summary, compare-rmpopt,
native, compare-all); all of them by default.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# kgen of the checkout this script is in (so a copy of an older commit measures that one)
KGEN = [sys.executable, "-m", "codegen.cli"]
os.environ["PYTHONPATH"] = str(ROOT)
PY = sys.executable
BASELINE = [PY, "-c", "import jinja2, yaml, click"]
SWEEP = [*KGEN, "sweep", "isa/rmpopt.yaml", "--memory", "2T", "--cores", "256",
         "--threads-per-core", "2"]  # fmt: skip


def wall(cmd: list[str], stdout=subprocess.DEVNULL) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, stdout=stdout, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def paired(cmd_for, runs: int) -> tuple[float, float, float]:
    """(median ratio, median seconds, median baseline seconds) of ``runs`` paired runs."""
    ratios, times, bases = [], [], []
    with tempfile.TemporaryDirectory(prefix="kgen-bench-") as tmp:
        for i in range(runs + 1):
            cmd, out = cmd_for(Path(tmp), i)
            base = wall(BASELINE)
            with open(out, "wb") if out else open(os.devnull, "wb") as f:
                t = wall(cmd, f)
            if i:  # the first pair warms the page cache and kgen's caches
                ratios.append(t / base)
                times.append(t)
                bases.append(base)
    return statistics.median(ratios), statistics.median(times), statistics.median(bases)


def row_render(runs: int):
    r, t, b = paired(lambda tmp, i: ([*KGEN, "render", "--out", str(tmp / f"out{i}")], None), runs)
    return f"{r:.2f}x", f"{t:.3f} s vs {b:.3f} s", "<= 1.5x"


def row_sweep_json(runs: int):
    r, t, b = paired(lambda tmp, i: ([*SWEEP, "--json"], tmp / "trace.jsonl"), runs)
    return f"{r:.2f}x", f"{t:.3f} s vs {b:.3f} s", "<= 5x"


def row_sweep_summary(runs: int):
    r, t, b = paired(lambda tmp, i: (SWEEP, None), runs)
    return f"{r:.2f}x", f"{t:.3f} s vs {b:.3f} s", "<= 2x"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


CPU_SECONDS: list[float] = []  # of the last compare_runs: what the load of others does not inflate


def compare_runs(args: list[str], runs: int) -> tuple[float, list[dict]]:
    """Median wall seconds of ``kgen compare ARGS --json`` after one warm-up, and the reports;
    the median CPU seconds (kgen, its workers, compilers and harnesses) in CPU_SECONDS."""
    cmd = [*KGEN, "compare", *args, "--json"]
    subprocess.run(cmd, cwd=ROOT, capture_output=True, check=False)
    times, cpu, reports = [], [], []
    for _ in range(runs):
        start, used = time.perf_counter(), _cpu()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        cpu.append(_cpu() - used)
        reports.append(json.loads(proc.stdout))
    CPU_SECONDS[:] = [statistics.median(cpu)]
    return statistics.median(times), reports


def _engines(report: dict) -> str:
    return ", ".join(sorted({s["engine"] for s in report["specs"]}))


def row_compare_rmpopt(runs: int):
    t, reports = compare_runs(["isa/rmpopt.yaml"], runs)
    return f"{t:.1f} s", f"engine {_engines(reports[0])}, CPU {CPU_SECONDS[0]:.1f} s", "< 8 s"


def row_native(runs: int):
    t, reports = compare_runs(["isa/rmpopt.yaml", "--engine", "native"], runs)
    n = reports[0]["specs"][0]["executions"]
    return (f"{n / t / 1000:.0f}k exec/s", f"{n} executions in {t:.1f} s, CPU {CPU_SECONDS[0]:.1f} s",
            ">= 200k exec/s")  # fmt: skip


def row_compare_all(runs: int):
    t, reports = compare_runs([], runs)
    per = ", ".join(f"{Path(s['spec']).stem} {s['engine'][0]} {s['seconds']:.1f}"
                    for s in reports[0]["specs"])  # fmt: skip
    return f"{t:.1f} s", f"CPU {CPU_SECONDS[0]:.1f} s; {per}", "< 15 s"


def suite(target: str) -> tuple[str, str]:
    start = time.perf_counter()
    proc = subprocess.run(["make", target], cwd=ROOT, capture_output=True, text=True, check=False)
    t = time.perf_counter() - start
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    return f"{t:.0f} s", re.sub(r"=+", "", tail).strip()


ROWS = {
    "render": ("kgen render --out DIR / import jinja2, yaml, click", row_render),
    "sweep-json": ("kgen sweep rmpopt 2T 256x2 --json / start-up", row_sweep_json),
    "sweep-summary": ("kgen sweep rmpopt 2T 256x2 (summary) / start-up", row_sweep_summary),
    "compare-rmpopt": ("kgen compare isa/rmpopt.yaml (default engine), warm", row_compare_rmpopt),
    "native": ("kgen compare isa/rmpopt.yaml --engine native, whole process", row_native),
    "compare-all": ("kgen compare (all specs), warm", row_compare_all),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="*", metavar="ROW", help=", ".join(ROWS))
    ap.add_argument("--runs", type=int, default=21, help="paired runs of a start-up row")
    ap.add_argument("--compare-runs", type=int, default=1, help="runs of a compare row")
    ap.add_argument("--suite", action="store_true", help="also time make quick and make test")
    args = ap.parse_args()
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown row {unknown[0]!r}: one of {', '.join(ROWS)}")
    # the baseline's libraries were byte-compiled when pip installed them; kgen's sources are
    # too (an environment with PYTHONDONTWRITEBYTECODE would otherwise compile them every run)
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "codegen")], check=True)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"| {'what':62} | {'now':>16} | {'detail':42} | target |")
    print(f"|{'-' * 64}|{'-' * 18}|{'-' * 44}|--------|")
    for name in args.rows or ROWS:
        title, fn = ROWS[name]
        runs = args.compare_runs if name.startswith(("compare", "native")) else args.runs
        now, detail, target = fn(runs)
        print(f"| {title:62} | {now:>16} | {detail:42} | {target} |", flush=True)
    if args.suite:
        for target, goal in (("quick", "< 60 s"), ("test", "< 240 s")):
            now, detail = suite(target)
            print(f"| {'make ' + target:62} | {now:>16} | {detail[:42]:42} | {goal} |", flush=True)


if __name__ == "__main__":
    main()
