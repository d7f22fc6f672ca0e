"""The configurations compile-and-compare runs, and what the mirror expects of each.

A case is a machine plus a script of actions for one generated form: a
worker (setup, trigger, run, advance time, teardown) or the helpers (call
``rmpopt(pa)`` or ``__rmpopt(rax, rcx)`` on a CPU).  :func:`generate` gives
every boundary first, then random cases from a seed; case N of a seed is
always the same case.  :func:`case_line` writes a case in the harness's
input format and :func:`expected` the event lines the harness must print
(see codegen/harness/core.c for both formats).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from functools import cache
from itertools import islice

from . import mirror, oracle
from .diagnostics import plural
from .host import GUARD_TOP
from .mirror import Machine
from .model import Spec, Worker
from .record import record

HELPERS = "helpers"


@record
class Case:
    id: int
    form: str  # a worker kind, or "helpers"
    machine: Machine
    actions: tuple[str, ...]
    label: str

    def describe(self) -> str:
        m = self.machine
        parts = [
            f"{self.form}", f"min_low_pfn={m.min_low_pfn:#x}", f"max_pfn={m.max_pfn:#x}",
            f"{plural(m.cores, 'core')} x {plural(m.threads_per_core, 'thread')} ({m.numbering})",
            f"leader {m.leader}",
        ]  # fmt: skip
        if m.offline:
            parts.append("offline " + ",".join(map(str, sorted(m.offline))))
        if m.assigned:
            parts.append("assigned " + ",".join(f"{s:#x}-{e:#x}" for s, e in m.assigned))
        if m.table_base is not None:
            parts.append(f"base {m.table_base:#x}")
        if not m.feature:
            parts.append("without the feature")
        for name in sorted(m.without):
            parts.append(f"without {name}")
        if m.nomem:
            parts.append(f"the first {m.nomem} worker allocation(s) fail")
        if m.hpfail:
            parts.append(f"the first {m.hpfail} cpuhp_setup_state() call(s) fail")
        if m.stuck:
            parts.append("retry codes persist")
        parts.append("actions " + ",".join(self.actions))
        return f"[{self.label}] " + "; ".join(parts)


def spec_line(spec: Spec) -> str:
    insn = spec.instruction
    if oracle.uses_oracle(spec):
        return (
            "spec insn=" + ",".join(f"{b.byte:#04x}" for b in insn.encoding) + " "
            + " ".join(oracle.spec_fields(spec)) + "\n"
        )  # fmt: skip
    tv = spec.as_table()
    codes = ",".join(
        f"{c.value:#x}:{'s' if c.effect == 'scan-and-set' else 'r'}"
        for c in (tv.function_codes.codes if tv.function_codes else ())
    )
    return (
        "spec insn=" + ",".join(f"{b.byte:#04x}" for b in insn.encoding)
        + f" region={tv.table.region_size:#x} entries={tv.table.entries} codes={codes}"
        + "".join(f" {field}" for field in enable_fields(spec)) + "\n"
    )  # fmt: skip


def enable_fields(spec: Spec) -> list[str]:
    """What the harness needs to model enabling: the MSR, its scope, bits and the feature."""
    insn = spec.instruction
    if spec.kernel.enable is None or insn.msr is None or insn.cpuid is None:
        return []
    msr = insn.msr
    mask = 0
    if msr.base is not None and msr.value == "base | enable":
        mask = (1 << (msr.base.high_bit + 1)) - (1 << msr.base.low_bit)
    return [f"msr={msr.number:#x}", f"msrscope={msr.scope}", f"enbit={msr.enable.bit}",
            f"basemask={mask:#x}", f"feature={insn.cpuid.word * 32 + insn.cpuid.word_bit}",
            f"fault={msr.fault}"] + (
        ["prereqs=" + ",".join(p.argument for p in spec.kernel.enable.requires)]
        if spec.kernel.enable.requires else [])  # fmt: skip


def case_line(spec: Spec, case: Case, budget: int) -> str:
    m = case.machine
    fields = [
        f"id={case.id}", f"form={case.form}", f"min={m.min_low_pfn:#x}", f"max={m.max_pfn:#x}",
        f"cores={m.cores}", f"threads={m.threads_per_core}", f"numbering={m.numbering}",
        f"leader={m.leader}", f"budget={budget}",
    ]  # fmt: skip
    if not oracle.uses_oracle(spec):
        base = m.table_base if m.table_base is not None else mirror.sweep_range(spec, m).pa_start
        fields.append(f"base={base:#x}")
    if m.offline:
        fields.append("offline=" + ",".join(map(str, sorted(m.offline))))
    if m.assigned:
        fields.append("assigned=" + ",".join(f"{s:#x}:{e:#x}" for s, e in m.assigned))
    if not m.feature:
        fields.append("feature=0")
    elif case.form == HELPERS and enable_fields(spec):
        fields.append("msron=1")  # direct helper calls: the MSRs were enabled before
    if m.without:
        arguments = {p.name: p.argument for p in spec.as_sweep().enable.requires}
        fields.append("absent=" + ",".join(arguments[name] for name in sorted(m.without)))
    if m.nomem:
        fields.append(f"nomem={m.nomem}")
    if m.hpfail:
        fields.append(f"hpfail={m.hpfail}")
    if m.stuck:
        fields.append("stuck=1")
    fields.append("actions=" + ",".join(case.actions))
    return "case " + " ".join(fields) + "\n"


def event_line(event: mirror.Event, ms: int = 0) -> str:
    if event.kind == "rmpopt":
        return f"R {event.cpu} {event.rax:#x} {event.rcx:#x} {event.cf}"
    if event.kind == "resched":
        return f"S {event.cpu}"
    if event.kind == "ipi":
        return f"I {event.cpu} " + ",".join(map(str, event.targets))
    if event.kind == "wrmsr":
        return f"M {event.cpu} {event.msr:#x} {event.value:#x}"
    if event.kind == "fault":
        return f"F {event.cpu} {event.rax:#x} {event.rcx:#x} {event.exception}"
    return f"L {ms} {event.text}"


def expected(spec: Spec, case: Case, kernel: bool = False) -> list[str]:
    """The event lines the generated code must produce for ``case``, end line included.

    ``kernel``: what a tree's kernel function must produce instead, which returns
    its own value for the low-level helper's (reference.kernel_result).
    """
    lines: list[str] = []
    if oracle.uses_oracle(spec):
        from .reference import kernel_result

        model = oracle.Oracle(spec, stuck=case.machine.stuck)
        for action in case.actions:
            _, cpu_text, *args = action.split(":")
            trace, ret = oracle.call(spec, model, int(cpu_text), [int(a, 0) for a in args])
            lines += trace + [f"V {kernel_result(spec, ret) if kernel else ret:#x}"]
        return lines + [f"E {case.id}"]
    hw = mirror.hardware_for(spec, case.machine)
    if case.form == HELPERS:
        for action in case.actions:
            kind, cpu_text, *args = action.split(":")
            cpu = int(cpu_text)
            if kind == "h":
                regs = mirror.registers(spec, int(args[0], 0))
            else:
                regs = {
                    i.register: int(a, 0)
                    for i, a in zip(spec.instruction.inputs, args, strict=True)
                }
            try:
                cf = hw.execute(cpu, regs["rax"], regs["rcx"])
            except mirror.Faulted as exc:
                lines.append(event_line(exc.event))
                break
            lines += [f"R {cpu} {regs['rax']:#x} {regs['rcx']:#x} {cf}", f"V {cf:#x}"]
    else:
        worker = next(w for w in spec.as_sweep().sweep.workers if w.kind == case.form)
        lines += [event_line(e, ms) for e, ms in
                  mirror.feature_trace(spec, worker, case.machine, list(case.actions))]  # fmt: skip
    lines.append(f"E {case.id}")
    return lines


# --- generating cases -------------------------------------------------------


def _pfn(pa: int) -> int:
    return pa >> mirror.PAGE_SHIFT


def _worker_script(rng: random.Random, worker, passes_max: int) -> tuple[str, ...]:
    if worker.kind == "kthread":
        script = ["setup", "run"]
        for _ in range(rng.randint(0, passes_max - 1)):
            script += ["trigger"] * rng.randint(1, 3) + ["run"]
        if rng.random() < 0.3:
            script.append("trigger")  # a request the teardown overtakes
        return tuple(script + ["teardown"])
    first, rearm = worker.first_delay_ms, worker.rearm_delay_ms
    script = ["setup", f"a:{first}"]
    for _ in range(rng.randint(0, passes_max - 1)):
        for _ in range(rng.randint(1, 3)):  # a burst, closer together than the re-arm delay
            script += ["trigger", f"a:{rng.randint(0, max(rearm - 1, 0))}"]
        script.append(f"a:{rearm}")
    if rng.random() < 0.3:
        script.append("trigger")  # cancelled by the teardown
    return tuple(script + ["teardown"])


def _sequences(worker) -> list[tuple[str, tuple[str, ...]]]:
    """Setup, requests and teardown interleaved as callers may: each must match the mirror."""
    go = "run" if worker.kind == "kthread" else f"a:{worker.rearm_delay_ms}"
    first = "run" if worker.kind == "kthread" else f"a:{worker.first_delay_ms}"
    return [
        ("request before setup", ("trigger", go, "setup", first, "teardown")),
        ("setup twice", ("setup", "setup", first, "trigger", go, "teardown")),
        ("teardown twice", ("setup", first, "teardown", "teardown")),
        ("teardown while a pass is pending", ("setup", "trigger", "teardown", go)),
        ("request after teardown", ("setup", first, "teardown", "trigger", go, "teardown")),
        ("setup again after teardown", ("setup", first, "teardown", "setup", first, "teardown")),
        ("teardown before setup", ("teardown", "setup", first, "teardown")),
        # a teardown from another CPU while a pass runs, at a cond_resched() between regions:
        # it waits for the pass (the case's machine sweeps 2 regions: 4 cond_resched() calls)
        (
            "teardown while a pass runs, between the leader's regions",
            ("setup", "teardown-at:1", first, "setup", first, "teardown"),
        ),
        (
            "teardown while a pass runs, between the followers' regions",
            ("setup", "teardown-at:3", first, "trigger", go, "teardown"),
        ),
        (
            "teardown while a later pass runs, after its last region",
            ("setup", first, "trigger", "teardown-at:4", go, "teardown", "teardown"),
        ),
        # a request from another CPU while a pass runs: it makes another pass after this one
        ("a request while a pass runs", ("setup", "trigger-at:2", first, go, "teardown")),
    ]


def _hotplug_sequences(
    worker, machine: Machine
) -> list[tuple[str, frozenset[int], tuple[str, ...]]]:
    """CPU hotplug around and during the worker's life, on ``machine`` (3 cores x 2 threads,
    spread numbering, the leader on CPU 4: core 1's secondary thread): (label, CPUs offline
    at the start, actions).  Core 2 is CPUs 2 and 5; core 1's primary is CPU 1."""
    go = "run" if worker.kind == "kthread" else f"a:{worker.rearm_delay_ms}"
    first = "run" if worker.kind == "kthread" else f"a:{worker.first_delay_ms}"
    core2 = frozenset({2, 5})
    none: frozenset[int] = frozenset()
    return [
        (
            "a core comes online after setup, then a pass",
            core2,
            ("setup", first, "online:2", "trigger", go, "teardown"),
        ),
        (
            "a core's secondary thread comes online first, then its primary",
            core2,
            ("setup", first, "online:5", "online:2", "trigger", go, "teardown"),
        ),
        (
            "a core goes wholly offline and comes back",
            none,
            ("setup", first, "offline:2", "offline:5", "online:2", "trigger", go, "teardown"),
        ),
        (
            "the leader's primary thread goes offline and comes back",
            none,
            ("setup", first, "offline:1", "trigger", go, "online:1", "trigger", go, "teardown"),
        ),
        (
            "a CPU goes offline while a pass runs",
            none,
            ("setup", "offline-at:1:2", first, "trigger", go, "teardown"),
        ),
        (
            "a core comes online while a pass runs",
            core2,
            ("setup", "online-at:3:2", first, "trigger", go, "teardown"),
        ),
        ("a core comes online before setup", core2, ("online:2", "setup", first, "teardown")),
        (
            "a core comes online after teardown, and setup again",
            core2,
            ("setup", first, "teardown", "online:2", "setup", first, "teardown"),
        ),
        (
            "a core goes offline before teardown",
            none,
            ("setup", first, "offline:2", "offline:5", "teardown", "online:5", "online:2"),
        ),
        # a hotplug operation from another CPU while an entry point runs: it waits for the
        # hotplug lock, and takes it the first time the entry point lets it go
        (
            "a core's last online thread goes offline while teardown runs, and comes back",
            frozenset({5}),
            ("setup", first, "offline-during:2", "teardown", "online:2"),
        ),
        (
            "a core comes online while teardown runs",
            core2,
            ("setup", first, "online-during:2", "teardown"),
        ),
        (
            "a core comes online while setup runs",
            core2,
            ("online-during:2", "setup", first, "teardown"),
        ),
    ]


def _hotplug_actions(
    rng: random.Random, machine: Machine, script: tuple[str, ...]
) -> tuple[str, ...]:
    """``script`` with one to three CPUs going offline or coming online at random places:
    between the actions, at a cond_resched() of a pass, or while the next setup, request or
    teardown holds the hotplug lock; never the leader."""
    others = [c for c in range(machine.nr_cpus) if c != machine.leader]
    if not others:
        return script
    out = list(script)
    for _ in range(rng.randint(1, 3)):
        cpu = rng.choice(others)
        word = "online" if rng.random() < 0.5 else "offline"
        where = rng.random()
        action = (f"{word}:{cpu}" if where < 0.55 else f"{word}-at:{rng.randint(1, 4)}:{cpu}"
                  if where < 0.8 else f"{word}-during:{cpu}")  # fmt: skip
        out.insert(rng.randint(0, len(out)), action)
    return tuple(out)


def _without_script(worker) -> tuple[str, ...]:
    """Setup on a machine that lacks a prerequisite: nothing may be written or run, whatever
    is asked for afterwards."""
    go = "run" if worker.kind == "kthread" else f"a:{worker.rearm_delay_ms}"
    first = "run" if worker.kind == "kthread" else f"a:{worker.first_delay_ms}"
    return ("setup", first, "trigger", go, "teardown")


def highest_address(spec: Spec) -> int:
    """A bound on every address a case of a table spec hands the instruction: a pass starts
    below 9 regions (the random machines' starts, the boundaries' unaligned ones) and covers
    at most the coverage; a direct helper call stays below 8 regions or below the guard."""
    t = spec.as_table().table
    return 9 * t.region_size + t.coverage


def _helper_script(rng: random.Random, spec: Spec, machine: Machine, calls: int) -> tuple[str, ...]:
    tv = spec.as_table()
    t = tv.table
    codes = [c.value for c in (tv.function_codes.codes if tv.function_codes else ())]
    online = machine.online
    span = min(GUARD_TOP, 64 * t.coverage)
    script = []
    for _ in range(calls):
        cpu = rng.choice(online)
        pa = rng.choice([rng.randrange(0, span), rng.randrange(0, 8) * t.region_size,
                         rng.randrange(1, 8) * t.region_size - 1])  # fmt: skip
        if rng.random() < 0.5:
            script.append(f"h:{cpu}:{pa:#x}")
        else:
            script.append(f"r:{cpu}:{pa:#x}:{rng.choice(codes):#x}")
    return tuple(script)


def _argument(rng: random.Random, i) -> int:
    """A value for input ``i`` that probes how the helper converts and passes it."""
    if i.type == "pointer":
        return rng.getrandbits(64)  # the seed of the memory it points to
    page = 1 << mirror.PAGE_SHIFT
    return rng.choice([
        0, 1, 2, 0x100, 1 << 31, 1 << 32, 1 << 63, (1 << 64) - 1, rng.randrange(0, 8),
        rng.randrange(0, 1 << 52, page), rng.randrange(0, 1 << 52, page) + rng.randrange(1, page),
        rng.getrandbits(64),
    ])  # fmt: skip


def _oracle_script(rng: random.Random, spec: Spec, machine: Machine, calls: int) -> tuple[str, ...]:
    script: list[str] = []
    for _ in range(calls):
        args = [_argument(rng, i) for i in spec.instruction.inputs]
        if script and rng.random() < 0.2:
            script.append(script[-1])  # the same call again: equal inputs in a row
            continue
        script.append(f"r:{rng.choice(machine.online)}:" + ":".join(f"{a:#x}" for a in args))
    return tuple(script)


def _boundaries(spec: Spec) -> list[tuple[str, Machine]]:
    """Every edge the issue and the review name, in terms of the spec's sizes."""
    t = spec.as_table().table
    gb, cov, page = t.region_size, t.coverage, 1 << mirror.PAGE_SHIFT
    M = Machine
    return [
        ("one region", M(0, _pfn(gb), cores=2)),
        ("less than one region", M(0, 1, cores=2)),
        ("empty range", M(_pfn(gb), _pfn(gb), cores=2)),
        ("unaligned min_low_pfn", M(_pfn(gb + page), _pfn(4 * gb), cores=2, threads_per_core=2)),
        ("unaligned max_pfn", M(0, _pfn(3 * gb + page), cores=2)),
        ("min_low_pfn on a region edge", M(_pfn(2 * gb), _pfn(5 * gb), cores=2)),
        ("exactly the coverage", M(0, _pfn(cov), cores=2)),
        ("coverage plus one region", M(0, _pfn(cov + gb), cores=2)),
        ("coverage plus one page", M(0, _pfn(cov) + 1, cores=2)),
        ("coverage from an unaligned start", M(_pfn(gb + page), _pfn(gb + cov + page), cores=2)),
        ("one and a half coverages", M(0, _pfn(cov + cov // 2), cores=1)),
        ("a single CPU", M(0, _pfn(3 * gb), cores=1)),
        ("a single CPU with a sibling", M(0, _pfn(3 * gb), cores=1, threads_per_core=2)),
        ("leader without siblings", M(0, _pfn(2 * gb), cores=4, leader=2)),
        ("leader on a secondary thread", M(0, _pfn(2 * gb), cores=4, threads_per_core=2, leader=5)),
        ("leader on a secondary thread, adjacent numbering",
         M(0, _pfn(2 * gb), cores=4, threads_per_core=2, numbering="adjacent", leader=3)),
        ("leader is the last CPU", M(0, _pfn(2 * gb), cores=3, threads_per_core=2, leader=5)),
        ("four threads per core", M(0, _pfn(2 * gb), cores=3, threads_per_core=4, leader=6)),
        ("holes in the CPU mask",
         M(0, _pfn(3 * gb), cores=6, threads_per_core=2, offline=frozenset({1, 4, 7}))),
        ("every follower offline", M(0, _pfn(2 * gb), cores=3, offline=frozenset({1, 2}))),
        ("the leader's primary offline",
         M(0, _pfn(2 * gb), cores=2, threads_per_core=2, leader=2, offline=frozenset({0}))),
        ("assigned first page of a region", M(0, _pfn(3 * gb), cores=2, assigned=((gb, gb + page),))),
        ("assigned last page of a region",
         M(0, _pfn(3 * gb), cores=2, assigned=((2 * gb - page, 2 * gb),))),
        ("assigned range across regions",
         M(0, _pfn(4 * gb), cores=2, assigned=((gb - page, 2 * gb + page),))),
        ("assigned page 0", M(0, _pfn(2 * gb), cores=2, assigned=((0, page),))),
        ("assigned beyond the coverage",
         M(0, _pfn(cov + 2 * gb), cores=1, assigned=((cov + page, cov + 2 * page),))),
        ("table base above the range start", M(0, _pfn(4 * gb), cores=2, table_base=2 * gb)),
        ("table base below the range start", M(_pfn(3 * gb), _pfn(5 * gb), cores=2, table_base=gb)),
        ("many CPUs", M(0, _pfn(2 * gb), cores=256, threads_per_core=2, leader=300)),
    ]  # fmt: skip


def _random_machine(rng: random.Random, spec: Spec, large: str | bool) -> Machine:
    t = spec.as_table().table
    gb, page = t.region_size, 1 << mirror.PAGE_SHIFT
    if large == "memory":
        cores, threads = rng.randint(1, 3), rng.choice([1, 2])
        start = rng.randrange(0, 4 * gb, page)
        span = rng.choice([t.coverage, t.coverage + gb, rng.randrange(gb, 2 * t.coverage, page)])
    elif large == "cpus":
        cores, threads = rng.randint(64, 256), rng.choice([1, 2])
        start, span = rng.randrange(0, 2 * gb, page), rng.randrange(0, 4 * gb, page)
    else:
        cores, threads = rng.randint(1, 6), rng.choice([1, 1, 2, 2, 4])
        start = rng.choice([0, rng.randrange(0, 8 * gb, page), rng.randrange(0, 8) * gb])
        span = rng.choice([rng.randrange(0, 8 * gb, page), rng.randrange(0, 8) * gb])
    n = cores * threads
    offline = (
        frozenset(rng.sample(range(n), rng.randint(0, n // 3)))
        if rng.random() < 0.3
        else frozenset()
    )
    leader = rng.choice([c for c in range(n) if c not in offline])
    assigned = []
    for _ in range(rng.choice([0, 0, 1, 2, 4])):
        s = rng.choice([rng.randrange(start, start + span + gb, page),
                        rng.randrange(0, 8) * gb, rng.randrange(1, 8) * gb - page])  # fmt: skip
        assigned.append((s, s + rng.choice([page, 2 << 20, gb])))
    base = None if rng.random() < 0.85 else rng.randrange(0, 4) * gb
    return Machine(
        start >> mirror.PAGE_SHIFT, (start + span) >> mirror.PAGE_SHIFT, cores, threads,
        rng.choice(["spread", "adjacent"]), leader, offline, tuple(assigned), base,
    )  # fmt: skip


@cache
def generate(spec: Spec, seed: int, count: int) -> tuple[Case, ...]:
    """``count`` cases: each boundary for every form first, then random ones."""
    return tuple(islice(stream(spec, seed), count))


def stream(spec: Spec, seed: int) -> Iterator[Case]:
    """Every case of ``seed``, one at a time and without end: case N never depends on how
    many are asked for, so a run of any size holds only the cases it is working on."""
    forms: list[str] = [w.kind for w in spec.kernel.sweep.workers] if spec.kernel.sweep else []
    workers: dict[str, Worker] = (
        {w.kind: w for w in spec.kernel.sweep.workers} if spec.kernel.sweep else {}
    )
    rng = random.Random(seed)
    n = 0

    def make(
        form: str, machine: Machine, label: str, passes: int = 2, hotplug: bool = False
    ) -> Case:
        if oracle.uses_oracle(spec):
            actions = _oracle_script(rng, spec, machine, rng.randint(1, 12))
        elif form == HELPERS:
            actions = _helper_script(rng, spec, machine, rng.randint(1, 12))
        else:
            actions = _worker_script(rng, workers[form], passes)
            # a generator of its own, so that the other cases of the seed stay as they were
            hp = random.Random(f"{seed}/{n}/hotplug")
            if hotplug and spec.kernel.enable is not None and hp.random() < 0.3:
                actions = _hotplug_actions(hp, machine, actions)
                label += ", CPU hotplug"
            if hotplug and hp.random() < 0.15:  # a request from another CPU during a pass
                at = hp.randint(0, len(actions))
                actions = actions[:at] + (f"trigger-at:{hp.randint(1, 4)}",) + actions[at:]
        return Case(n, form, machine, actions, label)

    if oracle.uses_oracle(spec):
        while True:
            # one case in 16: a retry code, once returned, persists, so a retry bound runs out
            stuck = n % 16 == 7
            yield make(
                HELPERS,
                Machine(0, 1, cores=rng.randint(1, 4), stuck=stuck),
                f"random calls, seed {seed}" + (", retry codes persist" if stuck else ""),
            )
            n += 1
    for label, machine in _boundaries(spec):
        for form in forms:
            yield make(form, machine, "boundary: " + label, passes=1 if machine.nr_cpus > 64 else 2)
            n += 1
    yield make(HELPERS, Machine(0, 1, cores=4, threads_per_core=2), "boundary: helper calls")
    n += 1
    if spec.kernel.enable is not None:
        gb = spec.as_table().table.region_size
        small = Machine(_pfn(gb + 4096), _pfn(3 * gb), cores=3, threads_per_core=2, leader=4)
        for form in forms:
            for label, actions in _sequences(workers[form]):
                yield Case(n, form, small, actions, "sequence: " + label)
                n += 1
            yield make(
                form, dataclasses.replace(small, feature=False), "boundary: without the feature"
            )
            n += 1
            # fixed actions (no draw from rng): setup must return before anything else
            for p in spec.as_sweep().enable.requires:
                yield Case(
                    n,
                    form,
                    dataclasses.replace(small, without=frozenset({p.name})),
                    _without_script(workers[form]),
                    f"boundary: without {p.name}",
                )
                n += 1
            # fixed actions (no draw from rng): the first setup finds no memory, the second works
            go = "run" if workers[form].kind == "kthread" else f"a:{workers[form].first_delay_ms}"
            yield Case(n, form, dataclasses.replace(small, nomem=1), ("setup", "trigger", go, "setup", go,
                       "teardown"), "boundary: the worker cannot be allocated, then can")  # fmt: skip
            n += 1
            yield Case(n, form, dataclasses.replace(small, hpfail=1), ("setup", "trigger", go, "setup", go,
                       "teardown"), "boundary: the hotplug state cannot be set up, then can")  # fmt: skip
            n += 1
            for label, offline, actions in _hotplug_sequences(workers[form], small):
                yield Case(
                    n,
                    form,
                    dataclasses.replace(small, offline=offline),
                    actions,
                    "hotplug: " + label,
                )
                n += 1
            # fixed actions: memory that ends past the coverage's size but spans less (the cap is
            # on the span, not on where memory ends)
            cov = spec.as_sweep().table.coverage
            yield Case(n, form, Machine(_pfn(cov // 2), _pfn(cov // 2 + gb), cores=2), ("setup", go, "teardown"),
                       "boundary: one region halfway up the coverage")  # fmt: skip
            n += 1
        yield make(
            HELPERS,
            Machine(0, 1, cores=2, feature=False),
            "boundary: helper calls without the feature",
        )
        n += 1
    while True:
        large = "memory" if n % 251 == 5 else "cpus" if n % 97 == 50 else False
        machine = _random_machine(rng, spec, large)
        form = rng.choice(forms + [HELPERS] if forms else [HELPERS])
        yield make(form, machine, f"random, seed {seed}" + (f", large {large}" if large else ""),
                   passes=1 if large else 3, hotplug=True)  # fmt: skip
        n += 1
