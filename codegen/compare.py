"""Compile-and-compare: the generated C, built with clang and gcc, must behave like the mirror.

The generated files are compiled once per compiler and optimisation level into the trap
harness (codegen/harness), which executes the real instruction bytes.  Every
case is streamed through one harness process per level, in chunks spread
over the machine's cores; each chunk's output is compared, line by line,
with what the mirror computes for the same cases.  The first difference is
reported with its case and a command that reproduces it.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING

from . import cases as case_gen, mirror
from .build import Harness, build_harness
from .diagnostics import SpecError
from .execcheck import UnsafeCode
from .host import EngineChoice, check_engine
from .model import Spec
from .record import record
from .spec import encoding_problems, parse
from .toolchain import Compiler

if TYPE_CHECKING:
    from .emulator import Emulator

DEFAULT_OPTS = ("-O0", "-O2", "-Os")


@record
class Mismatch:
    spec: str
    opt: str  # the level, with the compiler that built it: "gcc -O2"
    case: int
    index: int  # first diverging line of the case's output
    expected: str
    got: str
    context: tuple[str, ...]  # the matching lines just before
    description: str
    reproduce: str
    note: str = ""  # what the difference means, where kgen can tell


def _note(spec, want: list[str], got: list[str], at: int) -> str:
    """Why a trace differs, where the shape says it: the instruction executed again after the
    spec's retry bound ran out (an unbounded retry, as 6.12's rmpupdate() has)."""
    limit = spec.kernel.raw_helper.max_retries
    if limit is None or not (
        want[at].startswith("V ") and at < len(got) and got[at].startswith("R ")
    ):
        return ""
    retry = {f"{c.value:#x}" for o in spec.instruction.outputs for c in o.codes if c.retry}
    run = want[max(0, at - limit - 1) : at]
    if len(run) == limit + 1 and all(line.startswith("R ") and line.rsplit(" = ", 1)[1].split()[0] in retry
                                     for line in run):  # fmt: skip
        return (f"the code executes {spec.instruction.mnemonic.upper()} again after "
                f"{spec.kernel.raw_helper.name}()'s {limit} retries, where max_retries stops")  # fmt: skip
    return ""


@dataclass
class LevelStats:
    cases: int = 0
    executions: int = 0
    lines: int = 0


@dataclass
class Result:
    spec: str
    engine: EngineChoice
    compilers: tuple[Compiler, ...]
    seed: int
    opts: tuple[str, ...]
    cases: int
    stats: dict[str, LevelStats] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)
    seconds: float = 0.0
    build_seconds: float = 0.0
    references: list = field(default_factory=list)  # reference.Reference, one per --reference
    profile: str = "newest"  # the kernel profile the spec was rendered for
    coverage: list = field(default_factory=list)  # coverage.FileCoverage, with --coverage

    @property
    def compiler(self) -> Compiler:
        return self.compilers[0]

    @property
    def levels(self) -> list[str]:
        """Every build run: each compiler at each level, e.g. "clang -O0"."""
        return [f"{c.family} {o}" for c in self.compilers for o in self.opts]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def executions(self) -> int:
        return sum(s.executions for s in self.stats.values())


@record
class Job:
    """One chunk of cases, run at every optimisation level by one worker process."""

    spec_path: str
    spec_text: str  # the spec as compared: workers parse it rather than reread the file
    levels: tuple[tuple[str, Path], ...]  # (level, e.g. "gcc -O2" or "-O2", harness binary)
    engine: str
    guard: int | None
    cases: tuple[case_gen.Case, ...]
    reproduce: str
    keep_going: bool = False  # run the levels after the first that mismatches
    kernel: bool = (
        False  # a tree's kernel function runs: it returns its own result (cases.expected)
    )


def _budget(expected_lines: int) -> int:
    return expected_lines + expected_lines // 2 + 64


CASE_TIMEOUT = 20  # seconds a case may run where nothing says how long it should take
TIMEOUT_FLOOR = 2  # seconds any case may run, however short its trace
LINE_SECONDS = 200e-6  # per line of the mirror's trace: about 10x what the emulator takes


def case_timeout(lines: int) -> int:
    """Whole seconds a case with ``lines`` expected trace lines may run: generous, bounded."""
    return max(TIMEOUT_FLOOR, math.ceil(lines * LINE_SECONDS))


def _with_timeout(line: str, seconds: int) -> str:
    return f"{line[:-1]} timeout={seconds}\n"


# --- the native harness, confined ----------------------------------------------------------

OUT_SLACK = 1 << 20  # bytes of output beyond what the cases should print, before it is cut off
_RUNNING: set[int] = set()  # process groups of the harnesses this process is running


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _run_native(harness: Path, guard: int | None, text: str, limit: float | None = None,
                out_cap: int | None = None) -> str:  # fmt: skip
    """Run the native harness on ``text``: its stdout, after its "G" line.

    The harness runs in a process group of its own, which is killed when it
    is done, when it runs past ``limit`` seconds in all (the harness times
    each case itself; this is the backstop), or when its output passes
    ``out_cap`` bytes; it also confines itself (see native.c), with CPU time
    bounded by ``limit``.
    """
    limit = limit or CASE_TIMEOUT * max(text.count("\n"), 1)
    out_cap = out_cap or 64 * len(text) + OUT_SLACK
    # the CPU limit is a second line: the wall-clock one below speaks first
    # --parent: the harness dies with this process from before any code under test runs
    cmd = [str(harness), "--parent", str(os.getpid()), "--timeout", str(CASE_TIMEOUT),
           "--cpu", str(math.ceil(limit) + 2)]  # fmt: skip
    cmd += ["--guard", hex(guard)] if guard else []
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    _RUNNING.add(proc.pid)
    try:
        stdout, stderr, why = _exchange(proc, text.encode(), limit, out_cap)
    finally:
        _kill_group(proc.pid)  # with anything it left behind
        _RUNNING.discard(proc.pid)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()
    head, _, out = stdout.decode(errors="replace").partition("\n")
    if not head.startswith("G ") or head == "G fail":
        detail = "; ".join(filter(None, (head, stderr.decode(errors="replace").strip(), why)))
        raise RuntimeError(f"the native harness could not start ({detail})")
    if why:
        out = out[: out.rfind("\n") + 1] + f"B {why}\n"
    elif proc.returncode != 0:
        out += f"B the harness died ({_status(proc.returncode)})\n"
    return out


def _status(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def _exchange(proc: subprocess.Popen, data: bytes, limit: float,
              out_cap: int) -> tuple[bytes, bytes, str | None]:  # fmt: skip
    """Feed ``data`` to ``proc`` and read its output until it exits or a bound is passed.

    Returns stdout, stderr (its first 64 KiB) and why it was cut short, if it was.
    Nothing waits on a pipe that a process the harness left behind holds open.
    """
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr
    assert stdin is not None and stdout is not None and stderr is not None  # all three are pipes
    sel = selectors.DefaultSelector()
    out, err = bytearray(), bytearray()
    view, sent = memoryview(data), 0
    for pipe in (stdin, stdout, stderr):
        os.set_blocking(pipe.fileno(), False)
    if data:
        sel.register(stdin, selectors.EVENT_WRITE)
    else:
        stdin.close()
    sel.register(stdout, selectors.EVENT_READ)
    sel.register(stderr, selectors.EVENT_READ)
    why, deadline = None, time.monotonic() + limit
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                why = f"timed out after {math.ceil(limit)} s: the harness ran far longer than expected"
                break
            exited = proc.poll() is not None
            for key, _ in sel.select(min(left, 0.05 if exited else 0.5)):
                f = key.fileobj
                if f is stdin:
                    try:
                        sent += os.write(key.fd, view[sent : sent + (1 << 16)])
                    except BrokenPipeError:
                        sent = len(data)
                    if sent >= len(data):
                        sel.unregister(stdin)
                        stdin.close()
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(f)
                    continue
                (out if f is stdout else err).extend(chunk)
                if len(err) > 1 << 16:
                    del err[1 << 16 :]
                if len(out) > out_cap:
                    why = f"the harness wrote more than {out_cap} bytes: far more than the mirror expects"
                    break
            if why:
                break
            if exited and not sel.select(0):
                break  # it is gone and its pipes are drained; whatever holds them open is not waited for
    finally:
        sel.close()
    return bytes(out), bytes(err), why


# --- the emulated harness ------------------------------------------------------------------

_EMULATORS: dict[Path, Emulator] = {}
EMU_BATCH = 256 << 10  # bytes of case lines per emulator call (its input buffer holds 1 MiB)
# Unicorn keeps about 500 bytes per trapped instruction until the engine is closed (measured:
# 5 MB per 10 000 traps), so each is replaced after this many traps: at most 50 MB an engine.
# A fresh one costs 5 ms and its translations afresh; the default run hardly needs one.
EMU_RECYCLE_TRAPS = 100_000
_CASE_ID = re.compile(r"\bid=(\d+)")
_CASE_END = re.compile(r"^E \d+\n", re.M)


def _run_emulated(harness: Path, spec_line: str, lines: list[str],
                  sizes: list[int] | None = None) -> str:  # fmt: skip
    """Run case ``lines`` in the emulated harness: its output.

    ``sizes`` (expected trace lines per case) bound the time: a batch may
    take what its cases should, plus the floor; a batch that runs out runs
    again from the case it stopped in, that case alone with its own
    :func:`case_timeout`.  A case that the emulator stops (a timeout, a fault
    it cannot handle) ends the output with a "B" line, as natively.
    """
    from .emulator import Emulator, EmulatorError, EmulatorTimeout

    sizes = sizes or [250] * len(lines)  # unknown: 50 ms a case, as ever
    out: list[str] = []
    i, alone = 0, -1
    while i < len(lines):
        j, size = i + 1, len(lines[i])
        while j < len(lines) and i != alone and size + len(lines[j]) <= EMU_BATCH:
            size += len(lines[j])
            j += 1
        emu = _EMULATORS.get(harness)
        if emu is None:
            emu = _EMULATORS[harness] = Emulator(harness)
            emu.run(spec_line.encode())
        limit = (
            case_timeout(sizes[i]) if i == alone else TIMEOUT_FLOOR + sum(sizes[i:j]) * LINE_SECONDS
        )
        try:
            out.append(
                emu.run("".join(lines[i:j]).encode(), timeout=limit).decode(errors="replace")
            )
            if emu.traps > EMU_RECYCLE_TRAPS:
                _EMULATORS.pop(harness).close()
            i = j
            continue
        except EmulatorError as exc:
            _EMULATORS.pop(harness).close()  # its state is lost: load it afresh next time
            text = exc.output.decode(errors="replace")
            ends = [m.end() for m in _CASE_END.finditer(text)]
            done = ends[-1] if ends else 0
            k = i + len(ends)  # the case it stopped in
            out.append(text[:done])
            if isinstance(exc, EmulatorTimeout) and k != alone:
                i = alone = k  # run it again on its own, with its own time
                continue
            case = _CASE_ID.search(lines[k]) if k < len(lines) else None
            why = (f"timed out after {math.ceil(limit)} s: the code ran far longer than the mirror expects"
                   if isinstance(exc, EmulatorTimeout) else str(exc))  # fmt: skip
            out.append(text[done:] + f"B {why}\n" + (f"E {case.group(1)}\n" if case else ""))
            break
    return "".join(out)


def _first_difference(job: Job, opt: str, chosen, wanted, out: str, spec=None):
    got = out.split("\n")
    stats = LevelStats()
    at = 0
    for case, want in zip(chosen, wanted, strict=True):
        if got[at : at + len(want)] != want:
            for i, line in enumerate(want):
                have = got[at + i] if at + i < len(got) else "<no more output>"
                if have != line:
                    return stats, Mismatch(
                        job.spec_path, opt, case.id, i, line, have,
                        tuple(want[max(0, i - 3) : i]), case.describe(),
                        _reproduce(job.reproduce, case.id, opt),
                        _note(spec, want, got[at:], i) if spec is not None else "",
                    )  # fmt: skip
        at += len(want)
        stats.cases += 1
        stats.lines += len(want)
        stats.executions += sum(1 for line in want if line[0] == "R")
    return stats, None


def _reproduce(command: str, case: int, level: str) -> str:
    family, _, opt = level.rpartition(" ")
    return f"{command} --case {case}{f' --cc {family}' if family else ''} --opt={opt}"


# The mirror's traces of cases that many runs of the same spec share (kgen mutate compiles
# hundreds of variants of the generated code and runs each on the same cases): computed once,
# before the runs are forked.
_EXPECTED: dict[tuple[str, case_gen.Case, bool], list[str]] = {}


def remember_expected(spec: Spec, seed: int, count: int) -> None:
    """Compute once the mirror's trace of the first ``count`` cases of ``seed``, for the runs
    that follow in this process and in the processes it forks."""
    for c in islice(case_gen.stream(spec, seed), count):
        _EXPECTED[(spec.source, c, False)] = case_gen.expected(spec, c)


@functools.lru_cache(maxsize=4)
def _parsed(text: str, path: str) -> Spec:
    """The spec of a job: a worker parses each spec text once, not once per chunk."""
    return parse(text, path)


def run_job(job: Job) -> list[tuple[str, LevelStats, Mismatch | None]]:
    """Run one chunk at every level and compare with the mirror; runs in a worker process."""
    spec = _parsed(job.spec_text, job.spec_path)
    chosen = job.cases
    wanted = [_EXPECTED.get((job.spec_text, c, job.kernel)) or case_gen.expected(spec, c, job.kernel)
              for c in chosen]  # fmt: skip
    lines = [
        case_gen.case_line(spec, c, _budget(len(w))) for c, w in zip(chosen, wanted, strict=True)
    ]
    sizes = [len(w) for w in wanted]
    spec_line = case_gen.spec_line(spec)
    results = []
    for opt, harness in job.levels:
        if job.engine == "native":
            timed = [
                _with_timeout(line, case_timeout(n)) for line, n in zip(lines, sizes, strict=True)
            ]
            limit = 2 * max(map(case_timeout, sizes)) + sum(sizes) * LINE_SECONDS + TIMEOUT_FLOOR
            out_cap = 4 * sum(len(line) + 1 for w in wanted for line in w) + OUT_SLACK
            out = _run_native(harness, job.guard, spec_line + "".join(timed), limit, out_cap)
        else:
            out = _run_emulated(harness, spec_line, lines, sizes)
        results.append((opt, *_first_difference(job, opt, chosen, wanted, out, spec)))
        if results[-1][2] is not None and not job.keep_going:
            break  # what follows is not reported
    return results


def _weight(spec: Spec, case) -> int:
    """About how many events a case makes, cheaply: to balance the chunks."""
    m = case.machine
    if case.form == case_gen.HELPERS:
        return 40 + 2 * len(case.actions)
    r = mirror.sweep_range(spec, m)
    regions = (r.pa_end - r.pa_start) // spec.as_table().table.region_size
    passes = sum(a in ("run", "setup") or a.startswith("a:") for a in case.actions)
    return 40 + regions * (2 + m.cores) * passes


LOOKAHEAD = 4096  # cases that set the size of a chunk


def _chunks(spec: Spec, cases: Iterator, parts: int) -> Iterator[tuple]:
    """Split cases into chunks of similar weight, about ``parts`` per LOOKAHEAD cases.

    Streams: only the LOOKAHEAD cases that size the chunks are held at once.
    """
    head = list(islice(cases, LOOKAHEAD))
    weights = [_weight(spec, c) for c in head]
    target = max(sum(weights) // max(parts, 1), 1)
    current: list = []
    acc = 0
    for case, w in chain(zip(head, weights, strict=True), ((c, _weight(spec, c)) for c in cases)):
        if current and acc + w > target:
            yield tuple(current)
            current, acc = [], 0
        current.append(case)
        acc += w
    if current:
        yield tuple(current)


def _work_dir() -> tempfile.TemporaryDirectory:
    """A temporary directory named for this process, after removing those of dead ones.

    A compare that is killed (SIGKILL) cannot remove its directory; the next
    one does, once no process of that id is running.
    """
    for old in Path(tempfile.gettempdir()).glob("kgen-compare-*-*"):
        pid = old.name.split("-")[2]
        if pid.isdigit() and not _alive(int(pid)) and _mine(old):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"kgen-compare-{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _mine(path: Path) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()


# --- worker processes ----------------------------------------------------------------------


def _worker_init() -> None:
    """In each worker: die with the parent, leave Ctrl-C to it, and on SIGTERM take the
    harness it runs down with it."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_terminated)


def _worker_terminated(signum, _frame) -> None:
    for pgid in list(_RUNNING):
        _kill_group(pgid)
    os._exit(128 + signum)


def _die_with_parent() -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop_pool(pool: ProcessPoolExecutor, grace: float = 0.3) -> None:
    """Stop a pool now: cancel what has not started, terminate the workers (each kills its
    harness), and kill those that do not exit within ``grace`` seconds."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        proc.join(max(deadline - time.monotonic(), 0))
        if proc.is_alive():
            proc.kill()
            proc.join(1)


class Comparison:
    """One spec's compare, in steps: :meth:`start` builds the harness and makes the jobs, a
    pool runs them into :attr:`result`, :meth:`finish` ends it (the build directory goes).

    :func:`compare` takes the steps for one spec; :func:`compare_each` overlaps those of
    several.
    """

    def __init__(self, spec: Spec, compiler: Compiler | tuple[Compiler, ...], engine: EngineChoice,
                 seed: int, count: int, opts: tuple[str, ...] = DEFAULT_OPTS, only: int | None = None,
                 files: dict[str, str] | None = None, generated_dir: Path | None = None,
                 keep_going: bool = False, reference: tuple[Path, ...] = (), coverage: bool = False,
                 profile=None, profile_option: str = "", parts: int | None = None) -> None:  # fmt: skip
        self.spec, self.engine, self.seed, self.count = spec, engine, seed, count
        self.compilers = (compiler,) if isinstance(compiler, Compiler) else tuple(compiler)
        self.opts, self.only, self.files, self.generated_dir = opts, only, files, generated_dir
        self.keep_going, self.reference, self.coverage = keep_going, reference, coverage
        self.profile, self.profile_option = profile, profile_option
        self.parts = parts or 8 * (os.cpu_count() or 1)  # chunks per LOOKAHEAD cases
        self.result = Result(spec.path, engine, self.compilers, seed, opts, 0)
        self.jobs: Iterator[Job] = iter(())
        self.levels: tuple[tuple[str, Path], ...] = ()
        self._counted: tuple[str, ...] = ()
        self._harnesses: list[Harness] = []
        self._tmp: Path | None = None
        self._files: dict[str, str] = {}
        self._stack = contextlib.ExitStack()
        self._start = 0.0
        self._ended: float | None = None  # when the last results came

    def start(self) -> None:
        """Check, render and build; then :attr:`jobs` yields the cases in chunks (lazily)."""
        try:
            self._build()
        except BaseException:
            self._stack.close()
            raise

    def _build(self) -> None:
        from .execcheck import check_objects, check_sources
        from .kernelapi import NEWEST
        from .render import render_spec

        spec, engine, seed, count, only = self.spec, self.engine, self.seed, self.count, self.only
        compilers, opts, reference = self.compilers, self.opts, self.reference
        # The spec may not come from the loader (an in-memory object), and the engine may not
        # come from choose_engine: hold both to the rules before anything is compiled or run.
        problems = encoding_problems(spec)
        if problems:
            raise SpecError(problems)
        check_engine(spec, engine)
        files = self.files
        rendered = files is None  # the spec's own code, which the next run builds again: cached
        if files is None:
            files = render_spec(spec, profile=self.profile or NEWEST)
        native = engine.engine == "native"
        if native:
            check_sources(spec, files)
        counted = _coverage_levels(compilers, engine, opts, reference) if self.coverage else ()
        self._counted, self._files = counted, files
        self._start = start = time.perf_counter()
        result = self.result
        result.profile = (self.profile or NEWEST).name
        reproduce = f"kgen compare {spec.path} --seed {seed} --cases {count}"
        reproduce += f" --engine {engine.engine}"
        if self.generated_dir is not None:
            reproduce += f" --generated {self.generated_dir}"
        reproduce += "".join(f" --reference {d}" for d in reference)
        reproduce += f" {self.profile_option}" if self.profile_option else ""
        kernel = False
        if reference:
            from .reference import prove, tree_of

            result.references = prove(compilers[0], spec, files, reference)
            kernel = tree_of(reference) is not None
        if only is not None and not 0 <= only < count:
            raise ValueError(f"case {only} does not exist: seed {seed} has cases 0..{count - 1}")
        stream: Iterator[case_gen.Case] = islice(case_gen.stream(spec, seed), count)
        if kernel:  # the cases as the kernel function's parameters can carry them
            from .reference import kernel_case

            stream = (kernel_case(spec, c) for c in stream)
        if only is not None:
            stream = islice(stream, only, only + 1)
        result.cases = 1 if only is not None else count
        tmp = self._tmp = Path(self._stack.enter_context(_work_dir()))

        def build(front_end: str) -> list[Harness]:
            return [
                h for c in compilers for h in build_harness(
                    c, spec, files, tmp, opts, (front_end,), reference,
                    counted if c.family == "gcc" else (), cache=rendered,
                )
            ]  # fmt: skip

        harnesses = build("native" if native else "emulated")
        if native and engine.fallback and harnesses and not counted:
            try:  # the harness's own start-up check of the guard, before any case
                _run_native(harnesses[0].native, engine.guard, case_gen.spec_line(spec))
            except RuntimeError as exc:
                engine = EngineChoice("emulator", None, f"{exc}: emulating")
                native, result.engine = False, engine
                reproduce = reproduce.replace(" --engine native", " --engine emulator", 1)
                harnesses = build("emulated")
        for h in harnesses if native else ():
            runtime = GCOV_RUNTIME if h.coverage else ()
            if not check_objects(spec, list(h.units), list(h.harness), runtime):
                raise UnsafeCode(f"the compiled code at {h.label} does not hold the spec's bytes")
        result.build_seconds = time.perf_counter() - start
        self._harnesses = harnesses
        self.levels = levels = tuple(
            (h.label, h.native if engine.engine == "native" else h.emulated) for h in harnesses
        )
        self.jobs = (
            Job(spec.path, spec.source, levels, engine.engine, engine.guard, chunk, reproduce,
                self.keep_going, kernel)
            for chunk in _chunks(spec, stream, self.parts)
        )  # fmt: skip
        for label, _ in levels:
            result.stats[label] = LevelStats()

    def add(self, results: list[tuple[str, LevelStats, Mismatch | None]],
            at: float | None = None) -> None:  # fmt: skip
        """Count a job's ``results``, which came ``at`` (time.perf_counter(); now by default)."""
        _add_results(self.result, results)
        self._ended = max(self._ended or 0.0, at or time.perf_counter())

    @property
    def stopped(self) -> bool:
        """Whether the rest of the cases are not run: a mismatch, without keep_going."""
        return bool(self.result.mismatches) and not self.keep_going

    def finish(self) -> Result:
        """Measure coverage where asked, order the mismatches, time the whole; the build
        directory goes."""
        result = self.result
        ended = self._ended or time.perf_counter()
        measured = time.perf_counter()
        try:
            if self._counted:
                from .coverage import measure

                assert self._tmp is not None
                gcc = next(c for c in self.compilers if c.family == "gcc")
                result.coverage = measure(
                    gcc, [o for h in self._harnesses if h.coverage for o in h.units],
                    self._tmp / "gen", self._files, self._tmp,
                )  # fmt: skip
        finally:
            self._stack.close()
        order = [label for label, _ in self.levels]
        result.mismatches.sort(key=lambda m: (m.case, order.index(m.opt)))
        # from the build to the last results, and the coverage measured since: not the time
        # it waited for the specs before it to be done
        result.seconds = ended - self._start + time.perf_counter() - measured
        return result

    def close(self) -> None:
        """End it unfinished: the build directory goes."""
        self._stack.close()


def compare(spec: Spec, compiler: Compiler | tuple[Compiler, ...], engine: EngineChoice, seed: int,
            count: int, opts: tuple[str, ...] = DEFAULT_OPTS, only: int | None = None,
            files: dict[str, str] | None = None, generated_dir: Path | None = None,
            keep_going: bool = False, progress=None, workers: int | None = None,
            reference: tuple[Path, ...] = (), coverage: bool = False,
            profile=None, profile_option: str = "") -> Result:  # fmt: skip
    """Build the harness for ``spec`` (or ``files``), run the cases, compare with the mirror.

    ``compiler`` is one compiler or several: each builds the generated code
    (and the harness) at every level, and every case runs in every build.
    With ``reference`` (kernel include directories), the kernel's own helper
    of the spec's name is run instead of the generated one (see build.units).
    With ``coverage``, the gcc build at -O0 (where every branch of the source
    is still a branch) counts its arcs, and the result holds what gcov makes
    of them for each generated file (native engine only).
    With ``profile`` (a kernelapi.Profile), the spec is rendered for that
    kernel rather than the newest; ``profile_option`` is how the command
    line chose it, for the reproduce lines.
    """
    # workers=0: the caller is itself one of many workers (kgen mutate): one chunk, run here
    parts = 1 if workers == 0 else 8 * (workers or os.cpu_count() or 1)
    run = Comparison(spec, compiler, engine, seed, count, opts, only, files, generated_dir,
                     keep_going, reference, coverage, profile, profile_option, parts)  # fmt: skip
    if workers != 0:
        with contextlib.closing(compare_each([lambda: run], progress, workers)) as each:
            return next(each)
    try:
        run.start()
        try:
            for job in run.jobs:
                run.add(run_job(job))
        finally:
            for _, path in run.levels:
                if path in _EMULATORS:
                    _EMULATORS.pop(path).close()
        return run.finish()
    finally:
        run.close()


GCOV_RUNTIME = ("__gcov_init", "__gcov_exit", "__gcov_merge_add")  # what --coverage code calls


def _coverage_levels(compilers: tuple[Compiler, ...], engine: EngineChoice, opts: tuple[str, ...],
                     reference: tuple[Path, ...]) -> tuple[str, ...]:  # fmt: skip
    """The levels whose gcc build counts its arcs: -O0, where the code keeps the source's branches."""
    if not any(c.family == "gcc" for c in compilers):
        raise ValueError("--coverage needs gcc: coverage is measured with gcov")
    if engine.engine != "native":
        raise ValueError("--coverage needs the native engine: the emulated harness is a bare ELF "
                         "with no C library, so it cannot write gcov's count files")  # fmt: skip
    if "-O0" not in opts:
        raise ValueError("--coverage counts the -O0 build: add --opt=-O0")
    if reference:
        raise ValueError("--coverage measures the generated code, which --reference replaces")
    return ("-O0",)


@dataclass
class _Entry:
    """A spec in compare_each: its compare, or why it could not run, and its pool."""

    run: Comparison | None = None
    error: Exception | None = None
    pool: ProcessPoolExecutor | None = None
    fed: bool = False  # every job it will run has gone to its pool
    outstanding: int = 0  # jobs in its pool
    done_cases: int = 0

    @property
    def done(self) -> bool:
        if self.error is not None:
            return True
        assert self.run is not None
        return self.run.stopped or (self.fed and not self.outstanding)


def compare_each(plans: Iterable, progress=None,
                 workers: int | None = None) -> Generator[Result, None, None]:  # fmt: skip
    """Run the compares that ``plans`` make, overlapped, and yield each result in order.

    A plan is called (it makes a :class:`Comparison`, or refuses by raising) once the specs
    before it have handed all their jobs to their pools, so its build runs while their last
    cases do, and their pools' workers do not wait for it: about two jobs a worker are given
    out at a time, over every spec, to the earliest that has any left.  Each spec has its own
    pool, so a mismatch (without keep_going) stops that spec's workers and harnesses at once,
    as a spec compared alone.  A result comes as soon as it and those before it are done;
    its ``seconds`` run from its build to its last case, so the times of specs that overlap
    overlap.  ``progress(done, total, result)`` follows the spec whose result comes next.
    A spec that fails (its plan, its build or a job raises) ends it as it would one spec at a
    time: the results before it come first, then its exception, and nothing after it is
    reported.  However it ends (done, a failure, Ctrl-C, SIGTERM, the caller stopping), no
    worker or harness outlives it and no build directory stays.
    """
    plans = iter(plans)
    workers = workers or os.cpu_count() or 1
    cap = 2 * workers  # jobs given out at once: one running and one waiting, for each worker
    entries: list[_Entry] = []  # started (or refused), in order, not yet handed back
    pending: dict = {}  # future -> its entry and its number of cases
    more = True  # plans left
    shown: _Entry | None = None  # the entry progress last followed

    def feed() -> None:
        nonlocal more
        while len(pending) < cap and not any(e.error for e in entries):
            entry = next((e for e in entries if not e.fed), None)
            if entry is None:
                plan = next(plans, None) if more else None
                if plan is None:
                    more = False
                    return
                entry = _Entry()
                entries.append(entry)
                try:
                    entry.run = plan()
                    entry.run.start()
                except Exception as exc:
                    entry.error, entry.fed = exc, True
                    return
                entry.pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init)
                continue
            assert entry.run is not None and entry.pool is not None
            try:
                job = None if entry.run.stopped else next(entry.run.jobs, None)
            except Exception as exc:  # the cases could not be made
                entry.error, entry.fed = exc, True
                return
            if job is None:
                entry.fed = True
                continue
            fut = entry.pool.submit(run_job, job)
            fut.add_done_callback(_stamp)
            pending[fut] = (entry, len(job.cases))
            entry.outstanding += 1

    try:
        while True:
            feed()
            if not entries:
                return
            head = entries[0]
            if progress and head is not shown and head.run is not None and head.done_cases:
                progress(head.done_cases, head.run.result.cases, head.run.result)
            shown = head
            if head.done:
                entries.pop(0)
                _end_pool(head, pending)
                if head.error is not None:
                    raise head.error
                assert head.run is not None
                yield head.run.finish()
                continue
            # the head is fed whole (only the last spec is fed at a time), so it waits on jobs
            assert pending, "a spec that is not done has no job running"
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                entry, n = pending.pop(fut)
                entry.outstanding -= 1
                if entry.error is not None or entry.run is None or entry.run.stopped:
                    continue  # what still ran of a spec that stopped is not reported
                try:
                    entry.run.add(fut.result(), getattr(fut, "kgen_done", None))
                except Exception as exc:
                    entry.error = exc
                    continue
                entry.done_cases += n
                if progress and entry is head:
                    progress(entry.done_cases, entry.run.result.cases, entry.run.result)
    except BaseException:
        for entry in entries:
            _end_pool(entry, pending, stop=True)
        raise
    finally:
        for entry in entries:
            if entry.run is not None:
                entry.run.close()


def _stamp(fut) -> None:
    """When a job's results came, though they are counted later (a build may run then; the
    stamp may come just after the waiter wakes, and then the time it is counted stands)."""
    fut.kgen_done = time.perf_counter()


def _end_pool(entry: _Entry, pending: dict, stop: bool = False) -> None:
    """Shut a spec's pool down; stop it at once (workers and harnesses killed) where jobs of
    it are still there, which nothing will report."""
    for fut in [f for f, (e, _) in pending.items() if e is entry]:
        del pending[fut]
        stop = True
    if entry.pool is None:
        return
    if stop:
        _stop_pool(entry.pool)
    else:
        entry.pool.shutdown()
    entry.pool = None


def _add_results(result: Result, results: list[tuple[str, LevelStats, Mismatch | None]]) -> None:
    for opt, stats, mismatch in results:
        level = result.stats[opt]
        level.cases += stats.cases
        level.executions += stats.executions
        level.lines += stats.lines
        if mismatch:
            result.mismatches.append(mismatch)
