"""kgen's specs against Linux 6.12's own functions: pvalidate(), rmpadjust(), psmash(), rmpupdate().

`kgen compare --reference TREE` copies each function from the tree (Debian's
linux-source-6.12): pvalidate() and rmpadjust() from asm/sev.h, psmash() and
rmpupdate() from arch/x86/virt/svm/sev.c, with the kernel functions these call
stubbed (codegen/shim/kstubs.h).  The cases pass pfn = paddr >> 12, as the spec's
kernel.out_of_line says, and rmpupdate() returns -EFAULT for any failing code.

One difference is real and stays visible: 6.12's rmpupdate() re-executes
RMPUPDATE for as long as it returns RMPUPDATE_FAIL_OVERLAP, kgen's __rmpupdate()
at most RMPUPDATE_MAX_RETRIES (16) times.  The cases where the overlap persists
(one in 16 has retry codes that persist) are reported as mismatches, and only
those.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codegen import cases
from codegen.build import build_harness
from codegen.compare import _run_emulated, compare
from codegen.host import choose_engine
from codegen.reference import kernel_case
from codegen.spec import load, parse
from codegen.toolchain import find_clang, find_gcc
from tests import k612
from tests.conftest import ISA

K612, WHY = k612.tree()
pytestmark = pytest.mark.skipif(K612 is None, reason=f"no Linux 6.12 tree: {WHY}")

SOURCES = {
    "pvalidate": "arch/x86/include/asm/sev.h",
    "rmpadjust": "arch/x86/include/asm/sev.h",
    "psmash": "arch/x86/virt/svm/sev.c",
    "rmpupdate": "arch/x86/virt/svm/sev.c",
}
MATCHING = ["pvalidate", "rmpadjust", "psmash"]
CASES = 1000
OPTS = ("-O0", "-O2", "-Os")
ENGINE = choose_engine("emulator")


def _compilers():
    return tuple(c for c in (find_clang(), find_gcc()) if c is not None)


@pytest.mark.parametrize("name", MATCHING)
def test_the_kernel_function_gives_the_mirror_trace(name):
    spec = load(ISA / f"{name}.yaml")
    result = compare(spec, _compilers(), ENGINE, seed=11, count=CASES, opts=OPTS, reference=(K612,))
    assert result.ok, result.mismatches[0]
    (ref,) = result.references
    function = (
        spec.kernel.out_of_line.name if spec.kernel.out_of_line else spec.kernel.raw_helper.name
    )
    path, line = ref.definition.rsplit(":", 1)
    assert path == str(K612 / SOURCES[name]) and ref.files[-1] == SOURCES[name]
    assert f"{function}(" in Path(path).read_text().split("\n")[int(line) - 1]
    assert result.executions >= CASES * len(OPTS) * len(_compilers())


def _per_case(spec, work: Path, count: int) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """The mirror's and the 6.12 function's trace of each case, at clang -O2."""
    chosen = [kernel_case(spec, c) for c in cases.generate(spec, 5, count)]
    wanted = {c.id: cases.expected(spec, c, kernel=True) for c in chosen}
    (h,) = build_harness(find_clang(), spec, {}, work, ("-O2",), ("emulated",), (K612,))
    lines = [cases.case_line(spec, c, 4 * len(wanted[c.id]) + 64) for c in chosen]
    out = _run_emulated(
        h.emulated, cases.spec_line(spec), lines, [len(wanted[c.id]) for c in chosen]
    )
    got, current = {}, []
    for line in out.split("\n"):
        current.append(line)
        if line.startswith("E "):
            got[int(line[2:])] = current
            current = []
    return wanted, got


def _exhausts_the_bound(spec, trace: list[str]) -> bool:
    """Whether a call's retries ran out: max_retries + 1 executions in a row returned a retry code."""
    retry = {f"{c.value:#x}" for o in spec.instruction.outputs for c in o.codes if c.retry}
    run = 0
    for line in trace:
        if line.startswith("R ") and line.rsplit(" = ", 1)[1].split()[0] in retry:
            run += 1
            if run > spec.kernel.raw_helper.max_retries:
                return True
        else:
            run = 0
    return False


def test_rmpupdate_matches_except_where_the_overlap_persists(tmp_path):
    spec = load(ISA / "rmpupdate.yaml")
    wanted, got = _per_case(spec, tmp_path, 400)
    differ = {n for n in wanted if got.get(n) != wanted[n]}
    exhausted = {n for n in wanted if _exhausts_the_bound(spec, wanted[n])}
    assert exhausted and len(exhausted) < len(wanted) // 10
    assert differ == exhausted
    for n in exhausted:  # where kgen's helper stops, the kernel's executes RMPUPDATE again
        at = next(i for i, (w, g) in enumerate(zip(wanted[n], got[n], strict=False)) if w != g)
        assert wanted[n][at].startswith("V ") and got[n][at].startswith("R ")
    # the failing codes it returns are -EFAULT, as the mirror expects from failure: EFAULT
    assert any("V 0xfffffffffffffff2" in wanted[n] for n in wanted if n not in exhausted)


def test_compare_reports_the_unbounded_retry():
    spec = load(ISA / "rmpupdate.yaml")
    result = compare(spec, find_clang(), ENGINE, seed=11, count=200, opts=("-O2",), reference=(K612,),
                     keep_going=True)  # fmt: skip
    assert not result.ok
    assert all("retry codes persist" in m.description for m in result.mismatches)
    assert all(m.expected.startswith("V ") and m.got.startswith("R ") for m in result.mismatches)
    assert all(m.note == "the code executes RMPUPDATE again after __rmpupdate()'s 16 retries, where "
               "max_retries stops" for m in result.mismatches)  # fmt: skip
    assert result.references[0].definition == f"{K612 / SOURCES['rmpupdate']}:499"


def _swap_rcx_rdx(text: str) -> str:
    return text.replace("register: rcx", "register: @").replace("register: rdx", "register: rcx") \
        .replace("register: @", "register: rdx")  # fmt: skip


@pytest.mark.parametrize("name, edit", [
    ("pvalidate", _swap_rcx_rdx),
    ("rmpadjust", _swap_rcx_rdx),
    ("psmash", lambda s: s.replace("input: paddr, shift: 12", "input: paddr, shift: 21")),
    ("rmpupdate", lambda s: s.replace("failure: EFAULT", "failure: EIO")),
])  # fmt: skip
def test_a_wrong_spec_fails_against_6_12(name, edit):
    right = load(ISA / f"{name}.yaml")
    wrong = parse(edit(right.source), right.path)
    assert wrong != right
    result = compare(wrong, find_clang(), ENGINE, seed=11, count=200, opts=("-O2",), reference=(K612,),
                     workers=1)  # fmt: skip
    assert not result.ok
    assert "retry codes persist" not in result.mismatches[0].description
    assert not result.mismatches[0].note
