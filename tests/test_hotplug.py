"""CPU hotplug while the instruction is enabled: what the mirror expects, and that the
generated code does it (compile-and-compare on the hotplug cases)."""

from __future__ import annotations

import dataclasses

import pytest

from codegen import cases, mirror
from codegen.compare import compare
from codegen.host import choose_engine
from codegen.render import render_spec
from codegen.spec import load
from codegen.toolchain import find_clang
from tests.conftest import RMPOPT_YAML
from tests.mutants import apply, catalogue

SPEC = load(RMPOPT_YAML)
MSR = SPEC.instruction.msr.number
KTHREAD = next(w for w in SPEC.kernel.sweep.workers if w.kind == "kthread")
GB = SPEC.instruction.table.region_size
# 3 cores x 2 threads, spread numbering: core 2 is CPUs 2 and 5; the leader is CPU 4 (core 1)
SMALL = mirror.Machine(GB >> 12, 3 * GB >> 12, cores=3, threads_per_core=2, leader=4)
ENABLE = mirror.msr_value(SPEC, SMALL)


def trace(machine: mirror.Machine, actions: list[str]) -> list[mirror.Event]:
    return [e for e, _ in mirror.feature_trace(SPEC, KTHREAD, machine, actions)]


def passes(events: list[mirror.Event]) -> list[list[mirror.Event]]:
    """The events of each pass, from its log line up to the next log line or MSR write."""
    out: list[list[mirror.Event]] = []
    for e in events:
        if e.kind == "log":
            out.append([])
        elif e.kind == "wrmsr" or not out:
            continue
        else:
            out[-1].append(e)
    return out


def test_a_core_that_comes_online_after_setup_has_its_msr_written_before_the_next_pass():
    events = trace(dataclasses.replace(SMALL, offline=frozenset({2, 5})),
                   ["setup", "run", "online:2", "trigger", "run", "teardown"])  # fmt: skip
    write = events.index(mirror.Wrmsr(2, MSR, ENABLE))
    second = [i for i, e in enumerate(events) if e.kind == "log"][1]
    assert write < second
    assert all(e.kind != "fault" for e in events)
    assert any(e.kind == "rmpopt" and e.cpu == 2 for e in events[second:])


def test_a_wholly_offline_core_keeps_its_msr_so_its_last_thread_clears_it_on_the_way_out():
    """INIT leaves MSRs as they are: a core enabled when it went offline would come back
    enabled, so the teardown callback clears it on the core's last online thread."""
    events = trace(SMALL, ["setup", "run", "offline:2", "offline:5", "online:5", "online:2",
                           "trigger", "run", "teardown"])  # fmt: skip
    # CPU 2 leaves with CPU 5 still online: nothing; CPU 5 is the last: it clears the MSR. Back
    # online, CPU 5 and then CPU 2 are each the core's first online thread and write it
    assert [e for e in events if e.kind == "wrmsr" and e.cpu in (2, 5)] == [
        mirror.Wrmsr(2, MSR, ENABLE), mirror.Wrmsr(5, MSR, 0), mirror.Wrmsr(5, MSR, ENABLE),
        mirror.Wrmsr(2, MSR, ENABLE), mirror.Wrmsr(2, MSR, 0)]  # fmt: skip


def test_a_core_offline_at_teardown_was_cleared_when_it_left_and_stays_clear_when_it_comes_back():
    hw = mirror.hardware_for(SPEC, SMALL, enabled=False)
    events = [
        e
        for e, _ in mirror.feature_trace(
            SPEC,
            KTHREAD,
            SMALL,
            ["setup", "run", "offline:2", "offline:5", "teardown", "online:5", "online:2"],
            hw,
        )
    ]
    assert [e for e in events if e.kind == "wrmsr" and not e.value] == [
        mirror.Wrmsr(5, MSR, 0), mirror.Wrmsr(0, MSR, 0), mirror.Wrmsr(1, MSR, 0)]  # fmt: skip
    assert events[-1] == mirror.Wrmsr(1, MSR, 0)  # nothing written when core 2 comes back
    assert not hw.enabled


@pytest.mark.parametrize("kind", [w.kind for w in SPEC.kernel.sweep.workers])
def test_after_teardown_no_core_is_left_enabled_online_or_not(kind):
    """Every hotplug sequence ends after a teardown: no core's MSR enables the instruction,
    whether it was online at teardown, offline then, or came back later."""
    worker = next(w for w in SPEC.kernel.sweep.workers if w.kind == kind)
    for label, offline, actions in cases._hotplug_sequences(worker, SMALL):
        machine = dataclasses.replace(SMALL, offline=offline)
        hw = mirror.hardware_for(SPEC, machine, enabled=False)
        events = [e for e, _ in mirror.feature_trace(SPEC, worker, machine, list(actions), hw)]
        assert all(e.kind != "fault" for e in events), label
        assert not hw.enabled, label


def test_a_hotplug_operation_during_teardown_runs_after_teardown_let_the_lock_go():
    """Teardown removes the state and clears the MSRs under one cpus_read_lock(): a CPU that
    goes offline meanwhile is cleared with the others, one that comes online is not written."""
    gone = trace(dataclasses.replace(SMALL, offline=frozenset({5})),
                 ["setup", "run", "offline-during:2", "teardown", "online:2"])  # fmt: skip
    assert [e for e in gone if e.kind == "wrmsr" and not e.value] == [
        mirror.Wrmsr(0, MSR, 0), mirror.Wrmsr(1, MSR, 0), mirror.Wrmsr(2, MSR, 0)]  # fmt: skip
    assert gone[-1] == mirror.Wrmsr(2, MSR, 0)
    came = trace(dataclasses.replace(SMALL, offline=frozenset({2, 5})),
                 ["setup", "run", "online-during:2", "teardown"])  # fmt: skip
    assert [e for e in came if e.kind == "wrmsr" and not e.value] == [
        mirror.Wrmsr(0, MSR, 0), mirror.Wrmsr(1, MSR, 0)]  # fmt: skip
    assert came[-1] == mirror.Wrmsr(1, MSR, 0)


def test_a_core_that_comes_online_during_setup_is_written_once_setup_lets_the_lock_go():
    events = trace(
        dataclasses.replace(SMALL, offline=frozenset({2, 5})), ["online-during:2", "setup", "run"]
    )
    assert [e.cpu for e in events if e.kind == "wrmsr"] == [0, 1, 2]
    assert any(e.kind == "rmpopt" and e.cpu == 2 for e in events)


def test_code_that_skips_the_write_faults_on_the_core_that_came_online():
    """The mirror's hardware model: an MSR never written leaves RMPOPT undefined there (#UD)."""
    machine = dataclasses.replace(SMALL, offline=frozenset({2, 5}))
    hw = mirror.hardware_for(SPEC, machine, enabled=False)
    for cpu in mirror.msr_cpus(SPEC, machine):
        hw.wrmsr(cpu, ENABLE)
    online = dataclasses.replace(machine, offline=frozenset({5}))
    with pytest.raises(mirror.Faulted) as exc:
        list(mirror.sweep(SPEC, online, hw))
    assert (exc.value.event.cpu, exc.value.event.exception) == (2, "UD")


def test_a_cpu_that_goes_offline_during_a_pass_waits_for_its_end():
    events = trace(SMALL, ["setup", "offline-at:1:2", "run", "trigger", "run", "teardown"])
    first, second = passes(events)
    assert {e.cpu for e in first if e.kind == "rmpopt"} == {4, 0, 2}
    assert {e.cpu for e in second if e.kind == "rmpopt"} == {4, 0}


def test_no_cpu_that_comes_online_writes_outside_setup_and_teardown():
    events = trace(dataclasses.replace(SMALL, offline=frozenset({2, 5})),
                   ["online:5", "setup", "run", "teardown", "online:2"])  # fmt: skip
    assert [e.cpu for e in events if e.kind == "wrmsr" and e.value] == [0, 1, 5]
    assert events[-1] == mirror.Wrmsr(5, MSR, 0)


def test_a_failed_hotplug_state_leaves_nothing_written_and_setup_can_try_again():
    events = trace(
        dataclasses.replace(SMALL, hpfail=1), ["setup", "trigger", "run", "setup", "run"]
    )
    assert [e.cpu for e in events if e.kind == "wrmsr"] == [0, 1, 2]
    assert len(passes(events)) == 1


def test_the_leader_stays_online():
    with pytest.raises(mirror.MachineError, match="stays online"):
        trace(SMALL, ["setup", "offline:4"])


def test_the_cases_drive_hotplug_for_each_worker():
    labels = [(c.form, c.label) for c in cases.generate(SPEC, 1, 160)]
    for w in SPEC.kernel.sweep.workers:
        assert (w.kind, "hotplug: a core comes online after setup, then a pass") in labels
        assert (w.kind, "hotplug: a CPU goes offline while a pass runs") in labels
        assert (w.kind, "hotplug: a core comes online while teardown runs") in labels
        assert (w.kind, "boundary: the hotplug state cannot be set up, then can") in labels
    assert any("CPU hotplug" in label for _, label in labels)  # random ones too


@pytest.fixture(scope="module")
def engine():
    return choose_engine("auto", SPEC)


@pytest.mark.slow
def test_the_generated_code_follows_the_mirror_through_hotplug(engine):
    """This failed before the hotplug state: a core onlined after setup faulted (#UD)."""
    result = compare(SPEC, find_clang(), engine, seed=3, count=400, opts=("-O2",), workers=1)
    assert result.ok, result.mismatches[:1]


@pytest.mark.slow
def test_the_msrs_written_at_setup_only_fail_on_a_core_onlined_later(engine):
    mutant = next(m for m in catalogue(SPEC) if m.name.startswith("no CPU hotplug state"))
    broken = apply(mutant, render_spec(SPEC))
    assert "cpuhp_setup_state(CPUHP" not in "".join(broken.values())
    result = compare(SPEC, find_clang(), engine, seed=1, count=110, opts=("-O2",), files=broken,
                     workers=1)  # fmt: skip
    first = result.mismatches[0]
    case = cases.generate(SPEC, 1, 110)[first.case]
    assert case.label == "hotplug: a core comes online after setup, then a pass"
    assert first.expected == f"M 2 {MSR:#x} {ENABLE:#x}"


@pytest.mark.slow
def test_a_mutex_taken_inside_a_hotplug_callback_is_a_lock_order_finding(engine):
    """Setup holds the mutex around cpuhp_setup_state(); a callback that takes it deadlocks
    with a CPU coming online while setup waits for the hotplug lock.  lockdep reports the
    order even when the two never meet in a case."""
    mutant = next(
        m
        for m in catalogue(SPEC)
        if m.name.startswith("the hotplug callback takes the mutex, setup")
    )
    result = compare(SPEC, find_clang(), engine, seed=1, count=110, opts=("-O2",),
                     files=apply(mutant, render_spec(SPEC)), workers=1)  # fmt: skip
    first = result.mismatches[0]
    assert first.got.startswith("B possible circular locking dependency")
    assert cases.generate(SPEC, 1, 110)[first.case].label.startswith("hotplug: ")


@pytest.mark.parametrize("form", [w.kind for w in SPEC.kernel.sweep.workers])
def test_setup_that_cannot_set_up_the_hotplug_state_returns_its_error(engine, form):
    """cpuhp_setup_state() fails with -ENOSPC; setup returns that error, as the kernel-doc says,
    and the harness holds setup to the error of the call that failed, not to -ENOMEM only."""
    case = next(
        c
        for c in cases.generate(SPEC, 7, 160)
        if c.form == form and c.label == "boundary: the hotplug state cannot be set up, then can"
    )
    result = compare(SPEC, find_clang(), engine, seed=7, count=160, opts=("-O2",), only=case.id,
                     workers=1)  # fmt: skip
    assert result.ok, result.mismatches[:1]


@pytest.mark.slow
def test_the_old_teardown_leaves_the_core_whose_last_thread_left_enabled(engine):
    """The shape before the teardown callback: nothing clears a core whose last thread goes
    offline, so it would come back with the instruction enabled after teardown."""
    mutant = next(m for m in catalogue(SPEC) if m.name.startswith("the old teardown"))
    result = compare(SPEC, find_clang(), engine, seed=1, count=120, opts=("-O2",),
                     files=apply(mutant, render_spec(SPEC)), workers=1)  # fmt: skip
    first = result.mismatches[0]
    assert (
        cases.generate(SPEC, 1, 120)[first.case].label
        == "hotplug: a core goes wholly offline and comes back"
    )
    assert first.expected == f"M 5 {MSR:#x} 0x0"


@pytest.mark.slow
def test_a_cpu_that_leaves_between_the_state_removal_and_the_clear_keeps_its_msr(engine):
    """The reviewer's race: cpuhp_remove_state() and the clear under separate holds of the
    hotplug lock; a core's last thread that goes offline in the gap is cleared by neither."""
    mutant = next(
        m for m in catalogue(SPEC) if m.name.startswith("the hotplug state removed before teardown")
    )
    result = compare(SPEC, find_clang(), engine, seed=1, count=120, opts=("-O2",),
                     files=apply(mutant, render_spec(SPEC)), workers=1)  # fmt: skip
    first = result.mismatches[0]
    assert cases.generate(SPEC, 1, 120)[first.case].label == (
        "hotplug: a core's last online thread goes offline while teardown runs, and comes back"
    )
    assert first.expected == f"M 2 {MSR:#x} 0x0"


def test_random_cases_draw_every_kind_of_hotplug_operation():
    """Random hotplug lands between actions, at a pass's cond_resched(), and while an entry
    point holds the hotplug lock, on machines of every shape, not only the fixed sequences'."""
    import re

    drawn = [c for c in cases.generate(SPEC, 1, 3000) if c.label.endswith("CPU hotplug")]
    kinds = {re.sub(r"[:\d]+", "", a) for c in drawn for a in c.actions if "line" in a}
    assert kinds == {"online", "offline", "online-at", "offline-at", "online-during",
                     "offline-during"}  # fmt: skip
    during = {(c.machine.cores, c.machine.threads_per_core) for c in drawn
              if any("-during:" in a for a in c.actions)}  # fmt: skip
    assert len(during) > 3
