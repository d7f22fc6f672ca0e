"""compare with gcc beside clang, and the branch coverage of the generated C."""

from __future__ import annotations

import json

import pytest
from elftools.elf.elffile import ELFFile

from codegen import build, compare, host, toolchain
from codegen.render import outputs, render_spec
from codegen.spec import load
from tests.conftest import ISA

PVALIDATE = load(ISA / "pvalidate.yaml")
GCC = toolchain.find_gcc()
needs_gcc = pytest.mark.skipif(GCC is None, reason="no gcc")


def _producer(obj) -> str:
    with open(obj, "rb") as f:
        return ELFFile(f).get_section_by_name(".comment").data().decode(errors="replace")


@needs_gcc
@pytest.mark.parametrize("front_end", ["native", "emulated"])
def test_gcc_compiles_the_generated_code_and_the_harness(tmp_path, front_end):
    (h,) = build.build_harness(
        GCC, PVALIDATE, render_spec(PVALIDATE), tmp_path, ("-O2",), (front_end,)
    )
    assert h.label == "gcc -O2"
    for obj in [*h.units, *h.harness]:
        assert "GCC:" in _producer(obj) and "clang" not in _producer(obj), obj
    assert (h.native if front_end == "native" else h.emulated).exists()


@needs_gcc
def test_the_harness_cache_is_kept_per_compiler(tmp_path):
    (a,) = build.build_harness(
        GCC, PVALIDATE, render_spec(PVALIDATE), tmp_path / "g", ("-O2",), ("native",)
    )
    (b,) = build.build_harness(toolchain.find_clang(), PVALIDATE, render_spec(PVALIDATE), tmp_path / "c",
                               ("-O2",), ("native",))  # fmt: skip
    assert a.harness[0] != b.harness[0]
    assert "GCC:" in _producer(a.harness[0]) and "clang" in _producer(b.harness[0])


@needs_gcc
@pytest.mark.parametrize("engine", ["native", "emulator"])
def test_every_case_runs_in_every_build_of_both_compilers(engine):
    choice = host.choose_engine(engine, PVALIDATE)
    result = compare.compare(PVALIDATE, (toolchain.find_clang(), GCC), choice, seed=2, count=60,
                             opts=("-O0", "-Os"), workers=2)  # fmt: skip
    assert result.ok, result.mismatches[:1]
    assert list(result.stats) == ["clang -O0", "clang -Os", "gcc -O0", "gcc -Os"]
    assert all(s.cases == 60 and s.executions > 0 for s in result.stats.values())


def _only_gcc_differs(files: dict[str, str]) -> dict[str, str]:
    """The helper returns the wrong result when gcc built it, and the right one with clang."""
    (header,) = [p for p in files if p.endswith("sev.h")]
    text = files[header]
    at = text.index("static inline int pvalidate(")
    body = text.index("return ", at)
    end = text.index(";", body)
    wrong = (
        text[:body]
        + f"return ({text[body + 7 : end]})\n#ifndef __clang__\n ^ 1\n#endif\n"
        + text[end:]
    )
    return {**files, header: wrong}


@needs_gcc
def test_a_behaviour_that_differs_between_compilers_is_a_finding(run_kgen, tmp_path):
    gen = tmp_path / "generated"
    build.write_files(_only_gcc_differs(render_spec(PVALIDATE)), gen)
    result = run_kgen("compare", "isa/pvalidate.yaml", "--cases", "40", "--opt=-O2", "--generated", gen,
                      "--keep-going", "--json")  # fmt: skip
    assert result.exit_code == 1
    (report,) = json.loads(result.output)["specs"]
    assert [c["family"] for c in report["compilers"]] == ["clang", "gcc"]
    assert {m["opt"] for m in report["mismatches"]} == {"gcc -O2"}
    assert report["levels"]["clang -O2"]["cases"] == 40
    assert " --cc gcc --opt=-O2" in report["mismatches"][0]["reproduce"]
    clang_only = run_kgen("compare", "isa/pvalidate.yaml", "--cases", "40", "--opt=-O2", "--generated", gen,
                          "--cc", "clang")  # fmt: skip
    assert clang_only.exit_code == 0 and "x clang," in clang_only.output


@needs_gcc
def test_the_text_report_names_both_compilers(run_kgen):
    result = run_kgen("compare", "isa/pvalidate.yaml", "--cases", "20", "--opt=-O2")
    assert result.exit_code == 0
    assert "20 cases x 1 level (-O2) x clang and gcc" in result.output
    assert (
        f"  {GCC.name} (" in result.output and f"  {toolchain.find_clang().name} (" in result.output
    )


@needs_gcc
def test_coverage_reports_lines_and_branches_of_each_generated_file(run_kgen):
    result = run_kgen("compare", "isa/pvalidate.yaml", "--cases", "40", "--coverage", "--json")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.output)["specs"]
    (header,) = report["coverage"]
    assert header["file"] == "pvalidate/arch/x86/include/asm/sev.h"
    assert header["lines"] == header["lines_hit"] > 0
    assert header["branches"] == header["branches_taken"] > 0 and header["missed"] == []


@needs_gcc
def test_coverage_lists_what_the_run_missed_by_file_and_line(run_kgen, tmp_path):
    files = render_spec(PVALIDATE)
    (header,) = [p for p in files if p.endswith("sev.h")]
    text = files[header]
    at = text.index("\treturn rc;\n}")
    # a branch no case takes (rc is never this), and the line it guards
    files[header] = text[:at] + "\tif (rc == 0x7badc0de)\n\t\treturn 0;\n" + text[at:]
    line = text[:at].count("\n") + 1
    gen = tmp_path / "generated"
    build.write_files(files, gen)
    result = run_kgen(
        "compare", "isa/pvalidate.yaml", "--cases", "40", "--coverage", "--generated", gen
    )
    assert result.exit_code == 0, result.output
    missed = [ln.strip() for ln in result.output.splitlines() if "missed " in ln]
    assert missed == [f"missed {header}:{line}: branch 0 of 2 never taken",
                      f"missed {header}:{line + 1}: never run"]  # fmt: skip
    assert f"coverage {header}: lines 6/7, branches 3/4" in result.output


@pytest.mark.parametrize("args, message", [
    (["--cc", "clang", "--coverage"], "measured with gcc"),
    (["--coverage", "--opt=-O2"], "counts the -O0 build"),
    (["--coverage", "--engine", "emulator"], "cannot write gcov's counts"),
    (["--coverage", "--reference", "tests"], "which --reference replaces"),
])  # fmt: skip
def test_coverage_refuses_what_cannot_be_measured(run_kgen, args, message):
    result = run_kgen("compare", "isa/pvalidate.yaml", "--cases", "5", *args)
    assert result.exit_code == 2 and message in result.output


def test_coverage_refuses_a_spec_only_the_emulator_can_run(run_kgen):
    result = run_kgen("compare", "isa/rmpread.yaml", "--cases", "5", "--coverage")
    assert result.exit_code == 1 and "--coverage needs the native engine" in result.output
    assert "use --engine emulator" not in result.output  # which cannot measure coverage


UNREACHABLE = ISA.parent / "tests" / "coverage" / "unreachable.txt"


def _allowed() -> set[str]:
    lines = [ln.split(" -- ")[0].strip() for ln in UNREACHABLE.read_text().splitlines()]
    return {ln for ln in lines if ln and not ln.startswith("#")}


@needs_gcc
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in ISA.glob("*.yaml") if p.stem != "rmpread"))
def test_the_default_run_takes_every_branch_of_every_generated_file(run_kgen, name):
    """rmpread runs only in the emulator, which cannot write gcov's counts: its one header
    line is the same shape as pvalidate's and is left out."""
    result = run_kgen("compare", f"isa/{name}.yaml", "--coverage", "--json")
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.output)["specs"]
    spec = load(ISA / f"{name}.yaml")
    assert [f["file"] for f in report["coverage"]] == sorted(o.path for o in outputs(spec))
    assert sum(f["lines"] for f in report["coverage"]) > 0
    missed = {
        f"{f['file']}:{m['line']}: {m['what']}" for f in report["coverage"] for m in f["missed"]
    }
    assert missed == {m for m in _allowed() if m.startswith(f"{name}/")}


RMPOPT = load(ISA / "rmpopt.yaml")


@pytest.mark.parametrize("form, check", [
    ("delayed-work", "\tif (!rmpopt_wq)\n\t\treturn -ENOMEM;\n"),
    ("kthread", "\tif (IS_ERR(task))\n\t\treturn PTR_ERR(task);\n"),
])  # fmt: skip
def test_code_that_ignores_a_failed_allocation_is_caught(form, check):
    files = render_spec(RMPOPT)
    (path,) = [p for p in files if p.endswith(f"sev-{form}.c")]
    assert check in files[path]
    files[path] = files[path].replace(check, "")
    (case,) = [c for c in compare.case_gen.generate(RMPOPT, 1, 200)
               if c.form == form and c.machine.nomem]  # fmt: skip
    result = compare.compare(RMPOPT, toolchain.find_clang(), host.choose_engine("emulator", RMPOPT), seed=1,
                             count=200, opts=("-O2",), only=case.id, files=files)  # fmt: skip
    assert not result.ok and result.mismatches[0].case == case.id


def test_a_stuck_retry_code_runs_the_bound_out_in_the_mirror():
    spec = load(ISA / "rmpupdate.yaml")
    bound = spec.kernel.raw_helper.max_retries
    stuck = [c for c in compare.case_gen.generate(spec, 1, 400) if c.machine.stuck]
    assert stuck and all(c.id % 16 == 7 for c in stuck)
    calls = [call for c in stuck
             for call in "\n".join(compare.case_gen.expected(spec, c)).split("\nV ")]  # fmt: skip
    longest = max(sum(1 for ln in call.splitlines() if ln.startswith("R ")) for call in calls)
    assert longest == bound + 1  # one call executed the instruction, then retried it `bound` times
