"""Each SNP sibling spec against the project's facts about the kernel's sibling helpers.

tests/facts/snp.yaml gives each instruction's bytes, input registers,
outputs and kernel helper, with sources.  These tests compare every entry
with the spec of that mnemonic.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from codegen.spec import load, parse
from tests.conftest import ISA

FACTS = yaml.safe_load((Path(__file__).parent / "facts" / "snp.yaml").read_text())["instructions"]
SPECS = {p.stem: load(p) for p in sorted(ISA.glob("*.yaml")) if p.stem != "rmpopt"}


def test_every_instruction_with_enough_facts_has_a_spec():
    # RMPQUERY's operand form is unsure, and it has no kernel helper
    assert set(SPECS) == {m for m, f in FACTS.items() if "unsure" not in f}


def check_bytes(spec, fact):
    assert [b.byte for b in spec.instruction.encoding] == fact["bytes"]


def check_inputs(spec, fact):
    insn = spec.instruction
    assert [i.register for i in insn.inputs] == [next(iter(i)) for i in fact["inputs"]]
    for i, want in zip(insn.inputs, fact["inputs"], strict=True):
        what = want[i.register]
        if what.startswith("pointer to struct "):
            assert (i.type, i.points_to) == ("pointer", what.removeprefix("pointer to struct "))
        else:
            assert i.kind == what and i.type != "pointer"


def check_outputs(spec, fact):
    insn = spec.instruction
    want = fact["outputs"]
    assert [o.register for o in insn.outputs if o.register] == ["rax"]
    assert want["rax"] == "return code"
    flags = [o for o in insn.outputs if o.flag]
    assert [o.flag for o in flags] == [f for f in ("cf",) if f in want]
    for o in flags:
        assert o.software_code is not None  # the kernel returns a code for "no update"
    retried = [c for o in insn.outputs for c in o.codes if c.retry]
    if "retry" in want:
        (code,) = retried
        assert code.value == want["retry"]["value"]
        assert code.name.lower().endswith(want["retry"]["name"])
    else:
        assert not retried


def check_kernel_helper(spec, fact):
    k, helper = spec.kernel, fact["kernel-helper"]
    if helper["in"].endswith(".h"):
        # a header helper: kgen's is a drop-in for it, same name, same header
        assert k.raw_helper.name == helper["name"] and k.raw_helper.header.endswith(helper["in"])
    else:
        # the kernel's wraps the instruction in more (pfn checks, locking): kgen's is the low level
        assert k.raw_helper.name in (f"__{helper['name']}", f"__{spec.instruction.mnemonic}")


CHECKS = [check_bytes, check_inputs, check_outputs, check_kernel_helper]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_agrees_with_the_facts(name, check):
    check(SPECS[name], FACTS[name])


MUTATIONS = [  # (spec, text replaced, by, the check that must catch it)
    ("rmpadjust", "register: rdx", "register: rsi", check_inputs),
    ("rmpupdate", "points_to: rmp_state", "points_to: rmpentry", check_inputs),
    ("rmpupdate", "value: 4", "value: 5", check_outputs),
    ("pvalidate", "name: pvalidate\n", "name: pvalidate_raw\n", check_kernel_helper),
]  # fmt: skip


@pytest.mark.parametrize(
    "name, old, new, check", MUTATIONS, ids=lambda v: getattr(v, "__name__", None)
)
def test_a_changed_spec_value_is_caught(name, old, new, check):
    text = (ISA / f"{name}.yaml").read_text()
    assert text.count(old) == 1, old
    changed = parse(text.replace(old, new), "mutant.yaml")
    with pytest.raises(AssertionError):
        check(changed, FACTS[name])


def test_changed_bytes_are_caught():
    # the loader refuses bytes that decode as another SNP instruction, so change them in the
    # loaded spec: the facts must catch what the loader might one day let through
    spec = SPECS["pvalidate"]
    encoding = spec.instruction.encoding
    changed_byte = dataclasses.replace(encoding[-1], byte=encoding[-1].byte ^ 1)
    insn = dataclasses.replace(spec.instruction, encoding=(*encoding[:-1], changed_byte))
    with pytest.raises(AssertionError):
        check_bytes(dataclasses.replace(spec, instruction=insn), FACTS["pvalidate"])
