"""The loader: typed frozen objects, positions, sizes, and rules the corpus does not reach."""

from __future__ import annotations

import dataclasses

import pytest

from codegen.diagnostics import SpecError
from codegen.spec import load_all, parse, parse_size, text_problem
from tests.broken.regen import HERE as BROKEN

BASE = (BROKEN / "_base.yaml").read_text()


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse(text, "t.yaml")
    return [f"{d.mark.line}:{d.mark.col}: {d.message}" for d in info.value.diagnostics]


def test_objects_are_frozen_and_typed(rmpopt):
    with pytest.raises(dataclasses.FrozenInstanceError):
        rmpopt.instruction.mnemonic = "x"  # type: ignore[misc]
    assert isinstance(rmpopt.instruction.encoding, tuple)
    assert all(isinstance(b.byte, int) for b in rmpopt.instruction.encoding)
    assert rmpopt.instruction.table.coverage == (
        rmpopt.instruction.table.region_size * rmpopt.instruction.table.entries
    )


def test_marks_point_at_values(rmpopt):
    lines = rmpopt.source.splitlines()
    mark = rmpopt.instruction.cpuid.mark("leaf")
    assert lines[mark.line - 1][mark.col - 1 :].startswith(hex(rmpopt.instruction.cpuid.leaf))


@pytest.mark.parametrize(
    "text, value",
    [("4096", 4096), ("2M", 2 << 20), ("1G", 1 << 30), ("2T", 2 << 40), (" 8 K ", 8 << 10)],
)
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["1 GB", "G", "1.5G", "-1G", "1Gi", ""])
def test_not_sizes(text):
    assert parse_size(text) is None


def test_integer_sizes_are_accepted_too():
    spec = parse(BASE.replace("region_size: 2M", "region_size: 0x200000"), "t.yaml")
    assert spec.instruction.table.region_size == 2 << 20


@pytest.mark.parametrize(
    "kind, value, ok",
    [
        ("identifier", "rmpopt_function", True),
        ("identifier", "_x9", True),
        ("identifier", "9x", False),
        ("identifier", "while", False),
        ("identifier", "a-b", False),
        ("identifier", "é", False),
        ("comment", "plain text, with (brackets)", True),
        ("comment", "ends */ here", False),
        ("comment", "opens /* here", False),
        ("comment", "tab\there", False),
        ("comment", "non-ascii é", False),
        ("c-string", "Attempt RMP optimizations", True),
        ("c-string", 'say "hi"', False),
        ("c-string", "back\\slash", False),
        ("c-string", "100%", False),
        ("c-string", "two\nlines", False),
        ("path", "arch/x86/virt/svm/sev.c", True),
        ("path", "/abs/path.c", False),
        ("path", "a/../b.c", False),
        ("path", "a//b.c", False),
        ("version", "2.44", True),
        ("version", "v2", False),
    ],
)
def test_text_rules(kind, value, ok):
    assert (text_problem(kind, value) is None) == ok


def test_all_problems_of_a_file_in_one_run():
    text = BASE.replace("cpl: 0", "cpl: 9").replace("vendor: intel", "vendor: via")
    text = text.replace("{byte: 0xee, role: modrm}", "{byte: 0x1ee, role: modrm}")
    assert len(problems(text)) == 3


def test_problems_of_several_files_in_one_run(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(BASE.replace("cpl: 0", "cpl: 9"))
    b.write_text(BASE.replace("vendor: intel", "vendor: via"))
    with pytest.raises(SpecError) as info:
        load_all([a, b, tmp_path / "missing.yaml"])
    paths = [d.mark.path for d in info.value.diagnostics]
    assert str(a) in paths and str(b) in paths and str(tmp_path / "missing.yaml") in paths


def test_directory_is_not_a_spec(tmp_path):
    with pytest.raises(SpecError, match="is a directory"):
        load_all([tmp_path])


def test_billion_laughs_is_refused_quickly():
    lol = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for n in range(1, 12):
        lol += f"{chr(97 + n)}: &{chr(97 + n)} [" + ", ".join([f"*{chr(96 + n)}"] * 9) + "]\n"
    out = problems(lol)
    assert any("alias" in p for p in out)


def test_merge_keys_are_unknown_keys():
    text = BASE.replace("  cpuid:\n", "  cpuid:\n    <<: {bit: 1}\n")
    assert any("unknown key '<<'" in p for p in problems(text))


def test_pointer_operand_needs_access():
    text = BASE.replace("      access: read\n", "")
    assert problems(text) == ["34:13: type 'pointer' and access go together"]


def test_software_code_only_on_flags():
    text = BASE.replace(
        "      description: Return code\n",
        "      description: Return code\n"
        "      software_code: {name: FROB_OLD, value: 255, description: Stale}\n",
    )
    assert problems(text) == ["44:22: software_code belongs to a flag output"]


# --- limits and strict values -------------------------------------------------


@pytest.mark.parametrize(
    "old, new, where",
    [
        ("      description: Return code\n", '      description: ""\n', "43:20"),
        ("      description: Return code\n", "      description: '   '\n", "43:20"),
        ("  title: Frobnicate Optimize", '  title: ""', "6:10"),
        ("references: [none, it is made up]", "references: [none, '']", "78:22"),
    ],
)
def test_empty_text_is_refused(old, new, where):
    assert problems(BASE.replace(old, new)) == [f"{where}: text must not be empty"]


def test_empty_log_message_is_refused():
    text = BASE.replace("log_message: Attempt frobbing on range", "log_message: ' '")
    assert problems(text) == ["90:18: message must not be empty"]
