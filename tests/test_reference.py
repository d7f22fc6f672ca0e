"""`kgen compare --reference DIR` compares the kernel's helper from DIR, or refuses.

These run without kernel material: a stand-in kernel header is written into a
temporary directory (the generated helper, copied, is a faithful one).
"""

from __future__ import annotations

import json

import pytest

from codegen.render import render_spec
from codegen.spec import load
from tests.conftest import ISA

SPEC = load(ISA / "pvalidate.yaml")
HEADER = SPEC.kernel.raw_helper.header  # arch/x86/include/asm/sev.h
GENERATED = render_spec(SPEC)[f"pvalidate/{HEADER}"]
FAST = ("--cases", "20", "--opt=-O2", "--engine", "emulator")


def _kernel_dir(tmp_path, text: str):
    d = tmp_path / "include"
    (d / "asm").mkdir(parents=True)
    (d / "asm" / "sev.h").write_text(text)
    return d


def test_an_empty_directory_is_refused(run_kgen, tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_kgen("compare", "isa/pvalidate.yaml", *FAST, "--reference", tmp_path / "empty")
    assert r.exit_code == 1, r.output
    assert "kgen: isa/pvalidate.yaml: error: no asm/sev.h in the --reference directory" in r.output
    assert "ok:" not in r.output


def test_the_parent_of_the_include_directory_is_refused_with_a_hint(run_kgen, tmp_path):
    d = _kernel_dir(tmp_path, GENERATED)
    r = run_kgen("compare", "isa/pvalidate.yaml", *FAST, "--reference", d.parent)
    assert r.exit_code == 1, r.output
    assert f"did you mean {d}?" in r.output


def test_a_header_without_the_helper_is_refused(run_kgen, tmp_path):
    d = _kernel_dir(tmp_path, "/* static inline int pvalidate(int a) { } */\n#define SEV_H 1\n")
    r = run_kgen("compare", "isa/pvalidate.yaml", *FAST, "--reference", d)
    assert r.exit_code == 1, r.output
    assert f"{d}/asm/sev.h does not define pvalidate()" in r.output


def test_a_header_that_hands_over_to_the_generated_one_is_caught(run_kgen, tmp_path):
    """The text seems to define the helper; the preprocessor shows kgen's own header is used."""
    d = _kernel_dir(tmp_path, "#if 0\nstatic inline int pvalidate(unsigned long v, bool s, bool x) { }\n"
                              "#endif\n#include_next <asm/sev.h>\n")  # fmt: skip
    r = run_kgen("compare", "isa/pvalidate.yaml", *FAST, "--reference", d)
    assert r.exit_code == 1, r.output
    assert "error: the reference unit includes kgen's own pvalidate/arch/x86/include/asm/sev.h" in r.output


def test_a_helper_defined_outside_the_directory_is_caught(run_kgen, tmp_path):
    elsewhere = tmp_path / "elsewhere.h"
    elsewhere.write_text(GENERATED)
    d = _kernel_dir(tmp_path, f"#if 0\nstatic inline int pvalidate(void) {{ }}\n#endif\n#include \"{elsewhere}\"\n")
    r = run_kgen("compare", "isa/pvalidate.yaml", *FAST, "--reference", d)
    assert r.exit_code == 1, r.output
    assert f"the preprocessor finds it {elsewhere}:" in r.output


@pytest.mark.parametrize("as_json", [False, True])
def test_the_report_names_the_reference_and_the_definition(run_kgen, tmp_path, as_json):
    d = _kernel_dir(tmp_path, GENERATED)
    line = GENERATED.splitlines().index(next(l for l in GENERATED.splitlines()
                                             if l.startswith("static inline int pvalidate("))) + 1  # fmt: skip
    r = run_kgen("compare", "isa/pvalidate.yaml", *FAST, "--reference", d, *(["--json"] if as_json else []))
    assert r.exit_code == 0, r.output
    if as_json:
        (report,) = json.loads(r.output)["specs"]
        assert report["references"] == [
            {"directory": str(d), "files": ["asm/sev.h"], "definition": f"{d}/asm/sev.h:{line}"}
        ]
    else:
        assert f"  reference {d}: 1 file; {d}/asm/sev.h:{line} defines the helper compared" in r.output
