"""ruff and mypy, as configured in pyproject.toml, pass on the tree, fail on a known
violation, and run in `make test` before the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
PYPROJECT = ROOT / "pyproject.toml"


def run(*cmd: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


def ruff(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return run(BIN / "ruff", "check", "--no-cache", *args, cwd=cwd)


def mypy(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return run(BIN / "mypy", *args, cwd=cwd)


def test_ruff_finds_nothing_in_the_tree():
    proc = ruff("codegen", "tests", "benchmarks")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_tree_is_as_ruff_format_writes_it(tmp_path):
    proc = run(BIN / "ruff", "format", "--check", "--no-cache", "codegen", "tests", "benchmarks")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # and the check fails on a file the formatter would change
    bad = tmp_path / "bad.py"
    bad.write_text("x = {  'a':1 }\n")
    proc = run(
        BIN / "ruff", "format", "--check", "--no-cache", "--config", PYPROJECT, bad, cwd=tmp_path
    )
    assert proc.returncode == 1 and "1 file would be reformatted" in proc.stdout, (
        proc.stdout + proc.stderr
    )


def test_mypy_finds_nothing_in_codegen():
    """In the project's cache (.mypy_cache), which `make lint` fills just before the suite:
    mypy reuses a module's entry only while the module's hash and the options match, so a
    warm run finds what a cold one finds, in a second instead of five."""
    proc = mypy()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout


# What the project's configuration adds to each tool's defaults: ruff's defaults select
# neither B (zip without strict=) nor UP nor I, and mypy's do not check the body of an
# unannotated function.  A violation of each must fail with the project's settings.
RUFF_VIOLATIONS = {
    "B905": "def pairs(a, b):\n    return list(zip(a, b))\n",
    "UP035": "from typing import Iterable\n\n\ndef first(x: Iterable[int]) -> int:\n    return next(iter(x))\n",
    "F401": "import os\n",
    "E501": f"X = {'1 + ' * 40}1\n",
}


def test_ruff_fails_on_each_kind_of_violation(tmp_path):
    for code, text in RUFF_VIOLATIONS.items():
        bad = tmp_path / f"bad_{code.lower()}.py"
        bad.write_text(text)
        proc = ruff("--config", PYPROJECT, bad, cwd=tmp_path)
        assert proc.returncode == 1 and code in proc.stdout, (code, proc.stdout, proc.stderr)


def test_mypy_fails_on_an_optional_section_read_without_a_check(tmp_path):
    """The defect mypy is here for: a section that may be absent, read as if present, in a
    function without annotations (checked only because of check_untyped_defs)."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from codegen.model import Spec\n\n\n"
        "def region(spec: Spec) -> int:\n"
        "    return spec.instruction.table.region_size\n\n\n"
        "def untyped():\n"
        "    x: int = 'not a number'\n"
        "    return x\n"
    )
    proc = mypy("--config-file", PYPROJECT, "--cache-dir", tmp_path / "cache", bad)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'Item "None" of "Table | None" has no attribute "region_size"' in proc.stdout
    assert 'Incompatible types in assignment (expression has type "str", variable has type "int")' \
        in proc.stdout  # fmt: skip


def test_make_test_runs_lint_and_types_before_the_suite():
    proc = run("make", "-n", "test")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    at = {word: next(n for n, line in enumerate(lines) if word in line)
          for word in ("ruff check", "ruff format --check", "/mypy", "pytest")}  # fmt: skip
    assert max(at["ruff check"], at["ruff format --check"], at["/mypy"]) < at["pytest"], proc.stdout
