"""Every review requirement holds in the output, and each check fails on a broken template."""

from __future__ import annotations

import re
import shutil

import pytest

from codegen import render
from codegen.review import RULES, review
from codegen.spec import load
from tests.conftest import ROOT

ISA = ROOT / "isa"

# (rule, template, exact text in the template, replacement): one deliberate defect each
MUTANTS = [
    ("raw-helper-shape", "helpers.h.j2", "static inline {{ raw.ret }} {{ kernel.raw_helper.name | ident }}(",
     "static inline void {{ kernel.raw_helper.name | ident }}("),
    ("raw-helper-shape", "helpers.h.j2", ": {{ raw.inputs }}", ': "a" (vaddr), "c" (validate), "d" (rmp_psize)',
     "pvalidate"),
    ("raw-helper-shape", "helpers.h.j2", "{{ raw.params }}", "u64 vaddr, u64 rmp_psize, u64 validate",
     "pvalidate"),
    ("raw-helper-shape", "helpers.h.j2", ":{% if raw.outputs %} {{ raw.outputs }}{% endif %}",
     ': "=@ccc" (no_rmpupdate), "=c" (rc)', "pvalidate"),
    ("return-codes-named", "helpers.h.j2", "{% for line in raw.defines %}", "{% for line in raw.defines[1:] %}",
     "pvalidate"),
    ("software-code", "helpers.h.j2", "\t\treturn {{ o.software_code.name | ident }};",
     "\t\treturn -1;", "pvalidate"),
    ("retry-bounded", "helpers.h.j2", "} while ({{ raw.retry_while }});", "} while ({{ raw.rc.name | ident }} == 4);",
     "rmpupdate"),
    ("retry-bounded", "helpers.h.j2", "{% if raw.retry %}\n\tdo {", "{% if raw.retry %}\n\tif (1) {",
     "rmpupdate"),
    ("asm-bytes", "helpers.h.j2", '"{{ insn.encoding | byte_directive }}"',
     '"{{ insn.encoding | byte_directive }}\\n\\t"'),
    ("asm-bytes", "helpers.h.j2", '"{{ insn.encoding | byte_directive }}"',
     '"{{ insn.encoding[1:] | byte_directive }}"'),
    ("asm-clobbers", "helpers.h.j2", ": {{ raw.clobbers }});", ': "cc");'),
    ("helper-aligns", "helpers.h.j2", "{% for line in helper.locals %}\n\t{{ line }}",
     "{% for line in helper.locals %}\n\tu64 {{ helper.args[loop.index0] }} = {{ helper.parameter }};"),
    # the call by position: the low-level helper's arguments in the helper's own order
    ("helper-aligns", "helpers.h.j2", "return {{ helper.call }};",
     "return {{ kernel.raw_helper.name | ident }}({{ helper.args[1] }}, {{ helper.args[0] }});"),
    ("no-pointer-packing", "helpers.h.j2", "{{ helper.name }}({{ helper.params }})",
     "{{ helper.name }}(void *{{ helper.parameter }})"),
    ("enum-from-spec", "helpers.h.j2", "{{ enum_const[code.name] }} = {{ code.value | hex }},",
     "{{ enum_const[code.name] }},"),
    ("no-pud-size", "sweep.c.j2", "pa < pa_end; pa += {{ region | sz }}) {\n\t\t{{ h.name",
     "pa < pa_end; pa += PUD_SIZE) {\n\t\t{{ h.name"),
    ("cap-plain-if", "sweep.c.j2", "\tif (pa_end - pa_start > {{ coverage | sz }})\n\t\tpa_end =",
     "\tpa_end = (pa_end - pa_start) <= {{ coverage | sz }} ? pa_end : pa_start + {{ coverage | sz }};"
     "\n\tif (0)\n\t\tpa_end ="),
    ("cap-plain-if", "sweep.c.j2", "\t\tpa_end = pa_start + {{ coverage | sz }};",
     "\t\tpa_end = pa_start + {{ coverage | sz }} - 1;"),
    ("aligned-range", "sweep.c.j2", "\tpa_end   = ALIGN(", "\tpa_end = ALIGN("),
    ("log-attempts", "sweep.c.j2", 'pr_info("{{ sweep.log_message | cstring }}',
     'pr_info("RMP optimizations enabled on'),
    ("no-status-talk", "sweep.c.j2", "\t\t{{ h.name | ident }}(pa);\n",
     "\t\t{{ h.name | ident }}(pa); /* verify and report status */\n"),
    ("worker-sleeps", "sweep.c.j2", "\t\t\tschedule();\n\t\t\tcontinue;", "\t\t\tcontinue;"),
    ("worker-sleeps", "sweep.c.j2", "\t{{ sweep.pass_name | ident }}();\n}\n\nstatic DECLARE",
     "\t{{ sweep.pass_name | ident }}();\n\tmod_delayed_work({{ worker.workqueue | ident }}, "
     "&{{ worker.name | ident }}, 0);\n}\n\nstatic DECLARE"),
    ("resched-between-regions", "sweep.c.j2", "\t\t{{ h.name | ident }}(pa);\n\t\tcond_resched();",
     "\t\t{{ h.name | ident }}(pa);"),
    ("followers-skip-leader-core", "sweep.c.j2",
     "topology_is_primary_thread(cpu) &&\n\t\t    !cpumask_test_cpu(cpu, topology_sibling_cpumask(leader)))",
     "topology_is_primary_thread(cpu))"),
    ("followers-skip-leader-core", "sweep.c.j2",
     "\tmigrate_disable();\n\tleader = smp_processor_id();",
     "\tleader = smp_processor_id();\n\tmigrate_disable();"),
    ("byte-comment", "helpers.h.j2", "{% for line in raw.doc %}",
     '{% for line in raw.doc if not line.startswith("Inputs:") %}'),
    ("setup-order", "sweep.c.j2", "int {{ worker.setup | ident }}(void)\n{\n{{ en.setup_body }}",
     "int {{ worker.setup | ident }}(void)\n{\n\tmigrate_disable();\n\tmigrate_enable();\n{{ en.setup_body }}"),
    ("delays-from-spec", "sweep.c.j2", "_REARM_DELAY_MS\t{{ worker.rearm_delay_ms | ms }}",
     "_REARM_DELAY_MS\t{{ (worker.rearm_delay_ms - 1) | ms }}"),
    ("no-warn-on-success", "sweep.c.j2", "\t\t{{ h.name | ident }}(pa);\n",
     "\t\tWARN_ON_ONCE({{ h.name | ident }}(pa));\n"),
    ("reverse-fir-tree", "helpers.h.j2", "{% for line in raw.locals %}",
     "{% for line in raw.locals | reverse %}", "rmpupdate"),
    ("reverse-fir-tree", "helpers.h.j2", "{% for line in raw.locals %}",
     "{% for line in raw.locals | reverse %}", "pvalidate"),
    ("reverse-fir-tree", "sweep.c.j2", "\tphys_addr_t pa_start, pa_end, pa;\n\tunsigned int cpu, leader;\n",
     "\tunsigned int cpu, leader;\n\tphys_addr_t pa_start, pa_end, pa;\n"),
    ("no-unused-parameter-mark", "sweep.c.j2", "_fn(struct work_struct *work)",
     "_fn(struct work_struct *work __always_unused)"),
]  # fmt: skip


@pytest.mark.parametrize("stem", sorted(p.stem for p in ISA.glob("*.yaml")))
def test_the_rendered_code_passes_every_review_rule(stem):
    spec = load(ISA / f"{stem}.yaml")
    assert review(spec, render.render_spec(spec)) == []


def test_every_rule_has_a_mutant():
    assert {r.name for r in RULES} == {m[0] for m in MUTANTS}


@pytest.mark.parametrize("mutant", MUTANTS, ids=[f"{m[0]}-{i}" for i, m in enumerate(MUTANTS)])
def test_each_rule_catches_its_broken_template(mutant, tmp_path):
    rule_name, template, old, new, *stem = mutant
    spec = load(ISA / f"{stem[0] if stem else 'rmpopt'}.yaml")
    broken = tmp_path / "templates"
    shutil.copytree(render.TEMPLATES, broken)
    path = broken / template
    text = path.read_text()
    assert text.count(old) >= 1, f"mutation anchor not found in {template}: {old!r}"
    path.write_text(text.replace(old, new, 1))
    files = render.render_spec(spec, broken)
    found = {name for name, _ in review(spec, files)}
    assert rule_name in found


def _swapped_inputs(text: str) -> str:
    """The spec text with its inputs listed in the other order."""
    head, rest = text.split("  inputs:\n", 1)
    block, tail = rest.split("  outputs:\n", 1)
    items = ["    - register:" + item for item in block.split("    - register:")[1:]]
    return head + "  inputs:\n" + "".join(reversed(items)) + "  outputs:\n" + tail


def test_the_helper_passes_each_argument_to_its_parameter_by_name(tmp_path, run_kgen):
    """Swapping the spec's inputs swaps the low-level helper's parameters, and the helper's
    call follows them: the arguments go to parameters by name, not by position."""
    path = tmp_path / "rmpopt.yaml"
    path.write_text(_swapped_inputs((ISA / "rmpopt.yaml").read_text()))
    spec = load(path)
    assert [i.name for i in spec.instruction.inputs] == ["op_type", "pa_start"]
    header = render.render_spec(spec)["rmpopt/arch/x86/include/asm/special_insns.h"]
    assert "static inline bool __rmpopt(u64 op_type, u64 pa_start)\n" in header
    assert "\treturn __rmpopt(rcx, rax);\n" in header
    result = run_kgen("validate", "-q", str(path))
    assert result.exit_code == 0, result.output


def test_validate_catches_a_call_whose_arguments_follow_positions(tmp_path):
    """The call the helper made before it matched arguments by name: __rmpopt(rax, rcx)
    against __rmpopt(u64 op_type, u64 pa_start).  The review holds the call to the
    parameters, so validate fails on it instead of leaving it to compare."""
    path = tmp_path / "rmpopt.yaml"
    path.write_text(_swapped_inputs((ISA / "rmpopt.yaml").read_text()))
    spec = load(path)
    files = render.render_spec(spec)
    name = "rmpopt/arch/x86/include/asm/special_insns.h"
    assert files[name].count("\treturn __rmpopt(rcx, rax);\n") == 1
    files[name] = files[name].replace(
        "\treturn __rmpopt(rcx, rax);\n", "\treturn __rmpopt(rax, rcx);\n"
    )
    found = review(spec, files)
    assert ("helper-aligns", "rmpopt() passes rax as __rmpopt()'s op_type and rcx as its pa_start: "
            "op_type wants RMPOPT_FUNC_VERIFY_AND_REPORT_STATUS, pa_start wants ALIGN_DOWN(pa, SZ_1G)") \
        in found, found  # fmt: skip


def test_an_input_the_helper_does_not_compute_is_passed_through_by_name():
    """frobopt's helper used to call __frobopt(rdx, rsi) for __frobopt(u64 base_pa, u32 mode,
    struct frob_desc *desc): one argument short.  The input it has no value for is now its own
    parameter, passed at that position, and the review holds the call to the arity."""
    spec = load(ROOT / "tests" / "broken" / "_base.yaml")
    files = render.render_spec(spec)
    name = "frobopt/arch/x86/include/asm/frob.h"
    header = files[name]
    assert "static inline int frobopt(phys_addr_t addr, struct frob_desc *desc)\n" in header
    assert "\treturn __frobopt(rdx, rsi, desc);\n" in header
    assert review(spec, files) == []
    files[name] = header.replace("__frobopt(rdx, rsi, desc);", "__frobopt(rdx, rsi);")
    assert (
        "helper-aligns",
        "frobopt() passes 2 arguments to __frobopt(), which takes 3",
    ) in review(spec, files)


def test_the_readme_names_every_rule():
    """The README's list of review rules is the list kgen applies."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Kernel review rules", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z0-9]+(?:-[a-z0-9]+)+)`", section))
    assert {r.name for r in RULES} <= named
