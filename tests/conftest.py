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


# The longest tests, each with about the seconds one of its items takes under `make test`
# (pytest --durations on 2 cores; only their order matters).  They run first, longest
# first, so that the two workers finish together instead of one waiting for a long test
# picked up at the end.  test_ci_policy.py checks that each name is a test.
LONGEST = {
    "test_compare_safety::test_a_worker_running_emulated_jobs_stays_bounded": 60,
    "test_tree_612::test_the_series_applies": 45,  # sets up the module's tree: the step builds
    "test_mutate::test_a_fixed_sample_has_no_unexplained_survivor": 34,
    "test_install::test_the_installed_package_is_not_the_checkout": 28,
    "test_spec_fuzz::test_real_spec_with_odd_values": 26,
    "test_kernel_tree::test_the_pristine_objects_build_without_any_warning": 25,
    "test_spec_fuzz::test_deep_nesting": 23,
    "test_compare_safety::test_the_emulator_does_not_grow_with_the_cases": 22,
    "test_kernel_checks::test_kbuild_compiles_the_generated_code_without_warnings": 18,
    "test_spec_fuzz::test_mutated_real_spec": 16,
    "test_kernel_tree::test_a_touched_header_s_warning_in_an_untouched_file_is_kept_apart": 14,
    "test_compare::test_generated_code_matches_the_mirror": 14,
    "test_kernel_tree::test_objtool_s_messages_are_reported": 13,
    "test_tree_612::test_checkpatch_strict_with_the_tree": 13,
    "test_kernel_tree::test_an_unused_static_function_warns": 12,
    "test_kernel_tree::test_a_copy_patched_and_built_leaves_the_cache_alone": 11,
    "test_kernel_tree::test_checkpatch_flags_trailing_whitespace": 11,
    "test_kernel_tree::test_a_broken_edit_fails_the_build": 10,
    "test_profile_flags::test_the_cc_set_form_passes_compare": 10,
    "test_tree_612::test_every_touched_object_builds_without_a_warning": 9,
    "test_readme::test_readme_example": 8,
    "test_tree_612::test_a_broken_template_is_caught_by_the_build": 8,
    "test_compare::test_cli_refuses_native_for_a_user_mode_instruction_and_auto_emulates": 8,
    "test_kernel_tree::test_git_am_of_a_patch_that_does_not_apply_fails": 7,
    "test_lint::test_mypy_finds_nothing_in_codegen": 7,
    "test_compare_safety::test_a_helper_that_stops_the_case_timer_is_still_stopped": 7,
    "test_profile_flags::test_a_wrong_condition_code_letter_is_caught": 6,
    "test_compare_cc::test_the_default_run_takes_every_branch_of_every_generated_file": 5,
    "test_kernel_reference::test_the_kernel_helper_gives_the_mirror_trace": 5,
    "test_install::test_installed_kgen_runs_every_command_outside_the_checkout": 3,
}  # fmt: skip
# Modules whose module fixture takes many seconds (a wheel installed into a new venv, the
# 6.12 tree with the series applied step by step): each runs whole on one worker, so that
# the fixture is built once, not once a worker.
SHARED_MODULES = {"test_install", "test_tree_612"}


def _module(item) -> str:
    return item.module.__name__.rsplit(".", 1)[-1]


def _seconds(item) -> float:
    name = getattr(item, "originalname", item.name)
    return LONGEST.get(f"{_module(item)}::{name}", 1.0 if item.get_closest_marker("slow") else 0.1)


def _unit(nodeid: str) -> str:
    """What one worker runs as a whole: a shared module, else the test alone."""
    module = Path(nodeid.split("::", 1)[0]).stem
    return module if module in SHARED_MODULES else nodeid


def pytest_collection_modifyitems(items):
    for item in items:
        if (_module(item) in SLOW_MODULES
                or getattr(item, "originalname", item.name) in SLOW_TESTS):  # fmt: skip
            item.add_marker(pytest.mark.slow)
    # longest first; a shared module counts as one unit, the sum of its tests
    weight: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        unit = _unit(item.nodeid)
        weight[unit] = weight.get(unit, 0.0) + _seconds(item)
        first.setdefault(unit, i)
    position = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (-weight[_unit(item.nodeid)], first[_unit(item.nodeid)],
                                 position[id(item)]))  # fmt: skip


def pytest_xdist_make_scheduler(config, log):
    """--dist loadgroup (pyproject.toml) as this suite means it: the units of _unit(), in the
    order collected (longest first), each to the next worker that runs short of work.
    (xdist's own loadgroup marks a group by renaming the test, which pytest 9 ignores.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Units(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    return Units(config, log)


ROOT = Path(__file__).resolve().parent.parent
ISA = ROOT / "isa"
RMPOPT_YAML = ISA / "rmpopt.yaml"


@pytest.fixture(scope="session")
def rmpopt():
    return load(RMPOPT_YAML)


@pytest.fixture()
def run_kgen(monkeypatch):
    """Run the CLI in-process from the project root; returns click's Result."""

    # a test may patch kgen's code in this process, which no cache key can see
    monkeypatch.setenv("KGEN_NO_LOAD_CACHE", "1")

    def run(*args: str, cwd: Path = ROOT):
        monkeypatch.chdir(cwd)
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"kgen {' '.join(map(str, args))} crashed") from result.exception
        return result

    return run


@pytest.fixture
def tree612(tmp_path_factory):
    """A private copy of the prepared Linux 6.12 tree (tests/kernel/tree.py): one a worker,
    made by the first test that asks for it and reset to pristine for each later one."""
    from tests.kernel import tree as kt

    home = tmp_path_factory.getbasetemp() / "tree612"
    home.mkdir(exist_ok=True)
    return kt.reused_tree(home)
