"""The oracle and the harness place operands by their own table, not the templates'.

model.CONSTRAINT_LETTER gives the templates their asm constraint letters.  If the
oracle's spec line took its registers from the same table, a wrong letter there
would move an operand on both sides of the comparison and pass.
"""

from __future__ import annotations

import pytest

from codegen import host, model, oracle, toolchain
from codegen.compare import compare
from codegen.render import render_spec
from codegen.spec import load
from tests.conftest import ISA

SWAPS = [
    ("rmpadjust", "rcx", "rdx"),
    ("rmpupdate", "rax", "rcx"),
    ("pvalidate", "rax", "rcx"),
    ("rmpopt", "rax", "rcx"),
]


def _run(spec):
    return compare(spec, toolchain.find_clang(), host.choose_engine("emulator", spec), seed=4,
                   count=40, opts=("-O2",), workers=1)  # fmt: skip


@pytest.mark.parametrize("name, a, b", SWAPS)
def test_a_wrong_letter_in_the_templates_table_is_caught(name, a, b, monkeypatch):
    spec = load(ISA / f"{name}.yaml")
    assert {a, b} <= {i.register for i in spec.instruction.inputs}
    assert _run(spec).ok
    letters = model.CONSTRAINT_LETTER
    la, lb = letters[a], letters[b]
    monkeypatch.setitem(letters, a, lb)
    monkeypatch.setitem(letters, b, la)
    header = next(t for p, t in render_spec(spec).items() if p.endswith(".h"))
    name_a = next(i.name for i in spec.instruction.inputs if i.register == a)
    assert f'"{lb}" ({name_a})' in header  # the templates did take the wrong letter
    result = _run(spec)
    assert not result.ok
    assert result.mismatches[0].got != result.mismatches[0].expected


def test_the_harness_letters_are_core_c_s():
    core = (ISA.parent / "codegen" / "harness" / "core.c").read_text()
    assert "return r == 'a' ? &regs->rax : r == 'c' ? &regs->rcx : &regs->rdx;" in core
    assert oracle.HARNESS_REGISTER_LETTER == {"rax": "a", "rcx": "c", "rdx": "d"}
