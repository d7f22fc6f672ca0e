"""Flag outputs by the kernel's minimum compiler: bare "=@ccc" or asm/asm.h's CC_SET/CC_OUT.

A tree whose scripts/min-tool-version.sh names a GCC older than 6 (6.1 and
6.12: 5.1) cannot take a bare "=@ccc" output; its own pvalidate() passes CF
through CC_SET(c)/CC_OUT(c).  kgen renders that form for such a profile, and
compare runs it: with flag outputs (clang and gcc 12 define
__GCC_ASM_FLAG_OUTPUTS__) and without them, as GCC 5 builds it (setc).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from codegen import compare, host, toolchain
from codegen.kernelapi import LINUX_6_1, LINUX_6_12, NEWEST, detect, min_gcc
from codegen.render import outputs, render_spec
from codegen.spec import load
from tests import k612
from tests.conftest import ISA, ROOT

K612, K612_MISSING = k612.tree()
FLAG_SPECS = ["pvalidate", "rmpopt"]  # the specs with a flag output


def _script(root: Path, gcc_case: str) -> Path:
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "min-tool-version.sh").write_text(
        f'#!/bin/sh\ncase "$1" in\nbinutils)\n\techo 2.25.0\n\t;;\ngcc)\n{gcc_case}\t;;\n'
        "llvm)\n\techo 13.0.1\n\t;;\nesac\n"
    )
    return root


@pytest.mark.parametrize("gcc_case, version, flags", [
    ('\tif [ "$ARCH" = parisc64 ]; then\n\t\techo 12.0.0\n\telse\n\t\techo 5.1.0\n\tfi\n', (5, 1, 0), False),
    ("\techo 8.1.0\n", (8, 1, 0), True),
    ("\techo 6.0\n", (6, 0), True),
    ("\techo 4.9\n", (4, 9), False),
])  # fmt: skip
def test_the_minimum_gcc_decides_flag_outputs(tmp_path, gcc_case, version, flags):
    root = _script(tmp_path, gcc_case)
    assert min_gcc(root) == version
    assert detect(root=root).flag_outputs is flags


def test_without_a_minimum_the_trees_asm_h_decides(tmp_path):
    """No min-tool-version.sh: a tree whose asm/asm.h has CC_OUT gets the form every compiler takes."""
    asm = tmp_path / "arch" / "x86" / "include" / "asm"
    asm.mkdir(parents=True)
    assert min_gcc(tmp_path) is None
    assert detect(root=tmp_path).flag_outputs is True
    (asm / "asm.h").write_text(
        '#ifdef __GCC_ASM_FLAG_OUTPUTS__\n# define CC_OUT(c) "=@cc" #c\n#endif\n'
    )
    assert detect(root=tmp_path).flag_outputs is False
    assert detect([tmp_path / "arch" / "x86" / "include"]).flag_outputs is False


def test_newest_keeps_bare_flag_outputs():
    for name in FLAG_SPECS:
        text = "".join(render_spec(load(ISA / f"{name}.yaml"), profile=NEWEST).values())
        assert '"=@ccc" (' in text and "CC_SET" not in text and "CC_OUT" not in text


@pytest.mark.parametrize("profile", [LINUX_6_1, LINUX_6_12])
def test_old_compilers_get_cc_set_and_cc_out(profile):
    spec = load(ISA / "pvalidate.yaml")
    text = render_spec(spec, profile=profile)[outputs(spec)[0].path]
    assert '"=@cc' not in text
    assert ('asm volatile(".byte 0xf2, 0x0f, 0x01, 0xff"\n\t\t     CC_SET(c)\n'
            '\t\t     : CC_OUT(c) (no_rmpupdate), "=a" (rc)\n') in text  # fmt: skip


@pytest.mark.skipif(K612 is None, reason=f"no Linux 6.12 tree: {K612_MISSING}")
def test_the_6_12_tree_is_detected_as_such():
    profile = detect(root=K612)
    assert min_gcc(K612) == (5, 1, 0) and not profile.flag_outputs
    assert dataclasses.replace(profile, name="6.12", sizes=None) == LINUX_6_12
    # and the tree's own pvalidate() uses the same macros
    assert "CC_OUT(c) (no_rmpupdate)" in (K612 / "arch/x86/include/asm/sev.h").read_text()


def _compilers(without_flag_outputs: bool = False):
    found = [toolchain.find_clang(), toolchain.find_gcc()]
    found = [c for c in found if c is not None]
    if without_flag_outputs:  # what a compiler before GCC 6 sees: CC_SET() is setc
        found = [
            dataclasses.replace(c, argv=(*c.argv, "-U__GCC_ASM_FLAG_OUTPUTS__")) for c in found
        ]
    return tuple(found)


@pytest.mark.parametrize("without_flag_outputs", [False, True])
@pytest.mark.parametrize("name", FLAG_SPECS)
def test_the_cc_set_form_passes_compare(name, without_flag_outputs):
    spec = load(ISA / f"{name}.yaml")
    files = render_spec(spec, profile=LINUX_6_12)
    assert "CC_OUT(c)" in "".join(files.values())
    result = compare.compare(spec, _compilers(without_flag_outputs), host.choose_engine("emulator", spec),
                             seed=4, count=150, opts=("-O0", "-O2"), files=files)  # fmt: skip
    assert result.ok, result.mismatches[:1]
    assert len(result.stats) == 2 * len(_compilers())


@pytest.mark.parametrize("without_flag_outputs", [False, True])
@pytest.mark.parametrize("name", FLAG_SPECS)
def test_a_wrong_condition_code_letter_is_caught(name, without_flag_outputs):
    """CC_OUT(z)/CC_SET(z): ZF instead of CF; the trace shows the wrong result."""
    spec = load(ISA / f"{name}.yaml")
    files = {path: text.replace("CC_SET(c)", "CC_SET(z)").replace("CC_OUT(c)", "CC_OUT(z)")
             for path, text in render_spec(spec, profile=LINUX_6_12).items()}  # fmt: skip
    assert "CC_OUT(z)" in "".join(files.values())
    result = compare.compare(spec, _compilers(without_flag_outputs), host.choose_engine("emulator", spec),
                             seed=4, count=150, opts=("-O2",), files=files, keep_going=True)  # fmt: skip
    assert not result.ok
    assert {m.opt for m in result.mismatches} == set(result.stats)


def test_compare_takes_a_profile_and_a_tree(run_kgen, tmp_path):
    r = run_kgen("compare", ISA / "pvalidate.yaml", "--cases", "20", "--cc", "clang", "--opt=-O2",
                 "--profile", "6.12")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "rendered for kernel profile 6.12" in r.output
    r = run_kgen("compare", ISA / "pvalidate.yaml", "--cases", "20", "--tree", tmp_path)
    assert r.exit_code == 2 and "is not the top directory of a kernel tree" in r.output
    r = run_kgen("compare", ISA / "pvalidate.yaml", "--cases", "20", "--cc", "clang", "--opt=-O2",
                 "--tree", ROOT / "tests" / "minitree")  # fmt: skip
    assert r.exit_code == 0, r.output
    # the profile is named by what it chose, not only where it came from
    assert re.search(r"rendered for kernel profile detected from \S*tests/minitree: guard\(mutex\), "
                     r"wrmsrl_on_cpu\(\), EXPORT_SYMBOL_GPL\(\), CC_SET\(\)/CC_OUT\(\)\n", r.output)  # fmt: skip
    r = run_kgen("compare", ISA / "pvalidate.yaml", "--profile", "6.12", "--tree", tmp_path)
    assert r.exit_code == 2 and "not both" in r.output


@pytest.mark.parametrize("name", FLAG_SPECS)
def test_the_review_takes_either_form_and_the_letter_matters(name):
    from codegen.review import review

    spec = load(ISA / f"{name}.yaml")
    files = render_spec(spec, profile=LINUX_6_12)
    assert not [p for p in review(spec, files) if p[0] == "raw-helper-shape"]
    wrong = {path: text.replace("CC_OUT(c)", "CC_OUT(z)") for path, text in files.items()}
    assert [p for p in review(spec, wrong) if p[0] == "raw-helper-shape"]
