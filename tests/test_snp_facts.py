"""Each SNP sibling spec against the fact sheet's table of the kernel's sibling helpers.

The table in ../shared/RMPOPT.md ("The sibling helpers already in the
kernel") gives each instruction's bytes, input registers, outputs and the
kernel helper.  The specs were written from it; these tests read the table
and compare every row with the spec of that mnemonic.
"""

from __future__ import annotations

import re

import pytest

from codegen.spec import load
from tests.conftest import ISA, shared_dir

SHEET = shared_dir()
pytestmark = pytest.mark.skipif(
    SHEET is None, reason="RMPOPT.md fact sheet not found beside the clone (set KGEN_SHARED)"
)

# the words of the table's inputs column, and the spec's kind for each
KINDS = {"vaddr": "virtual-address", "paddr": "physical-address", "page size": "page-size",
         "validate": "boolean", "attrs": "attributes"}  # fmt: skip


def rows() -> dict[str, dict[str, str]]:
    text = (SHEET / "RMPOPT.md").read_text()
    table = text.split("## The sibling helpers already in the kernel", 1)[1]
    out = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] not in ("instruction",) and not cells[0].startswith("-"):
            out[cells[0].lower()] = dict(zip(["bytes", "inputs", "outputs", "helper"], cells[1:]))
    return out


SPECS = {p.stem: load(p) for p in sorted(ISA.glob("*.yaml")) if p.stem != "rmpopt"}


def test_every_row_with_enough_facts_has_a_spec():
    table = rows()
    # RMPQUERY's operand form is marked unsure on the sheet, and it has no kernel helper
    assert set(SPECS) == {m for m, r in table.items() if "unsure" not in r["inputs"]}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_bytes(name):
    row = rows()[name]
    assert bytes(b.byte for b in SPECS[name].instruction.encoding) == bytes.fromhex(row["bytes"])


@pytest.mark.parametrize("name", sorted(SPECS))
def test_inputs(name):
    insn = SPECS[name].instruction
    sheet = [part.strip() for part in rows()[name]["inputs"].split(",")]
    assert [i.register for i in insn.inputs] == [p.split()[0].lower() for p in sheet]
    for i, part in zip(insn.inputs, sheet):
        what = part.split(None, 1)[1]
        pointer = re.fullmatch(r"pointer to `struct (\w+)`", what)
        if pointer:
            assert (i.type, i.points_to) == ("pointer", pointer.group(1))
        else:
            assert i.kind == KINDS[what]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_outputs(name):
    insn = SPECS[name].instruction
    text = rows()[name]["outputs"]
    regs = [o for o in insn.outputs if o.register]
    assert [o.register for o in regs] == ["rax"] and text.startswith("RAX rc")
    flags = [o for o in insn.outputs if o.flag]
    assert [o.flag for o in flags] == (["cf"] if "CF" in text else [])
    for o in flags:
        assert o.software_code is not None  # "(no update)": the kernel returns a code for it
    retry = re.search(r"retry on (\d+) = (\w+)", text)
    codes = [c for c in regs[0].codes if c.retry]
    if retry:
        (code,) = codes
        assert code.value == int(retry.group(1)) and code.name.lower().endswith(retry.group(2))
    else:
        assert not codes


@pytest.mark.parametrize("name", sorted(SPECS))
def test_kernel_helper(name):
    k = SPECS[name].kernel
    m = re.search(r"`(\w+)\(\)` in ([\w/.]+)", rows()[name]["helper"])
    helper, where = m.groups()
    if where.endswith(".h"):
        # a header helper: kgen's is a drop-in for it, same name, same header
        assert k.raw_helper.name == helper and k.raw_helper.header.endswith(where)
    else:
        # the kernel's wraps the instruction in more (pfn checks, locking): kgen's is the low level
        assert k.raw_helper.name in (f"__{helper}", f"__{SPECS[name].instruction.mnemonic}")
