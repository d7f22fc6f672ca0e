"""kgen's helpers against the kernel's own: pvalidate() and rmpadjust() of asm/sev.h.

The kernel's header comes from Debian's linux-source-6.1 (extracted into
.kernel/ by tests/kernel/get-kernel-material) and is compiled unmodified;
tests/kernel/sev-h stands in for what it includes.  Both helpers run
through the same trap harness on the same cases, which include the CF path
(PVALIDATE_FAIL_NOUPDATE) and return codes with the top bit of EAX set.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from codegen import cases, oracle
from codegen.build import build_harness
from codegen.compare import _run_emulated, compare
from codegen.host import choose_engine
from codegen.reference import prove
from codegen.render import render_spec
from codegen.spec import load, parse
from codegen.toolchain import find_clang
from tests.conftest import ISA, ROOT

KERNEL_INCLUDE = ROOT / ".kernel" / "src" / "arch" / "x86" / "include"
REFERENCE = (KERNEL_INCLUDE, ROOT / "tests" / "kernel" / "sev-h")
HELPERS = ["pvalidate", "rmpadjust"]
CASES = 3000
OPTS = ("-O0", "-O2", "-Os")
ENGINE = choose_engine("emulator")


def _status() -> str:
    status = ROOT / ".kernel" / "STATUS"
    return (
        status.read_text().strip()
        if status.exists()
        else "tests/kernel/get-kernel-material has not run"
    )


pytestmark = pytest.mark.skipif(
    not (KERNEL_INCLUDE / "asm" / "sev.h").exists(), reason=f"no kernel asm/sev.h: {_status()}"
)


def test_the_kernel_header_has_the_helpers():
    text = (KERNEL_INCLUDE / "asm" / "sev.h").read_text()
    for name in HELPERS:
        spec = load(ISA / f"{name}.yaml")
        assert f"static inline int {spec.kernel.raw_helper.name}(" in text


@pytest.mark.parametrize("name", HELPERS)
def test_the_kernel_helper_gives_the_mirror_trace(name):
    spec = load(ISA / f"{name}.yaml")
    result = compare(
        spec, find_clang(), ENGINE, seed=11, count=CASES, opts=OPTS, reference=REFERENCE
    )
    assert result.ok, result.mismatches[0]
    assert [r.directory for r in result.references] == [str(d) for d in REFERENCE]
    assert result.executions >= CASES * len(OPTS)
    # the cases reach every path: each output flag's software code and negative return codes
    returns = {line for c in cases.generate(spec, 11, CASES) for line in cases.expected(spec, c)
               if line.startswith("V ")}  # fmt: skip
    for o in spec.instruction.outputs:
        if o.software_code:
            assert f"V {o.software_code.value:#x}" in returns
    assert any(int(line[2:], 16) >> 63 for line in returns)


def _traces(spec, files, reference, work: Path) -> list[str]:
    """The harness's raw output for the same cases, per optimisation level."""
    if reference:  # the kernel's helper, from the reference directories, not kgen's own
        (kernel, _) = prove(find_clang(), spec, files, reference)
        assert kernel.definition and kernel.definition.startswith(
            str(KERNEL_INCLUDE / "asm" / "sev.h:")
        )
    harnesses = build_harness(find_clang(), spec, files, work, OPTS, ("emulated",), reference)
    lines = [cases.case_line(spec, c, 1000) for c in cases.generate(spec, 5, 400)]
    return [_run_emulated(h.emulated, cases.spec_line(spec), lines) for h in harnesses]


@pytest.mark.parametrize("name", HELPERS)
def test_generated_and_kernel_traces_are_identical(name, tmp_path):
    spec = load(ISA / f"{name}.yaml")
    files = render_spec(spec)
    ours = _traces(spec, files, (), tmp_path / "ours")
    kernel = _traces(spec, files, REFERENCE, tmp_path / "kernel")
    assert ours == kernel
    assert all(t.count("\nR ") > 400 for t in ours)


def _swap_rcx_rdx(text: str) -> str:
    return text.replace("register: rcx", "register: @").replace("register: rdx", "register: rcx") \
        .replace("register: @", "register: rdx")  # fmt: skip


@pytest.mark.parametrize("name", HELPERS)
def test_a_wrong_spec_fails_against_the_kernel(name, tmp_path):
    """RCX and RDX swapped: the kernel's helper no longer gives the mirror's trace."""
    right = load(ISA / f"{name}.yaml")
    wrong = parse(_swap_rcx_rdx(right.source), right.path)
    assert [i.register for i in wrong.instruction.inputs] != [
        i.register for i in right.instruction.inputs
    ]
    result = compare(wrong, find_clang(), ENGINE, seed=11, count=200, opts=("-O2",), reference=REFERENCE,
                     workers=1)  # fmt: skip
    assert not result.ok
    m = result.mismatches[0]
    assert m.expected.startswith("R ") and m.got.startswith("R ") and m.expected != m.got
    # and the code kgen renders from the wrong spec differs from the kernel's
    ours = _traces(wrong, render_spec(wrong), (), tmp_path / "ours")
    kernel = _traces(wrong, render_spec(wrong), REFERENCE, tmp_path / "kernel")
    assert ours != kernel


def test_a_wrong_type_fails_against_the_kernel():
    """validate as unsigned long: the kernel's bool turns 0x100 into 1, the spec would not."""
    right = load(ISA / "pvalidate.yaml")
    text = right.source.replace(
        "      type: bool\n      width: 8          # bit 0 holds the request",
        "      type: unsigned long\n      width: 8          # bit 0 holds the request",
    )
    wrong = parse(text, right.path)
    assert wrong.instruction.inputs[2].type == "unsigned long"
    result = compare(wrong, find_clang(), ENGINE, seed=11, count=200, opts=("-O2",), reference=REFERENCE,
                     workers=1)  # fmt: skip
    assert not result.ok


def test_the_oracle_needs_no_table():
    assert all(oracle.uses_oracle(load(ISA / f"{n}.yaml")) for n in HELPERS)


def test_software_code_is_the_kernels():
    """PVALIDATE_FAIL_NOUPDATE has the kernel's value."""
    text = (KERNEL_INCLUDE / "asm" / "sev.h").read_text()
    for name in HELPERS:
        for o in load(ISA / f"{name}.yaml").instruction.outputs:
            if o.software_code:
                assert re.search(
                    rf"^#define {o.software_code.name}\s+{o.software_code.value}$", text, re.M
                )
