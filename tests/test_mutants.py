"""Every deliberate defect in the catalogue is caught by compile-and-compare or a named check."""

from __future__ import annotations

import pytest

from codegen import build, mutate
from codegen.compare import compare
from codegen.execcheck import UnsafeCode, byte_line
from codegen.host import EngineRefused, choose_engine
from codegen.render import render_spec
from codegen.review import review
from codegen.spec import load
from codegen.toolchain import find_clang
from tests.conftest import ISA, RMPOPT_YAML
from tests.mutants import apply, catalogue, helper_catalogue

SPEC = load(RMPOPT_YAML)
MUTANTS = catalogue(SPEC)
FAMILY = [load(p) for p in sorted(ISA.glob("*.yaml")) if p != RMPOPT_YAML]
HELPER_MUTANTS = [(spec, m) for spec in FAMILY for m in helper_catalogue(spec)]
# Few cases suffice: every boundary comes first, and a mutant must fail one of them.  kgen
# mutate runs each of its mutants on the same cases, so these defects are all caught there too.
CASES, SEED = mutate.CASES, mutate.SEED
# Native is the faster engine; on a CLZERO CPU it runs guarded, and no mutant here moves
# an address above the guard (test_compare.py runs the emulator on the same code).  The
# native engine runs no .byte line but the spec's: the emulator catches those mutants.
EMULATOR = choose_engine("emulator")


@pytest.fixture(scope="module")
def files():
    return render_spec(SPEC)


def test_the_catalogue_covers_the_issue_list():
    names = " ".join(m.name for m in MUTANTS)
    for defect in ("swap the RAX and RCX", "prefix byte", "memory clobber", "alignment mask",
                   "off by one at the cap", "leader's siblings", "missed cond_resched",
                   "never sleeps", "no feature gate", "gate after the first RMPOPT",
                   "every SMT sibling", "base not aligned", "wrong enable bit",
                   "allocated after the WRMSRs", "without the mutex", "lock never released",
                   "after teardown still queues", "not cleared", "prerequisite check missing",
                   "cleared before the kthread is stopped", "cleared before the work is cancelled",
                   "no CPU hotplug state", "hotplug callback writes the MSR on every thread",
                   "hotplug state not removed at teardown"):  # fmt: skip
        assert defect in names, defect


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_is_caught(mutant, files):
    assert_caught(SPEC, mutant, files)


def test_each_sibling_has_its_defects():
    names = {spec.instruction.mnemonic: [m.name for m in helper_catalogue(spec)] for spec in FAMILY}
    assert any("swap the RCX and RDX operands" in n for n in names["pvalidate"])
    assert any("not PVALIDATE_FAIL_NOUPDATE" in n for n in names["pvalidate"])
    assert any("no retry" in n for n in names["rmpupdate"])
    assert any("pointer operand" in n for n in names["rmpread"])


@pytest.mark.parametrize("spec, mutant", HELPER_MUTANTS,
                         ids=[f"{s.instruction.mnemonic}: {m.name}" for s, m in HELPER_MUTANTS])  # fmt: skip
def test_helper_mutant_is_caught(spec, mutant):
    assert_caught(spec, mutant, render_spec(spec))


def assert_caught(spec, mutant, files):
    broken = apply(mutant, files)
    assert broken != files
    if mutant.caught_by not in ("compare", "build"):
        assert mutant.caught_by in {rule for rule, _ in review(spec, broken)}
        return
    try:
        engine = choose_engine("native", spec)
    except EngineRefused:  # rmpread: without its prefix, RDPRU
        engine = EMULATOR
    if byte_line(spec) not in "".join(broken.values()):
        if engine is not EMULATOR:
            with pytest.raises(UnsafeCode, match="an asm statement that is not the spec's"):
                compare(
                    spec, find_clang(), engine, seed=SEED, count=CASES, opts=("-O2",), files=broken
                )
        engine = EMULATOR
    try:
        result = compare(spec, find_clang(), engine, seed=SEED, count=CASES,
                         opts=("-O2",), files=broken, workers=1)  # fmt: skip
    except build.BuildError as exc:
        assert mutant.caught_by == "build", f"{mutant.name} did not compile: {exc}"
        return
    assert mutant.caught_by == "compare", f"{mutant.name} compiled, expected {mutant.caught_by}"
    assert not result.ok, f"{mutant.name} was not caught by {CASES} cases"
    m = result.mismatches[0]
    assert m.expected != m.got and f"--case {m.case}" in m.reproduce
