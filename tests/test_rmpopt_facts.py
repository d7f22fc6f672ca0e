"""Every value of isa/rmpopt.yaml, checked against the project's RMPOPT facts.

The facts (tests/facts/rmpopt.yaml) are kept apart from the spec, each with
its source; no value of the spec is written again in this file.  A final test
walks every leaf of the loaded spec and fails if a field is neither checked
against the facts nor listed as free prose, so a new field cannot slip in
unchecked.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from codegen.spec import parse_size

FACTS_FILE = Path(__file__).parent / "facts" / "rmpopt.yaml"

COVERED: set[str] = set()
PROSE = {  # free text with no counterpart in the facts
    "instruction.title", "instruction.description", "instruction.inputs[].description",
    "instruction.outputs[].description", "instruction.function_codes.codes[].description",
    "instruction.privilege.faults[].when", "instruction.msr.base.description",
    "instruction.references[]", "kernel.sweep.cap_message", "kernel.sweep.pass_name",
    "kernel.sweep.workers[].name",
    "kernel.sweep.workers[].workqueue", "kernel.sweep.workers[].first_delay_ms",
    "instruction.outputs[].name", "instruction.inputs[].type", "instruction.outputs[].type",
    "instruction.inputs[].width", "kernel.enum.prefix",
    "kernel.review",  # kgen's review policy for the spec, not a fact of the instruction
}  # fmt: skip


def covers(*paths: str):
    """Declare which spec fields a test checks against the facts."""

    def mark(test):
        COVERED.update(paths)
        return test

    return mark


@pytest.fixture(scope="module")
def facts() -> dict:
    return yaml.safe_load(FACTS_FILE.read_text())


def size(text: str) -> int:
    value = parse_size(text)
    assert value is not None, text
    return value


def test_every_fact_names_a_known_source(facts):
    sources = set(facts["sources"])

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "source":
                    assert value and set(value) <= sources, (key, value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(facts["instruction"])
    walk(facts["kernel"])
    for key in ("encoding", "cpuid", "msr", "table", "assembler"):
        assert facts["instruction"][key]["source"], key


@covers(
    "instruction.encoding[].byte",
    "instruction.encoding[].role",
    "instruction.mnemonic",
    "instruction.vendor",
)
def test_encoding_bytes_and_roles(rmpopt, facts):
    insn, enc = rmpopt.instruction, facts["instruction"]["encoding"]
    assert insn.mnemonic == facts["instruction"]["mnemonic"]
    assert insn.vendor == facts["instruction"]["vendor"]
    roles = [(b.role, b.byte) for b in insn.encoding]
    assert roles == [("prefix", enc["prefix"]), ("escape", enc["escape"]),
                     ("opcode", enc["opcode"]), ("modrm", enc["modrm"]["byte"])]  # fmt: skip
    modrm = enc["modrm"]
    assert (modrm["byte"] >> 6, (modrm["byte"] >> 3) & 7, modrm["byte"] & 7) == (
        modrm["mod"],
        modrm["reg"],
        modrm["rm"],
    )


def test_encoding_differs_from_every_neighbour(rmpopt, facts):
    ours = [b.byte for b in rmpopt.instruction.encoding]
    neighbours = facts["instruction"]["same-slot"]
    assert len(neighbours) >= 10
    for name, data in neighbours.items():
        assert data != ours, name
    assert ours[1:] == neighbours[facts["instruction"]["unprefixed-form"]]


@covers(
    "instruction.inputs[].register",
    "instruction.inputs[].kind",
    "instruction.inputs[].align",
    "instruction.inputs[].name",
    "instruction.inputs[].points_to",
    "instruction.inputs[].access",
    "instruction.inputs[].bytes",
)
def test_inputs(rmpopt, facts):
    want = facts["instruction"]["inputs"]
    insn = rmpopt.instruction
    assert [i.register for i in insn.inputs] == list(want)
    for i in insn.inputs:
        fact = want[i.register]
        assert (i.kind, i.name) == (fact["kind"], fact["name"])
        assert i.align == fact.get("align", "none") or (i.align is None and "align" not in fact)
        assert i.points_to is None and i.access is None and i.bytes is None


@covers(
    "instruction.function_codes.operand",
    "instruction.function_codes.codes[].name",
    "instruction.function_codes.codes[].value",
    "instruction.function_codes.codes[].effect",
)
def test_function_codes(rmpopt, facts):
    fc = rmpopt.instruction.function_codes
    assert fc.operand == next(r for r, i in facts["instruction"]["inputs"].items()
                              if i["kind"] == "function-code")  # fmt: skip
    got = [(c.value, c.name.replace("_", " "), c.effect) for c in fc.codes]
    want = [(c["value"], c["name"], c["effect"]) for c in facts["instruction"]["function-codes"]]
    assert sorted(got) == sorted(want)


@covers(
    "instruction.outputs[].flag",
    "instruction.outputs[].register",
    "instruction.preserved[]",
    "instruction.clobbers[]",
    "instruction.outputs[].codes[]",
    "instruction.outputs[].software_code",
)
def test_outputs_preserved_and_clobbers(rmpopt, facts):
    insn, f = rmpopt.instruction, facts["instruction"]
    (out,) = insn.outputs
    assert [out.flag] == list(f["outputs"]) and out.register is None
    assert out.type == f["outputs"][out.flag]["type"]
    assert f["rax-after"] == "unchanged" and insn.preserved == ("rax",)
    assert out.codes == () and out.software_code is None
    assert list(insn.clobbers) == f["clobbers"]


@covers(
    "instruction.privilege.cpl",
    "instruction.privilege.faults[].exception",
    "instruction.privilege.faults[].unsure",
)
def test_privilege(rmpopt, facts):
    priv, want = rmpopt.instruction.privilege, facts["instruction"]["privilege"]
    assert priv.cpl == want["cpl"]
    assert [(f.exception, f.unsure) for f in priv.faults] == [
        (f["exception"], f["unsure"]) for f in want["faults"]
    ]


@covers(
    "instruction.cpuid.leaf",
    "instruction.cpuid.register",
    "instruction.cpuid.bit",
    "instruction.cpuid.feature",
    "instruction.cpuid.word",
    "instruction.cpuid.word_bit",
    "instruction.cpuid.subleaf",
)
def test_cpuid(rmpopt, facts):
    c, want = rmpopt.instruction.cpuid, facts["instruction"]["cpuid"]
    assert (c.leaf, c.register, c.bit) == (want["leaf"], want["register"], want["bit"])
    assert (c.feature, c.word, c.word_bit) == (want["feature"], want["word"], want["word-bit"])
    assert c.subleaf is None and want["subleaf"] == "none"


@covers(
    "instruction.msr.name",
    "instruction.msr.number",
    "instruction.msr.enable.name",
    "instruction.msr.enable.bit",
    "instruction.msr.base.low_bit",
    "instruction.msr.base.high_bit",
    "instruction.msr.scope",
    "instruction.msr.value",
    "instruction.msr.fault",
)
def test_msr(rmpopt, facts):
    msr, want = rmpopt.instruction.msr, facts["instruction"]["msr"]
    assert (msr.name, msr.number) == (want["name"], want["number"])
    assert (msr.scope, msr.value, msr.fault) == (
        want["scope"],
        want["value"],
        want["fault-when-disabled"],
    )
    assert (msr.enable.name, msr.enable.bit) == (want["enable"]["name"], want["enable"]["bit"])
    assert 1 << msr.base.low_bit == size(want["base-alignment"])
    assert msr.base.high_bit == want["base-high-bit"]


@covers("instruction.table.region_size", "instruction.table.entries", "instruction.table.coverage")
def test_table_coverage(rmpopt, facts):
    t, want = rmpopt.instruction.table, facts["instruction"]["table"]
    assert t.region_size == size(want["region-size"])
    assert t.entries == want["entries"]
    assert t.coverage == size(want["coverage"])


@covers("instruction.requires[]", "instruction.assembler.binutils", "instruction.assembler.llvm")
def test_requirements_and_assembler(rmpopt, facts):
    insn, f = rmpopt.instruction, facts["instruction"]
    joined = " ".join(insn.requires)
    assert "segmented RMP table" in joined and "SNP_EN" in joined
    assert any("segmented RMP" in r for r in f["requires"]) and any(
        "SNP_EN" in r for r in f["requires"]
    )
    assert (f["assembler"]["binutils"], f["assembler"]["llvm"]) == ("none", "none")
    assert insn.assembler.binutils is None and insn.assembler.llvm is None


@covers(
    "kernel.raw_helper.name",
    "kernel.raw_helper.header",
    "kernel.raw_helper.max_retries",
    "kernel.helper.name",
    "kernel.helper.parameter",
    "kernel.helper.function",
    "kernel.enum.name",
)
def test_kernel_names(rmpopt, facts):
    k, want = rmpopt.kernel, facts["kernel"]
    raw = want["raw-helper"]
    assert (k.raw_helper.name, k.raw_helper.header) == (raw["name"], raw["header"])
    assert [i.name for i in rmpopt.instruction.inputs] == raw["parameters"]
    assert k.raw_helper.max_retries is None and raw["max-retries"] == "none"
    helper = want["helper"]
    assert (k.helper.name, k.helper.parameter) == (helper["name"], helper["parameter"])
    assert k.helper.function.replace("_", " ") == helper["function"]
    assert k.enum.name == want["enum"]["name"]


@covers(
    "kernel.sweep.config",
    "kernel.sweep.source",
    "kernel.sweep.leader",
    "kernel.sweep.cpus",
    "kernel.sweep.followers",
    "kernel.sweep.resched",
    "kernel.sweep.log_message",
    "kernel.sweep.cap_log",
    "kernel.sweep.workers[].kind",
    "kernel.sweep.workers[].rearm_delay_ms",
)
def test_sweep_policy(rmpopt, facts):
    s, want = rmpopt.kernel.sweep, facts["kernel"]["sweep"]
    assert s.source == want["file"]
    assert s.config == want["file-config"]
    assert (s.leader, s.cpus, s.followers, s.resched) == (
        want["leader"],
        want["cpus"],
        want["followers"],
        want["resched"],
    )
    assert s.log_message.startswith(want["log-message-start"])
    assert s.cap_log == want["cap-message"]
    workers = facts["kernel"]["workers"]
    assert sorted(w.kind for w in s.workers) == sorted(workers)
    for w in s.workers:
        if "rearm-delay-s" in workers[w.kind]:
            assert w.rearm_delay_ms == workers[w.kind]["rearm-delay-s"] * 1000
        else:
            assert w.rearm_delay_ms is None


@covers(
    "kernel.enable.check",
    "kernel.enable.mutex",
    "kernel.enable.setup_caller",
    "kernel.enable.trigger_caller",
    "kernel.enable.teardown_caller",
    "kernel.enable.msr_on_teardown",
    "kernel.enable.hotplug.state",
    "kernel.enable.hotplug.name",
    "kernel.sweep.workers[].setup",
    "kernel.sweep.workers[].trigger",
    "kernel.sweep.workers[].teardown",
    "kernel.enable.requires[].name",
    "kernel.enable.requires[].check",
    "kernel.enable.requires[].argument",
)
def test_enable(rmpopt, facts):
    e, want = rmpopt.kernel.enable, facts["kernel"]["enable"]
    assert (e.check, e.mutex, e.msr_on_teardown) == (
        want["check"],
        want["mutex"],
        want["msr-on-teardown"],
    )
    assert (e.setup_caller, e.trigger_caller, e.teardown_caller) == (
        want["setup"]["caller"],
        want["trigger"]["caller"],
        want["teardown"]["caller"],
    )
    for w in rmpopt.kernel.sweep.workers:
        assert (w.setup, w.trigger, w.teardown) == (
            want["setup"]["name"],
            want["trigger"]["name"],
            want["teardown"]["name"],
        )
    assert [(p.name, p.check, p.argument) for p in e.requires] == [
        (r["name"], r["check"], r["argument"]) for r in want["requires"]
    ]
    assert (e.hotplug.state, e.hotplug.name) == (want["hotplug"]["state"], want["hotplug"]["name"])


@covers("kernel.enable.call_sites[].call", "kernel.enable.call_sites[].source",
        "kernel.enable.call_sites[].function", "kernel.enable.call_sites[].after",
        "kernel.enable.call_sites[].unless", "kernel.out_of_line")  # fmt: skip
def test_call_sites(rmpopt, facts):
    want = facts["kernel"]["enable"]["call-sites"]
    assert [(c.call, c.source, c.function, " ".join(c.after.split()), c.unless)
            for c in rmpopt.kernel.enable.call_sites] == [
        (w["call"], w["file"], w["in"], w["after"], w.get("not-when")) for w in want]  # fmt: skip
    # RMPOPT has no out-of-line kernel function of its own: the sweep executes it
    assert rmpopt.kernel.out_of_line is None


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
    assert not unchecked, f"fields of rmpopt.yaml not checked against the facts: {unchecked}"


MUTATIONS = [  # (spec text replaced, by, the check that must catch it)
    ("number: 0xc0010139", "number: 0xc001013a", test_msr),
    ("word_bit: 7", "word_bit: 6", test_cpuid),
    ("    - {byte: 0xf2, role: prefix}", "    - {byte: 0xf3, role: prefix}", test_encoding_bytes_and_roles),
    ("entries: 2048\n    coverage: 2T", "entries: 1024\n    coverage: 1T", test_table_coverage),
    ("rearm_delay_ms: 10000", "rearm_delay_ms: 1000", test_sweep_policy),
    ("name: op_type", "name: function", test_inputs),
    ("value: 1\n", "value: 2\n", test_function_codes),
    ("clobbers: [memory, cc]", "clobbers: [cc]", test_outputs_preserved_and_clobbers),
    ("scope: core ", "scope: thread ", test_msr),
    ("fault: UD ", "fault: GP ", test_msr),
    ("trigger_caller: kvm-amd", "trigger_caller: kvm", test_enable),
    ("msr_on_teardown: clear", "msr_on_teardown: keep", test_enable),
    ('name: "x86/rmpopt:online"', 'name: "x86/rmpopt:up"', test_enable),
    ("mutex: rmpopt_wq_mutex", "mutex: rmpopt_mutex", test_enable),
    ("cap_log: at-setup", "cap_log: every-pass", test_sweep_policy),
    ("argument: CC_ATTR_HOST_SEV_SNP", "argument: CC_ATTR_GUEST_SEV_SNP", test_enable),
    ("unless: panic", "unless: error", test_call_sites),
    ('after: "sev->snp_initialized = false;"', 'after: "memset(&data, 0, sizeof(data));"', test_call_sites),
]  # fmt: skip


@pytest.mark.parametrize("old, new, check", MUTATIONS, ids=lambda v: getattr(v, "__name__", None))
def test_a_changed_spec_value_is_caught(old, new, check, facts):
    from codegen.spec import parse
    from tests.conftest import RMPOPT_YAML

    text = RMPOPT_YAML.read_text()
    assert text.count(old) == 1, old
    changed = parse(text.replace(old, new), "mutant.yaml")
    with pytest.raises(AssertionError):
        check(changed, facts)
