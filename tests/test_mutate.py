"""kgen mutate: the enumerator is exact, the runner kills what it must, the equivalents cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from codegen import compare as cmp, mutate
from codegen.ctext import line_of
from codegen.diagnostics import SpecError
from codegen.render import render_spec
from codegen.spec import load
from codegen.toolchain import find_clang, find_gcc
from tests.conftest import ISA, ROOT

SNIPPET = """/* a < b + 1, true */
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
"""

# Every mutant of SNIPPET, in order: its id after the file name (the item it is in, the operator,
# its number among that operator's mutants in the item), and the line of its diff that shows it
# (the + line, or the first - line of a deletion).
EXPECTED = [
    ("LIMIT:constant:0", "+#define LIMIT 0"),
    ("LIMIT:constant:1", "+#define LIMIT 1"),
    ("LIMIT:constant:2", "+#define LIMIT (-1)"),
    ("LIMIT:constant:3", "+#define LIMIT 3"),
    ("LIMIT:constant:4", "+#define LIMIT 5"),
    ("LIMIT:constant:5", "+#define LIMIT 8"),
    ("f:delete:0", '-\tasm volatile(".byte 0xf2, 0x0f"'),
    ("f:byte:0", '+\tasm volatile(".byte 0xf3, 0x0f"'),
    ("f:byte:1", '+\tasm volatile(".byte 0xf1, 0x0f"'),
    ("f:byte:2", '+\tasm volatile(".byte 0xf2, 0x10"'),
    ("f:byte:3", '+\tasm volatile(".byte 0xf2, 0x0e"'),
    ("f:constraint:0", '+\t\t     : "a" (a), "d" (b)'),
    ("f:constraint:1", '+\t\t     : "c" (a), "a" (b)'),
    ("f:constraint:2", '+\t\t     : "=b" (rc), "=@ccc" (*ok)'),
    ("f:constraint:3", '+\t\t     : "=S" (rc), "=@ccc" (*ok)'),
    ("f:constraint:4", '+\t\t     : "=D" (rc), "=@ccc" (*ok)'),
    ("f:constraint:5", '+\t\t     : "=a" (rc), "=@ccnc" (*ok)'),
    ("f:constraint:6", '+\t\t     : "=a" (rc), "=@ccz" (*ok)'),
    ("f:constraint:7", '+\t\t     : "d" (a), "c" (b)'),
    ("f:constraint:8", '+\t\t     : "b" (a), "d" (b)'),
    ("f:constraint:9", '+\t\t     : "S" (a), "d" (b)'),
    ("f:constraint:10", '+\t\t     : "D" (a), "d" (b)'),
    ("f:constraint:11", '+\t\t     : "c" (a), "b" (b)'),
    ("f:constraint:12", '+\t\t     : "c" (a), "S" (b)'),
    ("f:constraint:13", '+\t\t     : "c" (a), "D" (b)'),
    ("f:constraint:14", '+\t\t     : "cc");'),
    ("f:constraint:15", '+\t\t     : "memory");'),
    ("f:negate:0", "+\tif (!(a < b && rc != LIMIT)) // a > b - 1"),
    ("f:delete:1", "-\tif (a < b && rc != LIMIT) // a > b - 1"),
    ("f:relational:0", "+\tif (a <= b && rc != LIMIT) // a > b - 1"),
    ("f:relational:1", "+\tif (a > b && rc != LIMIT) // a > b - 1"),
    ("f:relational:2", "+\tif (a >= b && rc != LIMIT) // a > b - 1"),
    ("f:relational:3", "+\tif (a == b && rc != LIMIT) // a > b - 1"),
    ("f:relational:4", "+\tif (a != b && rc != LIMIT) // a > b - 1"),
    ("f:logical:0", "+\tif (a < b || rc != LIMIT) // a > b - 1"),
    ("f:relational:5", "+\tif (a < b && rc < LIMIT) // a > b - 1"),
    ("f:relational:6", "+\tif (a < b && rc <= LIMIT) // a > b - 1"),
    ("f:relational:7", "+\tif (a < b && rc > LIMIT) // a > b - 1"),
    ("f:relational:8", "+\tif (a < b && rc >= LIMIT) // a > b - 1"),
    ("f:relational:9", "+\tif (a < b && rc == LIMIT) // a > b - 1"),
    ("f:swap-args:0", '+\t\tg(b * 2, a, "x < y + 1");'),
    ("f:swap-args:1", '+\t\tg(a, "x < y + 1", b * 2);'),
    ("f:delete:2", "+\t\t{}"),
    ("f:arithmetic:0", '+\t\tg(a, b / 2, "x < y + 1");'),
    ("f:arithmetic:1", '+\t\tg(a, b + 2, "x < y + 1");'),
    ("f:constant:0", '+\t\tg(a, b * 0, "x < y + 1");'),
    ("f:constant:1", '+\t\tg(a, b * 1, "x < y + 1");'),
    ("f:constant:2", '+\t\tg(a, b * (-1), "x < y + 1");'),
    ("f:constant:3", '+\t\tg(a, b * 3, "x < y + 1");'),
    ("f:constant:4", '+\t\tg(a, b * 4, "x < y + 1");'),
    ("f:delete:3", "-\treturn rc + true;"),
    ("f:arithmetic:2", "+\treturn rc - true;"),
    ("f:arithmetic:3", "+\treturn rc * true;"),
    ("f:boolean:0", "+\treturn rc + false;"),
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
        m for m in mutate.enumerate_file("x.yaml", "x/f.c", text) if m.operator == "delete"
    ]
    assert len(mutate.enumerate_file("x.yaml", "x/f.c", text)) == 1


def test_code_the_compare_build_leaves_out_holds_no_mutant():
    text = (
        "#ifdef CONFIG_X\nint f(void) { return 1 + 2; }\n#else\nint f(void) { return 3; }\n#endif\n"
    )
    on = mutate.enumerate_file("x.yaml", "x/f.c", text, {"CONFIG_X"})
    off = mutate.enumerate_file("x.yaml", "x/f.c", text, set())
    assert {line_of(text, m.start) for m in on} == {2}
    assert {line_of(text, m.start) for m in off} == {4}
    text = (
        "#if !defined(CONFIG_X)\nint f(void) { return 1; }\n#endif\n"
        "#if LEVEL > 1\nint g(void) { return 2; }\n#else\nint g(void) { return 3; }\n#endif\n"
    )
    lines = {
        line_of(text, m.start) for m in mutate.enumerate_file("x.yaml", "x/f.c", text, {"CONFIG_X"})
    }
    assert lines == {5, 7}  # a condition it cannot judge: both branches are compiled


def test_ids_are_stable_and_sampling_is_fixed():
    spec = load(ISA / "rmpopt.yaml")
    a = mutate.spec_mutants(spec, render_spec(spec))
    b = mutate.spec_mutants(load(ISA / "rmpopt.yaml"), render_spec(spec))
    assert [m.id for m in a] == [m.id for m in b]
    assert all(re.fullmatch(r"rmpopt/[\w/.-]+:\w+:[a-z-]+:\d+", m.id) for m in a)
    one = mutate.select(a, (), 20, 3)
    assert [m.id for m in one] == [m.id for m in mutate.select(b, (), 20, 3)]
    assert len(one) == 20 and [m.id for m in mutate.select(a, (), 20, 4)] != [m.id for m in one]
    assert {m.operator for m in mutate.select(a, ("negate",), None, 0)} == {"negate"}


def _by_id(name: str, text: str) -> dict[str, str]:
    """Each mutant's id -> the lines of its diff."""
    return {
        m.id: " / ".join(m.changed_lines(text)) for m in mutate.enumerate_file("x.yaml", name, text)
    }


KTHREAD = "rmpopt/arch/x86/virt/svm/sev-kthread.c"
NEW_FUNCTION = "static int added(u64 a)\n{\n\tif (a > 3)\n\t\treturn 1;\n\treturn 0;\n}\n\n"


def test_an_edit_outside_an_item_leaves_the_ids_inside_it_alone():
    """A function, a #define and a declaration inserted above others: every id of the items
    below names the same mutant as before, although all their lines moved."""
    text = render_spec(load(ISA / "rmpopt.yaml"))[KTHREAD]
    before = _by_id(KTHREAD, text)
    at = text.index("static int rmpopt_cpu_online(")
    edited = text[:at] + NEW_FUNCTION + "#define EXTRA 5\nstatic int extra = 2;\n\n" + text[at:]
    after = _by_id(KTHREAD, edited)
    assert {
        k: v for k, v in after.items() if k.split(":")[1] not in ("added", "EXTRA", "extra")
    } == before
    assert {k.split(":")[1] for k in set(after) - set(before)} == {"added", "EXTRA", "extra"}
    assert after[f"{KTHREAD}:added:relational:0"].endswith("+\tif (a < 3)")
    assert after[f"{KTHREAD}:EXTRA:constant:0"] == "-#define EXTRA 5 / +#define EXTRA 0"
    # the same for the snippet's macro and function, below five new lines
    shifted = "\n" * 3 + "#define OTHER 2\nstatic int other = 1;\n" + SNIPPET
    assert {
        k: v
        for k, v in _by_id("x/f.h", shifted).items()
        if ":OTHER:" not in k and ":other:" not in k
    } == _by_id("x/f.h", SNIPPET)


def test_an_edit_inside_a_function_renumbers_its_ids_and_the_diff_catches_it(tmp_path):
    """A comparison added at the top of rmpopt_cpu_online takes relational:0 there; an entry
    reviewed for the old relational:0 is stale by its diff, and other functions keep their ids."""
    spec = load(ISA / "rmpopt.yaml")
    files = render_spec(spec)
    text = files[KTHREAD]
    old = next(
        m
        for m in mutate.spec_mutants(spec, files)
        if m.id == f"{KTHREAD}:rmpopt_cpu_online:relational:0"
    )
    at = text.index("{", text.index("static int rmpopt_cpu_online(")) + 2
    edited = text[:at] + "\tif (cpu >= nr_cpu_ids)\n\t\treturn 0;\n" + text[at:]
    before, after = _by_id(KTHREAD, text), _by_id(KTHREAD, edited)
    assert after[old.id] == "-\tif (cpu >= nr_cpu_ids) / +\tif (cpu < nr_cpu_ids)" != before[old.id]
    assert after[f"{KTHREAD}:rmpopt_cpu_online:relational:5"] == before[old.id]
    assert {k: v for k, v in after.items() if ":rmpopt_cpu_online:" not in k} == {
        k: v for k, v in before.items() if ":rmpopt_cpu_online:" not in k
    }
    entries = _equivalents(
        tmp_path,
        f"- id: {old.id}\n  diff: |\n"
        + "".join(f"    {ln}\n" for ln in old.changed_lines(text))
        + "  reason: reviewed before the edit, of the line below\n",
    )
    scope = {("rmpopt", "relational")}
    assert mutate.stale(entries, mutate.spec_mutants(spec, files), files, scope) == []
    files2 = dict(files, **{KTHREAD: edited})
    (problem,) = mutate.stale(entries, mutate.spec_mutants(spec, files2), files2, scope)
    assert "not the one reviewed" in problem.message


def _plan():
    return mutate.Plan((find_clang(), *filter(None, [find_gcc()])))


def _mutant(spec, files, suffix_re):
    found = [
        m
        for m in mutate.spec_mutants(spec, files)
        if re.search(suffix_re, " / ".join(m.changed_lines(files[m.file])))
    ]
    assert found, suffix_re
    return found[0]


def test_a_known_bad_mutant_is_killed():
    spec = load(ISA / "pvalidate.yaml")
    files = render_spec(spec)
    m = _mutant(spec, files, r'\+.*: "c" \(vaddr\), "a" \(rmp_psize\)')  # RAX and RCX swapped
    status, detail = mutate.run_mutant(spec, files, m, _plan())
    assert status == "killed" and detail.startswith("case "), detail


def test_a_negative_first_delay_is_an_infinite_timeout_and_killed():
    """msecs_to_jiffies() of a negative value is MAX_JIFFY_OFFSET, as in <linux/jiffies.h>:
    a first delay of -1 ms means the first pass never comes (it was 0 jiffies here once)."""
    spec = load(ISA / "rmpopt.yaml")
    files = render_spec(spec)
    m = next(
        m
        for m in mutate.spec_mutants(spec, files)
        if m.id == "rmpopt/arch/x86/virt/svm/sev-delayed-work.c:RMPOPT_FIRST_DELAY_MS:constant:1"
    )
    assert m.changed_lines(files[m.file])[1] == "+#define RMPOPT_FIRST_DELAY_MS\t(-1)"
    status, detail = mutate.run_mutant(spec, files, m, _plan())
    assert status == "killed" and detail.startswith("case "), detail


def test_a_mutant_that_does_not_compile_is_stillborn():
    spec = load(ISA / "pvalidate.yaml")
    files = render_spec(spec)
    m = next(
        m
        for m in mutate.spec_mutants(spec, files)
        if m.operator == "delete" and "return rc;" in files[m.file][m.start : m.end]
    )
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
        "- id: pvalidate/arch/x86/include/asm/sev.h:gone:negate:0\n"
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
        _equivalents(tmp_path, "- id: x:f:negate:0\n  reason: no diff\n  why: extra\n")
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
    assert "survivor: pvalidate/arch/x86/include/asm/sev.h:pvalidate:negate:0" in result.output
    assert "+\tif (!(no_rmpupdate))" in result.output
    assert "kgen: 7 mutants neither killed nor listed" in result.stderr


def test_code_that_fails_compare_unmutated_is_no_score(run_kgen, monkeypatch):
    """Were the rendered code itself to fail compare, every mutant would be 'killed' and the
    score 100 %: the run compares the unmutated code first and stops when it fails."""

    def fails(spec, compilers, engine, seed, count, opts, **kw):
        result = cmp.Result(spec.path, engine, compilers, seed, opts, count)
        result.mismatches.append(
            cmp.Mismatch(spec.path, "-O2", 3, 0, "E 0", "B broken", (), "", "kgen compare ...")
        )
        return result

    monkeypatch.setattr(cmp, "compare", fails)
    result = run_kgen("mutate", "isa/pvalidate.yaml", "--operator", "negate", "--jobs", "2")
    assert result.exit_code == 1, result.output
    assert "100.0 %" not in result.output
    assert (
        "kgen: isa/pvalidate.yaml: error: the unmutated code does not pass what each mutant runs "
        "(killed: case 3 at -O2: expected 'E 0', got 'B broken')"
    ) in result.stderr


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


def test_an_equivalents_file_that_is_not_a_regular_file_is_named_so(run_kgen, tmp_path):
    result = run_kgen("mutate", "isa/psmash.yaml", "--equivalents", "/dev/null")
    assert result.exit_code == 2 and "not a regular file: /dev/null" in result.output
    result = run_kgen("mutate", "isa/psmash.yaml", "--equivalents", tmp_path / "none.yaml")
    assert result.exit_code == 2 and "no such file:" in result.output
