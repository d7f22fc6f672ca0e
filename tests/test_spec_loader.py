"""The loader: typed frozen objects, positions, sizes, and rules the corpus does not reach."""

from __future__ import annotations

import dataclasses
import os
import resource
import subprocess
import sys

import pytest

from codegen.diagnostics import SpecError
from codegen.spec import load_all, parse, parse_size, text_problem
from codegen.yamlsource import MAX_DEPTH, MAX_FILE_BYTES, MAX_LINE, MAX_TEXT
from tests.broken.regen import HERE as BROKEN
from tests.conftest import ROOT

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
        ("identifier", "__rmpopt", True),
        ("identifier", "__x86_pa", True),
        ("identifier", "rmp__x", True),
        ("identifier", "X86_FEATURE_RMPOPT", True),
        ("identifier", "__asm", False),
        ("identifier", "__int128", False),
        ("identifier", "_Pragma", False),
        ("identifier", "_BitInt", False),
        ("identifier", "_Float64", False),
        ("identifier", "_Nonnull", False),
        ("identifier", "__GFP_IO", False),
        ("identifier", "__builtin_expect", False),
        ("identifier", "__sync_synchronize", False),
        ("identifier", "__atomic_load_n", False),
        ("identifier", "__is_identifier", False),
        ("identifier", "__private_extern__", False),
        ("identifier", "__seg_gs", False),
        ("identifier", "__typeof_unqual", False),
        ("identifier", "inline", False),
        ("identifier", "restrict", False),
        ("identifier", "nullptr", False),
        ("identifier", "constexpr", False),
        ("identifier", "static_assert", False),
        ("identifier", "alignas", False),
        ("identifier", "thread_local", False),
        ("identifier", "linux", False),
        ("identifier", "__x86_64", False),
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


def run_limited(code: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run Python code in a child with 1 GiB of address space and a time limit."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit, cwd=ROOT)  # fmt: skip


LOAD = "from codegen.spec import load\ntry:\n    load({path!r})\nexcept Exception as e:\n    print(e)\n"


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_is_not_read(device):
    assert run_limited(LOAD.format(path=device)).stdout == f"{device}: error: not a regular file\n"


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    assert run_limited(LOAD.format(path=str(fifo))).stdout.endswith(": error: not a regular file\n")


def test_a_huge_file_is_refused_after_reading_at_most_the_limit(tmp_path):
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as f:
        f.truncate(4 << 30)  # sparse: reading it all would need 4 GiB
    out = run_limited(LOAD.format(path=str(huge))).stdout
    assert out == f"{huge}: error: file is larger than the limit of {MAX_FILE_BYTES >> 10} KiB\n"


def test_the_size_limit_is_exact(tmp_path):
    at, over = tmp_path / "at.yaml", tmp_path / "over.yaml"
    padding = MAX_FILE_BYTES - len(BASE.encode())
    at.write_text(BASE + ("#" * 99 + "\n") * (padding // 100) + "#" * (padding % 100 - 1) + "\n")
    assert at.stat().st_size == MAX_FILE_BYTES
    load_all([at])
    over.write_bytes(at.read_bytes() + b"\n")
    with pytest.raises(SpecError, match="larger than the limit"):
        load_all([over])


def test_a_spec_at_the_size_limit_loads():
    """Dense YAML up to the limit: values of the longest length."""
    word = "x" * (MAX_TEXT - 8)
    item = f"    - {word}\n"
    n = (MAX_FILE_BYTES - len(BASE)) // len(item) - 1
    text = BASE.replace("  references: [none, it is made up]\n", "  references:\n" + item * n)
    spec = parse(text, "t.yaml")
    assert len(spec.instruction.references) == n


@pytest.mark.parametrize(
    "nested",
    [
        "x: " + "[" * 40 + "]" * 40 + "\n",
        "x: " + "{a: " * 40 + "1" + "}" * 40 + "\n",
        "".join(" " * i + "a:\n" for i in range(40)) + " " * 40 + "b: 1\n",
        "".join(" " * i + "- \n" for i in range(0, 80, 2)),
        "x:\n" + "  [\n" * 30_000,
    ],
    ids=["flow-list", "flow-map", "block-map", "block-list", "unclosed-30000"],
)
def test_deep_nesting_is_refused_at_the_limit(nested):
    out = problems(nested)
    assert len(out) == 1 and out[0].endswith(f": nested deeper than the limit of {MAX_DEPTH} levels")


def test_nesting_at_the_limit_is_no_problem_of_its_own():
    out = problems("x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n")
    assert not any("nested deeper" in p for p in out)


def test_a_long_value_is_refused():
    folded = "\n".join(["    " + "y" * 99] * 41)  # 41 lines of 99 joined by spaces: 4099 characters
    text = BASE.replace("  title: Frobnicate Optimize", "  title: >-\n" + folded)
    assert problems(text) == [f"6:10: a value of 4099 characters is longer than the limit of {MAX_TEXT}"]
    ok = BASE.replace("  title: Frobnicate Optimize", "  title: >-\n" + "\n".join(["    " + "y" * 99] * 40))
    parse(ok, "t.yaml")


def test_lines_end_at_any_yaml_line_break():
    text = BASE + ("#" * 99 + "\n") * 50  # longer than one line may be
    for eol in ("\r\n", "\r"):
        parse(text.replace("\n", eol), "t.yaml")  # each line is short, however it ends


def test_a_long_line_is_refused():
    text = BASE.replace("  title: Frobnicate Optimize", "  title: " + "y" * MAX_LINE)
    assert problems(text) == [f"6:{MAX_LINE + 1}: line longer than the limit of {MAX_LINE} "
                              "characters (fold long text with '>-')"]  # fmt: skip


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("leaf: 0x7", "leaf: 18446744073709551616", "integer '18446744073709551616' does not fit 64 bits"),
        ("leaf: 0x7", "leaf: " + "9" * 4000, "does not fit 64 bits"),
        ("value: 0xff,", "value: -0x10000000000000000,", "does not fit 64 bits"),
        ("region_size: 2M", "region_size: " + "9" * 4000 + "G", "does not fit 64 bits"),
        ("region_size: 2M", "region_size: 16E", "size '16E' does not fit 64 bits"),
        ("entries: 512", "entries: 01000", "'01000' is octal in YAML 1.1 (512) but decimal in "
         "YAML 1.2: write 0o1000 or 0x200, or 1000 without the leading zero"),
        ("entries: 512", "entries: 8:32", "'8:32' is a base-60 number in YAML 1.1: write a plain "
         "number (or quote it for text)"),
        ("word: 18", "word: 0:18", "base-60"),
        ("retry: true}", "retry: yes}", "'yes' is a boolean only in YAML 1.1: write true or false "
         "(or quote it for text)"),
        ("retry: true}", "retry: Off}", "'Off' is a boolean only in YAML 1.1"),
        ("retry: true}", "retry: y}", "'y' is a boolean only in YAML 1.1"),
        ("width: 8", "width: 010", "is octal in YAML 1.1 (8)"),
        ("value: 0xff,", "value: -0_10,", "'-0_10' is octal in YAML 1.1 (-8) but decimal in YAML 1.2: "
         "write -0o10 or -0x8, or -10 without the leading zero"),
    ],
)
def test_values_that_do_not_fit_or_depend_on_the_yaml_version(old, new, message):
    assert BASE.count(old) == 1
    out = problems(BASE.replace(old, new))
    assert len(out) == 1 and message in out[0], out


def test_yaml_1_2_octal_is_an_integer_and_text_stays_text():
    spec = parse(BASE.replace("entries: 512", "entries: 0o1000")
                 .replace("title: Frobnicate Optimize", "title: yes")
                 .replace("when: the frob MSR is clear", "when: 10:30"), "t.yaml")  # fmt: skip
    assert spec.instruction.table.entries == 512
    assert spec.instruction.title == "yes"
    assert spec.instruction.privilege.faults[0].when == "10:30"
