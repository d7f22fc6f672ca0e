"""Every value of isa/rmpopt.yaml, checked against the project's RMPOPT fact sheet.

The fact sheet (RMPOPT.md in the shared folder beside the clone) is parsed
here; no value of the spec is written again in this file.  A final test walks
every leaf of the loaded spec and fails if a field is neither checked against
the sheet nor listed as free prose, so a new field cannot slip in unchecked.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from tests.conftest import shared_dir

SHEET = shared_dir()
pytestmark = pytest.mark.skipif(
    SHEET is None, reason="RMPOPT.md fact sheet not found beside the clone (set KGEN_SHARED)"
)

COVERED: set[str] = set()
PROSE = {  # free text with no counterpart in the fact sheet
    "instruction.title", "instruction.description", "instruction.inputs[].description",
    "instruction.outputs[].description", "instruction.function_codes.codes[].description",
    "instruction.privilege.faults[].when", "instruction.msr.base.description",
    "instruction.references[]", "kernel.sweep.cap_message", "kernel.sweep.pass_name",
    "kernel.sweep.workers[].name", "kernel.sweep.workers[].setup",
    "kernel.sweep.workers[].teardown",
    "kernel.sweep.workers[].workqueue", "kernel.sweep.workers[].first_delay_ms",
    "instruction.outputs[].name", "instruction.inputs[].type", "instruction.outputs[].type",
    "instruction.inputs[].width", "kernel.enum.prefix",
}  # fmt: skip


def covers(*paths: str):
    """Declare which spec fields a test checks against the sheet."""

    def mark(test):
        COVERED.update(paths)
        return test

    return mark


@pytest.fixture(scope="module")
def sheet() -> str:
    return (SHEET / "RMPOPT.md").read_text()


@pytest.fixture(scope="module")
def facts(sheet) -> dict[str, str]:
    """The 'fact | value' table of the instruction section."""
    rows = {}
    for line in sheet.split("## The instruction", 1)[1].split("\n## ", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("fact", "---"):
            rows[cells[0]] = cells[1]
    return rows


def hex_bytes(text: str) -> list[int]:
    return [int(b, 16) for b in text.split()]


def parse_gb(text: str) -> int:
    n, unit = re.fullmatch(r"(\d+)\s*([GT])B", text.strip()).groups()
    return int(n) << {"G": 30, "T": 40}[unit]


@covers("instruction.encoding[].byte", "instruction.encoding[].role", "instruction.mnemonic")
def test_encoding_bytes_and_roles(rmpopt, facts):
    enc = facts["encoding"]
    sheet_bytes = hex_bytes(re.search(r"`([0-9A-F ]+)`", enc).group(1))
    assert [b.byte for b in rmpopt.instruction.encoding] == sheet_bytes
    roles = {b.role: b.byte for b in rmpopt.instruction.encoding}
    prefix = re.search(r"\(([0-9A-F]{2}) prefix", enc).group(1)
    assert roles["prefix"] == int(prefix, 16)
    esc, op = hex_bytes(re.search(r"; ([0-9A-F]{2} [0-9A-F]{2}) group", enc).group(1))
    assert (roles["escape"], roles["opcode"]) == (esc, op)
    modrm = re.search(r"ModRM ([0-9A-F]{2}) = mod (\d+), reg (\d+), rm (\d+)", enc)
    assert roles["modrm"] == int(modrm.group(1), 16)
    assert (roles["modrm"] >> 6, (roles["modrm"] >> 3) & 7, roles["modrm"] & 7) == (
        int(modrm.group(2), 2), int(modrm.group(3)), int(modrm.group(4)))
    assert rmpopt.instruction.mnemonic.upper() in (SHEET / "RMPOPT.md").read_text().splitlines()[0]


def test_encoding_differs_from_every_neighbour(rmpopt, facts):
    ours = [b.byte for b in rmpopt.instruction.encoding]
    neighbours = re.findall(r"`([0-9A-F ]+)` = (\w+)", facts["neighbours in the same slot"])
    assert len(neighbours) >= 10
    for text, name in neighbours:
        assert hex_bytes(text) != ours, name
    clzero = dict((n, hex_bytes(t)) for t, n in neighbours)["CLZERO"]
    assert ours[1:] == clzero, "without its prefix RMPOPT reads as CLZERO"


@covers("instruction.inputs[].register", "instruction.inputs[].kind", "instruction.inputs[].align", "instruction.inputs[].name", "instruction.table.region_size", "instruction.inputs[].points_to", "instruction.inputs[].access", "instruction.inputs[].bytes")
def test_inputs(rmpopt, facts):
    insn = rmpopt.instruction
    by_reg = {i.register: i for i in insn.inputs}
    assert set(by_reg) == {k.split()[0].lower() for k in facts if k.endswith("(input)")}
    rax = facts["RAX (input)"]
    assert rax.startswith("system physical address") and by_reg["rax"].kind == "physical-address"
    assert "aligned down" in rax and by_reg["rax"].align == "region"
    assert insn.table.region_size == parse_gb(re.search(r"of a (\d+ GB) region", rax).group(1))
    assert all(i.points_to is None and i.access is None and i.bytes is None for i in insn.inputs)
    assert facts["RCX (input)"].startswith("function code")
    assert by_reg["rcx"].kind == "function-code"
    # review requirement 1: parameters renamed pa_start, op_type
    names = re.search(r"renamed the parameters `(\w+)`, `(\w+)`", (SHEET / "RMPOPT.md").read_text())
    assert (by_reg["rax"].name, by_reg["rcx"].name) == names.groups()


@covers("instruction.function_codes.operand", "instruction.function_codes.codes[].name", "instruction.function_codes.codes[].value", "instruction.function_codes.codes[].effect")
def test_function_codes(rmpopt, facts):
    fc = rmpopt.instruction.function_codes
    assert fc.operand == "rcx"
    sheet_codes = {int(v): n.strip() for v, n in re.findall(r"(\d+) = ([a-z ]+)", facts["RCX (input)"])}
    assert {c.value: c.name.replace("_", " ") for c in fc.codes} == sheet_codes
    # "verify and report status" scans and sets the bit; "report status" only reads it
    behaviour = (SHEET / "RMPOPT.md").read_text().split("## How the hardware behaves", 1)[1]
    for c in fc.codes:
        words = c.name.replace("_", " ").capitalize()
        said = " ".join(re.search(rf'"{words}": (.+?)\n(?:- |\n)', behaviour, re.S).group(1).split())
        assert c.effect == ("scan-and-set" if "sets the region's bit" in said else "read"), said
        assert c.effect == "read" or "scans" in said


@covers("instruction.outputs[].flag", "instruction.outputs[].register", "instruction.preserved[]", "instruction.clobbers[]", "instruction.outputs[].codes[]", "instruction.outputs[].software_code")
def test_outputs_preserved_and_clobbers(rmpopt, facts):
    insn = rmpopt.instruction
    (out,) = insn.outputs
    assert "RFLAGS.CF (output)" in facts and out.flag == "cf" and out.register is None
    assert "optimized" in facts["RFLAGS.CF (output)"] and out.type == "bool"
    assert facts["RAX after"].startswith("unchanged") and insn.preserved == ("rax",)
    assert "return a code in RAX" in facts["RAX after"]  # ... unlike its siblings
    assert out.codes == () and out.software_code is None
    assert set(insn.clobbers) == set(re.findall(r"`(\w+)`", facts["clobbers"]))


@covers("instruction.privilege.cpl", "instruction.privilege.faults[].exception", "instruction.privilege.faults[].unsure", "instruction.vendor")
def test_privilege(rmpopt, facts):
    priv = rmpopt.instruction.privilege
    text = facts["privilege"]
    assert priv.cpl == int(re.search(r"CPL (\d)", text).group(1))
    faults = {f.exception: f for f in priv.faults}
    assert "#UD" in text and not faults["UD"].unsure
    assert "(unsure about other #GP" in text and faults["GP"].unsure
    assert rmpopt.instruction.vendor.upper() in facts["enabling MSR"]


@covers("instruction.cpuid.leaf", "instruction.cpuid.register", "instruction.cpuid.bit", "instruction.cpuid.feature", "instruction.cpuid.word", "instruction.cpuid.word_bit", "instruction.cpuid.subleaf")
def test_cpuid(rmpopt, facts):
    c = rmpopt.instruction.cpuid
    m = re.search(r"leaf (0x[0-9a-f]+), ([A-Z]+) bit (\d+); kernel name `(\w+)` \(word (\d+), "
                  r"bit (\d+)\)", facts["CPUID"])
    leaf, reg, bit, feature, word, word_bit = m.groups()
    assert (c.leaf, c.register, c.bit) == (int(leaf, 16), reg.lower(), int(bit))
    assert (c.feature, c.word, c.word_bit) == (feature, int(word), int(word_bit))
    assert c.subleaf is None and "subleaf" not in facts["CPUID"]


@covers("instruction.msr.name", "instruction.msr.number", "instruction.msr.enable.name", "instruction.msr.enable.bit", "instruction.msr.base.low_bit", "instruction.msr.base.high_bit")
def test_msr(rmpopt, facts):
    msr = rmpopt.instruction.msr
    m = re.search(r"`(\w+)` = (0x[0-9a-f]+); bit (\d+) `(\w+)`; value = (\d+ GB)-aligned base",
                  facts["enabling MSR"])
    name, number, bit, enable, align = m.groups()
    assert (msr.name, msr.number) == (name, int(number, 16))
    assert (msr.enable.bit, msr.enable.name) == (int(bit), enable)
    assert 1 << msr.base.low_bit == parse_gb(align)
    assert msr.base.high_bit == 51  # x86-64 architectural MAXPHYADDR limit (52 bits)


@covers("instruction.table.entries", "instruction.table.coverage")
def test_table_coverage(rmpopt, facts):
    t = rmpopt.instruction.table
    m = re.search(r"at most (\d+ TB) from its base: (\d+) regions of (\d+ GB)", facts["coverage"])
    assert t.coverage == parse_gb(m.group(1))
    assert t.entries == int(m.group(2))
    assert t.region_size == parse_gb(m.group(3))


@covers("instruction.requires[]", "instruction.assembler.binutils", "instruction.assembler.llvm")
def test_requirements_and_assembler(rmpopt, facts):
    insn = rmpopt.instruction
    joined = " ".join(insn.requires)
    assert "segmented RMP table" in facts["needs"] and "segmented RMP table" in joined
    assert "SNP_EN" in facts["needs"] and "SNP_EN" in joined
    assert facts["assembler"].startswith("no binutils mnemonic")
    assert insn.assembler.binutils is None and insn.assembler.llvm is None
    toolchain = (SHEET / "TOOLCHAIN.md").read_text()
    assert "knows an `rmpopt` mnemonic" in toolchain  # "No assembler tried (LLVM 22 ...) knows"


@covers("kernel.raw_helper.name", "kernel.raw_helper.header", "kernel.raw_helper.max_retries", "kernel.helper.name", "kernel.helper.parameter", "kernel.helper.function", "kernel.enum.name")
def test_kernel_names(rmpopt, sheet):
    k = rmpopt.kernel
    m = re.search(r"`(\w+)\(u64 rax, u64 rcx\)`", sheet)
    assert k.raw_helper.name == m.group(1)
    assert re.search(rf"It lives in `{re.escape(k.raw_helper.header)}`", sheet)
    assert k.raw_helper.max_retries is None  # RMPOPT has no return code to retry on
    m = re.search(r"A higher-level `(\w+)\((\w+)\)`", sheet)
    assert (k.helper.name, k.helper.parameter) == m.groups()
    assert k.helper.function.replace("_", " ") in re.search(r"0 = ([a-z ]+),", sheet).group(1)
    assert re.search(rf"the merged code kept `{k.enum.name}`", sheet)


@covers("kernel.sweep.source", "kernel.sweep.leader", "kernel.sweep.cpus", "kernel.sweep.followers", "kernel.sweep.resched", "kernel.sweep.log_message", "kernel.sweep.workers[].kind", "kernel.sweep.workers[].trigger", "kernel.sweep.workers[].rearm_delay_ms")
def test_sweep_policy(rmpopt, sheet):
    s = rmpopt.kernel.sweep
    section = sheet.split("## The sweep the kernel runs", 1)[1].split("\n## ", 1)[0]
    assert re.search(rf"helpers `static inline` in `{re.escape(s.source)}`", section)
    assert "Leader = the current CPU" in section and s.leader == "current-cpu"
    assert "primary thread of each online core" in section and s.cpus == "primary-threads"
    assert "primary threads minus the leader's" in section
    assert s.followers == "primary-threads-except-leader-siblings"
    assert "`cond_resched()` between regions" in section and s.resched == "between-regions"
    attempt = re.search(r'\("(Attempt [^.]+?) \.\.\."\)', sheet).group(1)
    assert s.log_message.startswith(attempt)
    kinds = {w.kind: w for w in s.workers}
    assert "a kthread woken by" in section and "kthread" in kinds
    assert kinds["kthread"].trigger == re.search(r"woken by `(\w+)\(\)`", section).group(1)
    delay = re.search(r"again (\d+) s after the last SNP guest", section)
    assert "delayed work on a dedicated workqueue" in section
    assert kinds["delayed-work"].rearm_delay_ms == int(delay.group(1)) * 1000
    assert kinds["delayed-work"].trigger == kinds["kthread"].trigger


def _leaves(obj, prefix: str):
    if dataclasses.is_dataclass(obj):
        from codegen.spec import yaml_fields

        for f in yaml_fields(type(obj)):
            yield from _leaves(getattr(obj, f.name), f"{prefix}.{f.name}" if prefix else f.name)
    elif isinstance(obj, tuple):
        for item in obj:
            yield from _leaves(item, prefix + "[]")
        if not obj:
            yield prefix + "[]"
    else:
        yield prefix


def test_every_field_is_checked(rmpopt):
    """Every field is claimed by a test above (claims are made at import time)."""
    leaves = {p for p in _leaves(rmpopt, "") if p != "format"}
    unchecked = leaves - COVERED - PROSE
    assert not unchecked, f"fields of rmpopt.yaml not checked against the fact sheet: {unchecked}"
