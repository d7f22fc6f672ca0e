"""CI=true turns a skip for want of an installable thing into a failure."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

SAMPLE = """
import pytest

def test_needs_material():
    pytest.skip("no kbuild tree: apt-get failed")

def test_depends_on_the_cpu():
    pytest.skip("host: this CPU has no CLZERO")

@pytest.mark.skipif(True, reason="no checkpatch.pl")
def test_marked():
    pass
"""


def run(tmp_path, ci: str | None):
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.ci_policy", "-p", "no:cacheprovider",
         str(tmp_path / "test_sample.py")],
        capture_output=True, text=True, cwd=tmp_path, env=env, check=False,
    )  # fmt: skip


def test_under_ci_a_missing_thing_fails(tmp_path):
    proc = run(tmp_path, "true")
    assert proc.returncode == 1, proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert "1 failed" in last and "1 skipped" in last and "1 error" in last, last
    assert "CI=true: this test would have skipped" in proc.stdout


def test_outside_ci_it_skips(tmp_path):
    proc = run(tmp_path, None)
    assert proc.returncode == 0, proc.stdout
    assert "3 skipped" in proc.stdout.strip().splitlines()[-1]


def test_an_empty_parametrize_list_is_an_error_not_a_skip(tmp_path):
    """A glob that finds nothing would otherwise leave a parametrized test silently skipped."""
    (tmp_path / "test_empty.py").write_text(
        "import pytest\n\n@pytest.mark.parametrize('spec', [])\ndef test_each(spec):\n    pass\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
         "-p", "no:cacheprovider", str(tmp_path / "test_empty.py")],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "Empty parameter set" in proc.stdout, proc.stdout


def test_every_test_marked_slow_by_name_exists():
    """A renamed test would silently come back into `make quick`: the list names real ones."""
    from tests.conftest import SLOW_MODULES, SLOW_TESTS

    sources = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert [t for t in sorted(SLOW_TESTS) if f"def {t}(" not in sources] == []
    assert [m for m in sorted(SLOW_MODULES) if not (ROOT / "tests" / f"{m}.py").is_file()] == []
