"""Compile-and-compare: the generated C, built with clang, must behave like the mirror.

The generated files are compiled once per optimisation level into the trap
harness (tests/harness), which executes the real instruction bytes.  Every
case is streamed through one harness process per level, in chunks spread
over the machine's cores; each chunk's output is compared, line by line,
with what the mirror computes for the same cases.  The first difference is
reported with its case and a command that reproduces it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from . import cases as case_gen
from . import mirror
from .build import Harness, build_harness
from .diagnostics import SpecError
from .execcheck import UnsafeCode
from .host import EngineChoice, check_engine
from .model import Spec
from .spec import encoding_problems, parse
from .toolchain import Compiler

DEFAULT_OPTS = ("-O0", "-O2", "-Os")


@dataclass(frozen=True)
class Mismatch:
    spec: str
    opt: str
    case: int
    index: int  # first diverging line of the case's output
    expected: str
    got: str
    context: tuple[str, ...]  # the matching lines just before
    description: str
    reproduce: str


@dataclass
class LevelStats:
    cases: int = 0
    executions: int = 0
    lines: int = 0


@dataclass
class Result:
    spec: str
    engine: EngineChoice
    compiler: Compiler
    seed: int
    opts: tuple[str, ...]
    cases: int
    stats: dict[str, LevelStats] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)
    seconds: float = 0.0
    build_seconds: float = 0.0
    references: list = field(default_factory=list)  # reference.Reference, one per --reference

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def executions(self) -> int:
        return sum(s.executions for s in self.stats.values())


@dataclass(frozen=True)
class Job:
    """One chunk of cases, run at every optimisation level by one worker process."""

    spec_path: str
    spec_text: str  # the spec as compared: workers parse it rather than reread the file
    levels: tuple[tuple[str, Path], ...]  # (opt, harness binary)
    engine: str
    guard: int | None
    seed: int
    count: int
    ids: tuple[int, ...]
    reproduce: str


def _budget(expected_lines: int) -> int:
    return expected_lines + expected_lines // 2 + 64


CASE_TIMEOUT = 20  # seconds one case may run: code that loops without any event


def _run_native(harness: Path, guard: int | None, text: str) -> str:
    cmd = [str(harness), "--timeout", str(CASE_TIMEOUT)]
    cmd += ["--guard", hex(guard)] if guard else []
    proc = subprocess.run(cmd, input=text, capture_output=True, text=True, check=False)
    head, _, out = proc.stdout.partition("\n")
    if not head.startswith("G ") or head == "G fail":
        raise RuntimeError(f"the native harness could not start ({head or proc.stderr.strip()})")
    if proc.returncode != 0:
        out += f"B the harness died (exit status {proc.returncode})\n"
    return out


_EMULATORS: dict[Path, object] = {}
EMU_BATCH = 256 << 10  # bytes of case lines per emulator call (its input buffer holds 1 MiB)


def _run_emulated(harness: Path, spec_line: str, lines: list[str]) -> str:
    from .emulator import Emulator, EmulatorTimeout

    out, batch, size = [], [], 0
    for line in lines + [None]:
        if line is None or (batch and size + len(line) > EMU_BATCH):
            emu = _EMULATORS.get(harness)
            if emu is None:
                emu = _EMULATORS[harness] = Emulator(harness)
                emu.run(spec_line.encode())
            try:
                # generous: a normal batch takes a few seconds
                text = emu.run("".join(batch).encode(), timeout=CASE_TIMEOUT + len(batch) * 0.05)
            except EmulatorTimeout as exc:
                del _EMULATORS[harness]  # its state is lost: load it afresh next time
                text = exc.args[0] + b"\nB timed out: the code ran far longer than the mirror expects\n"
                out.append(text.decode(errors="replace"))
                break
            out.append(text.decode(errors="replace"))
            batch, size = [], 0
        if line is not None:
            batch.append(line)
            size += len(line)
    return "".join(out)


def _first_difference(job: Job, opt: str, chosen, wanted, out: str):
    got = out.split("\n")
    stats = LevelStats()
    at = 0
    for case, want in zip(chosen, wanted):
        if got[at : at + len(want)] != want:
            for i, line in enumerate(want):
                have = got[at + i] if at + i < len(got) else "<no more output>"
                if have != line:
                    return stats, Mismatch(
                        job.spec_path, opt, case.id, i, line, have,
                        tuple(want[max(0, i - 3) : i]), case.describe(),
                        f"{job.reproduce} --case {case.id} --opt={opt}",
                    )  # fmt: skip
        at += len(want)
        stats.cases += 1
        stats.lines += len(want)
        stats.executions += sum(1 for line in want if line[0] == "R")
    return stats, None


def run_job(job: Job) -> list[tuple[str, LevelStats, Mismatch | None]]:
    """Run one chunk at every level and compare with the mirror; runs in a worker process."""
    spec = parse(job.spec_text, job.spec_path)
    all_cases = case_gen.generate(spec, job.seed, job.count)
    chosen = [all_cases[i] for i in job.ids]
    wanted = [case_gen.expected(spec, c) for c in chosen]
    lines = [case_gen.case_line(spec, c, _budget(len(w))) for c, w in zip(chosen, wanted)]
    spec_line = case_gen.spec_line(spec)
    results = []
    for opt, harness in job.levels:
        if job.engine == "native":
            out = _run_native(harness, job.guard, spec_line + "".join(lines))
        else:
            out = _run_emulated(harness, spec_line, lines)
        results.append((opt, *_first_difference(job, opt, chosen, wanted, out)))
    return results


def _weight(spec: Spec, case) -> int:
    """About how many events a case makes, cheaply: to balance the chunks."""
    m = case.machine
    if case.form == case_gen.HELPERS:
        return 40 + 2 * len(case.actions)
    r = mirror.sweep_range(spec, m)
    regions = (r.pa_end - r.pa_start) // spec.instruction.table.region_size
    passes = sum(a in ("run", "setup") or a.startswith("a:") for a in case.actions)
    return 40 + regions * (2 + m.cores) * passes


def _chunks(spec: Spec, all_cases: tuple, ids: list[int], parts: int) -> list[tuple[int, ...]]:
    """Split case ids into chunks of similar weight, several per worker."""
    weights = [_weight(spec, all_cases[i]) for i in ids]
    target = max(sum(weights) // max(parts, 1), 1)
    chunks, current, acc = [], [], 0
    for i, w in zip(ids, weights):
        if current and acc + w > target:
            chunks.append(tuple(current))
            current, acc = [], 0
        current.append(i)
        acc += w
    if current:
        chunks.append(tuple(current))
    return chunks


def compare(spec: Spec, compiler: Compiler, engine: EngineChoice, seed: int, count: int,
            opts: tuple[str, ...] = DEFAULT_OPTS, only: int | None = None,
            files: dict[str, str] | None = None, generated_dir: Path | None = None,
            keep_going: bool = False, progress=None, workers: int | None = None,
            reference: tuple[Path, ...] = ()) -> Result:  # fmt: skip
    """Build the harness for ``spec`` (or ``files``), run the cases, compare with the mirror.

    With ``reference`` (kernel include directories), the kernel's own helper
    of the spec's name is run instead of the generated one (see build.units).
    """
    from .render import render_spec

    from .execcheck import check_objects, check_sources

    # The spec may not come from the loader (an in-memory object), and the engine may not
    # come from choose_engine: hold both to the rules before anything is compiled or run.
    problems = encoding_problems(spec)
    if problems:
        raise SpecError(problems)
    check_engine(spec, engine)
    files = files if files is not None else render_spec(spec)
    native = engine.engine == "native"
    if native:
        check_sources(spec, files)
    start = time.perf_counter()
    result = Result(spec.path, engine, compiler, seed, opts, 0)
    reproduce = f"kgen compare {spec.path} --seed {seed} --cases {count} --engine {engine.engine}"
    if generated_dir is not None:
        reproduce += f" --generated {generated_dir}"
    reproduce += "".join(f" --reference {d}" for d in reference)
    if reference:
        from .reference import prove

        result.references = prove(compiler, spec, files, reference)
    all_cases = case_gen.generate(spec, seed, count)
    ids = [only] if only is not None else list(range(len(all_cases)))
    if only is not None and not 0 <= only < len(all_cases):
        raise ValueError(f"case {only} does not exist: seed {seed} has cases 0..{len(all_cases) - 1}")
    result.cases = len(ids)
    with tempfile.TemporaryDirectory(prefix="kgen-compare-") as tmp:
        harnesses: list[Harness] = build_harness(
            compiler, spec, files, Path(tmp), opts,
            ("native",) if native else ("emulated",), reference,
        )
        for h in harnesses if native else ():
            if not check_objects(spec, list(h.units), list(h.harness)):
                raise UnsafeCode(f"the compiled code at {h.opt} does not hold the spec's bytes")
        result.build_seconds = time.perf_counter() - start
        levels = tuple(
            (h.opt, h.native if engine.engine == "native" else h.emulated) for h in harnesses
        )
        jobs = [
            Job(spec.path, spec.source, levels, engine.engine, engine.guard, seed, count, chunk, reproduce)
            for chunk in _chunks(spec, all_cases, ids, 8 * (workers or os.cpu_count() or 1))
        ]  # fmt: skip
        total = len(jobs)
        for opt in opts:
            result.stats[opt] = LevelStats()
        with ProcessPoolExecutor(max_workers=workers or min(len(jobs), os.cpu_count() or 1)) as pool:
            pending = {pool.submit(run_job, j) for j in jobs}
            done_jobs = 0
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    for opt, stats, mismatch in fut.result():
                        level = result.stats[opt]
                        level.cases += stats.cases
                        level.executions += stats.executions
                        level.lines += stats.lines
                        if mismatch:
                            result.mismatches.append(mismatch)
                    done_jobs += 1
                    if progress:
                        progress(done_jobs, total, result)
                if result.mismatches and not keep_going:
                    for fut in pending:
                        fut.cancel()
                    break
    result.mismatches.sort(key=lambda m: (m.case, opts.index(m.opt)))
    result.seconds = time.perf_counter() - start
    return result
