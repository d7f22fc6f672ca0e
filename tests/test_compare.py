"""Compile-and-compare on the real code: both engines, the report, and the harness's own checks."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from codegen import build, cases, compare, host, toolchain
from codegen.emulator import Emulator
from codegen.render import outputs, render_spec
from codegen.spec import load
from tests.conftest import ISA, RMPOPT_YAML
from tests.mutants import apply, catalogue

SPEC = load(RMPOPT_YAML)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """Both front ends of the harness at -O2, built once for this module."""
    work = tmp_path_factory.mktemp("harness")
    (h,) = build.build_harness(toolchain.find_clang(), SPEC, render_spec(SPEC), work, ("-O2",))
    return h


@pytest.mark.parametrize("engine", ["emulator", "native"])
def test_generated_code_matches_the_mirror(engine):
    choice = host.choose_engine(engine, SPEC)
    result = compare.compare(SPEC, toolchain.find_clang(), choice, seed=3, count=400,
                             opts=("-O0", "-O2", "-Os"))  # fmt: skip
    assert result.ok, result.mismatches[:1]
    assert result.cases == 400 and set(result.stats) == {"clang -O0", "clang -O2", "clang -Os"}
    for level in result.stats.values():
        assert level.cases == 400 and level.executions > 10_000


def test_every_boundary_is_generated():
    labels = {c.label for c in cases.generate(SPEC, 1, 3000)}
    for edge in ("unaligned min_low_pfn", "exactly the coverage", "coverage plus one region",
                 "one region", "a single CPU", "holes in the CPU mask", "leader without siblings",
                 "leader on a secondary thread", "assigned first page of a region",
                 "assigned last page of a region"):  # fmt: skip
        assert f"boundary: {edge}" in labels, edge
    assert any("large memory" in ln for ln in labels) and any("large cpus" in ln for ln in labels)


def _reproducible(spec) -> bool:
    """Two fresh generations from one seed are equal, and another seed differs.

    cases.generate is cached: calling it twice returns the same object, which
    proves nothing; its undecorated function generates afresh.
    """
    fresh = cases.generate.__wrapped__
    a, b = fresh(spec, 5, 300), fresh(spec, 5, 300)
    assert a is not b
    return a == b and a[-1] != fresh(spec, 6, 300)[-1]


@pytest.mark.parametrize("name", ["rmpopt", "rmpupdate"])
def test_cases_are_reproducible_from_the_seed(name):
    assert _reproducible(load(ISA / f"{name}.yaml"))


def test_the_reproducibility_check_fails_on_an_unseeded_generator(monkeypatch):
    seeded = cases.random.Random
    monkeypatch.setattr(cases.random, "Random", lambda seed=None: seeded())
    assert not _reproducible(SPEC)


def test_both_engines_print_the_same_trace(harness):
    text = cases.spec_line(SPEC) + "".join(
        cases.case_line(SPEC, c, 10**6) for c in cases.generate(SPEC, 2, 120)
    )
    emu = Emulator(harness.emulated).run(text.encode()).decode()
    guard = host.choose_engine("native", SPEC).guard
    # room for all of it: the default cap scales with the input, and these cases print
    # far more (whole-coverage sweeps) than their lines are long
    native = compare._run_native(harness.native, guard, text, out_cap=2 * len(emu))
    assert emu == native
    assert [ln for ln in emu.splitlines() if ln.startswith("E ")] == [f"E {n}" for n in range(120)]


def test_the_emulator_translates_the_harness_once(harness):
    """Cases run again translate no code again: writes to the harness's data never throw away
    the translations of its code (they did, case after case, while Unicorn's RAM offsets of a
    small region and a larger one mapped after it overlapped)."""
    from unicorn import UC_HOOK_EDGE_GENERATED

    text = "".join(cases.case_line(SPEC, c, 10**6) for c in cases.generate(SPEC, 2, 40))
    emu = Emulator(harness.emulated)
    emu.run(cases.spec_line(SPEC).encode())
    first = emu.run(text.encode())
    generated = []
    emu.uc.hook_add(UC_HOOK_EDGE_GENERATED, lambda *_: generated.append(1))
    assert emu.run(text.encode()) == first
    assert not generated


def test_the_emulated_harness_stores_little_per_case(tmp_path):
    """Every store costs the emulator a check for code written to: a case clears only the MSRs
    the last one wrote and sets its CPUs online a word at a time, and a trap writes its text
    and the pointer memory a word at a time (measured on 512 CPUs: 908 stores a case and 203
    a call before, 148 and 131 now)."""
    from unicorn import UC_HOOK_MEM_WRITE

    spec = load(ISA / "rmpread.yaml")  # a 16-byte pointer operand the instruction writes
    (h,) = build.build_harness(toolchain.find_clang(), spec, render_spec(spec), tmp_path, ("-O2",),
                               ("emulated",))  # fmt: skip
    emu = Emulator(h.emulated)
    emu.run(cases.spec_line(spec).encode())
    stores = []
    emu.uc.hook_add(UC_HOOK_MEM_WRITE, lambda *_: stores.append(1))

    def cost(actions: str) -> int:
        stores.clear()
        emu.run(f"case id=0 form=helpers cores=256 threads=2 actions={actions}\n".encode())
        return len(stores)

    cost("r:0:0x1:0x2")  # a machine of every CPU first: the next case starts after it
    assert cost("") < 200
    assert cost("r:0:0x1:0x2,r:0:0x1:0x2") - cost("r:0:0x1:0x2") < 160


def _plans(names: list[str], events: list, count: int = 40, refuse: str = ""):
    """Plans of a compare of each named spec at -O2 that log when they are made."""

    def plan(name: str):
        events.append(("plan", name))
        if name == refuse:
            raise ValueError(f"{name} refused")
        spec = load(ISA / f"{name}.yaml")
        return compare.Comparison(spec, toolchain.find_clang(), host.choose_engine("auto", spec), 1,
                                  count, ("-O2",), parts=8)  # fmt: skip

    return [lambda name=name: plan(name) for name in names]


def test_specs_overlap_and_their_results_come_in_order():
    """The next spec is made and built while the cases of the one before still run; the
    results come in the order of the specs, each whole, its seconds its own."""
    events: list = []
    names = ["psmash", "pvalidate", "rmpadjust"]
    start = time.perf_counter()
    for result in compare.compare_each(_plans(names, events), workers=1):
        events.append(("result", Path(result.spec).stem))
        assert result.ok and result.cases == 40 and result.stats["clang -O2"].cases == 40
        assert 0 < result.build_seconds < result.seconds < time.perf_counter() - start
    assert [n for kind, n in events if kind == "result"] == names
    for before, after in zip(names, names[1:], strict=False):
        assert events.index(("plan", after)) < events.index(("result", before))


def test_a_spec_that_cannot_run_comes_after_the_results_before_it():
    events: list = []
    each = compare.compare_each(_plans(["psmash", "pvalidate", "rmpadjust"], events,
                                       refuse="pvalidate"), workers=1)  # fmt: skip
    assert Path(next(each).spec).stem == "psmash"
    with pytest.raises(ValueError, match="pvalidate refused"):
        next(each)
    assert ("plan", "rmpadjust") not in events  # nothing after it runs


def _run_one(harness, line: str) -> list[str]:
    text = cases.spec_line(SPEC) + line
    return Emulator(harness.emulated).run(text.encode()).decode().splitlines()


def test_harness_reports_an_undefined_function_code(harness):
    bad = max(c.value for c in SPEC.instruction.function_codes.codes) + 1
    out = _run_one(harness, f"case id=0 form=helpers cores=1 msron=1 actions=r:0:0x0:{bad:#x}\n")
    assert out[0].endswith("#GP") and out[1].startswith("B undefined function code")


def test_harness_faults_an_execution_the_msr_or_the_feature_does_not_allow(harness):
    """RMPOPT on a core whose MSR is clear, or on a CPU without the feature, is #UD, not a result."""
    fault = SPEC.instruction.msr.fault
    on = _run_one(harness, "case id=0 form=helpers cores=2 msron=1 actions=h:1:0x0\n")
    assert on[0].startswith("R 1 0x0 ") and on[-1] == "E 0"
    clear = _run_one(harness, "case id=0 form=helpers cores=2 actions=h:1:0x0,h:0:0x0\n")
    assert clear == [f"F 1 0x0 0x0 {fault}", "E 0"]  # the case ends at the fault
    absent = _run_one(harness, "case id=0 form=helpers cores=2 msron=1 feature=0 actions=h:0:0x0\n")
    assert absent == [f"F 0 0x0 0x0 {fault}", "E 0"]


def test_harness_reports_runaway_code(harness, tmp_path):
    (never_sleeps,) = [m for m in catalogue(SPEC) if m.name == "a kthread that never sleeps"]
    broken = apply(never_sleeps, render_spec(SPEC))
    (h,) = build.build_harness(
        toolchain.find_clang(), SPEC, broken, tmp_path, ("-O2",), ("emulated",)
    )
    out = _run_one(
        h, "case id=0 form=kthread max=0x100 cores=1 budget=50 actions=setup,run,teardown\n"
    )
    assert any(ln.startswith("B soft lockup") for ln in out)


def test_report_names_the_first_divergence_and_reproduces(run_kgen, tmp_path):
    files = apply(next(m for m in catalogue(SPEC) if "cap (>=)" in m.name), render_spec(SPEC))
    gen = tmp_path / "generated"
    build.write_files(files, gen)
    result = run_kgen("compare", "isa/rmpopt.yaml", "--cases", "60", "--opt=-O2",
                      "--generated", gen)  # fmt: skip
    assert result.exit_code == 1
    out = result.output
    assert "MISMATCH" in out and "expected: L " in out and "got:      L " in out
    line = next(ln for ln in out.splitlines() if "reproduce:" in ln).split("reproduce: ", 1)[1]
    args = line.split()[2:]
    cases.generate.cache_clear()  # the command alone, from its seed, must find the case again
    again = run_kgen("compare", *args)
    assert again.exit_code == 1 and "1 case x 1 level" in again.output
    assert [ln for ln in again.output.splitlines() if "expected:" in ln] == \
        [ln for ln in out.splitlines() if "expected:" in ln]  # fmt: skip


def test_compare_json_and_exit_code(run_kgen):
    result = run_kgen("compare", "--cases", "40", "--opt=-O2", "--json")
    assert result.exit_code == 0
    reports = json.loads(result.output)["specs"]
    assert sorted(r["spec"] for r in reports) == sorted(f"isa/{p.name}" for p in ISA.glob("*.yaml"))
    for report in reports:
        assert report["ok"] and report["cases"] == 40 and report["opts"] == ["-O2"]
        assert report["executions"] > 0 and report["mismatches"] == []


def test_unknown_case_is_a_clean_error(run_kgen):
    result = run_kgen("compare", "--cases", "10", "--case", "99", "--opt=-O2")
    assert result.exit_code == 2 and "case 99 does not exist" in result.stderr


@pytest.mark.parametrize(
    "cpu, requested, engine, guarded",
    [
        # rmpopt's bytes decode as CLZERO: natively, always behind the guard (a CPU whose
        # CPUID hides CLZERO may still run it), also by auto where the CPU has CLZERO
        (host.HostCpu("GenuineIntel", False), "auto", "native", True),
        (host.HostCpu("AuthenticAMD", True), "auto", "native", True),
        (host.HostCpu("AuthenticAMD", True), "native", "native", True),
        (host.HostCpu("AuthenticAMD", False), "auto", "native", True),
        (host.HostCpu("GenuineIntel", False), "emulator", "emulator", False),
    ],
)
def test_engine_choice(cpu, requested, engine, guarded):
    choice = host.choose_engine(requested, SPEC, cpu)
    assert choice.engine == engine and (choice.guard is not None) == guarded


def test_cpuinfo_parsing(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 clzero rdpru\n\n"
                    "vendor_id\t: AuthenticAMD\nflags\t\t: fpu\n")  # fmt: skip
    assert host.host_cpu.__wrapped__(info) == host.HostCpu("AuthenticAMD", True)
    assert host.host_cpu.__wrapped__(tmp_path / "missing") == host.HostCpu("unknown", False)


def test_doctor_names_the_compiler(run_kgen):
    result = run_kgen("doctor")
    assert result.exit_code == 0
    clang = toolchain.find_clang()
    assert f"clang: clang {clang.version}, from {clang.origin}" in result.output


def test_missing_clang_is_a_clear_error(run_kgen, monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(toolchain, "_ziglang_argv", lambda: None)
    toolchain.find_clang.cache_clear()
    try:
        result = run_kgen("compare", "--cases", "5")
        assert result.exit_code == 1
        assert "no clang found" in result.stderr and "make venv" in result.stderr
        assert run_kgen("doctor").exit_code == 1
    finally:
        toolchain.find_clang.cache_clear()


def test_cc_pointing_at_clang_is_used(monkeypatch):
    clang = toolchain.find_clang()
    monkeypatch.setenv("CC", " ".join(clang.argv))
    toolchain.find_clang.cache_clear()
    try:
        found = toolchain.find_clang()
        assert found.origin.startswith("$CC") and found.version == clang.version
    finally:
        toolchain.find_clang.cache_clear()


def test_the_ziglang_clang_runs_without_a_python_start_up():
    import os
    import sys

    argv = toolchain._ziglang_argv()
    if argv is None:
        pytest.skip("the ziglang wheel is not installed")
    assert argv[0] != sys.executable and os.access(argv[0], os.X_OK)
    assert argv[1:] == ["cc", "-target", "x86_64-linux-gnu"]


def test_the_clzero_hazard_is_real_or_absent(tmp_path):
    """On a CLZERO CPU the bytes zero memory in user mode: the reason for the guard."""
    src = tmp_path / "clz.c"
    byte = ", ".join(f"{b.byte:#04x}" for b in SPEC.instruction.encoding)
    src.write_text(
        "#include <stdio.h>\n#include <string.h>\n"
        "static unsigned char buf[256] __attribute__((aligned(64)));\n"
        "int main(void) {\n\tmemset(buf, 0xab, sizeof(buf));\n"
        f'\tasm volatile(".byte {byte}" : : "a"(buf + 64), "c"(0UL) : "memory", "cc");\n'
        '\tprintf("%d\\n", buf[64]);\n\treturn 0;\n}\n'
    )
    if not host.host_cpu().clzero:
        pytest.skip("host: this CPU has no CLZERO: the bytes trap (SIGILL) instead")
    exe = tmp_path / "clz"
    gcc = toolchain.find_gcc() or toolchain.find_clang()
    subprocess.run(gcc.command(str(src), "-o", str(exe)), check=True, capture_output=True)
    assert subprocess.run([str(exe)], capture_output=True, text=True).stdout.strip() == "0"


def test_every_address_a_table_case_passes_lies_below_the_guard():
    """What makes the guarded native engine safe for rmpopt: the helper's RAX, from every
    kind of case, stays in the range the harness reserves (or below its start)."""
    highest = 0
    for seed, count in ((1, 3000), (7, 1000), (2**63, 1000)):
        for case in cases.generate(SPEC, seed, count):
            for line in cases.expected(SPEC, case):
                if line[0] in "RF":
                    highest = max(highest, int(line.split()[2], 16))
    assert (1 << 40) < highest < host.GUARD_TOP


def test_the_harness_does_not_run_where_the_guard_cannot_hold(tmp_path):
    (h,) = build.build_harness(toolchain.find_clang(), SPEC, render_spec(SPEC), tmp_path, ("-O2",),
                               front_ends=("native",))  # fmt: skip
    line = cases.spec_line(SPEC)
    assert compare._run_native(h.native, host.GUARD_TOP, line) == ""  # the self-test passes
    # a top above the stack and the libraries: the range is not free, and it says so
    with pytest.raises(RuntimeError, match="G fail; the address space below the guard's top "
                       "is not free"):  # fmt: skip
        compare._run_native(h.native, 1 << 47, line)


# --- the native engine runs only bytes proven to fault --------------------------

import dataclasses  # noqa: E402

from codegen import execcheck  # noqa: E402
from codegen.diagnostics import SpecError  # noqa: E402
from codegen.model import EncodingByte  # noqa: E402
from codegen.spec import parse  # noqa: E402
from tests.test_spec_loader import with_encoding  # noqa: E402

RDPRU = parse(with_encoding([(0x0F, "escape"), (0x01, "opcode"), (0xFD, "modrm")], "rdpru"),
              "isa/rdpru.yaml")  # fmt: skip


def _never(*args, **kwargs):
    raise AssertionError("compiled or ran code it must refuse")


@pytest.mark.parametrize("engine", ["native", "emulator"])
def test_an_in_memory_shellcode_spec_is_refused_before_anything_runs(engine, monkeypatch, tmp_path):
    marker = tmp_path / "pwned"
    shellcode = tuple(EncodingByte(b, "opcode") for b in bytes(range(0x40, 0x80)))
    spec = dataclasses.replace(
        SPEC, instruction=dataclasses.replace(SPEC.instruction, encoding=shellcode)
    )
    monkeypatch.setattr(compare, "build_harness", _never)
    monkeypatch.setattr(compare, "ProcessPoolExecutor", _never)
    forged = host.EngineChoice(engine, None, "forged by the caller")
    with pytest.raises(SpecError) as info:
        compare.compare(spec, toolchain.find_clang(), forged, seed=1, count=5, opts=("-O2",))
    messages = [d.message for d in info.value.diagnostics]
    assert any("64 bytes; an x86 instruction has at most 15" in m for m in messages)
    assert not marker.exists()


def test_a_user_mode_instruction_is_refused_natively_and_emulated_by_auto():
    with pytest.raises(host.EngineRefused, match="decodes 0F 01 FD as rdpru, which user mode may "
                       "execute, and the native engine cannot make it fault"):  # fmt: skip
        host.choose_engine("native", RDPRU)
    for cpu in (host.HostCpu("GenuineIntel", False), host.HostCpu("AuthenticAMD", True)):
        choice = host.choose_engine("auto", RDPRU, cpu)
        assert choice.engine == "emulator" and "rdpru" in choice.reason


def test_compare_refuses_a_forged_native_engine(monkeypatch):
    monkeypatch.setattr(compare, "build_harness", _never)
    for engine in (host.EngineChoice("native", None, "forged"), host.choose_engine("native", SPEC)):
        with pytest.raises(host.EngineRefused):
            compare.compare(RDPRU, toolchain.find_clang(), engine, seed=1, count=5, opts=("-O2",))
    # rmpopt's CLZERO runs natively only behind the guard
    with pytest.raises(host.EngineRefused, match="needs the guard"):
        compare.compare(SPEC, toolchain.find_clang(), host.EngineChoice("native", None, "forged"),
                        seed=1, count=5, opts=("-O2",))  # fmt: skip


def test_bytes_a_cpu_ignoring_their_prefix_runs_in_user_mode_are_not_run_natively():
    """rmpread is unknown to the decoder, but without F2 it is RDPRU (the known encodings agree)."""
    rmpread = load(ISA / "rmpread.yaml")
    with pytest.raises(host.EngineRefused, match=r"decodes 0F 01 FD \(F2 0F 01 FD without its F2 "
                       r"prefix\) as rdpru, which user mode may execute"):  # fmt: skip
        host.choose_engine("native", rmpread)
    assert (
        host.choose_engine("auto", rmpread, host.HostCpu("GenuineIntel", False)).engine
        == "emulator"
    )
    # its siblings' bytes without the prefix are privileged (INVLPGB, TLBSYNC): they trap
    for name in ("pvalidate", "psmash", "rmpadjust", "rmpupdate"):
        choice = host.choose_engine(
            "auto", load(ISA / f"{name}.yaml"), host.HostCpu("AuthenticAMD", True)
        )
        assert choice.engine == "native" and choice.guard is None and "privileged" in choice.reason


def test_clzero_bytes_in_an_oracle_spec_are_not_run_natively():
    """The guard proves a fault only for the table model's addresses, not any 64-bit value."""
    text = (
        (ISA / "psmash.yaml")
        .read_text()
        .replace("{byte: 0xf3, role: prefix}", "{byte: 0xf2, role: prefix}")
    )
    text = text.replace("{byte: 0xff, role: modrm}", "{byte: 0xfc, role: modrm}").replace(
        "mnemonic: psmash", "mnemonic: psmashx")  # fmt: skip
    spec = parse(text, "isa/psmashx.yaml")
    plan = host.native_plan(spec)
    assert not plan.allowed and plan.hazard == "clzero"
    assert (
        host.choose_engine("auto", spec, host.HostCpu("GenuineIntel", False)).engine == "emulator"
    )


def test_cli_refuses_native_for_a_user_mode_instruction_and_auto_emulates(run_kgen, tmp_path):
    spec = tmp_path / "rdpru.yaml"
    spec.write_text(RDPRU.source)
    result = run_kgen("compare", spec, "--engine", "native", "--cases", "5", "--opt=-O2")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{spec}:15:5: error: --engine native refused: iced-x86 1.21.0 decodes 0F 01 FD as rdpru" \
        in result.stderr  # fmt: skip
    result = run_kgen("compare", spec, "--cases", "20", "--opt=-O2")
    assert result.exit_code == 0, result.output
    assert "engine emulator: iced-x86 1.21.0 decodes 0F 01 FD as rdpru" in result.output


def test_specs_compared_together_report_as_one_at_a_time(run_kgen):
    """Overlapped, the specs still report in order, and one that cannot run ends the run
    where it stands: the reports before it, then why, exit status 1."""
    args = ("--cases", "30", "--opt=-O2", "--engine", "native", "--json")
    ok = run_kgen("compare", "isa/psmash.yaml", "isa/pvalidate.yaml", "isa/rmpadjust.yaml", *args)
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert [s["spec"] for s in report["specs"]] == [
        "isa/psmash.yaml", "isa/pvalidate.yaml", "isa/rmpadjust.yaml"
    ]  # fmt: skip
    assert all(s["ok"] and s["cases"] == 30 for s in report["specs"])
    refused = run_kgen("compare", "isa/psmash.yaml", "isa/rmpread.yaml", "isa/rmpadjust.yaml",
                       *args[:-1])  # fmt: skip
    assert refused.exit_code == 1
    assert (
        refused.stdout.startswith("isa/psmash.yaml: ok: 30 cases")
        and "rmpadjust" not in refused.stdout
    )
    assert "isa/rmpread.yaml:" in refused.stderr and "--engine native refused" in refused.stderr


def test_doctor_says_which_engine_each_spec_gets(run_kgen):
    out = run_kgen("doctor").output
    assert "bytes decoded by iced-x86 1.21.0" in out
    assert "engine isa/pvalidate.yaml (auto): native: iced-x86 1.21.0 decodes F2 0F 01 FF as " \
        "pvalidate, a privileged instruction" in out  # fmt: skip
    rmpopt = next(ln for ln in out.splitlines() if ln.startswith("engine isa/rmpopt.yaml"))
    assert rmpopt.startswith("engine isa/rmpopt.yaml (auto): native: ")
    if host.host_cpu().clzero:
        assert "natively only behind the guard, below 0x400000000000" in rmpopt


@pytest.mark.parametrize("extra, expected", [
    ('static inline void sneak(void) { asm volatile("syscall"); }\n', "not the spec's"),
    ('static inline void sneak(void) { __asm__ (".byte 0x0f, " "0x05"); }\n', "not the spec's"),
    ("#define A(x) __as##x\n", "'##' is not in code kgen generates"),
    ('__attribute__((section(".text"))) const char sneak[] = "\\x0f\\x05";\n', "'section'"),
])  # fmt: skip
def test_generated_sources_hold_only_the_spec_s_asm(extra, expected):
    files = render_spec(SPEC)
    execcheck.check_sources(SPEC, files)
    header = outputs(SPEC)[0].path
    files[header] += extra
    with pytest.raises(execcheck.UnsafeCode, match=expected):
        execcheck.check_sources(SPEC, files)


def test_cli_refuses_a_generated_dir_with_other_asm_natively(run_kgen, tmp_path):
    files = render_spec(SPEC)
    header = outputs(SPEC)[0].path
    files[header] += 'static inline void sneak(void) { asm volatile(".byte 0x0f, 0x05"); }\n'
    build.write_files(files, tmp_path / "gen")
    result = run_kgen("compare", "isa/rmpopt.yaml", "--engine", "native", "--cases", "5",
                      "--opt=-O2", "--generated", tmp_path / "gen")  # fmt: skip
    assert result.exit_code == 1 and "an asm statement that is not the spec's" in result.stderr


def test_compiled_objects_hold_only_plain_code_and_the_spec_s_bytes(harness, tmp_path):
    assert execcheck.check_objects(SPEC, list(harness.units), list(harness.harness)) >= 1
    clang = toolchain.find_clang()
    for name, source, expected in [
        ("libc", 'int system(const char *);\nvoid f(void) { system("touch x"); }\n', "calls system"),
        ("syscall", 'void f(void) { asm volatile(".byte 0x0f, 0x05"); }\n', "does not use"),
        ("int80", 'void f(void) { asm volatile(".byte 0xcd, 0x80"); }\n', "a software interrupt"),
        ("hidden", '__attribute__((section(".text"))) const unsigned char g[] = {0xff, 0xff, 0xff};\n',
         "no x86 decoder knows"),
    ]:  # fmt: skip
        src, obj = tmp_path / f"{name}.c", tmp_path / f"{name}.o"
        src.write_text(source)
        subprocess.run(clang.command("-c", "-O2", "-fPIE", str(src), "-o", str(obj)), check=True,
                       capture_output=True)  # fmt: skip
        with pytest.raises(execcheck.UnsafeCode, match=expected):
            execcheck.check_objects(SPEC, [*harness.units, obj], list(harness.harness))


def test_the_6_1_spellings_behave_the_same(tmp_path):
    """mutex_lock()/mutex_unlock() on every path, wrmsrl_on_cpu(): the same trace as NEWEST's."""
    from codegen.kernelapi import LINUX_6_1

    files = render_spec(SPEC, profile=LINUX_6_1)
    sweep = files[outputs(SPEC)[2].path]
    assert "mutex_unlock(" in sweep and "guard(" not in sweep and "wrmsrl_on_cpu(" in sweep
    result = compare.compare(SPEC, toolchain.find_clang(), host.choose_engine("emulator", SPEC), seed=3,
                             count=120, opts=("-O2",), files=files, workers=1)  # fmt: skip
    assert result.ok, result.mismatches[:1]
    # and a path that forgets to unlock is a finding, not a pass
    leaky = dict(files)
    leaky[outputs(SPEC)[2].path] = sweep.replace("\tmutex_unlock(", "\t(void)(", 1)
    result = compare.compare(SPEC, toolchain.find_clang(), host.choose_engine("emulator", SPEC), seed=3,
                             count=120, opts=("-O2",), files=leaky, workers=1)  # fmt: skip
    assert not result.ok


def test_the_cap_logged_by_every_pass_is_compared_too():
    """cap_log: every-pass renders and compares as well as the merged at-setup."""
    text = RMPOPT_YAML.read_text()
    assert text.count("cap_log: at-setup") == 1
    spec = parse(text.replace("cap_log: at-setup", "cap_log: every-pass"), str(RMPOPT_YAML))
    files = render_spec(spec)
    assert "_log_cap" not in "".join(files.values())
    result = compare.compare(spec, toolchain.find_clang(), host.choose_engine("emulator", spec),
                             seed=5, count=80, opts=("-O2",), files=files, workers=1)  # fmt: skip
    assert result.ok, result.mismatches[:1]


def test_auto_emulates_where_the_guard_does_not_hold(monkeypatch):
    """auto's guarded native engine proves the guard at start-up; where it does not hold, compare
    emulates and says why, while an engine asked for by name stops instead.  The harness's own
    self-test is made to fail by asking it for a top above the stack and the libraries."""
    clang = toolchain.find_clang()
    real, tops = compare._run_native, []

    def unheld_guard(harness, guard, text, *args, **kwargs):
        tops.append(guard)
        return real(harness, 1 << 47, text, *args, **kwargs)

    monkeypatch.setattr(compare, "_run_native", unheld_guard)
    auto = dataclasses.replace(host.choose_engine("native", SPEC), fallback=True)
    r = compare.compare(SPEC, clang, auto, 1, 12, ("-O2",), workers=1)
    assert tops == [auto.guard]  # the self-test only: the cases ran in the emulator
    assert r.ok and r.executions > 0
    assert r.engine.engine == "emulator" and r.engine.guard is None
    assert "is not free" in r.engine.reason and r.engine.reason.endswith(": emulating")
    with pytest.raises(RuntimeError, match="G fail"):
        compare.compare(SPEC, clang, dataclasses.replace(auto, fallback=False), 1, 12, ("-O2",),
                        workers=1)  # fmt: skip
