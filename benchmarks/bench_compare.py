"""What compile-and-compare costs, per engine.

    .venv/bin/python benchmarks/bench_compare.py [CASES]

Runs the default comparison (CASES configurations, default 3000, at -O0,
-O2 and -Os) with each engine this machine can use, and a trap-bound case (a
2 TB sweep on one CPU: 2048 traps in a row) to show the cost of one trapped
instruction: a signal round trip natively, a hook round trip emulated.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codegen import build, cases, compare, host, toolchain  # noqa: E402
from codegen.emulator import Emulator  # noqa: E402
from codegen.render import render_spec  # noqa: E402
from codegen.spec import load  # noqa: E402


def per_trap(spec, harness, engine) -> float:
    t = spec.instruction.table
    line = (f"case id=0 form=kthread max={t.coverage >> 12:#x} cores=1 "
            "actions=setup,run,teardown\n")  # fmt: skip
    text = cases.spec_line(spec) + line
    if engine.engine == "native":
        compare._run_native(harness.native, engine.guard, text)
        start = time.perf_counter()
        compare._run_native(harness.native, engine.guard, text)
    else:
        emu = Emulator(harness.emulated)
        emu.run(text.encode())
        start = time.perf_counter()
        emu.run(text.encode())
    return (time.perf_counter() - start) / t.entries


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    spec = load(Path(__file__).resolve().parent.parent / "isa" / "rmpopt.yaml")
    clang = toolchain.find_clang()
    cpu = host.host_cpu()
    print(
        f"{clang.name} ({clang.origin}); CPU {cpu.vendor}, CLZERO {'yes' if cpu.clzero else 'no'}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        (h,) = build.build_harness(clang, spec, render_spec(spec), Path(tmp), ("-O2",))
        for name in ("native", "emulator"):
            engine = host.choose_engine(name, spec)
            r = compare.compare(spec, clang, engine, seed=1, count=count)
            run = r.seconds - r.build_seconds
            print(f"{name:9} {count} cases x 3 levels: {r.executions} executions, build "
                  f"{r.build_seconds:.1f} s, run {run:.1f} s, total {r.seconds:.1f} s = "
                  f"{r.executions / run:,.0f} executions/s; one trap "
                  f"{per_trap(spec, h, engine) * 1e6:.1f} us"
                  + (" (guarded)" if engine.guard else ""))  # fmt: skip


if __name__ == "__main__":
    main()
