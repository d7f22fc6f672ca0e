"""The mirror: registers, the sweep's trace, and the RMP/RMPOPT-table state.

Each rule of the sweep is a check function below, run as a hypothesis
property over random machines; a mutation test then breaks the mirror on
purpose, once per rule, and shows that the rule's check fails.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from hypothesis import given, settings, strategies as st

from codegen import mirror
from codegen.diagnostics import SpecError
from codegen.mirror import Hardware, Machine, MachineError, sweep, sweep_range
from codegen.spec import parse
from tests.conftest import RMPOPT_YAML


@pytest.fixture(scope="module")
def t(rmpopt):
    return rmpopt.instruction.table


def codes(spec):
    return {c.effect: c.value for c in spec.instruction.function_codes.codes}


# --- registers --------------------------------------------------------------


def test_registers_align_the_address_and_pass_the_helper_code(rmpopt, t):
    pa = 5 * t.region_size + 12345
    regs = mirror.registers(rmpopt, pa)
    assert regs == {"rax": 5 * t.region_size, "rcx": codes(rmpopt)["scan-and-set"]}
    assert mirror.registers(rmpopt, pa, "report_status")["rcx"] == codes(rmpopt)["read"]


def test_instruction_bytes(rmpopt):
    assert list(mirror.instruction_bytes(rmpopt)) == [b.byte for b in rmpopt.instruction.encoding]


# --- machines ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(min_low_pfn=9, max_pfn=5), "below min_low_pfn"),
        (dict(min_low_pfn=0, max_pfn=5, cores=0), "at least one core"),
        (dict(min_low_pfn=0, max_pfn=5, cores=2, leader=2), "leader CPU 2 is not online"),
        (dict(min_low_pfn=0, max_pfn=5, cores=2, offline=frozenset({0, 1})), "no CPU is online"),
        (dict(min_low_pfn=0, max_pfn=5, cores=2, offline=frozenset({0})), "leader CPU 0"),
        (dict(min_low_pfn=0, max_pfn=5, offline=frozenset({7})), "does not exist"),
        (dict(min_low_pfn=0, max_pfn=5, assigned=((4, 4),)), "empty"),
    ],
)
def test_impossible_machines(kwargs, message):
    with pytest.raises(MachineError, match=message):
        Machine(**kwargs)


def test_sibling_numbering():
    spread = Machine(0, 1, cores=4, threads_per_core=2, numbering="spread")
    adjacent = Machine(0, 1, cores=4, threads_per_core=2, numbering="adjacent")
    assert [c for c in range(8) if spread.is_primary(c)] == [0, 1, 2, 3]
    assert spread.siblings(1) == {1, 5}
    assert [c for c in range(8) if adjacent.is_primary(c)] == [0, 2, 4, 6]
    assert adjacent.siblings(3) == {2, 3}


# --- the rules of the sweep, as checks --------------------------------------


def check_alignment(spec, machine, events):
    size = spec.instruction.table.region_size
    lo = machine.min_low_pfn << mirror.PAGE_SHIFT
    leader_rax = [e.rax for e in events if e.kind == "rmpopt" and e.cpu == machine.leader]
    leader_rax = leader_rax[: len(set(leader_rax))]
    for rax in leader_rax:
        assert rax % size == 0
    if leader_rax:
        assert leader_rax[0] <= lo < leader_rax[0] + size or lo == leader_rax[0]
        assert leader_rax == list(range(leader_rax[0], leader_rax[-1] + size, size))


def check_cap(spec, machine, events):
    t = spec.instruction.table
    s = spec.kernel.sweep
    lo = (machine.min_low_pfn << mirror.PAGE_SHIFT) // t.region_size * t.region_size
    hi = -(-(machine.max_pfn << mirror.PAGE_SHIFT) // t.region_size) * t.region_size
    logs = [e.text for e in events if e.kind == "log"]
    regions = sorted({e.rax for e in events if e.kind == "rmpopt"})
    assert len(regions) == min((hi - lo) // t.region_size, t.entries)
    capped = hi - lo > t.coverage
    per_pass = capped and s.cap_log == "every-pass"  # at-setup: setup logs it, not the pass
    assert [ln.startswith(s.cap_message) for ln in logs] == ([True, False] if per_pass else [False])
    end = lo + min(hi - lo, t.coverage)
    assert logs[-1] == f"{s.log_message} [0x{lo:016x} - 0x{end:016x}]"
    if per_pass:
        assert logs[0] == f"{s.cap_message} [0x{end:016x} - 0x{hi:016x}]"


def check_order(spec, machine, events):
    kinds = [e.kind for e in events]
    n_logs = kinds.index("rmpopt") if "rmpopt" in kinds else len(kinds)
    assert set(kinds[:n_logs]) <= {"log"} and "log" not in kinds[n_logs:]
    body = events[n_logs:]
    regions = sorted({e.rax for e in body if e.kind == "rmpopt"})
    leader = body[: 2 * len(regions)]
    assert [e.kind for e in leader] == ["rmpopt", "resched"] * len(regions)
    assert [e.rax for e in leader[::2]] == regions
    rest = body[2 * len(regions) :]
    i = 0
    for pa in regions if rest else []:
        ipi = rest[i]
        assert ipi.kind == "ipi" and ipi.cpu == machine.leader
        run = rest[i + 1 : i + 1 + len(ipi.targets)]
        assert [(e.kind, e.cpu, e.rax) for e in run] == [("rmpopt", c, pa) for c in ipi.targets]
        assert rest[i + 1 + len(ipi.targets)].kind == "resched"
        i += 2 + len(ipi.targets)
    assert i == len(rest)
    assert all(e.cpu == machine.leader for e in body if e.kind == "resched")


def check_split(spec, machine, events):
    leader_core = machine.siblings(machine.leader)
    ipis = [e for e in events if e.kind == "ipi"]
    executed = {e.cpu for e in events if e.kind == "rmpopt"}
    expected = {c for c in machine.online if machine.is_primary(c) and c not in leader_core}
    if not any(e.kind == "rmpopt" for e in events):  # no region to sweep
        assert not ipis
        return
    assert executed == expected | {machine.leader}
    for ipi in ipis:
        assert set(ipi.targets) == expected and list(ipi.targets) == sorted(ipi.targets)
        assert machine.leader not in ipi.targets
    if not expected:
        assert not ipis


def check_state(spec, machine, events, hw):
    t = spec.instruction.table
    fn = codes(spec)
    optimized = {cpu: set(hw.optimized(cpu)) for cpu in machine.online}
    for e in (e for e in events if e.kind == "rmpopt"):
        blocked = any(s < e.rax + t.region_size and e.rax < end for s, end in machine.assigned)
        inside = 0 <= e.rax - hw.base < t.coverage
        assert e.rcx == fn["scan-and-set"]
        assert e.cf == int(inside and not blocked)
        assert (e.cf == 1) == (e.rax in optimized[e.cpu])
    ran: dict[int, set[int]] = {cpu: set() for cpu in machine.online}
    for e in events:
        if e.kind == "rmpopt" and e.cf:
            ran[e.cpu].add(e.rax)
    assert optimized == ran


CHECKS = [check_alignment, check_cap, check_order, check_split]


@st.composite
def machines(draw, max_cores=6):
    cores = draw(st.integers(1, max_cores))
    threads = draw(st.integers(1, 4))
    n = cores * threads
    offline = draw(st.frozensets(st.integers(0, n - 1), max_size=n - 1))
    leader = draw(st.sampled_from([c for c in range(n) if c not in offline]))
    gb = 1 << 30
    min_pa = draw(st.integers(0, 8 * gb))
    span = draw(
        st.one_of(st.integers(0, 8 * gb), st.sampled_from([2 << 40, (2 << 40) + gb, 3 << 40]))
    )
    assigned = tuple(
        (s, s + draw(st.integers(1, 4 << 20)))
        for s in draw(st.lists(st.integers(0, min_pa + span + gb), max_size=4))
    )
    return Machine(
        min_pa >> 12, (min_pa + span) >> 12, cores, threads,
        draw(st.sampled_from(["spread", "adjacent"])), leader, offline, assigned,
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(machines())
def test_sweep_rules_hold_on_random_machines(rmpopt, machine):
    hw = mirror.hardware_for(rmpopt, machine)
    events = list(sweep(rmpopt, machine, hw))
    for check in CHECKS:
        check(rmpopt, machine, events)
    check_state(rmpopt, machine, events, hw)


# --- each rule's check fails when the mirror breaks that rule ---------------


def _broken_followers(machine):
    return [c for c in machine.online if machine.is_primary(c) and c != machine.leader]


MIRROR_MUTANTS = {
    # rule broken -> (attribute of codegen.mirror, replacement)
    "alignment": ("align_down", lambda v, s: v),
    "cap": ("sweep_range", lambda spec, m: mirror.Range(
        mirror.align_down(m.min_low_pfn << 12, spec.instruction.table.region_size),
        mirror.align_up(m.max_pfn << 12, spec.instruction.table.region_size),
        mirror.align_up(m.max_pfn << 12, spec.instruction.table.region_size))),
    "split": ("followers", _broken_followers),
    "order": ("Resched", lambda cpu: mirror.Log("cond_resched")),
}  # fmt: skip
RULE_CHECK = {
    "alignment": check_alignment,
    "cap": check_cap,
    "split": check_split,
    "order": check_order,
}


@pytest.mark.parametrize("rule", sorted(MIRROR_MUTANTS))
def test_each_rule_check_catches_a_broken_mirror(rmpopt, rule, monkeypatch, t):
    gb = t.region_size
    machine = Machine(
        (gb + 4096) >> 12, ((3 << 40) + gb // 2) >> 12, cores=3, threads_per_core=2, leader=4,
        table_base=0,
    )  # fmt: skip
    events = list(sweep(rmpopt, machine))
    RULE_CHECK[rule](rmpopt, machine, events)  # passes on the real mirror
    monkeypatch.setattr(mirror, *MIRROR_MUTANTS[rule])
    broken = list(sweep(rmpopt, machine))
    with pytest.raises(AssertionError):
        RULE_CHECK[rule](rmpopt, machine, broken)


def test_state_check_catches_a_model_that_ignores_assigned_pages(rmpopt, monkeypatch, t):
    machine = Machine(
        0, (4 * t.region_size) >> 12, cores=2, assigned=((t.region_size, t.region_size + 4096),)
    )
    hw = mirror.hardware_for(rmpopt, machine)
    check_state(rmpopt, machine, list(sweep(rmpopt, machine, hw)), hw)
    monkeypatch.setattr(Hardware, "region_has_assigned", lambda self, start: False)
    hw = mirror.hardware_for(rmpopt, machine)
    with pytest.raises(AssertionError):
        check_state(rmpopt, machine, list(sweep(rmpopt, machine, hw)), hw)


# --- hardware state transitions ---------------------------------------------


@pytest.fixture()
def hw(rmpopt, t):
    return Hardware(rmpopt, nr_cpus=4, base=0)


def test_verify_sets_the_bit_report_only_reads(rmpopt, hw, t):
    fn = codes(rmpopt)
    region = 7 * t.region_size
    assert hw.execute(1, region, fn["read"]) == 0
    assert hw.execute(1, region, fn["scan-and-set"]) == 1
    assert hw.execute(1, region, fn["read"]) == 1
    assert hw.execute(2, region, fn["read"]) == 0, "tables are per CPU"


def test_assigned_page_blocks_and_rmpupdate_clears_every_cpu(rmpopt, hw, t):
    fn = codes(rmpopt)
    region = 3 * t.region_size
    for cpu in range(4):
        assert hw.execute(cpu, region, fn["scan-and-set"]) == 1
    hw.assign(region + t.region_size - 4096, region + t.region_size)  # last page of the region
    assert [hw.execute(cpu, region, fn["read"]) for cpu in range(4)] == [0, 0, 0, 0]
    assert hw.execute(0, region, fn["scan-and-set"]) == 0
    assert hw.execute(0, region + t.region_size, fn["scan-and-set"]) == 1, "next region is free"
    assert hw.execute(0, region - t.region_size, fn["scan-and-set"]) == 1, "previous one too"


def test_regions_outside_coverage_never_optimize(rmpopt, t):
    fn = codes(rmpopt)
    hw = Hardware(rmpopt, nr_cpus=1, base=4 * t.region_size)
    assert hw.execute(0, 3 * t.region_size, fn["scan-and-set"]) == 0
    assert hw.execute(0, 4 * t.region_size, fn["scan-and-set"]) == 1
    assert hw.execute(0, 4 * t.region_size + t.coverage - t.region_size, fn["scan-and-set"]) == 1
    assert hw.execute(0, 4 * t.region_size + t.coverage, fn["scan-and-set"]) == 0


def test_undefined_function_code_faults(rmpopt, hw):
    with pytest.raises(MachineError, match="#GP"):
        hw.execute(0, 0, max(codes(rmpopt).values()) + 1)


def test_unaligned_base_is_refused(rmpopt, t):
    with pytest.raises(MachineError):
        Hardware(rmpopt, nr_cpus=1, base=t.region_size // 2)


# --- worked examples --------------------------------------------------------


def test_three_tb_eight_core_smt2_machine(rmpopt, t):
    machine = Machine(0, (3 << 40) >> 12, cores=8, threads_per_core=2)
    summary, hw = mirror.summarize(rmpopt, machine)
    assert summary.regions == t.entries
    assert summary.range.capped and summary.range.uncapped_end - summary.range.pa_end == 1 << 40
    assert summary.rmpopt == t.entries * 8  # the leader plus the 7 other primary threads
    assert summary.ipis == t.entries and summary.rescheds == 2 * t.entries
    assert summary.optimized == {c: (t.entries if c < 8 else 0) for c in range(16)}


def test_one_region_single_cpu(rmpopt, t):
    machine = Machine(0, 1, cores=1)
    events = list(sweep(rmpopt, machine))
    assert [e.kind for e in events] == ["log", "rmpopt", "resched"]
    assert events[1] == mirror.Rmpopt(0, 0, codes(rmpopt)["scan-and-set"], 1)


def test_sweep_range_rounds_outward(rmpopt, t):
    r = sweep_range(rmpopt, Machine((t.region_size + 4096) >> 12, (2 * t.region_size + 4096) >> 12))
    assert (r.pa_start, r.pa_end) == (t.region_size, 3 * t.region_size)


# --- the command ------------------------------------------------------------


def test_kgen_sweep_summary_reports_the_cap(run_kgen, t):
    result = run_kgen("sweep", "isa/rmpopt.yaml", "--memory", "3T", "--cores", "8",
                      "--threads-per-core", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f": {t.entries} regions of 1 GB" in result.output
    assert "above cap    1 TB not optimized" in result.output
    assert f"{t.entries * 8} executions" in result.output


def test_kgen_sweep_json_trace_format(run_kgen, rmpopt, t):
    result = run_kgen("sweep", "isa/rmpopt.yaml", "--memory", "4G", "--cores", "2",
                      "--threads-per-core", "2", "--assigned", "0-4K", "--json")  # fmt: skip
    assert result.exit_code == 0
    lines = [json.loads(ln) for ln in result.output.splitlines()]
    assert all(list(ln)[0] == "kind" for ln in lines)
    rm = [ln for ln in lines if ln["kind"] == "rmpopt"]
    assert set(rm[0]) == {"kind", "cpu", "rax", "rcx", "cf"}
    assert rm[0] == {"kind": "rmpopt", "cpu": 0, "rax": 0, "rcx": 0, "cf": 0}  # page 0 assigned
    ipi = next(ln for ln in lines if ln["kind"] == "ipi")
    assert ipi == {"kind": "ipi", "cpu": 0, "targets": [1]}
    tables = [ln for ln in lines if ln["kind"] == "table"]
    assert [tb["cpu"] for tb in tables] == [0, 1, 2, 3]
    assert tables[0]["optimized"] == 3 and tables[2]["optimized"] == 0


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["--memory", "4G", "--leader", "3"], 2, "leader CPU 3 is not online"),
        (["--min-pfn", "9", "--max-pfn", "5"], 2, "below min_low_pfn"),
        ([], 2, "exactly one of --max-pfn and --memory"),
        (["--memory", "4G", "--max-pfn", "5"], 2, "exactly one"),
        (["--memory", "lots"], 2, "not a number or a size"),
        (["--memory", "4G", "--assigned", "5-4"], 2, "END must be above START"),
        (["--memory", "4G", "--cores", "0"], 2, "0"),
        (["--memory", "-1"], 2, "'-1' is negative"),
        (["--memory", "9" * 5000], 2, "does not fit 64 bits"),
        (["--memory", "8P"], 2, "'8P' is beyond 52-bit physical addresses (at most 4P)"),
        (["--memory", "4G", "--base", "-0x40000000"], 2, "is negative"),
        (["--memory", "4G", "--base", "16E"], 2, "'16E' does not fit 64 bits"),
        (["--memory", "4G", "--base", "4P"], 2, "beyond 52-bit physical addresses"),
        (["--memory", "4G", "--base", ""], 2, "'' is not a number or a size"),
        (["--max-pfn", str(1 << 41)], 2, "beyond 52-bit physical addresses"),
        (["--min-pfn", "-1", "--max-pfn", "5"], 2, "negative"),
        (["--memory", "4G", "--assigned", "0-16E"], 2, "does not fit 64 bits"),
        (["--memory", "4G", "--assigned", "0-8P"], 2, "beyond 52-bit"),
        (["--memory", "4G", "--cores", "5000"], 2, "5000"),
        (
            ["--memory", "4G", "--cores", "4096", "--threads-per-core", "2"],
            2,
            "4096 cores x 2 threads: the mirror simulates at most 4096 CPUs",
        ),
        (["--memory", "4G", "--offline", "99999"], 2, "99999"),
        (["--memory", "4G", "--leader", "4096"], 2, "4096"),
    ],
)
def test_kgen_sweep_bad_machines(run_kgen, args, code, text):
    result = run_kgen("sweep", "isa/rmpopt.yaml", *args)
    assert result.exit_code == code
    assert text in result.stderr


def test_a_machine_beyond_the_physical_address_width_is_impossible():
    with pytest.raises(MachineError, match="52-bit physical addresses"):
        Machine(0, (1 << 40) + 1)
    with pytest.raises(MachineError, match="52-bit physical addresses"):
        Machine(0, 1, assigned=((0, (1 << 52) + 1),))
    with pytest.raises(MachineError, match="52-bit physical addresses"):
        Machine(0, 1, table_base=1 << 52)
    Machine(0, 1 << 40, assigned=((0, 1 << 52),))


def test_the_mirror_refuses_a_pass_too_large_to_simulate(rmpopt):
    """A huge table on a big machine grew for minutes; now the pass is sized first."""
    t = rmpopt.instruction.table
    big = dataclasses.replace(
        rmpopt, instruction=dataclasses.replace(
            rmpopt.instruction, table=dataclasses.replace(t, region_size=4096, entries=1 << 20,
                                                          coverage=4 << 30)))  # fmt: skip
    machine = Machine(0, (64 << 30) >> 12, cores=4096)
    with pytest.raises(mirror.MachineTooLarge, match="4294967296 executions: the mirror simulates "
                       "at most 1048576 in one pass"):  # fmt: skip
        mirror.hardware_for(big, machine)
    ok = Machine(0, (64 << 30) >> 12, cores=1)
    assert mirror.executions(big, ok) == 1 << 20
    mirror.hardware_for(big, ok)


HUGE_TABLE = (("region_size: 1G", "region_size: 4K"), ("entries: 2048", "entries: 1048576"),
              ("coverage: 2T", "coverage: 4G"), ("low_bit: 30", "low_bit: 12"))  # fmt: skip


def _huge_table(tmp_path):
    text = RMPOPT_YAML.read_text()
    for old, new in HUGE_TABLE:
        assert text.count(old) == 1
        text = text.replace(old, new)
    path = tmp_path / "huge.yaml"
    path.write_text(text)
    return path


def test_kgen_sweep_too_large_to_simulate_is_a_usage_error(run_kgen, tmp_path):
    path = _huge_table(tmp_path)
    start = time.perf_counter()
    result = run_kgen("sweep", path, "--memory", "64G", "--cores", "4096")
    assert result.exit_code == 2
    assert "the mirror simulates at most 1048576 in one pass" in result.stderr
    assert time.perf_counter() - start < 5


def test_validate_base_with_a_huge_table_stays_bounded(run_kgen, tmp_path):
    path = _huge_table(tmp_path)
    start = time.perf_counter()
    result = run_kgen("validate", path, "--base", RMPOPT_YAML)
    assert result.exit_code == 0, result.output + result.stderr
    assert (
        "3 TB, 8 cores x 2 threads: not compared: the pass of the spec is too large: "
        "8388608 executions: the mirror simulates at most 1048576"
    ) in result.output
    assert time.perf_counter() - start < 30


def test_the_table_has_at_most_2_20_entries(tmp_path):
    text = RMPOPT_YAML.read_text().replace("entries: 2048", "entries: 2097152")
    with pytest.raises(SpecError, match=r"value 0x200000 is out of range 1\.\.0x100000"):
        parse(text, "t.yaml")


# --- enabling: the feature, the per-core MSR, setup and teardown -------------


def _worker(spec, kind):
    return next(w for w in spec.kernel.sweep.workers if w.kind == kind)


def _trace(spec, machine, actions, kind="delayed-work"):
    return [e for e, _ in mirror.feature_trace(spec, _worker(spec, kind), machine, actions)]


def test_setup_writes_the_msr_once_per_core_before_the_pass_and_teardown_clears_it(rmpopt, t):
    m = Machine((t.region_size + 4096) >> 12, (4 * t.region_size) >> 12,
                cores=3, threads_per_core=2, numbering="adjacent", leader=3)  # fmt: skip
    msr = rmpopt.instruction.msr
    events = _trace(rmpopt, m, ["setup", "a:0", "teardown"])
    writes = [e for e in events if e.kind == "wrmsr"]
    value = t.region_size | 1 << msr.enable.bit  # the start aligned down, ORed with enable
    assert writes[:3] == [mirror.Wrmsr(c, msr.number, value) for c in (0, 2, 4)]
    assert writes[3:] == [mirror.Wrmsr(c, msr.number, 0) for c in (0, 2, 4)]
    kinds = [e.kind for e in events]
    assert kinds[:3] == ["wrmsr"] * 3 and kinds[-3:] == ["wrmsr"] * 3
    assert "rmpopt" in kinds and "fault" not in kinds


def test_a_core_whose_first_thread_is_offline_is_written_through_its_sibling(rmpopt, t):
    m = Machine(0, (2 * t.region_size) >> 12, cores=2, threads_per_core=2, leader=2,
                offline=frozenset({0}))  # fmt: skip
    events = _trace(rmpopt, m, ["setup", "a:0"])
    assert [e.cpu for e in events if e.kind == "wrmsr"] == [1, 2]
    assert not [e for e in events if e.kind == "fault"]


def test_without_the_feature_nothing_is_written_and_nothing_runs(rmpopt, t):
    m = Machine(0, (2 * t.region_size) >> 12, cores=2, feature=False)
    for kind in ("kthread", "delayed-work"):
        actions = ["setup", "run", "a:0", "trigger", "a:20000", "run", "teardown"]
        assert _trace(rmpopt, m, actions, kind) == []


def test_without_a_prerequisite_nothing_is_written_and_nothing_runs(rmpopt, t):
    (snp,) = rmpopt.kernel.enable.requires
    m = Machine(0, (2 * t.region_size) >> 12, cores=2)
    for kind in ("kthread", "delayed-work"):
        actions = ["setup", "run", "a:0", "trigger", "a:20000", "run", "teardown"]
        assert _trace(rmpopt, m, actions, kind)  # the machine with it sweeps
        without = dataclasses.replace(m, without=frozenset({snp.name}))
        assert _trace(rmpopt, without, actions, kind) == []


def test_a_prerequisite_the_spec_does_not_list_changes_nothing(rmpopt, t):
    m = Machine(0, (2 * t.region_size) >> 12, cores=2)
    other = dataclasses.replace(m, without=frozenset({"tdx-host"}))
    assert _trace(rmpopt, other, ["setup", "a:0", "teardown"]) == _trace(
        rmpopt, m, ["setup", "a:0", "teardown"]
    )


def test_kgen_sweep_without_a_prerequisite_writes_and_runs_nothing(run_kgen):
    args = ["sweep", str(RMPOPT_YAML), "--memory", "4G", "--cores", "2"]
    without = run_kgen(*args, "--json", "--without", "snp-host")
    assert without.exit_code == 0
    assert {json.loads(line)["kind"] for line in without.output.splitlines()} == {"table"}
    summary = run_kgen(*args, "--without", "snp-host")
    assert "snp-host absent (cc_platform_has(CC_ATTR_HOST_SEV_SNP) is false)" in summary.output
    unknown = run_kgen(*args, "--without", "snp-hots")
    assert unknown.exit_code == 2 and "'snp-hots' is not a prerequisite" in unknown.output
    assert "(it lists: snp-host)" in unknown.output


def test_an_execution_on_a_core_whose_msr_is_clear_is_a_fault_not_a_result(rmpopt, t):
    m = Machine(0, (2 * t.region_size) >> 12, cores=2)
    hw = mirror.hardware_for(rmpopt, m, enabled=False)
    with pytest.raises(mirror.Faulted) as exc:
        list(sweep(rmpopt, m, hw))
    assert exc.value.event == mirror.Fault(0, 0, codes(rmpopt)["scan-and-set"], "UD")
    hw.wrmsr(0, 1)  # only core 0: its follower, core 1, faults after the leader's pass
    events = []
    with pytest.raises(mirror.Faulted) as exc:
        for e in sweep(rmpopt, m, hw):
            events.append(e)
    assert exc.value.event.cpu == 1 and events[-1].kind == "ipi"


@pytest.mark.parametrize("kind", ["kthread", "delayed-work"])
def test_requests_outside_setup_and_teardown_do_nothing(rmpopt, t, kind):
    m = Machine(0, t.region_size >> 12, cores=2)
    go = "run" if kind == "kthread" else "a:20000"
    once = _trace(rmpopt, m, ["setup", go, "teardown"], kind)
    assert _trace(rmpopt, m, ["trigger", go, "setup", go, "teardown", "trigger", go], kind) == once
    assert _trace(rmpopt, m, ["setup", "setup", go, "teardown", "teardown"], kind) == once
    # teardown while a pass is pending: the pass never runs, the MSRs are cleared
    pending = _trace(rmpopt, m, ["setup", "teardown", go], kind)
    assert [e.kind for e in pending] == ["wrmsr"] * 4
    # set up again after teardown: the MSRs are written again and a pass runs
    again = _trace(rmpopt, m, ["setup", go, "teardown", "setup", go, "teardown"], kind)
    assert again == once + once


@pytest.mark.parametrize("kind", ["kthread", "delayed-work"])
@pytest.mark.parametrize("at", [1, 2, 3, 4])
def test_a_teardown_during_a_pass_waits_for_it(rmpopt, t, kind, at):
    """kthread_stop() and cancel_delayed_work_sync() wait for the running pass: it ends on
    enabled MSRs, then teardown clears them; a request after it does nothing."""
    m = Machine(0, (2 * t.region_size) >> 12, cores=2)  # 2 regions: 4 cond_resched() calls
    go = "run" if kind == "kthread" else "a:0"
    later = "run" if kind == "kthread" else "a:20000"
    after = _trace(rmpopt, m, ["setup", go, "teardown"], kind)
    during = _trace(
        rmpopt, m, ["setup", f"teardown-at:{at}", go, "trigger", later, "teardown"], kind
    )
    assert during == after
    kinds = [e.kind for e in during]
    assert kinds[-2:] == ["wrmsr", "wrmsr"] and "fault" not in kinds
    assert [e.value for e in during if e.kind == "wrmsr"] == [1, 1, 0, 0]


def test_a_teardown_armed_beyond_the_pass_waits_for_the_next_one(rmpopt, t):
    m = Machine(0, (2 * t.region_size) >> 12, cores=2)
    trace = _trace(
        rmpopt, m, ["setup", "teardown-at:6", "run", "trigger", "run", "trigger", "run"], "kthread"
    )
    assert sum(e.kind == "resched" for e in trace) == 8  # two passes, then no third
    assert [e.kind for e in trace][-2:] == ["wrmsr", "wrmsr"]


def test_kgen_sweep_without_the_feature_writes_and_runs_nothing(run_kgen):
    args = ["sweep", str(RMPOPT_YAML), "--memory", "4G", "--cores", "2", "--json"]
    with_feature = run_kgen(*args)
    assert with_feature.exit_code == 0
    kinds = [json.loads(line)["kind"] for line in with_feature.output.splitlines()]
    assert kinds[:2] == ["wrmsr", "wrmsr"] and "rmpopt" in kinds
    without = run_kgen(*args, "--without-feature")
    assert without.exit_code == 0
    kinds = {json.loads(line)["kind"] for line in without.output.splitlines()}
    assert kinds == {"table"}
    summary = run_kgen(*args[:-1], "--without-feature")
    assert "X86_FEATURE_RMPOPT absent" in summary.output


def test_the_cap_is_logged_as_the_spec_says(rmpopt, t):
    m = Machine(0, (t.coverage + 2 * t.region_size) >> 12, cores=1)
    actions = ["setup", "a:0", "trigger", "a:20000", "teardown"]
    cap = rmpopt.kernel.sweep.cap_message
    at_setup = [e for e in _trace(rmpopt, m, actions) if e.kind == "log"]
    assert rmpopt.kernel.sweep.cap_log == "at-setup"
    assert [e.text.startswith(cap) for e in at_setup] == [True, False, False]  # once, then 2 passes
    every = dataclasses.replace(
        rmpopt,
        kernel=dataclasses.replace(
            rmpopt.kernel, sweep=dataclasses.replace(rmpopt.kernel.sweep, cap_log="every-pass")
        ),
    )
    per_pass = [e for e in _trace(every, m, actions) if e.kind == "log"]
    assert [e.text.startswith(cap) for e in per_pass] == [True, False, True, False]


# --- kgen sweep --json writes each line without json.dumps, byte for byte the same ----------


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


ODD_EVENTS = [
    mirror.Log('a "quoted" \\ line\twith\x01 control, caf\u00e9 and \U0001f600'),
    mirror.Fault(3, 1 << 63, 0, "GP"),
    mirror.Ipi(0, ()),
    mirror.Ipi(5, (0, 1, 2)),
    mirror.Wrmsr(1, 0xC0010139, (1 << 64) - 1),
    mirror.Rmpopt(4095, (1 << 52) - (1 << 30), 1, 1),
]


@pytest.mark.parametrize("event", ODD_EVENTS, ids=lambda e: e.kind)
def test_event_line_is_json_dumps_of_event_json(event):
    assert mirror.event_line(event) == _dumps(mirror.event_json(event))


@settings(max_examples=60, deadline=None)
@given(machines(), st.booleans(), st.booleans())
def test_sweep_json_lines_are_json_dumps_on_random_machines(rmpopt, machine, feature, snp):
    machine = dataclasses.replace(machine, feature=feature,
                                  without=frozenset() if snp else frozenset({"snp-host"}))  # fmt: skip
    hw = mirror.hardware_for(rmpopt, machine, enabled=False)
    events = list(mirror.setup_pass_teardown(rmpopt, machine, hw))
    assert [mirror.event_line(e) for e in events] == [_dumps(mirror.event_json(e)) for e in events]
    expected = "".join(_dumps(mirror.event_json(e)) + "\n" for e in events) + "".join(
        _dumps({"kind": "table", "cpu": c, "optimized": len(hw.optimized(c)),
                "regions": hw.optimized(c)}) + "\n"
        for c in machine.online
    )  # fmt: skip
    assert "".join(mirror.json_lines(rmpopt, machine)) == expected


def test_kgen_sweep_json_is_the_json_lines(run_kgen, rmpopt):
    args = ["--memory", "3T", "--cores", "3", "--threads-per-core", "2", "--assigned", "0x40000000-0x40001000",
            "--offline", "4", "--leader", "1"]  # fmt: skip
    result = run_kgen("sweep", "isa/rmpopt.yaml", *args, "--json")
    assert result.exit_code == 0, result.output
    machine = Machine(0, 3 << 28, 3, 2, leader=1, offline=frozenset({4}),
                      assigned=((1 << 30, (1 << 30) + 4096),))  # fmt: skip
    assert result.output == "".join(mirror.json_lines(rmpopt, machine))


@settings(max_examples=100, deadline=None)
@given(machines(max_cores=12))
def test_siblings_are_the_cpus_of_the_same_core(machine):
    for cpu in range(machine.nr_cpus):
        core = machine.core_thread(cpu)[0]
        assert machine.siblings(cpu) == {c for c in range(machine.nr_cpus)
                                         if machine.core_thread(c)[0] == core}  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(machines(), st.booleans())
def test_the_summary_counts_the_trace(rmpopt, machine, feature):
    machine = dataclasses.replace(machine, feature=feature)
    summary, _ = mirror.summarize(rmpopt, machine)
    events = list(
        mirror.setup_pass_teardown(
            rmpopt, machine, mirror.hardware_for(rmpopt, machine, enabled=False)
        )
    )
    kinds = [e.kind for e in events]
    assert (summary.rmpopt, summary.ipis, summary.rescheds, summary.wrmsrs) == (
        kinds.count("rmpopt"),
        kinds.count("ipi"),
        kinds.count("resched"),
        kinds.count("wrmsr"),
    )
    assert summary.cf_set == sum(e.cf for e in events if e.kind == "rmpopt")
    assert summary.logs == tuple(e.text for e in events if e.kind == "log")


# --- the rounds: kgen sweep's fast path against one event per execution ----------------------


def _tables(hw, cpus):
    """Each CPU's optimized regions, read bit by bit from the hardware's marks."""
    step = hw.region_size
    return [sorted(hw.base + i * step for i, m in hw.marks.items() if m >> cpu & 1) for cpu in cpus]


def _pass_to_fault(spec, machine, hw, batched):
    """The events of a pass on ``hw`` up to its fault (None if none), then the fault."""
    out = []
    try:
        for e in mirror.events(mirror.sweep_items(spec, machine, hw, batched)):
            out.append(e)
    except mirror.Faulted as exc:
        return out, exc.event
    return out, None


def check_rounds(spec, machine, enabled):
    """Rounds (the fast path) and one execution at a time (the plain one) give the same
    events, tables, ``kgen sweep --json`` text and summary: for setup, one pass and teardown,
    and for a pass on hardware whose MSRs enable only the cores of ``enabled``."""
    cpus = list(range(machine.nr_cpus))
    fast_hw = mirror.hardware_for(spec, machine, enabled=False)
    plain_hw = mirror.hardware_for(spec, machine, enabled=False)
    items = list(mirror.setup_pass_teardown_items(spec, machine, fast_hw))
    plain = list(mirror.setup_pass_teardown_items(spec, machine, plain_hw, batched=False))
    assert not any(type(i) is mirror.Rmpopts for i in plain)
    assert list(mirror.events(items)) == plain
    tables = _tables(plain_hw, cpus)
    assert fast_hw.optimized_of(cpus) == tables
    assert [fast_hw.optimized(c) for c in cpus] == tables
    expected = "".join(_dumps(mirror.event_json(e)) + "\n" for e in plain) + "".join(
        _dumps({"kind": "table", "cpu": c, "optimized": len(tables[c]), "regions": tables[c]})
        + "\n"
        for c in machine.online
    )
    assert "".join(mirror.json_lines(spec, machine)) == expected
    summary, _ = mirror.summarize(spec, machine)
    kinds = [e.kind for e in plain]
    assert (summary.rmpopt, summary.ipis, summary.rescheds, summary.wrmsrs) == (
        kinds.count("rmpopt"), kinds.count("ipi"), kinds.count("resched"), kinds.count("wrmsr"),
    )  # fmt: skip
    assert summary.cf_set == sum(e.cf for e in plain if e.kind == "rmpopt")
    assert summary.logs == tuple(e.text for e in plain if e.kind == "log")
    assert summary.optimized == {c: len(tables[c]) for c in machine.online}
    # a pass without setup, on MSRs some cores' of which do not enable the instruction
    runs = []
    for batched in (True, False):
        hw = mirror.hardware_for(spec, machine, enabled=False)
        for cpu in enabled:
            hw.wrmsr(cpu, mirror.msr_value(spec, machine))
        runs.append((*_pass_to_fault(spec, machine, hw, batched), _tables(hw, cpus)))
    assert runs[0] == runs[1]


@st.composite
def round_machines(draw):
    machine = draw(machines())
    base = draw(st.one_of(st.none(), st.integers(0, 8).map(lambda n: n << 30)))
    return dataclasses.replace(
        machine, table_base=base, feature=draw(st.booleans()),
        without=draw(st.sampled_from([frozenset(), frozenset({"snp-host"})])),
    ), draw(st.sets(st.integers(0, machine.nr_cpus - 1)))  # fmt: skip


@settings(max_examples=120, deadline=None)
@given(round_machines())
def test_the_rounds_give_what_one_execution_at_a_time_gives(rmpopt, machine_enabled):
    check_rounds(rmpopt, *machine_enabled)


def mirror_cases(spec):
    """The compare cases of a worker (setup, requests, teardown, hotplug) of one seed."""
    from codegen import cases

    workers = {w.kind for w in spec.kernel.sweep.workers}
    return [c for c in cases.generate(spec, 7, 120) if c.form in workers]


def test_the_compare_cases_trace_the_same_with_and_without_rounds(rmpopt):
    traced = 0
    for case in mirror_cases(rmpopt):
        worker = next(w for w in rmpopt.kernel.sweep.workers if w.kind == case.form)
        runs = []
        for batched in (True, False):
            hw = mirror.hardware_for(rmpopt, case.machine, enabled=False)
            items = mirror.feature_items(rmpopt, worker, case.machine, list(case.actions), hw,
                                         batched)  # fmt: skip
            trace = [(e, at) for item, at in items for e in mirror.events([item])]
            runs.append((trace, _tables(hw, range(case.machine.nr_cpus))))
        assert runs[0] == runs[1], case.id
        hw = mirror.hardware_for(rmpopt, case.machine, enabled=False)
        assert list(mirror.feature_trace(rmpopt, worker, case.machine, list(case.actions),
                                         hw)) == runs[1][0]  # fmt: skip
        traced += 1
    assert traced > 50


ROUND_EVENTS = mirror.Rmpopts.events
# Each breaks the rounds alone: the path of one execution at a time stays right.
ROUND_MUTANTS = {
    "marks only the first CPU of a round": (
        mirror.Hardware, "_cpus",
        lambda self, cpus, known=mirror.Hardware._cpus: (1 << cpus[0], known(self, cpus)[1])),
    "runs a round on CPUs that cannot execute": (
        mirror.Hardware, "ready",
        lambda self, cpus, ready=mirror.Hardware.ready: len(cpus) > 1 or ready(self, cpus)),
    "loses the last execution of a round": (
        mirror.Rmpopts, "events", lambda self: iter(list(ROUND_EVENTS(self))[:-1])),
    "loses the last JSON line of a round": (
        mirror, "round_lines",
        lambda r, lines=mirror.round_lines: lines(r).rsplit("\n", 2)[0] + "\n"),
    "gives every CPU the first CPU's table": (
        mirror.Hardware, "optimized_of",
        lambda self, cpus, of=mirror.Hardware.optimized_of: of(self, cpus[:1]) * len(cpus)),
}  # fmt: skip


@pytest.mark.parametrize("mutant", sorted(ROUND_MUTANTS))
def test_the_rounds_check_catches_a_broken_round(rmpopt, mutant, monkeypatch):
    # 3 cores x 2 threads, the leader on core 1; its MSR and core 2's enable the instruction,
    # core 0's does not
    machine = Machine(0, 3 << 18, cores=3, threads_per_core=2, leader=4,
                      assigned=((1 << 30, (1 << 30) + 4096),))  # fmt: skip
    check_rounds(rmpopt, machine, {2, 4})  # holds for the real mirror
    monkeypatch.setattr(*ROUND_MUTANTS[mutant])
    with pytest.raises(AssertionError):
        check_rounds(rmpopt, machine, {2, 4})


@pytest.mark.parametrize("cfs", [[1, 1, 1], [0, 0, 0], [1, 0, 1], [0, 1, 1], [1]])
def test_a_rounds_json_lines_are_its_events_lines(cfs):
    r = mirror.Rmpopts((0, 7, 4095)[: len(cfs)], (1 << 52) - (1 << 30), 1, cfs)
    assert mirror.round_lines(r) == "".join(mirror.event_line(e) + "\n" for e in r.events())
