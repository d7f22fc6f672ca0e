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


# --- an encoding is one x86 instruction ---------------------------------------

from codegen import x86  # noqa: E402
from tests.conftest import ISA, RMPOPT_YAML  # noqa: E402

RMPOPT_TEXT = RMPOPT_YAML.read_text()
RMPOPT_ENCODING = RMPOPT_TEXT[
    RMPOPT_TEXT.index("  encoding:\n") : RMPOPT_TEXT.index("  privilege:\n")
]


def with_encoding(pairs: list[tuple[int, str]], mnemonic: str = "rmpfoo") -> str:
    """rmpopt.yaml with another encoding (and mnemonic)."""
    enc = "  encoding:\n" + "".join(f"    - {{byte: {b:#04x}, role: {r}}}\n" for b, r in pairs)
    return RMPOPT_TEXT.replace(RMPOPT_ENCODING, enc).replace(
        "mnemonic: rmpopt", f"mnemonic: {mnemonic}"
    )


def test_64_bytes_of_shellcode_are_no_instruction(run_kgen, tmp_path):
    spec = tmp_path / "rmpfoo.yaml"
    spec.write_text(with_encoding([(b, "opcode") for b in bytes(range(0x40, 0x80))]))
    result = run_kgen("validate", spec)
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines[-1] == "kgen: 3 problems found"
    assert any(
        ": error: the encoding has 64 bytes; an x86 instruction has at most 15" in ln
        for ln in lines
    )
    assert any(": error: a second opcode byte 0x41 (and 62 more): an instruction has exactly one "
               "opcode byte" in ln for ln in lines)  # fmt: skip
    assert any(": error: the encoding has no escape byte" in ln for ln in lines)
    assert "ok (" not in result.output


@pytest.mark.parametrize("path", sorted(ISA.glob("*.yaml")), ids=lambda p: p.stem)
def test_each_bundled_encoding_is_one_instruction_or_unknown(path):
    (spec,) = load_all([path])
    data = bytes(b.byte for b in spec.instruction.encoding)
    assert x86.encoding_problem(data, spec.instruction.mnemonic) is None
    d = x86.decode(data)
    assert d.status == "invalid" or (d.exact and (d.mnemonic == spec.instruction.mnemonic
                                                  or d.ignored_prefixes))  # fmt: skip


@pytest.mark.parametrize("hexed, expected", [
    ("90" * 8, "byte 2 (0x90) follows a whole instruction: iced-x86 1.21.0 decodes 90 as nop"),
    ("0f05", "decodes 0F 05 as syscall (an instruction user mode may run), not frobopt"),
    ("cd80", "decodes CD 80 as int (an instruction user mode may run), not frobopt"),
    ("e801020304", "decodes E8 01 02 03 04 as call"),
    ("e801", "reads E8 01 as the start of a longer instruction (a 5-byte call when zero bytes"),
    ("0f71d0", "reads 0F 71 D0 as the start of a longer instruction (a 4-byte psrlw"),
    ("0f01d0" + "90" * 13, "byte 4 (0x90) follows a whole instruction"),
    ("0f01fc", "decodes 0F 01 FC as clzero (an instruction user mode may run), not frobopt"),
    ("0f01ff", "decodes 0F 01 FF as tlbsync (a privileged instruction), not frobopt"),
])  # fmt: skip
def test_the_decoder_rejects_handcrafted_bytes(hexed, expected):
    found = x86.encoding_problem(bytes.fromhex(hexed), "frobopt")
    assert found is not None and expected in found[1]


@pytest.mark.parametrize("hexed", ["f20f01fd", "660f01ee", "f20f01fc", "f30f01fe"])
def test_the_decoder_accepts_one_instruction_or_nothing_it_knows(hexed):
    assert x86.encoding_problem(bytes.fromhex(hexed), "rmpadjust") is None


@pytest.mark.parametrize("pairs, expected", [
    # handcrafted byte strings, each with roles as legal as they can be
    ([(0x90, "opcode")] * 8, ["the encoding has no escape byte", "a second opcode byte 0x90 (and 6 more)"]),
    ([(0x0F, "escape"), (0x05, "opcode")], ["decodes 0F 05 as syscall"]),
    ([(0xCD, "opcode"), (0x80, "immediate")], ["the encoding has no escape byte"]),
    ([(0xE8, "opcode")] + [(0x00, "immediate")] * 4, ["the encoding has no escape byte"]),
    ([(0x66, "prefix"), (0x0F, "escape"), (0x01, "opcode"), (0xEE, "modrm")]
     + [(0x00, "immediate")] * 12, ["the encoding has 16 bytes; an x86 instruction has at most 15"]),
    ([(0x0F, "escape"), (0x71, "opcode"), (0xD0, "modrm")], ["the start of a longer instruction"]),
    ([(0x0F, "escape"), (0x01, "opcode"), (0xD0, "modrm"), (0x90, "immediate")],
     ["byte 4 (0x90) follows a whole instruction"]),
    ([(0xF2, "prefix"), (0xF2, "prefix"), (0x0F, "escape"), (0x01, "opcode"), (0xFC, "modrm")],
     ["prefix 0xf2 repeats"]),
    ([(0x0F, "escape"), (0x3A, "escape"), (0x0F, "opcode"), (0xC0, "modrm")],
     ["the 0F 3A map takes a 1-byte immediate, and the encoding has none"]),
    ([(0x0F, "escape"), (0x38, "escape"), (0xF8, "opcode"), (0xC2, "modrm"), (1, "immediate")],
     ["the 0F 38 map takes no immediate"]),
    ([(0x0F, "escape"), (0x38, "opcode"), (0xC0, "modrm")], ["0x38 after 0F is an escape"]),
    ([(0x0F, "escape"), (0x05, "opcode"), (0xC0, "modrm")], ["opcode 0F 05 takes no ModRM byte"]),
    ([(0x0F, "escape"), (0x01, "opcode"), (0x45, "modrm")], ["ModRM 0x45: mod 01 needs an 8-bit"]),
    ([(0x0F, "escape"), (0x01, "opcode"), (0x05, "modrm")], ["rm 101 needs a 32-bit RIP-relative"]),
])  # fmt: skip
def test_handcrafted_encodings_fail_validation(pairs, expected):
    got = [p.split(": ", 1)[1] for p in problems(with_encoding(pairs))]
    assert len(got) == len(expected), got
    for message, want in zip(sorted(got), sorted(expected), strict=True):
        assert want in message, got


# --- limits and strict values -------------------------------------------------


@pytest.mark.parametrize(
    "old, new, where",
    [
        ("      description: Return code\n", '      description: ""\n', "43:20"),
        ("      description: Return code\n", "      description: '   '\n", "43:20"),
        ("  title: Frobnicate Optimize", '  title: ""', "6:10"),
        ("references: [none, it is made up]", "references: [none, '']", "81:22"),
    ],
)
def test_empty_text_is_refused(old, new, where):
    assert problems(BASE.replace(old, new)) == [f"{where}: text must not be empty"]


def test_empty_log_message_is_refused():
    text = BASE.replace("log_message: Attempt frobbing on range", "log_message: ' '")
    assert problems(text) == ["93:18: message must not be empty"]


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
    assert len(out) == 1 and out[0].endswith(
        f": nested deeper than the limit of {MAX_DEPTH} levels"
    )


def test_nesting_at_the_limit_is_no_problem_of_its_own():
    out = problems("x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n")
    assert not any("nested deeper" in p for p in out)


def test_a_long_value_is_refused():
    folded = "\n".join(["    " + "y" * 99] * 41)  # 41 lines of 99 joined by spaces: 4099 characters
    text = BASE.replace("  title: Frobnicate Optimize", "  title: >-\n" + folded)
    assert problems(text) == [
        f"6:10: a value of 4099 characters is longer than the limit of {MAX_TEXT}"
    ]
    ok = BASE.replace(
        "  title: Frobnicate Optimize", "  title: >-\n" + "\n".join(["    " + "y" * 99] * 40)
    )
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
        (
            "leaf: 0x7",
            "leaf: 18446744073709551616",
            "integer '18446744073709551616' does not fit 64 bits",
        ),
        ("leaf: 0x7", "leaf: " + "9" * 4000, "does not fit 64 bits"),
        ("value: 0xff,", "value: -0x10000000000000000,", "does not fit 64 bits"),
        ("region_size: 2M", "region_size: " + "9" * 4000 + "G", "does not fit 64 bits"),
        ("region_size: 2M", "region_size: 16E", "size '16E' does not fit 64 bits"),
        (
            "entries: 512",
            "entries: 01000",
            "'01000' is octal in YAML 1.1 (512) but decimal in "
            "YAML 1.2: write 0o1000 or 0x200, or 1000 without the leading zero",
        ),
        (
            "entries: 512",
            "entries: 8:32",
            "'8:32' is a base-60 number in YAML 1.1: write a plain number (or quote it for text)",
        ),
        ("word: 18", "word: 0:18", "base-60"),
        (
            "retry: true}",
            "retry: yes}",
            "'yes' is a boolean only in YAML 1.1: write true or false (or quote it for text)",
        ),
        ("retry: true}", "retry: Off}", "'Off' is a boolean only in YAML 1.1"),
        ("retry: true}", "retry: y}", "'y' is a boolean only in YAML 1.1"),
        ("width: 8", "width: 010", "is octal in YAML 1.1 (8)"),
        (
            "value: 0xff,",
            "value: -0_10,",
            "'-0_10' is octal in YAML 1.1 (-8) but decimal in YAML 1.2: "
            "write -0o10 or -0x8, or -10 without the leading zero",
        ),
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


def test_the_optional_sections_are_read_through_views_chosen_once():
    """A spec's helper, enum, table and sweep come as typed views with every section they
    need; asking a spec for a view of a section it lacks names what is missing."""
    from codegen.model import SectionMissing

    rmpopt, pvalidate = load_all([ROOT / "isa" / "rmpopt.yaml", ROOT / "isa" / "pvalidate.yaml"])
    sweep = rmpopt.as_sweep()
    assert (sweep.table, sweep.msr, sweep.cpuid, sweep.enable, sweep.helper) == (
        rmpopt.instruction.table, rmpopt.instruction.msr, rmpopt.instruction.cpuid,
        rmpopt.kernel.enable, rmpopt.kernel.helper)  # fmt: skip
    assert rmpopt.sweep_view is sweep  # built once
    assert rmpopt.as_enum().enum is rmpopt.kernel.enum
    assert pvalidate.sweep_view is None and pvalidate.helper_view is None
    with pytest.raises(SectionMissing, match=r"pvalidate\.yaml: a sweep needs kernel\.sweep"):
        pvalidate.as_sweep()
    no_enable = dataclasses.replace(rmpopt, kernel=dataclasses.replace(rmpopt.kernel, enable=None))
    with pytest.raises(SectionMissing, match="a sweep needs kernel.enable"):
        no_enable.as_sweep()
