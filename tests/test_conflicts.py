"""Encoding collisions and repeated names across specs, and the table of known encodings."""

from __future__ import annotations

import pytest

from codegen.assembler import assemble
from codegen.conflicts import KNOWN_ENCODINGS, assembler_check, cross_check, known_encodings
from codegen.spec import global_names, load, parse
from codegen.toolchain import find_clang
from tests.conftest import ISA as ISA_DIR, RMPOPT_YAML

TEXT = RMPOPT_YAML.read_text()
KNOWN = known_encodings()


def spec_with(text: str, path: str = "isa/other.yaml"):
    return parse(text, path)


def test_table_entries_match_clangs_assembler():
    checked = 0
    for entry in KNOWN:
        got = assemble(find_clang(), entry.mnemonic)
        if entry.source == "asm":
            assert got == bytes(entry.bytes), entry.mnemonic
            checked += 1
        else:  # from the fact sheet because clang does not know it; say so if that changes
            assert got is None or got == bytes(entry.bytes), entry.mnemonic
    assert checked >= 50


def test_table_holds_the_snp_family_and_group_7():
    names = {e.mnemonic for e in KNOWN}
    assert {
        "clzero",
        "rmpchkd",
        "rmpread",
        "rmpquery",
        "rmpupdate",
        "rmpadjust",
        "pvalidate",
        "psmash",
        "rdpru",
        "invlpgb",
        "tlbsync",
        "vmrun",
        "swapgs",
        "rdtscp",
    } <= names
    assert len({e.bytes for e in KNOWN}) == len(KNOWN), "the table itself has no collision"


def test_rmpopt_collides_with_nothing_but_notes_clzero():
    found = cross_check([spec_with(TEXT, "isa/rmpopt.yaml")])
    assert found.problems == []
    (note,) = found.notes
    assert "without its F2 prefix, rmpopt is clzero" in note.message
    assert f"{KNOWN_ENCODINGS.name}:" in note.message


def test_a_prefix_changed_into_rmpchkd_is_a_collision():
    text = TEXT.replace("{byte: 0xf2, role: prefix}", "{byte: 0xf3, role: prefix}")
    (problem,) = cross_check([spec_with(text, "isa/rmpopt.yaml")]).problems
    assert problem.mark.path == "isa/rmpopt.yaml" and problem.mark.line > 1
    assert "F3 0F 01 FC of rmpopt collides with rmpchkd" in problem.message
    assert "known_encodings.yaml:" in problem.message and "source: sheet" in problem.message


def test_two_specs_with_the_same_bytes_name_each_other():
    other = TEXT.replace("mnemonic: rmpopt", "mnemonic: rmpopt2").replace(
        "name: __rmpopt", "name: __rmpopt2").replace("name: rmpopt\n", "name: rmpopt2\n").replace(
        "name: rmpopt_function", "name: rmpopt2_function").replace(
        "prefix: RMPOPT_FUNC_", "prefix: RMPOPT2_FUNC_").replace(
        "pass_name: rmpopt_sweep", "pass_name: rmpopt2_sweep")  # fmt: skip
    a, b = spec_with(TEXT, "isa/rmpopt.yaml"), spec_with(other, "isa/rmpopt2.yaml")
    problems = cross_check([a, b]).problems
    assert {p.mark.path for p in problems} == {"isa/rmpopt.yaml", "isa/rmpopt2.yaml"}
    assert any("is also rmpopt2's (isa/rmpopt2.yaml:" in p.message for p in problems)
    assert any("is also rmpopt's (isa/rmpopt.yaml:" in p.message for p in problems)


def test_a_known_mnemonic_with_other_bytes_is_a_finding():
    text = TEXT.replace("mnemonic: rmpopt", "mnemonic: psmash")
    (problem,) = cross_check([spec_with(text)]).problems
    assert "psmash is F3 0F 01 FF in the known encodings" in problem.message
    assert problem.message.endswith("not F2 0F 01 FC")


def test_kernel_names_are_unique_across_specs():
    other = TEXT.replace("{byte: 0xfc, role: modrm}", "{byte: 0xfb, role: modrm}")
    other = other.replace("mnemonic: rmpopt", "mnemonic: rmpfake")
    problems = cross_check([spec_with(TEXT, "isa/rmpopt.yaml"), spec_with(other)]).problems
    assert any("kernel name '__rmpopt' is also defined by rmpopt (isa/rmpopt.yaml:" in p.message
               for p in problems)  # fmt: skip
    # each side gets the problem, whichever comes first
    assert any("kernel name '__rmpopt' is also defined by rmpfake (isa/other.yaml:" in p.message
               for p in problems)  # fmt: skip
    assert {p.mark.path for p in problems} == {"isa/other.yaml", "isa/rmpopt.yaml"}


def _copy_of_rmpopt(path, mnemonic="rmpfoo", modrm="0xfb"):
    path.write_text(TEXT.replace("mnemonic: rmpopt", f"mnemonic: {mnemonic}")
                    .replace("{byte: 0xfc, role: modrm}", f"{{byte: {modrm}, role: modrm}}"))  # fmt: skip
    return path


def test_validating_one_spec_finds_its_names_in_isa(run_kgen, tmp_path):
    """A copy of rmpopt.yaml with only the mnemonic and encoding changed passed alone."""
    foo = _copy_of_rmpopt(tmp_path / "rmpfoo.yaml")
    result = run_kgen("validate", foo)
    assert result.exit_code == 1, result.output
    errors = [ln for ln in result.stderr.splitlines() if ": error: " in ln]
    # every name the spec puts in a kernel tree: helpers, enum, sweep, workers, fragments
    names = global_names(load(RMPOPT_YAML))
    assert len(errors) == len(names) and all(ln.startswith(f"{foo}:") for ln in errors), errors
    for name in ("__rmpopt", "snp_setup_rmpopt", "X86_FEATURE_RMPOPT", "MSR_AMD64_RMPOPT_BASE"):
        assert name in dict(names), name
        assert f"error: kernel name '{name}' is also defined by rmpopt" in result.stderr, name
    line = dict(names)["__rmpopt"].line
    assert (f"isa/rmpopt.yaml:{line}:11: note: kernel name '__rmpopt' of rmpopt, which rmpfoo "
            f"({foo}:{line}) also defines") in result.output  # fmt: skip


def test_validating_one_spec_finds_the_specs_beside_it(run_kgen, tmp_path):
    a = _copy_of_rmpopt(tmp_path / "a.yaml", "rmpfoo", "0xfb")
    b = _copy_of_rmpopt(tmp_path / "b.yaml", "rmpbar", "0xfb")
    for named, other in ((a, b), (b, a)):
        result = run_kgen("validate", named)
        assert result.exit_code == 1
        assert f"also {'rmpbar' if named == a else 'rmpfoo'}'s ({other}:15)" in result.stderr
        assert f"{other}:15:5: note: " in result.output


def test_a_second_spec_of_the_same_instruction_beside_it_is_a_rival(run_kgen, tmp_path):
    a = _copy_of_rmpopt(tmp_path / "a.yaml", "rmpfoo", "0xfb")
    _copy_of_rmpopt(tmp_path / "b.yaml", "rmpfoo", "0xfa")
    result = run_kgen("validate", a)
    assert (
        result.exit_code == 1
        and "kernel name '__rmpopt' is also defined by rmpfoo" in result.stderr
    )


def test_an_edited_copy_of_a_bundled_spec_is_not_its_rival(run_kgen, tmp_path):
    copy = tmp_path / "rmpopt.yaml"
    copy.write_text(TEXT)
    result = run_kgen("validate", copy)
    assert result.exit_code == 0, result.stderr


def test_validate_exits_1_on_a_collision(run_kgen, tmp_path):
    bad = tmp_path / "rmpopt.yaml"
    bad.write_text(TEXT.replace("{byte: 0xfc, role: modrm}", "{byte: 0xfd, role: modrm}"))
    result = run_kgen("validate", bad)
    assert result.exit_code == 1
    assert "collides with rmpread" in result.stderr


@pytest.mark.parametrize("defect, message", [
    ("{mnemonic: clzero, bytes: [0x0f, 0x01, 0x1fc], vendor: amd, source: asm}", "out of range"),
    ("{mnemonic: clzero, bytes: [0x0f, 0x01, 0xfc], vendor: via, source: asm}", "expected one of"),
])  # fmt: skip
def test_a_broken_table_is_reported_with_its_position(tmp_path, defect, message):
    from codegen.diagnostics import SpecError

    table = tmp_path / "known.yaml"
    table.write_text(KNOWN_ENCODINGS.read_text().replace(
        "{mnemonic: clzero, bytes: [0x0f, 0x01, 0xfc], vendor: amd, source: asm}", defect))  # fmt: skip
    with pytest.raises(SpecError, match=message) as info:
        known_encodings.__wrapped__(table)
    assert info.value.diagnostics[0].mark.line > 1


def test_spec_bytes_against_the_assembler():
    clang = find_clang()
    rmpopt = spec_with(TEXT, "isa/rmpopt.yaml")
    found = assembler_check([rmpopt], clang)
    assert found.problems == [] and "does not know 'rmpopt'" in found.notes[0].message
    # a spec of an instruction clang knows, with its bytes wrong by one
    wrong = spec_with(TEXT.replace("mnemonic: rmpopt", "mnemonic: clzero").replace(
        "    - {byte: 0xf2, role: prefix}\n", ""))  # fmt: skip
    assert assembler_check([wrong], clang).problems == []  # right: 0F 01 FC is clzero
    worse = spec_with(TEXT.replace("mnemonic: rmpopt", "mnemonic: rdpru"))
    (problem,) = assembler_check([worse], clang).problems
    assert "assembles 'rdpru' as 0F 01 FD, not F2 0F 01 FC" in problem.message


def test_doctor_lists_the_snp_mnemonics_clang_knows(run_kgen):
    result = run_kgen("doctor")
    assert "SNP mnemonics clang assembles: " in result.output
    known = result.output.split("SNP mnemonics clang assembles: ")[1].split("\n")[0].split()
    assert "pvalidate" in known and "rmpopt" not in known


def test_the_decoder_notes_an_ignored_prefix_once():
    """rmpopt's CLZERO hazard is noted once (by the table); one the table lacks, by the decoder."""
    (note,) = cross_check([spec_with(TEXT, "isa/rmpopt.yaml")]).notes
    assert "known_encodings.yaml" in note.message and "iced" not in note.message
    text = TEXT.replace("{byte: 0x01, role: opcode}\n    - {byte: 0xfc, role: modrm}       # mod 11, reg 7, rm 4",
                        "{byte: 0x05, role: opcode}")  # fmt: skip
    found = cross_check([spec_with(text, "isa/rmpopt.yaml")])
    assert found.problems == []
    (note,) = found.notes
    assert "decodes F2 0F 05 as syscall, ignoring its F2 prefix" in note.message
    assert note.message.startswith("iced-x86 1.21.0 ")


def test_a_path_with_a_newline_in_a_neighbour_stays_on_one_line(run_kgen, tmp_path):
    """Another spec's name is quoted in the messages: a newline in it must not split a line
    (nor forge a diagnostic line for a CI parser)."""
    a = _copy_of_rmpopt(tmp_path / "a.yaml", "rmpfoo", "0xfb")
    _copy_of_rmpopt(tmp_path / "nl\nx.yaml", "rmpbar", "0xfb")
    result = run_kgen("validate", a)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any("nl\\nx.yaml:" in line for line in lines), result.output
    assert not any(line.startswith("x.yaml") for line in lines), result.output


def test_a_spec_path_with_a_newline_is_shown_on_one_line(run_kgen, tmp_path):
    (tmp_path / "a\nb").mkdir()
    spec = tmp_path / "a\nb" / "psmash.yaml"
    spec.write_text((ISA_DIR / "psmash.yaml").read_text())
    result = run_kgen("validate", spec)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith(f"{tmp_path}/a\\nb/psmash.yaml: ok (psmash:")


def test_render_refuses_a_spec_that_clashes_with_one_beside_it(run_kgen, tmp_path):
    """validate refused it; render wrote it all the same."""
    a = _copy_of_rmpopt(tmp_path / "a.yaml", "rmpfoo", "0xfb")
    _copy_of_rmpopt(tmp_path / "b.yaml", "rmpbar", "0xfa")
    result = run_kgen("render", a, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "error: kernel name '__rmpopt' is also defined by rmpbar" in result.stderr
    assert not (tmp_path / "out").exists()


def test_without_notes_every_problem_is_still_found():
    """render's check (notes_too=False) skips only the notes: the same problems, and the same
    notes for the other specs, on every case above that has a problem."""
    clzero = TEXT.replace("{byte: 0xf2, role: prefix}", "{byte: 0xf3, role: prefix}")
    twin = TEXT.replace("mnemonic: rmpopt", "mnemonic: rmpopt2")
    psmash = TEXT.replace("mnemonic: rmpopt", "mnemonic: psmash")
    fake = TEXT.replace("{byte: 0xfc, role: modrm}", "{byte: 0xfb, role: modrm}").replace(
        "mnemonic: rmpopt", "mnemonic: rmpfake")  # fmt: skip
    rmpopt = spec_with(TEXT, "isa/rmpopt.yaml")
    cases = [[spec_with(clzero)], [rmpopt, spec_with(twin, "isa/rmpopt2.yaml")],
             [spec_with(psmash)], [rmpopt, spec_with(fake)], [spec_with(psmash), rmpopt]]  # fmt: skip
    for specs in cases:
        full, fast = cross_check(specs), cross_check(specs, notes_too=False)
        assert full.problems and fast.problems == full.problems
        assert fast.others == full.others and fast.notes == []
