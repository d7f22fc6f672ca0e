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
    result = run_kgen("compare", "isa/pvalidate.yaml", "--cases", "1", "--opt=-O2")
    assert result.exit_code == 0, result.output
    assert ": ok: 1 case x 1 level (-O2), " in result.output


def test_check_counts_files_in_words(run_kgen, tmp_path):
    result = run_kgen("check", "isa/pvalidate.yaml", "--out", tmp_path)
    assert result.exit_code == 1
    assert "(s)" not in result.stderr
