"""Conventions of the command-line tools kernel developers use: plurals, exit codes, colour."""

from __future__ import annotations

import pytest

from codegen.diagnostics import plural


@pytest.mark.parametrize("n, word, many, text", [
    (0, "file", None, "0 files"), (1, "file", None, "1 file"), (2, "file", None, "2 files"),
    (1, "entry", "entries", "1 entry"), (3, "entry", "entries", "3 entries"),
])  # fmt: skip
def test_plural(n, word, many, text):
    assert plural(n, word, many) == text


def test_sweep_on_one_cpu_speaks_in_the_singular(run_kgen):
    result = run_kgen("sweep", "isa/rmpopt.yaml", "--memory", "3T")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "one pass on 1 online CPU (1 core x 1 thread, spread numbering)" in out
    assert "  cross-CPU    none\n" in out
    assert "CPU 0: 2048 of 2048 regions" in out and "CPUs 0:" not in out and "CPUs none" not in out


def test_render_of_one_file_speaks_in_the_singular(run_kgen, tmp_path):
    result = run_kgen("render", "isa/pvalidate.yaml", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert f"rendered 1 file from 1 spec into {tmp_path}/ (1 changed)" in result.output


def test_compare_of_one_case_at_one_level_speaks_in_the_singular(run_kgen):
    result = run_kgen("compare", "isa/pvalidate.yaml", "--cases", "1", "--opt=-O2", "--cc", "clang")
    assert result.exit_code == 0, result.output
    assert ": ok: 1 case x 1 level (-O2) x clang, " in result.output


def test_check_counts_files_in_words(run_kgen, tmp_path):
    result = run_kgen("check", "isa/pvalidate.yaml", "--out", tmp_path)
    assert result.exit_code == 1
    assert "(s)" not in result.stderr


def test_an_impossible_machine_is_a_usage_error(run_kgen):
    result = run_kgen("sweep", "isa/rmpopt.yaml", "--min-pfn", "0x1000", "--max-pfn", "0x10")
    assert result.exit_code == 2 and "impossible machine" in result.stderr


def test_a_case_beyond_the_cases_is_a_usage_error(run_kgen):
    result = run_kgen("compare", "isa/pvalidate.yaml", "--cases", "3000", "--case", "5000")
    assert result.exit_code == 2
    assert "case 5000 does not exist: seed 1 has cases 0..2999" in result.stderr


def test_ctrl_c_exits_130_from_every_command(tmp_path):
    """A sweep blocked on a full pipe is interrupted: 130, as a shell reports SIGINT, not 1."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    proc = subprocess.Popen([sys.executable, "-m", "codegen.cli", "sweep", "isa/rmpopt.yaml", "--memory", "2T",
                             "--cores", "64", "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    try:
        time.sleep(3)  # loaded, and blocked writing the trace nobody reads yet
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert b"Traceback" not in err


@pytest.mark.parametrize("no_color, coloured", [(None, True), ("", True), ("1", False)])
def test_no_color_is_honoured(monkeypatch, tmp_path, no_color, coloured):
    """https://no-color.org: no ANSI colour when NO_COLOR is set and not empty, even on a terminal."""
    from click.testing import CliRunner

    from codegen.cli import main
    from tests.conftest import RMPOPT_YAML, ROOT

    spec = tmp_path / "rmpopt.yaml"
    spec.write_text(RMPOPT_YAML.read_text().replace("RMPOPT_FUNC", "RMPOPT_FN", 1))
    monkeypatch.chdir(ROOT)
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    result = CliRunner().invoke(
        main, ["validate", str(spec), "--base", str(RMPOPT_YAML)], color=True
    )
    assert "changes since" in result.output or "change since" in result.output, result.output
    assert ("\x1b[" in result.output) == coloured


def test_compare_shows_clicks_progress_bar_on_a_terminal_only(run_kgen, monkeypatch):
    import io

    import codegen.cli

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    monkeypatch.setattr(codegen.cli, "_progress_stream", lambda: tty)
    result = run_kgen("compare", "isa/pvalidate.yaml", "--cases", "5", "--opt=-O2")
    assert result.exit_code == 0, result.output
    bar = tty.getvalue()
    assert "isa/pvalidate.yaml" in bar and "100%" in bar, bar
    assert "\x1b[" not in result.output and "100%" not in result.output
    monkeypatch.setattr(codegen.cli, "_progress_stream", lambda: io.StringIO())  # not a terminal
    assert (
        "100%" not in run_kgen("compare", "isa/pvalidate.yaml", "--cases", "5", "--opt=-O2").stderr
    )


def test_validate_quiet_hides_the_notes_only(run_kgen):
    loud = run_kgen("validate", "isa/rmpopt.yaml")
    assert loud.exit_code == 0 and ": note: " in loud.output
    quiet = run_kgen("validate", "-q", "isa/rmpopt.yaml")
    assert quiet.exit_code == 0
    assert quiet.output.splitlines() == [
        line for line in loud.output.splitlines() if ": note: " not in line
    ]
    bad = run_kgen("validate", "-q", "tests/broken/_base.yaml", "isa/rmpopt.yaml")
    assert ": note: " not in bad.output


@pytest.mark.parametrize(
    "stem", ["psmash", "pvalidate", "rmpadjust", "rmpopt", "rmpread", "rmpupdate"]
)
def test_the_clzero_engine_message_is_only_for_bytes_that_are_clzero(stem):
    from codegen.host import HostCpu, choose_engine
    from codegen.spec import load
    from tests.conftest import ISA

    reason = choose_engine("auto", load(ISA / f"{stem}.yaml"), HostCpu("AuthenticAMD", True)).reason
    assert ("CLZERO" in reason) == (stem == "rmpopt"), reason


def test_compile_errors_point_at_the_generated_file_given(run_kgen, tmp_path):
    import shutil

    from tests.conftest import ROOT

    shutil.copytree(ROOT / "generated" / "pvalidate", tmp_path / "pvalidate")
    header = tmp_path / "pvalidate" / "arch" / "x86" / "include" / "asm" / "sev.h"
    lines = header.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("static inline"))
    lines.insert(at, "this is not C;\n")
    header.write_text("".join(lines))
    result = run_kgen(
        "compare", "isa/pvalidate.yaml", "--cases", "5", "--opt=-O2", "--generated", tmp_path
    )
    assert result.exit_code == 1
    assert f"{header}:{at + 1}:" in result.stderr, result.stderr
    assert "/gen/pvalidate/" not in result.stderr


def test_compare_json_is_one_object_with_its_specs(run_kgen):
    import json

    from codegen import __version__

    result = run_kgen(
        "compare", "isa/pvalidate.yaml", "--cases", "5", "--opt=-O2", "--seed", "7", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert isinstance(report, dict)
    assert report["kgen"] == __version__ and report["command"] == "compare" and report["ok"] is True
    assert (
        report["seed"] == 7 and report["compiler"].startswith("clang") and report["compiler_origin"]
    )
    (spec,) = report["specs"]
    assert spec["spec"] == "isa/pvalidate.yaml" and spec["engine"] in ("native", "emulator")
    assert spec["references"] == [] and spec["engine_reason"]


def test_validate_json_names_its_command(run_kgen):
    import json

    report = json.loads(run_kgen("validate", "--json", "isa/pvalidate.yaml").output)
    assert report["command"] == "validate" and report["ok"] is True and "kgen" in report


def test_shell_completion_is_documented_and_works():
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import ROOT

    assert 'eval "$(_KGEN_COMPLETE=bash_source kgen)"' in (ROOT / "README.md").read_text()
    kgen = Path(sys.executable).parent / "kgen"
    script = subprocess.run([kgen], env=dict(os.environ, _KGEN_COMPLETE="bash_source"), capture_output=True,
                            text=True, timeout=60).stdout  # fmt: skip
    assert "_kgen_completion" in script and "complete " in script
    env = dict(os.environ, _KGEN_COMPLETE="bash_complete", COMP_WORDS="kgen sw", COMP_CWORD="1")
    words = subprocess.run([kgen], env=env, capture_output=True, text=True, timeout=60).stdout
    assert "plain,sweep" in words


@pytest.fixture()
def failing_rule(monkeypatch):
    """A review rule every spec breaks, so that skipping it is seen."""
    from codegen import review

    monkeypatch.setattr(
        review, "RULES", [*review.RULES, review.Rule("always-fails", "test", lambda s, f: ["bad"])]
    )
    return "always-fails"


def test_a_review_rule_skipped_on_the_command_line(run_kgen, failing_rule):
    import json

    assert run_kgen("validate", "isa/pvalidate.yaml").exit_code == 1
    result = run_kgen("validate", "isa/pvalidate.yaml", "--skip-rule", failing_rule)
    assert result.exit_code == 0, result.output
    note = f"isa/pvalidate.yaml: note: review [{failing_rule}] skipped: --skip-rule on the command line"
    assert note in result.output
    report = json.loads(
        run_kgen("validate", "--json", "isa/pvalidate.yaml", "--skip-rule", failing_rule).output
    )
    assert report["ok"] and report["skipped"] == [
        {
            "path": "isa/pvalidate.yaml",
            "rule": failing_rule,
            "reason": "--skip-rule on the command line",
        }
    ]
    unknown = run_kgen("validate", "isa/pvalidate.yaml", "--skip-rule", "no-such-rule")
    assert unknown.exit_code == 2 and "no review rule 'no-such-rule'" in unknown.stderr


def test_a_review_rule_skipped_in_the_spec_with_its_reason(run_kgen, failing_rule, tmp_path):
    import json

    from tests.conftest import ISA

    text = (ISA / "pvalidate.yaml").read_text()
    spec = tmp_path / "pvalidate.yaml"
    spec.write_text(
        text
        + f"  review:\n    skip:\n      - rule: {failing_rule}\n        reason: checked by hand\n"
    )
    line = len(text.splitlines()) + 3
    result = run_kgen("validate", spec)
    assert result.exit_code == 0, result.output
    assert (
        f"{spec}:{line}:15: note: review [{failing_rule}] skipped: checked by hand" in result.output
    )
    assert ": note: " not in run_kgen("validate", "-q", spec).output
    report = json.loads(run_kgen("validate", "--json", spec).output)
    assert report["skipped"] == [
        {"path": str(spec), "rule": failing_rule, "reason": "checked by hand"}
    ]
    spec.write_text(spec.read_text().replace(f"rule: {failing_rule}", "rule: no-such-rule"))
    bad = run_kgen("validate", spec)
    assert bad.exit_code == 1
    assert f"{spec}:{line}:15: error: review [skip]: no review rule 'no-such-rule'" in bad.stderr


def test_an_impossible_machine_of_one_cpu_says_so_in_the_singular(run_kgen):
    result = run_kgen("sweep", "isa/rmpopt.yaml", "--memory", "4G", "--offline", "3")
    assert result.exit_code == 2 and "offline CPU 3 does not exist (1 CPU)" in result.stderr


def test_sizes_read_the_same_everywhere():
    """One home for a size in words: every report, patch and comment says 1 GB, 2 TB, 4 KB."""
    from codegen.diagnostics import size_text
    from codegen.render import f_human_size
    from tests.conftest import ROOT

    assert [size_text(n) for n in (1 << 30, 3 << 40, 4096, 2 << 20, 3000)] == \
        ["1 GB", "3 TB", "4 KB", "2 MB", "3000 bytes"]  # fmt: skip
    assert f_human_size(1 << 30) == "1 GB" and f_human_size(2 << 40) == "2 TB"
    sources = [p for p in (ROOT / "codegen").glob("*.py") if '(40, "TB")' in p.read_text()]
    assert [p.name for p in sources] == ["diagnostics.py"]


def test_a_mutation_score_of_one_mutant_speaks_in_the_singular():
    from codegen.mutate import Score

    one = Score()
    one.add("killed")
    assert one.text() == "100.0 % (1 killed of 1; 0 equivalent, 0 stillborn, 1 mutant)"
    one.add("stillborn")
    assert one.text().endswith(", 1 stillborn, 2 mutants)")


def test_the_command_line_does_not_import_the_mutation_enumerator():
    """Every command starts by importing codegen.cli: what only `kgen mutate` needs (its C
    tokenizer and regular expressions) is imported by that command, not by render or sweep."""
    import subprocess
    import sys

    code = "import sys, codegen.cli; print('codegen.mutate' in sys.modules, codegen.cli.MUTATION_OPERATORS)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("False ('relational',"), out.stdout + out.stderr
