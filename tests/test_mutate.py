"""kgen mutate: the enumerator is exact, the runner kills what it must, the equivalents cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from codegen import compare as cmp, mutate
from codegen.diagnostics import SpecError
from codegen.render import render_spec
from codegen.spec import load
from codegen.toolchain import find_clang, find_gcc
from tests.conftest import ISA, ROOT

SNIPPET = '''/* a < b + 1, true */
#include <linux/types.h>
#define LIMIT 4

static inline int f(u64 a, u64 b, bool *ok)
{
	int rc;

	asm volatile(".byte 0xf2, 0x0f"
		     : "=a" (rc), "=@ccc" (*ok)
		     : "c" (a), "d" (b)
		     : "memory", "cc");
	if (a < b && rc != LIMIT) // a > b - 1
		g(a, b * 2, "x < y + 1");
	return rc + true;
}
'''

# Every mutant of SNIPPET, in order: its id after the file name, and the line of its diff that
# shows it (the + line, or the first - line of a deletion).
EXPECTED = [
    ('3:15:constant:0', '+#define LIMIT 0'),
    ('3:15:constant:1', '+#define LIMIT 1'),
    ('3:15:constant:2', '+#define LIMIT (-1)'),
    ('3:15:constant:3', '+#define LIMIT 3'),
    ('3:15:constant:4', '+#define LIMIT 5'),
    ('3:15:constant:5', '+#define LIMIT 8'),
    ('9:2:delete:0', '-\tasm volatile(".byte 0xf2, 0x0f"'),
    ('9:22:byte:0', '+\tasm volatile(".byte 0xf3, 0x0f"'),
    ('9:22:byte:1', '+\tasm volatile(".byte 0xf1, 0x0f"'),
    ('9:28:byte:0', '+\tasm volatile(".byte 0xf2, 0x10"'),
    ('9:28:byte:1', '+\tasm volatile(".byte 0xf2, 0x0e"'),
    ('10:10:constraint:0', '+\t\t     : "a" (a), "d" (b)'),
    ('10:10:constraint:1', '+\t\t     : "c" (a), "a" (b)'),
    ('10:10:constraint:2', '+\t\t     : "=b" (rc), "=@ccc" (*ok)'),
    ('10:10:constraint:3', '+\t\t     : "=S" (rc), "=@ccc" (*ok)'),
    ('10:10:constraint:4', '+\t\t     : "=D" (rc), "=@ccc" (*ok)'),
    ('10:21:constraint:0', '+\t\t     : "=a" (rc), "=@ccnc" (*ok)'),
    ('10:21:constraint:1', '+\t\t     : "=a" (rc), "=@ccz" (*ok)'),
    ('11:10:constraint:0', '+\t\t     : "d" (a), "c" (b)'),
    ('11:10:constraint:1', '+\t\t     : "b" (a), "d" (b)'),
    ('11:10:constraint:2', '+\t\t     : "S" (a), "d" (b)'),
    ('11:10:constraint:3', '+\t\t     : "D" (a), "d" (b)'),
    ('11:19:constraint:0', '+\t\t     : "c" (a), "b" (b)'),
    ('11:19:constraint:1', '+\t\t     : "c" (a), "S" (b)'),
    ('11:19:constraint:2', '+\t\t     : "c" (a), "D" (b)'),
    ('12:10:constraint:0', '+\t\t     : "cc");'),
    ('12:20:constraint:0', '+\t\t     : "memory");'),
    ('13:2:negate:0', '+\tif (!(a < b && rc != LIMIT)) // a > b - 1'),
    ('13:2:delete:0', '-\tif (a < b && rc != LIMIT) // a > b - 1'),
    ('13:8:relational:0', '+\tif (a <= b && rc != LIMIT) // a > b - 1'),
    ('13:8:relational:1', '+\tif (a > b && rc != LIMIT) // a > b - 1'),
    ('13:8:relational:2', '+\tif (a >= b && rc != LIMIT) // a > b - 1'),
    ('13:8:relational:3', '+\tif (a == b && rc != LIMIT) // a > b - 1'),
    ('13:8:relational:4', '+\tif (a != b && rc != LIMIT) // a > b - 1'),
    ('13:12:logical:0', '+\tif (a < b || rc != LIMIT) // a > b - 1'),
    ('13:18:relational:0', '+\tif (a < b && rc < LIMIT) // a > b - 1'),
    ('13:18:relational:1', '+\tif (a < b && rc <= LIMIT) // a > b - 1'),
    ('13:18:relational:2', '+\tif (a < b && rc > LIMIT) // a > b - 1'),
    ('13:18:relational:3', '+\tif (a < b && rc >= LIMIT) // a > b - 1'),
    ('13:18:relational:4', '+\tif (a < b && rc == LIMIT) // a > b - 1'),
    ('14:3:swap-args:0', '+\t\tg(b * 2, a, "x < y + 1");'),
    ('14:3:swap-args:1', '+\t\tg(a, "x < y + 1", b * 2);'),
    ('14:3:delete:0', '+\t\t{}'),
    ('14:10:arithmetic:0', '+\t\tg(a, b / 2, "x < y + 1");'),
    ('14:10:arithmetic:1', '+\t\tg(a, b + 2, "x < y + 1");'),
    ('14:12:constant:0', '+\t\tg(a, b * 0, "x < y + 1");'),
    ('14:12:constant:1', '+\t\tg(a, b * 1, "x < y + 1");'),
    ('14:12:constant:2', '+\t\tg(a, b * (-1), "x < y + 1");'),
    ('14:12:constant:3', '+\t\tg(a, b * 3, "x < y + 1");'),
    ('14:12:constant:4', '+\t\tg(a, b * 4, "x < y + 1");'),
    ('15:2:delete:0', '-\treturn rc + true;'),
    ('15:12:arithmetic:0', '+\treturn rc - true;'),
    ('15:12:arithmetic:1', '+\treturn rc * true;'),
    ('15:14:boolean:0', '+\treturn rc + false;'),
]


def test_the_enumerator_yields_exactly_these_mutants():
    found = mutate.enumerate_file("x.yaml", "x/f.h", SNIPPET)
    got = []
    for m in found:
        lines = m.changed_lines(SNIPPET)
        got.append((m.id.split(":", 1)[1], lines[-1] if lines[-1][0] == "+" else lines[0]))
    assert got == EXPECTED
    assert {m.operator for m in found} == set(mutate.OPERATORS)
    assert len({m.id for m in found}) == len(found)


def test_mutants_never_touch_comments_or_strings():
    comment = (SNIPPET.index("/*"), SNIPPET.index("*/") + 2)
    line_comment = (SNIPPET.index("//"), SNIPPET.index("\n", SNIPPET.index("//")))
    string = (SNIPPET.index('"x < y'), SNIPPET.index('+ 1");') + 4)
    include = (SNIPPET.index("#include"), SNIPPET.index("#define"))
    for m in mutate.enumerate_file("x.yaml", "x/f.h", SNIPPET):
        changed = range(m.start, m.end) if m.end > m.start else range(m.start, m.start + 1)
        for a, b in (comment, line_comment, include):
            assert not (a <= m.start < b), m.id
        if m.operator not in ("swap-args", "delete"):  # which move or drop it whole, with its call
            assert not any(string[0] <= k < string[1] for k in changed), m.id
        assert SNIPPET[comment[0] : comment[1]] in m.apply(SNIPPET)
        assert '"x < y + 1"' in m.apply(SNIPPET) or m.operator == "delete"


def test_a_comment_or_string_with_operators_yields_no_mutant():
    text = 'void f(void)\n{\n\t/* a < b; x = 1 + 2; */\n\tpr_info("%d < %d\\n");\n}\n'
    assert mutate.enumerate_file("x.yaml", "x/f.c", text) == [
        m for m in mutate.enumerate_file("x.yaml", "x/f.c", text) if m.operator == "delete"]
    assert len(mutate.enumerate_file("x.yaml", "x/f.c", text)) == 1


def test_code_the_compare_build_leaves_out_holds_no_mutant():
    text = "#ifdef CONFIG_X\nint f(void) { return 1 + 2; }\n#else\nint f(void) { return 3; }\n#endif\n"
    on = mutate.enumerate_file("x.yaml", "x/f.c", text, {"CONFIG_X"})
    off = mutate.enumerate_file("x.yaml", "x/f.c", text, set())
    assert {m.id.split(":")[1] for m in on} == {"2"}
    assert {m.id.split(":")[1] for m in off} == {"4"}
    text = ("#if !defined(CONFIG_X)\nint f(void) { return 1; }\n#endif\n"
            "#if LEVEL > 1\nint g(void) { return 2; }\n#else\nint g(void) { return 3; }\n#endif\n")
    lines = {m.id.split(":")[1] for m in mutate.enumerate_file("x.yaml", "x/f.c", text, {"CONFIG_X"})}
    assert lines == {"5", "7"}  # a condition it cannot judge: both branches are compiled


def test_ids_are_stable_and_sampling_is_fixed():
    spec = load(ISA / "rmpopt.yaml")
    a = mutate.spec_mutants(spec, render_spec(spec))
    b = mutate.spec_mutants(load(ISA / "rmpopt.yaml"), render_spec(spec))
    assert [m.id for m in a] == [m.id for m in b]
    assert all(re.fullmatch(r"rmpopt/[\w/.-]+:\d+:\d+:[a-z-]+:\d+", m.id) for m in a)
    one = mutate.select(a, (), 20, 3)
    assert [m.id for m in one] == [m.id for m in mutate.select(b, (), 20, 3)]
    assert len(one) == 20 and [m.id for m in mutate.select(a, (), 20, 4)] != [m.id for m in one]
    assert {m.operator for m in mutate.select(a, ("negate",), None, 0)} == {"negate"}


def _plan():
    return mutate.Plan((find_clang(), *filter(None, [find_gcc()])))


def _mutant(spec, files, suffix_re):
    found = [m for m in mutate.spec_mutants(spec, files)
             if re.search(suffix_re, " / ".join(m.changed_lines(files[m.file])))]
    assert found, suffix_re
    return found[0]


def test_a_known_bad_mutant_is_killed():
    spec = load(ISA / "pvalidate.yaml")
    files = render_spec(spec)
    m = _mutant(spec, files, r'\+.*: "c" \(vaddr\), "a" \(rmp_psize\)')  # RAX and RCX swapped
    status, detail = mutate.run_mutant(spec, files, m, _plan())
    assert status == "killed" and detail.startswith("case "), detail


def test_a_mutant_that_does_not_compile_is_stillborn():
    spec = load(ISA / "pvalidate.yaml")
    files = render_spec(spec)
    m = next(m for m in mutate.spec_mutants(spec, files)
             if m.operator == "delete" and "return rc;" in files[m.file][m.start : m.end])
    assert mutate.run_mutant(spec, files, m, _plan())[0] == "stillborn"


def test_a_mutant_that_hangs_is_killed_by_the_timeout(monkeypatch):
    import time

    spec = load(ISA / "pvalidate.yaml")
    files = render_spec(spec)
    m = mutate.spec_mutants(spec, files)[0]
    plan = _plan()
    plan.timeout = 1
    monkeypatch.setattr(mutate, "run_mutant", lambda *a: time.sleep(120))  # a run that never ends
    start = time.monotonic()
    (out,) = mutate.run([(spec, files, m)], plan, jobs=1)
    assert out.status == "killed" and out.detail.startswith("hang"), out
    assert time.monotonic() - start < 10


def _equivalents(tmp_path: Path, text: str) -> list[mutate.Equivalent]:
    path = tmp_path / "equivalent.yaml"
    path.write_text(text)
    return mutate.load_equivalents(path)


def test_an_equivalent_entry_that_matches_no_mutant_is_stale(tmp_path):
    spec = load(ISA / "pvalidate.yaml")
    entries = _equivalents(tmp_path, (
        "- id: pvalidate/arch/x86/include/asm/sev.h:99:1:negate:0\n"
        "  diff: |\n    -\tif (x)\n    +\tif (!(x))\n"
        "  reason: a mutant of a line that is gone\n"))  # fmt: skip
    with pytest.raises(SpecError, match=r"equivalent.yaml:1:3: error: stale: no mutant pvalidate/"):
        mutate.mutate([spec], _plan(), entries, jobs=1)
    # out of scope (another spec, another operator): not judged by this run
    assert mutate.stale(entries, [], {}, {("pvalidate", "delete")}) == []


def test_an_equivalent_entry_whose_mutant_changed_is_stale(tmp_path):
    spec = load(ISA / "pvalidate.yaml")
    files = render_spec(spec)
    m = next(m for m in mutate.spec_mutants(spec, files) if m.operator == "negate")
    entries = _equivalents(tmp_path, (
        f"- id: {m.id}\n  diff: |\n    -\tif (no_rmpupdate)\n    +\tif (!(something_else))\n"
        "  reason: reviewed when the line was another\n"))  # fmt: skip
    with pytest.raises(SpecError, match="is now .* not the one reviewed"):
        mutate.mutate([spec], _plan(), entries, operators=("negate",), jobs=1)


def test_malformed_equivalents_are_reported_with_their_position(tmp_path):
    with pytest.raises(SpecError) as exc:
        _equivalents(tmp_path, "- id: x:1:1:negate:0\n  reason: no diff\n  why: extra\n")
    text = str(exc.value)
    assert "equivalent.yaml:1:3: error: missing diff" in text and "unknown key 'why'" in text


def test_the_bundled_equivalents_are_reviewed_and_current():
    entries = mutate.load_equivalents(ROOT / "tests/mutation/equivalent.yaml")
    specs = [load(p) for p in sorted(ISA.glob("*.yaml"))]
    every, texts = [], {}
    for spec in specs:
        files = render_spec(spec)
        texts.update(files)
        every += mutate.spec_mutants(spec, files)
    scope = {(s.instruction.mnemonic, op) for s in specs for op in mutate.OPERATORS}
    assert mutate.stale(entries, every, texts, scope) == []
    assert all(len(e.reason) > 40 for e in entries)


def test_a_runner_that_kills_nothing_fails(run_kgen, monkeypatch):
    """Break the runner on purpose: compare that always passes, review that finds nothing."""

    def passes(spec, compilers, engine, seed, count, opts, **kw):
        return cmp.Result(spec.path, engine, compilers, seed, opts, count)

    monkeypatch.setattr(cmp, "compare", passes)
    monkeypatch.setattr(mutate, "review_kill", lambda *a: "")
    result = run_kgen("mutate", "isa/pvalidate.yaml", "--operator", "negate", "--operator", "constant",
                      "--jobs", "2")  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "pvalidate.yaml: 0.0 % (0 killed of 7;" in result.output
    assert "survivor: pvalidate/arch/x86/include/asm/sev.h:34:2:negate:0" in result.output
    assert "+\tif (!(no_rmpupdate))" in result.output
    assert "kgen: 7 mutants neither killed nor listed" in result.stderr


@pytest.mark.slow
def test_a_fixed_sample_has_no_unexplained_survivor(run_kgen):
    result = run_kgen("mutate", "--sample", "40", "--seed", "1", "--jobs", "2")
    assert result.exit_code == 0, result.output
    assert re.search(r"^total: 100\.0 % \(\d+ killed of \d+;", result.output, re.M), result.output


def test_ctrl_c_stops_every_run_and_exits_130():
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "codegen.cli", "mutate", "isa/pvalidate.yaml", "--jobs", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    try:
        time.sleep(4)  # mutants are running
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal sends it: to the whole group
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    # no run of a mutant outlives the command (a compiler it killed may stay a zombie until
    # init reaps it)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    pytest.fail("a process of the run outlived kgen mutate")
