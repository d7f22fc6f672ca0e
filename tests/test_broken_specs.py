"""The broken-spec corpus: one defect per file, each with the message it must produce."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.broken import regen

BROKEN = Path(regen.__file__).parent
CASES = sorted(BROKEN.glob("[0-9]*-*.yaml"))
DIAGNOSTIC = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>.+)$")


def expectations(path: Path) -> list[str]:
    header = path.read_bytes().split(b"\n")[1].decode()
    assert header.startswith("# expect: "), path
    return header.removeprefix("# expect: ").split(" | ")


def test_corpus_is_large_and_current():
    built = regen.build()
    assert len(built) >= 40
    on_disk = {p.name: p.read_bytes() for p in CASES}
    assert on_disk == built, "tests/broken is stale: run `make broken-specs`"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_broken_spec_reports_exactly_its_defect(case, run_kgen):
    rel = case.relative_to(regen.HERE.parent.parent)
    result = run_kgen("validate", rel)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("kgen: ") and "found" in lines[-1]
    problems = lines[:-1]
    for line in problems:
        assert DIAGNOSTIC.match(line), f"not path:line:col: message: {line!r}"
    got = [line.removeprefix(f"{rel}:").replace(" error: ", " ", 1) for line in problems]
    assert got == expectations(case)


def test_every_rule_family_is_in_the_corpus():
    stems = {p.stem.split("-", 1)[1].split("-")[0] for p in CASES}
    for family in ("yaml", "key", "type", "byte", "fcode", "size", "name", "text", "cstring"):
        assert family in stems, family


def test_cli_in_a_real_process_prints_no_traceback():
    """The installed entry point, not only the in-process runner, stays quiet."""
    for case in CASES[:3] + CASES[-2:]:
        proc = subprocess.run(
            [sys.executable, "-m", "codegen.cli", "validate", str(case)],
            capture_output=True,
            text=True,
            cwd=BROKEN.parent.parent,
        )
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        assert DIAGNOSTIC.match(proc.stderr.splitlines()[0])
