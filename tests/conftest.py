"""Shared fixtures: the project root, the bundled spec, and a CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from codegen.cli import main
from codegen.spec import load

pytest_plugins = ["tests.ci_policy"]

# Modules whose tests take long: real kernel material, the mutant catalogue, fuzzing and
# whole-spec compares.  `make quick` leaves them out; `make test` runs everything.
SLOW_MODULES = {
    "test_kernel_checks", "test_kernel_reference", "test_mutants", "test_spec_fuzz",
    "test_validate_base", "test_compare", "test_compare_safety", "test_operand_placement",
    "test_install", "test_kernel_reference_612", "test_profile_flags", "test_kernel_tree",
    "test_tree_612", "test_tree_safety", "test_compare_cc",
}  # fmt: skip
# Single tests of the other modules that take seconds each (pytest --durations=30): hypothesis
# runs, real processes that wait, clang and compare runs.
SLOW_TESTS = {
    "test_sweep_rules_hold_on_random_machines", "test_validate_quiet_hides_the_notes_only",
    "test_table_entries_match_clangs_assembler", "test_comment_wrapping_is_textwraps",
    "test_render_is_byte_identical_every_run", "test_ctrl_c_exits_130_from_every_command",
    "test_compare_of_one_case_at_one_level_speaks_in_the_singular",
    "test_an_empty_parametrize_list_is_an_error_not_a_skip", "test_outside_ci_it_skips",
    "test_under_ci_a_missing_thing_fails",
}  # fmt: skip


def pytest_collection_modifyitems(items):
    for item in items:
        if (item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES
                or getattr(item, "originalname", item.name) in SLOW_TESTS):  # fmt: skip
            item.add_marker(pytest.mark.slow)


ROOT = Path(__file__).resolve().parent.parent
ISA = ROOT / "isa"
RMPOPT_YAML = ISA / "rmpopt.yaml"


@pytest.fixture(scope="session")
def rmpopt():
    return load(RMPOPT_YAML)


@pytest.fixture()
def run_kgen(monkeypatch):
    """Run the CLI in-process from the project root; returns click's Result."""

    def run(*args: str, cwd: Path = ROOT):
        monkeypatch.chdir(cwd)
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"kgen {' '.join(map(str, args))} crashed") from result.exception
        return result

    return run
