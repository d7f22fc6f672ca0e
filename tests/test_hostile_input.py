"""Specs that load but that kgen cannot turn into kernel text, and text that git's mail tools
would read as something else: one message and exit status 1, or text that says what the spec
says, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from codegen.cli import main
from tests.conftest import ISA, ROOT

MINI = ROOT / "tests" / "minitree"


def project(tmp_path: Path, edit=None) -> Path:
    """A copy of the bundled specs, rmpopt.yaml passed through ``edit``; returns its isa/."""
    isa = tmp_path / "isa"
    shutil.copytree(ISA, isa)
    if edit is not None:
        spec = isa / "rmpopt.yaml"
        spec.write_text(edit(spec.read_text()))
    return isa


def long_title(text: str) -> str:
    # loads (a title may run to 4096 characters) but makes a line of cpufeatures.h too long
    return text.replace("title: RMP Optimize", "title: " + "RMP Optimize " * 8, 1)


@pytest.mark.parametrize("command", [
    ["compare", "--cases", "2", "--cc", "clang", "--opt=-O0"],
    ["mutate", "--sample", "1"],
    ["apply", "--tree", "TREE"],
    ["check", "--tree", "TREE"],
    ["patch", "--tree", "TREE", "-o", "OUT"],
    ["render", "--out", "OUT"],
])  # fmt: skip
def test_a_spec_that_cannot_be_rendered_is_one_message_for_every_command(tmp_path, command):
    isa = project(tmp_path, long_title)
    assert "RMP Optimize RMP" in (isa / "rmpopt.yaml").read_text()
    tree = tmp_path / "linux"
    shutil.copytree(MINI, tree)
    args = [{"TREE": str(tree), "OUT": str(tmp_path / "out")}.get(a, a) for a in command]
    result = CliRunner().invoke(main, [*args, str(isa / "rmpopt.yaml")])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert f"{isa / 'rmpopt.yaml'}: error: cannot render: " in result.output, result.output
    assert "line longer than 100 columns" in result.output
