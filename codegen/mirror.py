"""The Python mirror: what the hardware and the generated sweep must do.

Computed from the spec alone (never from the templates or generated C), so
that compile-and-compare sets two independent derivations of the spec
against each other.

- :func:`registers` and :func:`instruction_bytes`: what one execution sees.
- :class:`Hardware`: the RMP (which pages are guest-assigned) and one
  RMPOPT table per CPU, with the instruction's and RMPUPDATE's effects.
- :func:`sweep`: the ordered trace of one pass of the kernel's sweep on a
  :class:`Machine`, executing each RMPOPT on the hardware model.
- :func:`sweep_items`, :func:`feature_items`, :func:`setup_pass_teardown_items`: the same
  traces with each round of the followers' executions as one :class:`Rmpopts`, which
  ``kgen sweep`` counts and prints without an event per execution; :func:`events` expands
  them, and is how :func:`sweep`, :func:`feature_trace` and :func:`setup_pass_teardown` give
  their events.

Trace events (also the JSON lines of ``kgen sweep --json``):

==========  ==============================================================
kind        fields
==========  ==============================================================
``log``     ``text``: the pr_info() line, without the newline
``rmpopt``  ``cpu``, ``rax``, ``rcx``, ``cf`` (0/1): one execution
``resched`` ``cpu``: a cond_resched() by the sweeping thread
``ipi``     ``cpu`` (caller), ``targets`` (ascending CPU list): one
            on_each_cpu_mask() call; its targets' executions follow it
``wrmsr``   ``cpu``, ``msr``, ``value``: setup enabling (or teardown
            clearing) the instruction's MSR on one CPU, in order
``fault``   ``cpu``, ``rax``, ``rcx``, ``exception``: an execution on a CPU
            whose MSR does not enable the instruction (or that lacks the
            feature); the kernel oopses, so nothing follows
==========  ==============================================================
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache, reduce
from itertools import repeat
from operator import itemgetter, or_
from typing import Any, Literal, NamedTuple

from .diagnostics import plural
from .limits import MAX_CPUS, PAGE_SHIFT, PHYS_BITS
from .model import Spec
from .record import record

# What the mirror simulates, so that every run ends in bounded time and memory.
MAX_EXECUTIONS = 1 << 20  # in one pass: twice a 2 TB sweep on 256 cores (about 3 s)
# The kernel's timers count jiffies: at HZ = 250 a jiffy is 4 ms, and msecs_to_jiffies() rounds
# up.  Not 1000, where a delay passed in milliseconds instead of jiffies would go unseen.
JIFFY_MS = 4


def timer(now: int, delay_ms: int) -> int:
    """When (in ms) a timer armed at ``now`` ms for msecs_to_jiffies(``delay_ms``) expires."""
    return JIFFY_MS * (now // JIFFY_MS + -(-delay_ms // JIFFY_MS))


# --- one execution ----------------------------------------------------------


def instruction_bytes(spec: Spec) -> bytes:
    return bytes(b.byte for b in spec.instruction.encoding)


def function_code(spec: Spec, name: str) -> int:
    fc = spec.instruction.function_codes
    if fc is None:
        raise KeyError(f"{spec.instruction.mnemonic} has no function codes")
    for code in fc.codes:
        if code.name == name:
            return code.value
    raise KeyError(f"no function code {name!r}")


def align_down(value: int, size: int) -> int:
    return value - value % size


def align_up(value: int, size: int) -> int:
    return -(-value // size) * size


def registers(spec: Spec, pa: int, function: str | None = None) -> dict[str, int]:
    """The registers the helper gives the instruction for address ``pa``.

    ``function`` defaults to the one the kernel helper passes.
    """
    insn = spec.instruction
    name = function or spec.as_helper().helper.function
    regs: dict[str, int] = {}
    for i in insn.inputs:
        if i.kind == "function-code":
            regs[i.register] = function_code(spec, name)
        elif i.align == "region":
            regs[i.register] = align_down(pa, spec.as_table().table.region_size)
        else:
            regs[i.register] = pa
    return regs


# --- the machine and its hardware state -------------------------------------


class Rmpopt(NamedTuple):
    cpu: int
    rax: int
    rcx: int
    cf: int
    kind: Literal["rmpopt"] = "rmpopt"


class Resched(NamedTuple):
    cpu: int
    kind: Literal["resched"] = "resched"


class Ipi(NamedTuple):
    cpu: int
    targets: tuple[int, ...]
    kind: Literal["ipi"] = "ipi"


class Log(NamedTuple):
    text: str
    kind: Literal["log"] = "log"


class Wrmsr(NamedTuple):
    cpu: int
    msr: int
    value: int
    kind: Literal["wrmsr"] = "wrmsr"


class Fault(NamedTuple):
    cpu: int
    rax: int
    rcx: int
    exception: str
    kind: Literal["fault"] = "fault"


Event = Rmpopt | Resched | Ipi | Log | Wrmsr | Fault


class Rmpopts(NamedTuple):
    """One round of executions: the same RMPOPT on each of ``cpus`` in turn, with the CF each
    returned.  Not an event: it stands for the Rmpopt events :meth:`events` gives, so that a
    pass's rounds reach the summary and the JSON lines without an object per execution."""

    cpus: tuple[int, ...]
    rax: int
    rcx: int
    cfs: list[int]
    kind: Literal["rmpopts"] = "rmpopts"

    def events(self) -> Iterator[Rmpopt]:
        # Rmpopt(cpu, rax, rcx, cf) for each CPU, built without a Python call each
        kind = Rmpopt._field_defaults["kind"]
        return map(tuple.__new__, repeat(Rmpopt),
                   zip(self.cpus, repeat(self.rax), repeat(self.rcx), self.cfs, repeat(kind)))  # fmt: skip


Item = Event | Rmpopts  # what the *_items generators yield


def events(items: Iterable[Item]) -> Iterator[Event]:
    """The events ``items`` stand for, in order."""
    for item in items:
        if isinstance(item, Rmpopts):
            yield from item.events()
        else:
            yield item


class Faulted(Exception):
    """An execution raised an exception: ``event`` (a Fault) ends the trace."""

    def __init__(self, event: Fault):
        super().__init__(f"{event.exception} on CPU {event.cpu}")
        self.event = event


def event_json(event: Event) -> dict:
    """The stable JSON object of one event (kind first)."""
    d = event._asdict()
    kind = d.pop("kind")
    if "targets" in d:
        d["targets"] = list(d["targets"])
    return {"kind": kind, **d}


def _ints(values) -> str:
    return "[" + ",".join(map(str, values)) + "]"


@lru_cache(maxsize=8)
def _ipi_line(e: Ipi) -> str:
    # made once for a pass, which sends the same call for every region
    return f'{{"kind":"ipi","cpu":{e.cpu},"targets":{_ints(e.targets)}}}'


# Each kind's JSON line, written directly: byte for byte json.dumps(event_json(event),
# separators=(",", ":")) (the tests hold them to it), without a dict and an encoder per event.
_RMPOPT_HEAD, _RMPOPT_TAIL = '{"kind":"rmpopt","cpu":', ',"rax":%d,"rcx":%d,"cf":%d}'
_LINES: dict[type, Callable[[Any], str]] = {
    # the event itself is the % operand: "%.0s" takes its last field, the kind, and prints nothing
    Rmpopt: (_RMPOPT_HEAD + "%d" + _RMPOPT_TAIL + "%.0s").__mod__,
    Resched: '{"kind":"resched","cpu":%d}%.0s'.__mod__,
    Wrmsr: '{"kind":"wrmsr","cpu":%d,"msr":%d,"value":%d}%.0s'.__mod__,
    Ipi: _ipi_line,
}


def event_line(event: Event) -> str:
    """:func:`event_json` of ``event`` as one compact JSON line, without the newline."""
    line = _LINES.get(type(event))
    if line is None:
        return json.dumps(event_json(event), separators=(",", ":"))
    return line(event)


def round_lines(r: Rmpopts) -> str:
    """The JSON lines of a round's events, each with its newline: where every CPU returned the
    same CF, the lines differ only in the CPU, so they are one join over the CPUs."""
    cf = r.cfs[0]
    if r.cfs.count(cf) != len(r.cfs):
        return "".join(_LINES[Rmpopt](e) + "\n" for e in r.events())
    tail = _RMPOPT_TAIL % (r.rax, r.rcx, cf) + "\n"
    return "".join((_RMPOPT_HEAD, (tail + _RMPOPT_HEAD).join(_cpu_texts(r.cpus)), tail))


@lru_cache(maxsize=8)
def _cpu_texts(cpus: tuple[int, ...]) -> tuple[str, ...]:
    """The decimal text of each CPU of a round (a pass's rounds all go to the same CPUs)."""
    return tuple(map(str, cpus))


def json_lines(spec: Spec, machine: Machine, hw: Hardware | None = None) -> Iterator[str]:
    """The text of ``kgen sweep --json`` in chunks: the events of setup, one pass and
    teardown, then one ``table`` line per online CPU."""
    hw = hw if hw is not None else hardware_for(spec, machine, enabled=False)
    # a run of items of one kind is formatted in one go
    for kind, run in itertools.groupby(setup_pass_teardown_items(spec, machine, hw), type):
        if kind is Rmpopts:
            yield "".join(round_lines(r) for r in run if isinstance(r, Rmpopts))
            continue
        line = _LINES.get(kind, event_line)
        yield "\n".join(map(line, run)) + "\n"
    online = machine.online
    texts: dict[int, str] = {}  # CPUs with the same table share its list, and its text
    for cpu, regions in zip(online, hw.optimized_of(online), strict=True):
        if id(regions) not in texts:
            texts[id(regions)] = f'"optimized":{len(regions)},"regions":{_ints(regions)}}}\n'
        yield f'{{"kind":"table","cpu":{cpu},' + texts[id(regions)]


class MachineError(ValueError):
    """An impossible machine (max below min, leader offline, no CPU...)."""


class MachineTooLarge(MachineError):
    """A pass larger than the mirror simulates (see MAX_EXECUTIONS)."""


@record
class Machine:
    """What the sweep sees: memory bounds, CPUs and their SMT topology.

    ``numbering`` says how Linux numbers SMT siblings: ``spread`` (x86's
    usual order: CPU ``t * cores + c`` is thread ``t`` of core ``c``, so the
    primary threads come first) or ``adjacent`` (CPU ``c * threads + t``).
    """

    min_low_pfn: int
    max_pfn: int
    cores: int = 1
    threads_per_core: int = 1
    numbering: Literal["spread", "adjacent"] = "spread"
    leader: int = 0
    offline: frozenset[int] = frozenset()
    assigned: tuple[tuple[int, int], ...] = ()  # guest-assigned [start, end) physical ranges
    table_base: int | None = None  # RMPOPT_BASE of every CPU; None: the sweep's start
    feature: bool = True  # whether the CPUs have the instruction (its CPUID bit)
    without: frozenset[str] = frozenset()  # the spec's prerequisites (by name) the machine lacks
    nomem: int = 0  # how many attempts to create the worker fail first (no memory)
    hpfail: int = 0  # how many cpuhp_setup_state() calls fail first (no dynamic state left)
    stuck: bool = False  # a retry code, once returned, comes back for the same inputs without end

    def __post_init__(self) -> None:
        if self.min_low_pfn < 0 or self.max_pfn < 0:
            raise MachineError("page frame numbers cannot be negative")
        if self.max_pfn < self.min_low_pfn:
            raise MachineError(
                f"max_pfn {self.max_pfn:#x} is below min_low_pfn {self.min_low_pfn:#x}"
            )
        if self.max_pfn > 1 << (PHYS_BITS - PAGE_SHIFT):
            raise MachineError(
                f"max_pfn {self.max_pfn:#x} is beyond {PHYS_BITS}-bit physical addresses"
            )
        if self.table_base is not None and not 0 <= self.table_base < 1 << PHYS_BITS:
            raise MachineError(
                f"table base {self.table_base:#x} is beyond {PHYS_BITS}-bit physical addresses"
            )
        if self.cores < 1 or self.threads_per_core < 1:
            raise MachineError("a machine needs at least one core with one thread")
        if self.nr_cpus > MAX_CPUS:
            raise MachineError(f"{self.nr_cpus} CPUs: at most {MAX_CPUS} are supported")
        bad = sorted(c for c in self.offline if not 0 <= c < self.nr_cpus)
        if bad:
            raise MachineError(
                f"offline CPU {bad[0]} does not exist ({plural(self.nr_cpus, 'CPU')})"
            )
        if not self.online:
            raise MachineError("no CPU is online")
        if self.leader not in self.online:
            raise MachineError(f"leader CPU {self.leader} is not online")
        for start, end in self.assigned:
            if not 0 <= start < end:
                raise MachineError(f"assigned range {start:#x}-{end:#x} is empty or negative")
            if end > 1 << PHYS_BITS:
                raise MachineError(
                    f"assigned range {start:#x}-{end:#x} is beyond {PHYS_BITS}-bit physical addresses"
                )

    @property
    def nr_cpus(self) -> int:
        return self.cores * self.threads_per_core

    @property
    def online(self) -> list[int]:
        return [c for c in range(self.nr_cpus) if c not in self.offline]

    def core_thread(self, cpu: int) -> tuple[int, int]:
        if self.numbering == "spread":
            return cpu % self.cores, cpu // self.cores
        return cpu // self.threads_per_core, cpu % self.threads_per_core

    def is_primary(self, cpu: int) -> bool:
        return self.core_thread(cpu)[1] == 0

    def msr_owner(self, cpu: int, scope: str | None) -> int:
        """The CPU whose MSR ``cpu`` uses: the lowest-numbered CPU of its core for a per-core
        MSR (whose thread writes it, online or not, is the same MSR), itself otherwise."""
        if scope != "core":
            return cpu
        return min(self.siblings(cpu))

    def siblings(self, cpu: int) -> set[int]:
        """Every CPU of ``cpu``'s core, itself included (online or not)."""
        core, threads = self.core_thread(cpu)[0], range(self.threads_per_core)
        if self.numbering == "spread":  # the inverse of core_thread, without a scan of every CPU
            return {t * self.cores + core for t in threads}
        return {core * self.threads_per_core + t for t in threads}


@dataclass
class Hardware:
    """The RMP and one RMPOPT table per CPU, as the instruction sees them.

    Each function code acts as its ``effect`` in the spec says: ``scan-and-set``
    marks the region in this CPU's table when no page in it is assigned and
    reports the bit in CF; ``read`` only reports the bit.  Regions outside
    ``[base, base + coverage)`` are never optimized.

    The tables are kept by region: for each marked region, the CPUs whose tables mark it,
    one bit a CPU, so that a round marks a region on many CPUs at once.
    """

    spec: Spec
    nr_cpus: int
    base: int  # every CPU's RMPOPT_BASE (region aligned)
    # per CPU: the CPU whose MSR enables it (one per core for a per-core MSR); None: no MSR model
    owners: list[int] | None = None
    enabled: set[int] = field(default_factory=set)  # owners whose MSR has the enable bit set
    feature: bool = True

    def __post_init__(self) -> None:
        t = self.spec.as_table().table
        if self.base % t.region_size:
            raise MachineError(f"RMPOPT base {self.base:#x} is not aligned to {t.region_size:#x}")
        self.region_size, self.entries = t.region_size, t.entries
        self.marks: dict[int, int] = {}  # region index -> CPUs whose table marks it (bit n: CPU n)
        self._known: dict[tuple[int, ...], tuple[int, frozenset[int]]] = {}  # see _cpus
        fc = self.spec.instruction.function_codes
        self.effects = {c.value: c.effect for c in fc.codes} if fc else {}
        self._starts: list[int] = []  # sorted, disjoint assigned ranges
        self._ends: list[int] = []
        self._blocked: dict[int, bool] = {}  # region index -> holds an assigned page

    # the RMP
    def assign(self, start: int, end: int) -> None:
        """RMPUPDATE makes [start, end) guest-assigned: clears those regions' bits on every CPU."""
        ranges = sorted([*zip(self._starts, self._ends, strict=True), (start, end)])
        merged: list[list[int]] = []
        for s, e in ranges:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        self._starts = [s for s, _ in merged]
        self._ends = [e for _, e in merged]
        self._blocked.clear()
        first = (start - self.base) // self.region_size
        last = (end - 1 - self.base) // self.region_size
        for index in [i for i in self.marks if first <= i <= last]:
            del self.marks[index]

    def region_has_assigned(self, region_start: int) -> bool:
        """Whether any assigned page lies in [region_start, region_start + region size)."""
        i = bisect.bisect_left(self._starts, region_start + self.region_size) - 1
        return i >= 0 and self._ends[i] > region_start

    # the MSR
    def wrmsr(self, cpu: int, value: int) -> None:
        """A write of ``value`` to ``cpu``'s enabling MSR: it sets the enable bit and the base."""
        msr = self.spec.instruction.msr
        if msr is None:
            raise MachineError("the spec has no MSR to write")
        owner = self.owners[cpu] if self.owners else cpu
        if value >> msr.enable.bit & 1:
            self.enabled.add(owner)
            if msr.base is not None and msr.value == "base | enable":
                mask = (1 << (msr.base.high_bit + 1)) - (1 << msr.base.low_bit)
                self.base = value & mask
        else:
            self.enabled.discard(owner)

    def ready(self, cpus: tuple[int, ...]) -> bool:
        """Whether each of ``cpus`` can execute the instruction: the feature, and an MSR that
        enables it."""
        return self.owners is None or (self.feature and self._cpus(cpus)[1] <= self.enabled)

    def check(self, cpu: int, rax: int, rcx: int) -> None:
        """Raise Faulted when ``cpu`` cannot execute the instruction: no feature, or MSR off."""
        msr = self.spec.instruction.msr
        if msr is not None and not self.ready((cpu,)):
            raise Faulted(Fault(cpu, rax, rcx, msr.fault or "UD"))

    # the instruction
    def _region(self, rax: int, rcx: int) -> tuple[int | None, str]:
        effect = self.effects.get(rcx)
        if effect is None:
            raise MachineError(f"function code {rcx:#x} is not defined (the CPU raises #GP)")
        index = (align_down(rax, self.region_size) - self.base) // self.region_size
        if not 0 <= index < self.entries:
            return None, effect  # outside the table's coverage: never optimized
        if effect == "scan-and-set" and index not in self._blocked:
            self._blocked[index] = self.region_has_assigned(self.base + index * self.region_size)
        return index, effect

    def execute(self, cpu: int, rax: int, rcx: int) -> int:
        """One execution on ``cpu``: the CF it returns (0 or 1); Faulted if it cannot run."""
        self.check(cpu, rax, rcx)
        return self.execute_on((cpu,), rax, rcx)[0]

    def execute_on(self, cpus: tuple[int, ...], rax: int, rcx: int) -> list[int]:
        """The same execution on each of ``cpus`` in turn: their CFs."""
        index, effect = self._region(rax, rcx)
        if index is None:
            return [0] * len(cpus)
        if effect == "scan-and-set" and not self._blocked[index]:
            self.marks[index] = self.marks.get(index, 0) | self._cpus(cpus)[0]
            return [1] * len(cpus)
        marked = self.marks.get(index, 0)
        return [marked >> cpu & 1 for cpu in cpus]

    def _cpus(self, cpus: tuple[int, ...]) -> tuple[int, frozenset[int]]:
        """``cpus`` as marks (one bit each), and the CPUs whose MSRs enable them: worked out
        once, as a pass's rounds all go to the same CPUs."""
        known = self._known.get(cpus)
        if known is None:
            owners = cpus if self.owners is None else map(self.owners.__getitem__, cpus)
            known = reduce(or_, map((1).__lshift__, cpus), 0), frozenset(owners)
            self._known[cpus] = known
        return known

    def optimized(self, cpu: int) -> list[int]:
        """Start addresses of the regions ``cpu``'s table marks optimized, ascending."""
        return self.optimized_of([cpu])[0]

    def optimized_of(self, cpus: list[int]) -> list[list[int]]:
        """:meth:`optimized` of each of ``cpus``: CPUs whose tables mark the same regions get
        the same list."""
        regions: dict[int, list[int]] = {}  # CPUs (as marks) -> the regions they all mark
        for index in sorted(self.marks):
            regions.setdefault(self.marks[index], []).append(self.base + index * self.region_size)
        shared: dict[tuple[int, ...], list[int]] = {}  # which of those hold a CPU -> its list
        out = []
        for cpu in cpus:
            key = tuple(marks for marks in regions if marks >> cpu & 1)
            if key not in shared:
                shared[key] = sorted(itertools.chain.from_iterable(map(regions.__getitem__, key)))
            out.append(shared[key])
        return out


# --- the sweep --------------------------------------------------------------


@record
class Range:
    pa_start: int
    pa_end: int  # after the cap
    uncapped_end: int

    @property
    def capped(self) -> bool:
        return self.uncapped_end != self.pa_end


def sweep_range(spec: Spec, machine: Machine) -> Range:
    t = spec.as_table().table
    start = align_down(machine.min_low_pfn << PAGE_SHIFT, t.region_size)
    end = align_up(machine.max_pfn << PAGE_SHIFT, t.region_size)
    capped = end
    if end - start > t.coverage:
        capped = start + t.coverage
    return Range(start, capped, end)


def followers(machine: Machine) -> list[int]:
    """Online primary threads, minus every sibling of the leader, ascending."""
    leader_core = machine.siblings(machine.leader)
    return [c for c in machine.online if machine.is_primary(c) and c not in leader_core]


def executions(spec: Spec, machine: Machine) -> int:
    """RMPOPT executions in one pass: each region by the leader and by every follower."""
    r = sweep_range(spec, machine)
    regions = -(-(r.pa_end - r.pa_start) // spec.as_table().table.region_size)
    return regions * (1 + len(followers(machine)))


def hardware_for(spec: Spec, machine: Machine, enabled: bool = True) -> Hardware:
    """The hardware of ``machine``, once the pass is known to be small enough to simulate.

    ``enabled``: every MSR already enables the instruction at the machine's table base
    (as for direct helper calls); otherwise every MSR is clear until setup writes it.
    """
    n = executions(spec, machine)
    if n > MAX_EXECUTIONS:
        raise MachineTooLarge(
            f"{n} executions: the mirror simulates at most {MAX_EXECUTIONS} in one pass"
        )
    base = machine.table_base
    if base is None:
        base = sweep_range(spec, machine).pa_start
    hw = Hardware(spec, machine.nr_cpus, base)
    msr = spec.instruction.msr
    if msr is not None and spec.kernel.enable is not None:
        hw.owners = [machine.msr_owner(c, msr.scope) for c in range(machine.nr_cpus)]
        hw.feature = machine.feature
        if enabled and machine.feature:
            hw.enabled = set(hw.owners)
    for start, end in machine.assigned:
        hw.assign(start, end)
    return hw


def pa_text(value: int) -> str:
    """A physical address as the kernel's %pa prints it on 64-bit."""
    return f"0x{value:016x}"


def cap_log(spec: Spec, r: Range) -> Log:
    """The line that says which memory lies above the table's coverage."""
    return Log(
        f"{spec.as_sweep().sweep.cap_message} [{pa_text(r.pa_end)} - {pa_text(r.uncapped_end)}]"
    )


def sweep(spec: Spec, machine: Machine, hw: Hardware | None = None) -> Iterator[Event]:
    """The ordered events of one pass, executing each RMPOPT on ``hw``."""
    return events(sweep_items(spec, machine, hw))


def sweep_items(spec: Spec, machine: Machine, hw: Hardware | None = None,
                batched: bool = True) -> Iterator[Item]:  # fmt: skip
    """:func:`sweep` with each round of the followers' executions as one :class:`Rmpopts`
    while every follower can execute (``batched``); otherwise one event each, in turn, up to
    the one that faults (``batched=False``: always, the plain path the rounds are held to)."""
    sw = spec.as_sweep()
    s, t = sw.sweep, sw.table
    hw = hw if hw is not None else hardware_for(spec, machine)
    r = sweep_range(spec, machine)
    if r.capped and s.cap_log == "every-pass":
        yield cap_log(spec, r)
    yield Log(f"{s.log_message} [{pa_text(r.pa_start)} - {pa_text(r.pa_end)}]")
    leader = machine.leader
    regions = range(r.pa_start, r.pa_end, t.region_size)
    rcx = function_code(spec, sw.helper.function)
    for pa in regions:
        yield Rmpopt(leader, pa, rcx, hw.execute(leader, pa, rcx))
        yield Resched(leader)
    targets = tuple(followers(machine))
    if not targets:
        return
    ipi, resched = Ipi(leader, targets), Resched(leader)
    for pa in regions:
        yield ipi
        if batched and hw.ready(targets):
            yield Rmpopts(targets, pa, rcx, hw.execute_on(targets, pa, rcx))
        else:
            for cpu in targets:
                yield Rmpopt(cpu, pa, rcx, hw.execute(cpu, pa, rcx))
        yield resched


@record
class Summary:
    regions: int
    rmpopt: int
    ipis: int
    rescheds: int
    logs: tuple[str, ...]
    range: Range
    optimized: dict[int, int]  # cpu -> regions its table marks optimized
    cf_set: int  # executions that returned CF = 1
    wrmsrs: int = 0  # MSR writes by setup and teardown


def summarize(spec: Spec, machine: Machine) -> tuple[Summary, Hardware]:
    hw = hardware_for(spec, machine, enabled=False)
    counts = {"rmpopt": 0, "ipi": 0, "resched": 0, "wrmsr": 0, "fault": 0}
    cf_set, logs = 0, []
    for item in setup_pass_teardown_items(spec, machine, hw):
        if isinstance(item, Rmpopts):  # a round: an Rmpopt event per CPU, with its CF
            counts["rmpopt"] += len(item.cpus)
            cf_set += sum(item.cfs)
        elif isinstance(item, Log):
            logs.append(item.text)
        else:
            counts[item.kind] += 1
            if isinstance(item, Rmpopt):
                cf_set += item.cf
    r = sweep_range(spec, machine)
    regions = len(range(r.pa_start, r.pa_end, spec.as_table().table.region_size))
    if not counts["rmpopt"]:
        regions = 0  # the pass never ran (no feature)
    optimized = dict(zip(machine.online, map(len, hw.optimized_of(machine.online)), strict=True))
    return (
        Summary(
            regions,
            counts["rmpopt"],
            counts["ipi"],
            counts["resched"],
            tuple(logs),
            r,
            optimized,
            cf_set,
            counts["wrmsr"],
        ),  # fmt: skip
        hw,
    )


# --- the workers ------------------------------------------------------------


def worker_passes(worker, actions: list[str]) -> list[tuple[int, int]]:
    """(action index, time in ms) of each pass the worker runs, in order.

    Actions: ``setup``, ``trigger``, ``teardown``; ``run`` lets a woken
    kthread run until it sleeps again; ``a:MS`` advances time by MS
    milliseconds (delayed work runs when its timer expires).

    kthread: setup asks for a pass; a woken thread runs one pass for all the
    requests made since its last pass, then sleeps; kthread_stop() ends it
    before another pass.  delayed-work: setup arms the timer first_delay_ms
    ahead; each request re-arms it rearm_delay_ms ahead of now, so a burst of
    requests makes one pass; teardown cancels a pending pass.
    """
    passes = []
    now = 0
    if worker.kind == "kthread":
        alive = pending = False
        for n, action in enumerate(actions):
            if action == "setup":
                alive = pending = True
            elif action == "trigger" and alive:
                pending = True
            elif action == "run" and alive and pending:
                passes.append((n, now))
                pending = False
            elif action == "teardown":
                alive = pending = False
            elif action.startswith("a:"):
                now += int(action[2:])
        return passes
    expires, alive = None, False
    for n, action in enumerate(actions):
        if action == "setup":
            alive, expires = True, now + worker.first_delay_ms
        elif action == "trigger" and alive:
            expires = now + worker.rearm_delay_ms
        elif action.startswith("a:"):
            now += int(action[2:])
            if expires is not None and expires <= now:
                passes.append((n, expires))  # the work runs when its timer expires
                expires = None
        elif action == "teardown":
            alive, expires = False, None
    return passes


# --- enabling, and the whole feature ---------------------------------------


def msr_cpus(spec: Spec, machine: Machine) -> list[int]:
    """The CPUs setup and teardown write the MSR on, ascending: every online CPU for a
    per-thread MSR; for a per-core one, the first online CPU of each core."""
    scope = spec.as_sweep().msr.scope
    online = machine.online
    if scope != "core":
        return online
    firsts: dict[int, int] = {}
    for cpu in online:
        firsts.setdefault(machine.core_thread(cpu)[0], cpu)
    return sorted(firsts.values())


def msr_value(spec: Spec, machine: Machine) -> int:
    """What setup writes: the region-aligned start of memory with the enable bit, or the bit."""
    msr = spec.as_sweep().msr
    enable = 1 << msr.enable.bit
    if msr.value == "base | enable":
        return sweep_range(spec, machine).pa_start | enable
    return enable


def setup_proceeds(spec: Spec, machine: Machine) -> bool:
    """Whether setup gets past its gate: the feature, and every prerequisite the spec lists."""
    requires = spec.kernel.enable.requires if spec.kernel.enable else ()
    return machine.feature and not any(p.name in machine.without for p in requires)


def _write_all(spec: Spec, machine: Machine, hw: Hardware, value: int) -> Iterator[Event]:
    number = spec.as_sweep().msr.number
    for cpu in msr_cpus(spec, machine):
        hw.wrmsr(cpu, value)
        yield Wrmsr(cpu, number, value)


def feature_trace(spec: Spec, worker, machine: Machine, actions: list[str],
                  hw: Hardware | None = None) -> Iterator[tuple[Event, int]]:  # fmt: skip
    """(event, time in ms) of the whole feature driven by ``actions``, in order
    (:func:`feature_items`, each round of executions as its events)."""
    for item, at in feature_items(spec, worker, machine, actions, hw):
        if isinstance(item, Rmpopts):
            yield from zip(item.events(), repeat(at))
        else:
            yield item, at


def feature_items(spec: Spec, worker, machine: Machine, actions: list[str],
                  hw: Hardware | None = None,
                  batched: bool = True) -> Iterator[tuple[Item, int]]:  # fmt: skip
    """(item, time in ms) of the whole feature driven by ``actions``, in order: passes as
    :func:`sweep_items` gives them (``batched`` as there).

    Actions: ``setup``, ``trigger``, ``teardown``; ``run`` lets a woken kthread run
    until it sleeps again; ``a:MS`` advances time by MS milliseconds; ``teardown-at:N``
    makes a teardown arrive from another CPU while a pass runs, at the Nth cond_resched()
    from then on (between two regions); ``trigger-at:N`` the same for a request, which
    asks for another pass after this one.  All three entry points hold one mutex, so each
    sees the others' effects whole.

    A teardown that arrives during a pass waits for it: cancel_delayed_work_sync() waits
    for a running work item, kthread_stop() for the thread to see the stop, which it does
    only after the pass.  So the pass ends on MSRs that still enable the instruction, then
    teardown stops the worker and clears them.

    CPU hotplug: ``online:CPU`` and ``offline:CPU`` between the others,
    ``online-at:N:CPU`` / ``offline-at:N:CPU`` arriving from another CPU at the Nth
    cond_resched() from then on, or ``online-during:CPU`` / ``offline-during:CPU`` arriving
    while the next setup, request or teardown runs.  A hotplug operation takes the hotplug
    lock for writing, and a pass holds cpus_read_lock() from before its first region to
    after its last, so one that arrives during a pass runs when the pass ends; setup holds it
    over setting up the hotplug state and the MSR writes that go with it, and teardown over
    removing the state and clearing the MSRs, so one that arrives during either runs after
    those writes (before setup's cap log).  A core that was wholly offline comes back with
    its MSR as it was (INIT leaves MSRs unchanged).  While the instruction is enabled (from
    setup to teardown) a CPU that comes online and is the first online thread of its core
    (:func:`msr_cpus`, the rule setup follows) writes the MSR, as the hotplug state's
    startup callback must; where teardown clears the MSRs, a CPU that goes offline and is
    the last online thread of its core (any CPU, for a per-thread MSR) clears it, as the
    teardown callback must, so that no core without an online thread keeps the instruction
    enabled through a teardown.  The CPU the worker and the entry points run on (the
    machine's leader) stays online.

    setup does nothing without the feature or a prerequisite (``machine.without``), or when
    the worker exists already (a second setup would leak the first), or when creating the worker fails (the first
    ``machine.nomem`` attempts: setup returns -ENOMEM with nothing written, and a later
    setup tries again), or when setting up the hotplug state fails (the first
    ``machine.hpfail`` attempts after the worker exists: setup frees the worker and
    returns the error with nothing written); otherwise it creates the worker, then writes the MSR on
    every CPU :func:`msr_cpus` names, logs the cap (``cap_log: at-setup``), then asks for
    the first pass.  A trigger before
    setup or after teardown does nothing.  teardown stops the worker (a pending pass
    never runs), then clears the MSRs when the spec says so.  A fault ends the trace
    with its event.
    """
    hw = hw if hw is not None else hardware_for(spec, machine, enabled=False)
    sv = spec.as_sweep()
    e = sv.enable
    kthread = worker.kind == "kthread"
    alive = pending = False
    expires: int | None = None
    now = 0
    failures = 0
    gate = setup_proceeds(spec, machine)
    arrives: int | None = None  # cond_resched() calls until an armed teardown arrives
    hp_arrives: int | None = None  # the same for an armed hotplug operation
    tr_arrives: int | None = None  # the same for an armed request
    hp_op: tuple[bool, int] = (True, 0)  # (online, cpu) of that operation
    during: tuple[bool, int] | None = None  # (online, cpu) arriving during the next entry point
    hp_failures = 0

    def hotplug(online: bool, cpu: int) -> Iterator[tuple[Event, int]]:
        """A CPU comes online or goes offline, with what the hotplug state's callback writes."""
        nonlocal machine
        if not 0 <= cpu < machine.nr_cpus:
            raise MachineError(f"CPU {cpu} does not exist")
        if online != (cpu in machine.offline):
            return  # already so
        if not online:
            if cpu == machine.leader:
                raise MachineError(f"CPU {cpu} runs the worker: it stays online")
            last = hw.owners is None or not any(
                hw.owners[c] == hw.owners[cpu] for c in machine.online if c != cpu
            )
            machine = dataclasses.replace(machine, offline=machine.offline | {cpu})
            if alive and e.msr_on_teardown == "clear" and last:
                hw.wrmsr(cpu, 0)  # written on that CPU before it leaves
                yield Wrmsr(cpu, sv.msr.number, 0), now
            return
        machine = dataclasses.replace(machine, offline=machine.offline - {cpu})
        if alive and cpu in msr_cpus(spec, machine):
            value = msr_value(spec, machine)
            hw.wrmsr(cpu, value)
            yield Wrmsr(cpu, sv.msr.number, value), now

    def arrived() -> Iterator[tuple[Event, int]]:
        """The hotplug operation that arrived during an entry point, once it lets the lock go."""
        nonlocal during
        if during is not None:
            op, during = during, None
            yield from hotplug(*op)

    def one_pass(at: int) -> Iterator[tuple[Item, int]]:
        """A pass, and the teardown or hotplug that arrives during it once the pass is over."""
        nonlocal alive, pending, expires, arrives, hp_arrives, tr_arrives
        arrived = hp_arrived = False
        if arrives is None and hp_arrives is None and tr_arrives is None:
            # nothing to count: hand the pass's items on as they come
            yield from zip(sweep_items(spec, machine, hw, batched), repeat(at))
            return
        for ev in sweep_items(spec, machine, hw, batched):
            yield ev, at
            if ev.kind == "resched" and tr_arrives is not None:
                tr_arrives -= 1
                if tr_arrives == 0:  # a request from another CPU: it asks for the next pass
                    tr_arrives = None
                    if alive and kthread:
                        pending = True
                    elif alive:
                        expires = timer(at, worker.rearm_delay_ms)
            if ev.kind == "resched" and arrives is not None:
                arrives -= 1
                if arrives == 0:
                    arrived, arrives = True, None
            if ev.kind == "resched" and hp_arrives is not None:
                hp_arrives -= 1
                if hp_arrives == 0:
                    hp_arrived, hp_arrives = True, None
        if hp_arrived:  # it waited for the pass's cpus_read_unlock()
            for ev, _ in hotplug(*hp_op):
                yield ev, at
        if arrived:
            yield from teardown()

    def teardown() -> Iterator[tuple[Event, int]]:
        nonlocal alive, pending, expires
        if not alive:
            return
        alive = pending = False
        expires = None
        if e.msr_on_teardown == "clear":
            for ev in _write_all(spec, machine, hw, 0):
                yield ev, now

    try:
        for action in actions:
            if action == "setup":
                if gate and not alive and failures < machine.nomem:
                    failures += 1  # no workqueue, or no thread: -ENOMEM
                elif gate and not alive and hp_failures < machine.hpfail:
                    hp_failures += 1  # no hotplug state: the worker is freed again
                elif gate and not alive:
                    alive = True
                    for ev in _write_all(spec, machine, hw, msr_value(spec, machine)):
                        yield ev, now
                    yield from arrived()
                    r = sweep_range(spec, machine)
                    if r.capped and spec.as_sweep().sweep.cap_log == "at-setup":
                        yield cap_log(spec, r), now
                    if kthread:
                        pending = True
                    else:
                        expires = timer(now, worker.first_delay_ms)
            elif action == "trigger" and alive:
                if kthread:
                    pending = True
                else:
                    expires = timer(now, worker.rearm_delay_ms)
            elif action == "run" and kthread:
                while alive and pending:  # a request during a pass makes another one
                    pending = False
                    yield from one_pass(now)
            elif action == "teardown":
                yield from teardown()
            elif action.startswith("teardown-at:"):
                arrives = int(action.split(":")[1])
            elif action.startswith("trigger-at:"):
                tr_arrives = int(action.split(":")[1])
            elif action.startswith(("online-during:", "offline-during:")):
                word, cpu = action.split(":")
                during = (word == "online-during", int(cpu))
            elif action.startswith(("online-at:", "offline-at:")):
                word, n, cpu = action.split(":")
                hp_arrives, hp_op = int(n), (word == "online-at", int(cpu))
            elif action.startswith(("online:", "offline:")):
                word, cpu = action.split(":")
                yield from hotplug(word == "online", int(cpu))
            elif action.startswith("a:"):
                before, now = now, now + int(action[2:])
                while expires is not None and expires <= now:
                    # the work runs when its timer expires, or now if that was within this jiffy
                    at, expires = max(expires, before), None
                    before = at
                    yield from one_pass(at)
            if action in ("setup", "trigger", "teardown"):
                yield from arrived()
    except Faulted as exc:
        yield exc.event, now


def setup_pass_teardown(spec: Spec, machine: Machine, hw: Hardware) -> Iterator[Event]:
    """Setup, one pass and teardown (``kgen sweep``): the MSR writes around the pass.

    Without the feature or a prerequisite, setup returns first: nothing is written and
    nothing runs."""
    return events(setup_pass_teardown_items(spec, machine, hw))


def setup_pass_teardown_items(spec: Spec, machine: Machine, hw: Hardware,
                              batched: bool = True) -> Iterator[Item]:  # fmt: skip
    """:func:`setup_pass_teardown` with the pass as :func:`sweep_items` gives it."""
    if spec.kernel.enable is None or spec.instruction.msr is None:
        yield from sweep_items(spec, machine, hw, batched)
        return
    worker = spec.as_sweep().sweep.workers[0]
    actions = ["setup", "run" if worker.kind == "kthread" else f"a:{worker.first_delay_ms}",
               "teardown"]  # fmt: skip
    yield from map(itemgetter(0), feature_items(spec, worker, machine, actions, hw, batched))
