"""CI=true turns a skip for want of an installable thing into a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

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


def test_every_test_timed_for_the_order_exists():
    """A renamed long test would silently drop to the end of the run: the table names real ones."""
    from tests.conftest import LONGEST

    missing = []
    for key in LONGEST:
        module, name = key.split("::")
        path = ROOT / "tests" / f"{module}.py"
        if not path.is_file() or f"def {name}(" not in path.read_text():
            missing.append(key)
    assert missing == []


class _Item:
    """What tests/conftest.py's collection hook reads of a pytest item."""

    def __init__(self, module: str, name: str, fixtures=(), slow=False):
        self.module = SimpleNamespace(__name__=f"tests.{module}")
        self.originalname = self.name = name
        self.nodeid = f"tests/{module}.py::{name}"
        self.fixturenames = ["tmp_path", *fixtures]
        self.markers = ["slow"] if slow else []

    def add_marker(self, marker):
        self.markers.append(marker.name if hasattr(marker, "name") else marker)

    def get_closest_marker(self, name):
        return name if name in self.markers else None


def test_the_longest_tests_go_first_and_a_shared_module_s_tests_together():
    from tests.conftest import LONGEST, pytest_collection_modifyitems

    longest = max(LONGEST, key=LONGEST.get).split("::")
    items = [
        _Item("test_a", "test_quick"),
        _Item("test_tree_612", "test_x"),
        _Item("test_b", "test_other_quick"),
        _Item(*longest),
        _Item("test_tree_612", "test_y"),
        _Item("test_c", "test_slow_one", slow=True),
    ]
    pytest_collection_modifyitems(items)
    # the two tests of test_tree_612 (a slow module) weigh a slow test each: together more
    # than the one slow test, and kept together
    assert [i.name for i in items] == [longest[1], "test_x", "test_y", "test_slow_one", "test_quick",
                                       "test_other_quick"]  # fmt: skip


def test_a_shared_module_is_one_unit_of_work_for_xdist():
    from xdist.scheduler import LoadScopeScheduling

    from tests.conftest import SHARED_MODULES, pytest_xdist_make_scheduler

    options = {"dist": "loadgroup", "tx": ["popen"] * 2, "numprocesses": 2}
    config = SimpleNamespace(
        getvalue=options.get, getoption=options.get, option=SimpleNamespace(**options)
    )
    sched = pytest_xdist_make_scheduler(config, None)
    assert isinstance(sched, LoadScopeScheduling)
    shared = sorted(SHARED_MODULES)[0]
    split = sched._split_scope
    assert split(f"tests/{shared}.py::test_x[gcc]") == split(f"tests/{shared}.py::test_y") == shared
    assert split("tests/test_cli.py::test_a") != split("tests/test_cli.py::test_b")
    other = SimpleNamespace(getvalue={"dist": "load"}.get)
    assert pytest_xdist_make_scheduler(other, None) is None
