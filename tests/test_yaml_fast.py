"""libyaml's reading of a spec is PyYAML's reading, or it is not used.

codegen.yamlsource reads the texts it trusts libyaml with through PyYAML's C parser (about
ten times faster) and everything else, every failure included, through PyYAML's Python
reader.  These tests hold the fast reading to the reference one on every YAML file of the
project and on thousands of edited copies of them, and show that the check would see the
differences the fast path guards against.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from yaml.nodes import MappingNode, ScalarNode

from codegen import yamlsource
from codegen.diagnostics import SpecError
from codegen.spec import parse

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = sorted((ROOT / "isa").glob("*.yaml"))
CORPUS = sorted(
    p
    for p in ROOT.rglob("*.yaml")
    if ".venv" not in p.parts and ".git" not in p.parts and "build" not in p.parts
)


def shape(node):
    """Everything kgen reads of a node: kind, tag, where it starts, value, quoting, children."""
    if node is None:
        return None
    head = (type(node).__name__, node.tag, node.start_mark.line, node.start_mark.column)
    if isinstance(node, ScalarNode):
        return (*head, node.value, node.style)
    if isinstance(node, MappingNode):
        return (*head, tuple((shape(k), shape(v)) for k, v in node.value))
    return (*head, tuple(shape(item) for item in node.value))


def reference(text: str):
    try:
        node, problems = yamlsource.compose_reference(text, "t.yaml")
    except SpecError as exc:
        return ("error", [str(d) for d in exc.diagnostics])
    return shape(node), [str(d) for d in problems]


def disagreement(text: str) -> str | None:
    """How the fast reading of ``text`` differs from the reference one, or None."""
    fast = yamlsource.compose_fast(text, "t.yaml")
    if fast is None:
        return None  # read by the reference reader
    ref = reference(text)
    if ref[0] == "error":
        return f"libyaml reads what PyYAML refuses: {ref[1]}"
    if ref[1]:
        return f"libyaml finds no problem where PyYAML finds {ref[1]}"
    if shape(fast) != ref[0]:
        return f"different nodes:\n{shape(fast)}\n{ref[0]}"
    return None


def mutants(n: int, seed: int) -> list[str]:
    """Edited copies of the project's YAML: YAML's punctuation, tabs, quotes, odd characters."""
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in CORPUS]
    pieces = [*":-?[]{},#&*!|>'\"%@` \t\n\r\\", "\ufeff", "\x85", "\u2028", "é", "0o17", "yes",
              "~", "<<", ": ", "- ", "  ", "---", "...", "%YAML 1.2\n", "!!str ", "&a ", "*a",
              "\x07", "\n  ", "\n- ", ": |\n", ": >-\n", "{a: , b: 1}"]  # fmt: skip
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        t = rnd.choice(texts)
        for _ in range(rnd.randint(1, 4)):
            p, op = rnd.randrange(len(t) + 1), rnd.random()
            if op < 0.5:
                t = t[:p] + rnd.choice(pieces) + t[p:]
            elif op < 0.8:
                t = t[:p] + t[p + rnd.randint(1, 5) :]
            else:
                q = rnd.randrange(len(t) + 1)
                t = t[:p] + t[q : q + rnd.randint(1, 30)] + t[p:]
        out.append(t)
    return out


def test_the_bundled_specs_take_the_fast_path_and_read_the_same():
    assert len(BUNDLED) >= 6
    for path in BUNDLED:
        text = path.read_text()
        fast = yamlsource.compose_fast(text, "t.yaml")
        assert fast is not None, f"{path.name} no longer takes the fast path"
        assert disagreement(text) is None, path.name


def test_every_yaml_file_of_the_project_reads_the_same():
    assert len(CORPUS) > 100
    for path in CORPUS:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert disagreement(text) is None, path


@pytest.mark.parametrize("seed", [1, 2])
def test_edited_specs_read_the_same(seed):
    texts = mutants(1500, seed)
    fast = sum(yamlsource.compose_fast(t, "t.yaml") is not None for t in texts)
    assert fast > 200  # the check compares many texts, not only the ones it hands on
    bad = [(t, why) for t in texts if (why := disagreement(t))]
    assert not bad, f"{len(bad)} texts read otherwise, first {bad[0][0]!r:.300}: {bad[0][1]:.600}"


def test_every_error_and_problem_is_the_reference_readers():
    """A text with a problem is read again by PyYAML: the same messages, in the same places."""
    for text in [
        "a: 1\na: 2\n",  # duplicate key
        "a: &x 1\nb: *x\n",  # alias
        "a: [1, 2\n",  # syntax error
        "a:\tb\n",  # a tab libyaml reads as a separator
        "\ufeffa: 1\nb: \ufeffc\n",  # byte order marks
        "a: " + "[" * 40 + "]" * 40 + "\n",  # too deep
        "a: >-\n" + ("  " + "x" * 80 + "\n") * 60,  # too long a value
    ]:
        ref = reference(text)
        try:
            node, problems = yamlsource.compose(text, "t.yaml")
            got = (shape(node), [str(d) for d in problems])
        except SpecError as exc:
            got = ("error", [str(d) for d in exc.diagnostics])
        assert got == ref, f"{text!r:.80}"


def test_a_spec_loads_alike_either_way(monkeypatch):
    for path in BUNDLED:
        text = path.read_text()
        fast = parse(text, path.name)
        monkeypatch.setattr(yamlsource, "compose_fast", lambda text, path: None)
        slow = parse(text, path.name)
        monkeypatch.undo()
        assert fast == slow and repr(fast) == repr(slow)
        assert [fast.mark(k) for k in fast.marks] == [slow.mark(k) for k in slow.marks]


def test_the_check_sees_what_the_guards_keep_out(monkeypatch):
    """Without its guards, the fast path reads some texts otherwise, and the check says so."""
    # libyaml's plain style is '' where PyYAML's is None
    plain = yaml.composer.Composer.compose_scalar_node
    monkeypatch.setattr(
        yamlsource._FastLoader,
        "compose_scalar_node",
        lambda self, anchor: yamlsource._Checks.compose_scalar_node(self, anchor),
    )
    assert "different nodes" in (disagreement("a: b\n") or "")
    # an empty plain scalar: libyaml marks it at the next token
    monkeypatch.setattr(yamlsource._Checks, "compose_scalar_node", plain)

    def normalised(self, anchor):
        node = plain(self, anchor)
        node.style = node.style or None
        return node

    monkeypatch.setattr(yamlsource._FastLoader, "compose_scalar_node", normalised)
    assert "different nodes" in (disagreement("{a: , b: 1}\n") or "")
    # the text guard: a tab inside a value, which libyaml reads and PyYAML refuses
    monkeypatch.setattr(yamlsource, "_FAST_TEXT", yamlsource.re.compile(r"(?s).*"))
    assert "PyYAML refuses" in (disagreement("a: b\tc\n") or "")
