"""The series kgen writes for Debian's Linux 6.12, applied, checked and built in that tree.

`make test` prepares the tree once (tests/kernel/tree612, in ~/.cache/kgen/kernel); each
test works in a private copy of it (tests/kernel/tree.py).  Where the tree cannot be had
these tests skip with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from codegen.render import TEMPLATES
from codegen.series import Identity, write_series
from codegen.spec import load
from codegen.tree import KernelTree, plan
from tests.conftest import ISA
from tests.kernel import tree as kt

pytestmark = pytest.mark.skipif(
    kt.cache() is None, reason=f"no Linux 6.12 tree: {kt.missing_reason()}"
)

SPECS = [load(p) for p in sorted(ISA.glob("*.yaml"))]
WHO = Identity("Ada Example", "ada@example.org")
# the objects the series touches, and the sources that include the headers it changes
OBJECTS = [
    "arch/x86/virt/svm/sev.o",
    "arch/x86/kernel/cpu/scattered.o",
    "drivers/crypto/ccp/sev-dev.o",
    "arch/x86/kvm/svm/sev.o",
    "arch/x86/coco/sev/core.o",
]


def series(tree: kt.Tree, out: Path, templates: Path = TEMPLATES) -> list[Path]:
    p = plan(SPECS, KernelTree.open(tree.src), templates)
    return write_series(p, out, WHO, signoff=True)


# the RMPOPT part of the series: its first seven patches, after the cover letter
RMPOPT_STEPS = 7


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    """A copy of the tree with the whole series applied by git am, the series, what git am
    said, and the gcc build of the first four objects after each patch of the RMPOPT part.

    The patches go in one at a time, as `git am` of the series does, so the tree that the
    step builds leave is the one the whole series gives: one copy and one series serve
    every test here, and the builds of the whole series rebuild only what the last patches
    changed (make rebuilds every object whose sources changed since the pristine build)."""
    base = tmp_path_factory.mktemp("t612")
    tree = kt.fresh_tree(base)
    files = series(tree, base / "patches")
    steps, failure = [], ""
    for n, f in enumerate(files[1:], 1):
        failure = kt.git_am(tree, [f])
        if failure:
            failure = f"{f.name}: {failure}"
            break
        if n <= RMPOPT_STEPS:
            steps.append((n, f.name, kt.build(tree, OBJECTS[:4], "gcc")))
    return tree, files, failure, steps


def test_the_series_applies(applied):
    tree, files, failure, _ = applied
    assert failure == ""
    log = kt.git(tree.src, "log", "--format=%s", f"{tree.base}..HEAD").stdout.splitlines()
    assert len(log) == len(files) - 1 == 11
    assert log[-1] == "x86/cpufeatures: Add X86_FEATURE_RMPOPT"


def test_checkpatch_strict_with_the_tree(applied):
    tree, files, _, _ = applied
    for report in kt.checkpatch_all(tree, files[1:]):
        assert (report.errors, report.warnings, report.checks) == (0, 0, 0), report.text


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_every_touched_object_builds_without_a_warning(applied, cc):
    tree, _, _, _ = applied
    built = kt.build(tree, OBJECTS, cc)
    assert built.ok and not built.errors, built.output[-3000:]
    assert built.warnings == [], built.warnings


def test_apply_equals_the_series_and_check_tree_agrees(applied, tree612, tmp_path):
    tree, _, _, _ = applied
    other = tree612
    from click.testing import CliRunner

    from codegen.cli import main

    specs = [str(p) for p in sorted(ISA.glob("*.yaml"))]
    drift = CliRunner().invoke(main, ["check", *specs, "--tree", str(other.src)])
    assert drift.exit_code == 1 and "+++ b/arch/x86/virt/svm/sev.c" in drift.output
    assert CliRunner().invoke(main, ["apply", *specs, "--tree", str(other.src)]).exit_code == 0
    assert CliRunner().invoke(main, ["check", *specs, "--tree", str(other.src)]).exit_code == 0
    for rel in kt.touched(tree):
        assert (other.src / rel).read_bytes() == (tree.src / rel).read_bytes(), rel
    # a spec edit is drift again
    edited = tmp_path / "isa"
    edited.mkdir()
    for p in specs:
        shutil.copy(p, edited)
    spec = edited / "rmpopt.yaml"
    spec.write_text(spec.read_text().replace("first_delay_ms: 0", "first_delay_ms: 100"))
    again = CliRunner().invoke(
        main, ["check", *map(str, sorted(edited.glob("*.yaml"))), "--tree", str(other.src)]
    )
    assert again.exit_code == 1 and "RMPOPT_FIRST_DELAY_MS\t100" in again.output


def test_a_broken_template_is_caught_by_the_build(tree612, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    sweep = templates / "sweep.c.j2"
    text = sweep.read_text()
    assert "unsigned int cpu, leader;" in text
    sweep.write_text(text.replace("unsigned int cpu, leader;", "unsigned int cpu;", 1))
    tree = tree612
    files = series(tree, tmp_path / "patches", templates)
    assert kt.git_am(tree, files[1:]) == ""
    built = kt.build(tree, ["arch/x86/virt/svm/sev.o"], "gcc")
    assert not built.ok and any("arch/x86/virt/svm/sev.c" in e for e in built.errors), built.output[
        -2000:
    ]


def test_each_rmpopt_step_builds(applied):
    """Every commit of the RMPOPT part builds on its own (a maintainer bisects through them)."""
    _, files, failure, steps = applied
    assert [name for _, name, _ in steps] == [f.name for f in files[1 : RMPOPT_STEPS + 1]], failure
    for n, name, built in steps:
        assert built.ok and built.warnings == [], (n, name, built.output[-2000:])
