"""The command contract: help, version, exit codes, validate and schema."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from codegen import __version__
from tests.broken.regen import HERE as BROKEN
from tests.conftest import RMPOPT_YAML


def test_help_lists_the_commands(run_kgen):
    result = run_kgen("--help")
    assert result.exit_code == 0
    for command in ("validate", "schema"):
        assert command in result.output


def test_version(run_kgen):
    result = run_kgen("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_validate_bundled_spec(run_kgen):
    result = run_kgen("validate", "isa/rmpopt.yaml")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("isa/rmpopt.yaml: ok (rmpopt:")
    assert "note: without its F2 prefix, rmpopt is clzero" in result.output


def test_validate_defaults_to_every_bundled_spec(run_kgen):
    result = run_kgen("validate")
    assert result.exit_code == 0
    assert "isa/rmpopt.yaml: ok" in result.output


def test_validate_without_specs_outside_the_project_is_a_usage_error(run_kgen, tmp_path):
    result = run_kgen("validate", cwd=tmp_path)
    assert result.exit_code == 2
    assert "no spec files given" in result.stderr


@pytest.mark.parametrize("args", [["no-such-command"], ["validate", "--no-such-option"]])
def test_usage_errors_exit_2(run_kgen, args):
    assert run_kgen(*args).exit_code == 2


@pytest.mark.parametrize("command", ["validate", "render", "check", "compare", "sweep"])
def test_a_missing_spec_file_is_a_usage_error(run_kgen, command):
    result = run_kgen(command, "isa/nope.yaml")
    assert result.exit_code == 2
    assert "no such file: isa/nope.yaml" in result.stderr and "Traceback" not in result.stderr


def test_validate_json_report(run_kgen):
    bad = sorted(BROKEN.glob("*-cpuid-bit-32.yaml"))[0]
    result = run_kgen("validate", "--json", "isa/rmpopt.yaml", bad)
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False
    (problem,) = report["problems"]
    assert problem["path"] == str(bad) and problem["line"] > 0 and problem["col"] > 0
    good = json.loads(run_kgen("validate", "--json", "isa/rmpopt.yaml").output)
    assert good == {"kgen": __version__, "command": "validate", "ok": True,
                    "specs": [{"path": "isa/rmpopt.yaml", "mnemonic": "rmpopt"}],
                    "problems": [], "review": [], "skipped": [], "notes": good["notes"]}  # fmt: skip
    messages = [n["message"] for n in good["notes"]]
    assert messages[0].startswith("without its F2 prefix, rmpopt is clzero")
    assert "does not know 'rmpopt'" in messages[1]  # no assembler knows it yet
    assert "iced-x86 1.21.0 reads F2 0F 01 FC as clzero" in messages[2]  # nor does iced
    assert len(messages) == 3 and all(n["path"] == "isa/rmpopt.yaml" for n in good["notes"])


def test_validate_applies_the_review_rules(run_kgen, monkeypatch, tmp_path):
    import shutil

    from codegen import render

    broken = tmp_path / "templates"
    shutil.copytree(render.TEMPLATES, broken)
    sweep = broken / "sweep.c.j2"
    sweep.write_text(sweep.read_text().replace("\tpa_end   = ALIGN(", "\tpa_end = ALIGN("))
    monkeypatch.setattr(
        render.render_spec, "__defaults__", (broken, *render.render_spec.__defaults__[1:])
    )
    result = run_kgen("validate", "isa/rmpopt.yaml")
    assert result.exit_code == 1
    assert "isa/rmpopt.yaml: error: review [aligned-range]:" in result.stderr


@pytest.fixture(scope="module")
def schema():
    from codegen.jsonschema import spec_schema

    s = spec_schema()
    jsonschema.Draft202012Validator.check_schema(s)
    return s


def test_schema_command_prints_the_schema(run_kgen, schema):
    result = run_kgen("schema")
    assert result.exit_code == 0
    assert json.loads(result.output) == schema


def test_schema_accepts_the_bundled_spec_and_the_base(schema):
    for path in (RMPOPT_YAML, BROKEN / "_base.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


STRUCTURAL = [
    "key-unknown-top", "key-unknown-nested", "key-missing-vendor", "type-int-is-string",
    "type-int-is-bool", "type-list-is-scalar", "type-mapping-is-int", "type-bad-width",
    "literal-vendor", "literal-role-typo", "literal-format-2", "byte-too-large", "byte-negative",
    "size-bad-unit", "cpuid-bit-32", "msr-number-too-large", "name-not-identifier",
    "name-c-keyword", "name-bad-prefix", "text-closes-comment", "cstring-quote",
    "cstring-percent", "path-dotdot", "delay-out-of-range", "text-trigraph", "cstring-trigraph",
]  # fmt: skip


@pytest.mark.parametrize("stem", STRUCTURAL)
def test_schema_rejects_what_the_loader_rejects_per_value(schema, stem):
    """Per-value rules live in both the loader and the schema; they must agree."""
    (path,) = BROKEN.glob(f"[0-9]*-{stem}.yaml")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_pre_commit_hooks_run_real_commands():
    from codegen.cli import main
    from tests.conftest import ROOT

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert {h["id"] for h in hooks} == {"kgen-validate", "kgen-check"}
    for hook in hooks:
        program, command = hook["entry"].split()
        assert program == "kgen" and command in main.commands
        assert hook["language"] == "python"


@pytest.mark.parametrize(
    "args",
    [
        ["compare", "--cases", "1000001"],
        ["compare", "--seed", "-1"],
        ["compare", "--seed", str(1 << 64)],
        ["compare", "--case", "1000000"],
        ["validate", "--cases", "0"],
        ["validate", "--cases", "9" * 5000],
    ],
)
def test_numeric_options_have_ranges(run_kgen, args):
    result = run_kgen(*args)
    assert result.exit_code == 2 and "Invalid value" in result.output


def test_a_helper_that_finds_a_problem_raises_for_its_command():
    """load_specs reports the problems and raises click's Exit, which the command ends with,
    instead of ending the process under its caller."""
    import click

    from codegen import cli

    with pytest.raises(click.exceptions.Exit) as raised:
        cli.load_specs((str(BROKEN / "49-cpuid-bit-32.yaml"),))
    assert raised.value.exit_code == 1


def test_only_commands_exit():
    """No helper of cli.py calls sys.exit: the commands (click's main.command()) decide how
    the process ends, and a helper raises."""
    import ast

    from tests.conftest import ROOT

    tree = ast.parse((ROOT / "codegen" / "cli.py").read_text())
    outside = []
    for top in tree.body:
        commands = isinstance(top, ast.FunctionDef) and any(
            isinstance(d, ast.Call) and ast.unparse(d.func) == "main.command"
            for d in top.decorator_list
        )
        for node in ast.walk(top):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "sys.exit" and not commands:
                outside.append(f"{getattr(top, 'name', '?')}:{node.lineno}")
    assert outside == []
