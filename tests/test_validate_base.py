"""kgen validate --base: what a realistic edit changes, and whether it is ready."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RMPOPT_YAML, ROOT

TEXT = RMPOPT_YAML.read_text()


def edited(tmp_path, *replacements: tuple[str, str]):
    text = TEXT
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "rmpopt.yaml"
    path.write_text(text)
    return path


def run(run_kgen, path, *extra):
    return run_kgen("validate", path, "--base", RMPOPT_YAML, *extra)


def test_unchanged_tree_says_nothing_changed(run_kgen):
    result = run_kgen("validate", "isa/rmpopt.yaml", "--base", "HEAD")
    assert result.exit_code == 0, result.output
    assert "isa/rmpopt.yaml: nothing changed since HEAD:isa/rmpopt.yaml" in result.output


def test_git_of_a_hook_does_not_lead_validate_astray(run_kgen, monkeypatch):
    """A pre-commit hook runs kgen with git's GIT_DIR and GIT_INDEX_FILE set for the hook's own
    directory; the git kgen runs finds the spec's repository from the spec, not from them."""
    monkeypatch.setenv("GIT_DIR", ".git")  # relative, as git exports it to a hook at the top
    monkeypatch.setenv("GIT_INDEX_FILE", "/nonexistent/index")
    result = run_kgen("validate", "rmpopt.yaml", "--base", "HEAD", cwd=ROOT / "isa")
    assert result.exit_code == 0, result.output
    assert "nothing changed since HEAD:isa/rmpopt.yaml" in result.output


def test_a_bad_revision_is_a_clear_finding(run_kgen):
    result = run_kgen("validate", "isa/rmpopt.yaml", "--base", "no-such-rev")
    assert result.exit_code == 1
    assert ("isa/rmpopt.yaml: error: cannot read the base: 'no-such-rev' is neither a file nor a "
            "revision of the git tree at ") in result.stderr  # fmt: skip
    assert "fatal:" not in result.stderr  # git's own words are not kgen's message


def test_a_new_spec_at_the_base_says_so(run_kgen, tmp_path):
    """A spec the base revision does not have (a new instruction) gets what to do, not git's
    "exists on disk, but not in 'HEAD'"."""
    git = ["git", "-c", "user.name=kgen", "-c", "user.email=kgen@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "old.yaml").write_text("x: 1\n")
    subprocess.run([*git, "add", "old.yaml"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "old"], cwd=tmp_path, check=True)
    (tmp_path / "rmpopt.yaml").write_text(TEXT)
    result = run_kgen("validate", "rmpopt.yaml", "--base", "HEAD", cwd=tmp_path)
    assert result.exit_code == 1
    assert ("rmpopt.yaml: error: cannot read the base: rmpopt.yaml is not in HEAD: a new spec has "
            "no older version to compare with; validate it without --base") in result.stderr  # fmt: skip


def test_new_function_code(run_kgen, tmp_path):
    path = edited(tmp_path, ("        effect: read\n", "        effect: read\n"
                             "        description: Report in CF\n"
                             "      - name: reset_status\n        value: 2\n"
                             "        effect: read\n"))  # fmt: skip
    path.write_text(
        path.read_text().replace(
            "        description: Report in CF\n        description:", "        description:"
        )
    )
    result = run(run_kgen, path)
    assert result.exit_code == 0, result.output + result.stderr
    assert "  function codes\n    function code reset_status added (2)" in result.output
    assert "+\tRMPOPT_FUNC_RESET_STATUS = 0x2," in result.output


def test_renumbered_function_code(run_kgen, tmp_path):
    path = edited(tmp_path, ("        value: 1\n", "        value: 2\n"))
    result = run(run_kgen, path)
    assert result.exit_code == 0
    assert "function code report_status renumbered 1 -> 2" in result.output
    assert "-\tRMPOPT_FUNC_REPORT_STATUS = 0x1," in result.output
    assert "+\tRMPOPT_FUNC_REPORT_STATUS = 0x2," in result.output


def test_prefix_changed_into_a_colliding_one(run_kgen, tmp_path):
    path = edited(tmp_path, ("{byte: 0xf2, role: prefix}", "{byte: 0xf3, role: prefix}"))
    result = run(run_kgen, path)
    assert result.exit_code == 1
    assert "  encoding\n    instruction.encoding[0].byte: 0xf2 -> 0xf3" in result.output
    assert "collides with rmpchkd" in result.stderr
    assert '+\tasm volatile(".byte 0xf3, 0x0f, 0x01, 0xfc"' in result.output


def test_regions_of_2m_instead_of_1g(run_kgen, tmp_path):
    path = edited(
        tmp_path,
        ("    region_size: 1G", "    region_size: 2M"),
        ("    coverage: 2T", "    coverage: 4G"),
        ("      low_bit: 30", "      low_bit: 21"),
    )
    result = run(run_kgen, path)
    assert result.exit_code == 0, result.stderr
    out = result.output
    assert "  region size and coverage\n" in out and "instruction.table.region_size" in out
    assert "  CPUID and MSR\n    instruction.msr.base.low_bit: 0x1e -> 0x15" in out
    assert "64 GB, 4 cores: regions swept 64 -> 2048" in out
    assert "+\tu64 rax = ALIGN_DOWN(pa, SZ_2M);" in out


def test_coverage_of_4t_instead_of_2t(run_kgen, tmp_path):
    path = edited(
        tmp_path,
        ("    entries: 2048", "    entries: 4096"),
        ("    coverage: 2T", "    coverage: 4T"),
    )
    result = run(run_kgen, path)
    assert result.exit_code == 0
    out = result.output
    assert "3 TB, 8 cores x 2 threads: regions swept 2048 -> 3072" in out
    assert "3 TB, 8 cores x 2 threads: memory above the cap 1 TB -> none" in out
    assert "+\tif (pa_end - pa_start > SZ_4T)\n" in out
    assert "+\t\tpa_end = pa_start + SZ_4T;\n" in out


def test_renamed_enum(run_kgen, tmp_path):
    path = edited(tmp_path, ("    name: rmpopt_function", "    name: rmpopt_rcx"))
    result = run(run_kgen, path)
    assert result.exit_code == 0
    assert (
        "  kernel names\n    kernel.enum.name: 'rmpopt_function' -> 'rmpopt_rcx'" in result.output
    )
    assert "+enum rmpopt_rcx {" in result.output


def test_cf_meaning_inverted(run_kgen, tmp_path):
    path = edited(
        tmp_path,
        (
            "Set when the region is optimized, so RMP checks are skipped for it",
            "Set when the region is not optimized, so RMP checks still apply",
        ),
    )
    result = run(run_kgen, path)
    assert result.exit_code == 0
    assert "  output semantics\n    instruction.outputs[optimized].description:" in result.output
    assert "+ * Output: RFLAGS.CF, set when the region is not optimized" in result.output


def test_removed_operand_is_not_ready(run_kgen, tmp_path):
    path = edited(
        tmp_path,
        (
            "    - register: rcx\n      name: op_type\n      kind: function-code\n"
            "      type: u64\n      description: Function code\n",
            "",
        ),
    )
    result = run(run_kgen, path)
    assert result.exit_code == 1
    assert "'rcx' is not one of the inputs" in result.stderr


def test_json_report(run_kgen, tmp_path):
    path = edited(tmp_path, ("        value: 1\n", "        value: 2\n"))
    result = run(run_kgen, path, "--json")
    assert result.exit_code == 0
    report = json.loads(result.output)
    (change,) = report["changes"]
    assert change["base"] == str(RMPOPT_YAML) and report["ok"] is True
    assert change["changes"] == [{"group": "function codes",
                                  "message": "function code report_status renumbered 1 -> 2",
                                  "where": f"{path}:53"}]  # fmt: skip
    assert "RMPOPT_FUNC_REPORT_STATUS = 0x2" in change["diff"]


def test_the_whole_gate_with_compare(run_kgen, tmp_path):
    path = edited(
        tmp_path,
        ("    entries: 2048", "    entries: 4096"),
        ("    coverage: 2T", "    coverage: 4T"),
    )
    result = run(run_kgen, path, "--compare", "--cases", "80")
    assert result.exit_code == 0, result.output + result.stderr
    assert ": ok: 80 cases x 3 levels" in result.output


def test_a_revision_is_never_an_option_to_git(run_kgen, tmp_path):
    """--base=--output=PATH made `git show` write PATH."""
    target = tmp_path / "written"
    result = run_kgen("validate", "isa/rmpopt.yaml", f"--base=--output={target}")
    assert result.exit_code == 2
    assert "Invalid value for '--base'" in result.output and "starts with '-'" in result.output
    assert not target.exists()
    assert not list(tmp_path.iterdir())


def test_an_empty_base_is_a_usage_error(run_kgen):
    result = run_kgen("validate", "isa/rmpopt.yaml", "--base", "")
    assert result.exit_code == 2 and "Invalid value for '--base'" in result.output


def test_a_base_file_is_read_as_a_spec_is(run_kgen, tmp_path):
    bad = tmp_path / "base.yaml"
    bad.write_bytes(TEXT.encode()[:100] + b"\xff" + TEXT.encode()[100:])
    result = run(run_kgen, "isa/rmpopt.yaml")  # sanity: a good base
    assert result.exit_code == 0, result.output
    result = run_kgen("validate", "isa/rmpopt.yaml", "--base", bad)
    assert result.exit_code == 1
    line = TEXT[:100].count("\n") + 1
    col = 100 - TEXT[:100].rfind("\n")
    assert f"{bad}:{line}:{col}: error: file is not valid UTF-8" in result.stderr
    big = tmp_path / "big.yaml"
    big.write_text(TEXT + "#\n" * (1 << 17))
    result = run_kgen("validate", "isa/rmpopt.yaml", "--base", big)
    assert result.exit_code == 1 and "larger than the limit" in result.stderr


def test_a_device_as_base_is_not_read(run_kgen):
    result = run_kgen("validate", "isa/rmpopt.yaml", "--base", "/dev/zero")
    assert result.exit_code == 1 and "/dev/zero: error: not a regular file" in result.stderr


def test_a_base_revision_is_held_to_the_limits_of_a_file(run_kgen, tmp_path):
    """The blob git shows is read as a file is: at most the limit, and UTF-8."""
    git = ["git", "-c", "user.email=k@example.org", "-c", "user.name=k"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    spec = tmp_path / "rmpopt.yaml"
    for name, data in (
        ("big", TEXT.encode() + b"#\n" * (1 << 17)),
        ("bad", b"\xff\n" + TEXT.encode()),
    ):
        spec.write_bytes(data)
        subprocess.run([*git, "add", "rmpopt.yaml"], cwd=tmp_path, check=True)
        subprocess.run([*git, "commit", "-qm", name], cwd=tmp_path, check=True)
    spec.write_text(TEXT)
    result = run_kgen("validate", spec, "--base", "HEAD~1")
    assert result.exit_code == 1
    assert "HEAD~1:rmpopt.yaml: error: file is larger than the limit" in result.stderr
    result = run_kgen("validate", spec, "--base", "HEAD")
    assert result.exit_code == 1
    assert "HEAD:rmpopt.yaml:1:1: error: file is not valid UTF-8" in result.stderr


def test_compare_runs_on_every_spec_validated(run_kgen):
    """A spec without a sweep was skipped, and the gate still said ok."""
    result = run_kgen(
        "validate", "isa/pvalidate.yaml", "isa/rmpopt.yaml", "--compare", "--cases", "20"
    )
    assert result.exit_code == 0, result.output + result.stderr
    for path in ("isa/pvalidate.yaml", "isa/rmpopt.yaml"):
        # with the compilers compare uses by default (it compared with clang alone)
        assert f"{path}: ok: 20 cases x 3 levels (-O0 -O2 -Os) x clang and gcc" in result.output


def test_compare_of_a_helper_the_harness_cannot_run_is_a_finding(run_kgen, tmp_path):
    path = tmp_path / "pvalidate.yaml"
    text = (RMPOPT_YAML.parent / "pvalidate.yaml").read_text()
    assert text.count("register: rdx") == 1
    path.write_text(text.replace("register: rdx", "register: rsi"))
    result = run_kgen("validate", path, "--compare", "--cases", "20")
    assert result.exit_code == 1, result.output + result.stderr
    assert f"kgen: {path}: error: not compared: the harness cannot run this helper" in result.stderr


def _project(tmp_path, run_kgen):
    """A project with isa/rmpopt.yaml and its rendered generated/, as kgen expects them."""
    (tmp_path / "isa").mkdir()
    (tmp_path / "isa" / "rmpopt.yaml").write_text(TEXT)
    (tmp_path / "base.yaml").write_text(TEXT)
    assert run_kgen("render", "isa/rmpopt.yaml", cwd=tmp_path).exit_code == 0
    return tmp_path


def test_a_change_without_its_render_is_not_ready(run_kgen, tmp_path):
    """validate --base said ready while `kgen check` failed."""
    root = _project(tmp_path, run_kgen)
    spec = root / "isa" / "rmpopt.yaml"
    spec.write_text(TEXT.replace("        value: 1\n", "        value: 2\n"))
    assert run_kgen("check", "isa/rmpopt.yaml", cwd=root).exit_code == 1
    result = run_kgen("validate", "isa/rmpopt.yaml", "--base", "base.yaml", cwd=root)
    assert result.exit_code == 1, result.output
    assert ("isa/rmpopt.yaml: error: generated/rmpopt/arch/x86/include/asm/special_insns.h is out "
            "of date with the spec; run `kgen render`") in result.stderr  # fmt: skip
    assert run_kgen("render", "isa/rmpopt.yaml", cwd=root).exit_code == 0
    result = run_kgen("validate", "isa/rmpopt.yaml", "--base", "base.yaml", "--json", cwd=root)
    assert result.exit_code == 0, result.output
    (change,) = json.loads(result.output)["changes"]
    assert change["generated"] == {"out": "generated", "checked": True, "problems": []}


def test_a_hand_edited_generated_file_is_not_ready(run_kgen, tmp_path):
    root = _project(tmp_path, run_kgen)
    out = root / "elsewhere"
    (root / "generated").rename(out)
    header = out / "rmpopt" / "arch" / "x86" / "include" / "asm" / "special_insns.h"
    header.write_text(header.read_text().replace("0x1,", "0x3,"))
    result = run_kgen("validate", "isa/rmpopt.yaml", "--base", "base.yaml", cwd=root)
    assert (
        result.exit_code == 0
        and "note: generated files not checked: no directory generated/" in result.output
    )
    result = run_kgen("validate", "isa/rmpopt.yaml", "--base", "base.yaml", "--out", out, cwd=root)
    assert result.exit_code == 1
    assert f"error: {header} is out of date with the spec" in result.stderr


def _rsi_spec(tmp_path) -> Path:
    """PVALIDATE with an input the harness cannot pass: a spec compare must refuse."""
    path = tmp_path / "pvalidate.yaml"
    text = (RMPOPT_YAML.parent / "pvalidate.yaml").read_text()
    path.write_text(text.replace("register: rdx", "register: rsi"))
    return path


@pytest.mark.parametrize("command", ["compare", "validate"])
def test_a_refused_spec_still_gives_one_json_object(run_kgen, tmp_path, command):
    """--json prints one object whatever happens: the specs compared before the one refused,
    ok false, and the refusal (it printed nothing at all, losing the passing spec's result)."""
    bad = _rsi_spec(tmp_path)
    args = ("--compare",) if command == "validate" else ()
    result = run_kgen(command, "isa/psmash.yaml", bad, *args, "--cases", "20", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["command"] == command and report["ok"] is False
    compared = report["compare"] if command == "validate" else report
    assert [s["spec"] for s in compared["specs"]] == ["isa/psmash.yaml"]
    assert compared["specs"][0]["ok"] is True and compared["ok"] is False
    assert compared["error"]["spec"] == str(bad)
    assert "the harness cannot run this helper" in compared["error"]["message"]
    if command == "compare":  # as without --json; validate --json reports in the object only
        assert "the harness cannot run this helper" in result.stderr


def test_mutate_refuses_a_spec_the_harness_cannot_run(run_kgen, tmp_path):
    """It ran the unmutated code and reported the harness's KeyError as the code failing."""
    bad = _rsi_spec(tmp_path)
    result = run_kgen("mutate", bad, "--sample", "2")
    assert result.exit_code == 1
    assert result.stderr == (f"kgen: {bad}: error: not mutated: the harness cannot run this helper: "
                             "input validate is in RSI; the harness passes RAX, RCX and RDX\n")  # fmt: skip


def test_a_section_removed_is_said_leaf_by_leaf_not_added_as_none(run_kgen):
    """PSMASH -> RMPADJUST drops kernel.out_of_line: it read 'kernel.out_of_line added: none'."""
    result = run_kgen("validate", "-q", "isa/rmpadjust.yaml", "--base", "isa/psmash.yaml")
    assert "kernel.out_of_line.name removed (was 'psmash') (isa/psmash.yaml:" in result.output
    assert "added: none" not in result.output and "(was none)" not in result.output
