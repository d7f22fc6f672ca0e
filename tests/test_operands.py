"""Operand facts from sources independent of the spec: iced-x86's database and binutils."""

from __future__ import annotations

import dataclasses

import pytest

from codegen.operands import (
    ASSEMBLER_VERSIONS,
    Gas,
    binutils_check,
    find_gas,
    iced_facts,
    operand_check,
)
from codegen.spec import load, parse
from tests.conftest import ISA

SPECS = {p.stem: load(p) for p in sorted(ISA.glob("*.yaml"))}
ICED = "iced-x86 1.21.0 says the instruction"


def edited(name: str, *replacements: tuple[str, str]):
    text = SPECS[name].source
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return parse(text, f"isa/{name}.yaml")


def only_problem(spec) -> str:
    (problem,) = operand_check([spec]).problems
    return problem.message


def test_the_measured_facts():
    facts = {n: iced_facts(bytes(b.byte for b in s.instruction.encoding)) for n, s in SPECS.items()
             if n in ("pvalidate", "rmpadjust", "rmpupdate", "psmash")}  # fmt: skip
    assert facts["pvalidate"].reads == {"rcx": 32, "rdx": 32, "rax": 64}
    assert facts["pvalidate"].writes == {"rax": 64}
    assert set(facts["rmpadjust"].reads) == {"rax", "rcx", "rdx"}
    assert set(facts["rmpupdate"].reads) == {"rax", "rcx"}
    assert facts["rmpupdate"].memory == (("rcx", "read"),)
    assert facts["psmash"].reads == facts["psmash"].writes == {"rax": 64}
    assert all(f.flags for f in facts.values())


def test_the_bundled_specs_agree_and_unknown_bytes_get_a_note():
    found = operand_check(list(SPECS.values()))
    assert found.problems == []
    notes = {d.mark.path.rsplit("/", 1)[-1]: d.message for d in found.notes}
    assert set(notes) == {"rmpopt.yaml", "rmpread.yaml"}
    assert "reads F2 0F 01 FC as clzero" in notes["rmpopt.yaml"]
    assert "does not know F2 0F 01 FD" in notes["rmpread.yaml"]


def test_an_input_in_the_wrong_register():
    spec = edited("rmpadjust", ("register: rdx", "register: rsi"))
    assert only_problem(spec) == f"spec says inputs rax, rcx, rsi; {ICED} reads rax, rcx, rdx"


def test_a_missing_input():
    spec = edited("rmpupdate", ("    - register: rcx\n", "    - register: rdx\n"))
    assert f"spec says inputs rax, rdx; {ICED} reads rax, rcx" in [
        p.message for p in operand_check([spec]).problems
    ]


def test_an_input_wider_than_the_instruction_reads():
    spec = edited("pvalidate", ("      type: bool\n      width: 8          # bit 0 holds the size",
                                "      type: u64\n      width: 64          # bit 0 holds the size"))  # fmt: skip
    assert only_problem(spec) == f"spec says the instruction reads 64 bits of rcx; {ICED} reads 32"


def test_an_output_in_the_wrong_register():
    spec = edited("psmash", ("  outputs:\n    - register: rax", "  outputs:\n    - register: rdx"))
    assert only_problem(spec) == f"spec says register outputs rdx; {ICED} writes rax"


def test_a_written_register_said_preserved():
    spec = edited("psmash", ("  outputs:\n    - register: rax", "  outputs:\n    - register: rdx"),
                  ("  clobbers:", "  preserved: [rax]\n  clobbers:"))  # fmt: skip
    assert f"spec says rax preserved; {ICED} writes rax" in [
        p.message for p in operand_check([spec]).problems
    ]


def test_a_flag_the_instruction_does_not_change():
    spec = edited("rmpadjust", ("      description: Return code, 0 on success\n",
                                "      description: Return code, 0 on success\n    - flag: cf\n"
                                "      name: failed\n      type: bool\n      description: Set on failure\n"
                                "      software_code: {name: RMPADJUST_FAILED, value: 255, "
                                "description: failed}\n"))  # fmt: skip
    assert f"spec says flag outputs cf; {ICED} changes RFLAGS" in only_problem(spec)


def test_flags_changed_without_a_cc_clobber():
    spec = edited("psmash", ("clobbers: [memory, cc]", "clobbers: [memory]"))
    assert only_problem(spec).startswith(
        f"spec says the instruction leaves RFLAGS alone (no cc clobber); {ICED} changes "
    )


def test_memory_written_where_it_is_read():
    spec = edited("rmpupdate", ("      access: read\n", "      access: write\n"))
    assert (
        only_problem(spec) == f"spec says memory operands write [rcx]; {ICED} accesses read [rcx]"
    )


def test_a_validate_error_names_both_sides(run_kgen, tmp_path):
    path = tmp_path / "rmpadjust.yaml"
    path.write_text(SPECS["rmpadjust"].source.replace("register: rdx", "register: rsi"))
    result = run_kgen("validate", path)
    assert result.exit_code == 1
    assert (
        f"{path}:21:5: error: spec says inputs rax, rcx, rsi; {ICED} reads rax, rcx, rdx"
        in result.stderr
    )


# --- assembler versions -----------------------------------------------------

GAS = find_gas()


def test_the_assembler_here_is_found():
    assert GAS is not None and GAS.version.count(".") >= 1, "binutils' as is needed (gcc brings it)"


def test_the_bundled_specs_agree_with_binutils_and_the_kernel():
    assert binutils_check(list(SPECS.values()), GAS).problems == []


@pytest.mark.parametrize("stated", ["null", '"2.36"'])
def test_rmpread_versions_the_kernel_contradicts(stated):
    spec = edited("rmpread", ('binutils: "2.44"', f"binutils: {stated}"))
    (problem, *_) = binutils_check([spec], None).problems
    shown = "no binutils release" if stated == "null" else "binutils 2.36"
    assert problem.message.startswith(f"spec says {shown} knows 'rmpread'; binutils 2.44 does, says Linux "
                                      "arch/x86/virt/svm/sev.c")  # fmt: skip
    assert f"{ASSEMBLER_VERSIONS.name}:" in problem.message


def test_a_version_the_assembler_here_contradicts():
    here = GAS.version
    newer = edited("pvalidate", ('binutils: "2.36"', 'binutils: "9.1"'))
    (problem,) = binutils_check([newer], GAS, known=()).problems
    assert (
        problem.message
        == f"spec says binutils 9.1 knows 'pvalidate' first; binutils {here} here assembles it"
    )
    never = edited("pvalidate", ('binutils: "2.36"', "binutils: null"))
    (problem,) = binutils_check([never], GAS, known=()).problems
    assert (
        problem.message
        == f"spec says no binutils release knows 'pvalidate'; binutils {here} here assembles it"
    )
    older = edited("rmpread", ('binutils: "2.44"', 'binutils: "2.30"'))
    (problem,) = binutils_check([older], GAS, known=()).problems
    assert (
        problem.message
        == f"spec says binutils 2.30 knows 'rmpread'; binutils {here} here does not assemble it"
    )
    assert binutils_check(
        [SPECS["pvalidate"]], Gas(GAS.path, "2.35"), known=()
    ).problems  # too old to know it


def test_bytes_the_assembler_here_does_not_emit():
    spec = SPECS["pvalidate"]
    renamed = dataclasses.replace(
        spec, instruction=dataclasses.replace(spec.instruction, mnemonic="psmash")
    )
    (problem,) = binutils_check([renamed], GAS, known=()).problems
    assert (
        problem.message
        == f"binutils {GAS.version} assembles 'psmash' as F3 0F 01 FF, not F2 0F 01 FF"
    )


def test_no_assembler_is_a_note():
    assert find_gas("no-such-assembler-kgen") is None
    found = binutils_check([SPECS["pvalidate"]], None, known=())
    assert found.problems == [] and "no GNU assembler" in found.notes[0].message


def test_validate_catches_the_rmpread_spec_as_it_was(run_kgen, tmp_path):
    path = tmp_path / "rmpread.yaml"
    path.write_text(SPECS["rmpread"].source.replace('binutils: "2.44"', "binutils: null"))
    result = run_kgen("validate", path)
    assert result.exit_code == 1
    assert (
        "error: spec says no binutils release knows 'rmpread'; binutils 2.44 does" in result.stderr
    )
