"""No input crashes the loader: every outcome is a Spec or a SpecError with positions."""

from __future__ import annotations

import dataclasses
import os
import re
import typing

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from codegen import model
from codegen.diagnostics import SpecError
from codegen.spec import parse
from tests.conftest import RMPOPT_YAML

REAL = RMPOPT_YAML.read_text()
REAL_LINES = REAL.splitlines(keepends=True)


def _vocabulary() -> list[str]:
    """Every key and literal of the format, so generated documents get deep."""
    words: set[str] = set()
    for cls in vars(model).values():
        if dataclasses.is_dataclass(cls) and isinstance(cls, type):
            words.update(f.name for f in dataclasses.fields(cls))
    for tp in (model.GeneralRegister, model.Flag, model.ScalarType):
        words.update(str(a) for a in typing.get_args(tp))
    return sorted(words)


WORDS = _vocabulary()
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from(WORDS),
    st.text(max_size=12), st.sampled_from(["1G", "2T", "0x40000000", "*/", "%s", "\x1b", "on"]),
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(WORDS), st.text(max_size=6)), inner, max_size=6),
    ),
    max_leaves=40,
)
# KGEN_FUZZ_EXAMPLES=20000 for a long run; the default keeps the suite quick.
FUZZ = settings(
    max_examples=int(os.environ.get("KGEN_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def outcome(text: str) -> None:
    """Parse; any exception other than SpecError fails the test."""
    try:
        parse(text, "fuzz.yaml")
    except SpecError as exc:
        assert exc.diagnostics
        for d in exc.diagnostics:
            assert d.mark.path == "fuzz.yaml" and d.mark.line >= 1 and d.mark.col >= 1
            assert d.message and "\n" not in d.message


@FUZZ
@given(documents)
def test_arbitrary_documents(doc):
    outcome(yaml.safe_dump(doc, allow_unicode=True))


@FUZZ
@given(st.fixed_dictionaries({"format": scalars, "instruction": documents, "kernel": documents}))
def test_arbitrary_spec_shaped_documents(doc):
    outcome(yaml.safe_dump(doc))


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text(text):
    outcome(text)


mutation = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, len(REAL_LINES) - 1)),
    st.tuples(st.just("duplicate"), st.integers(0, len(REAL_LINES) - 1)),
    st.tuples(st.just("swap"), st.integers(0, len(REAL_LINES) - 1), st.integers(0, len(REAL_LINES) - 1)),
    st.tuples(st.just("char"), st.integers(0, len(REAL) - 1),
              st.sampled_from(list(":-[]{}&*!|>'\"%@`#,\t\n 0xXfF") + ["\x00", "é"])),
    st.tuples(st.just("indent"), st.integers(0, len(REAL_LINES) - 1), st.integers(-4, 4)),
)  # fmt: skip


def mutate(ops) -> str:
    lines = list(REAL_LINES)
    text = None
    for op in ops:
        if op[0] == "delete" and op[1] < len(lines):
            del lines[op[1]]
        elif op[0] == "duplicate" and op[1] < len(lines):
            lines.insert(op[1], lines[op[1]])
        elif op[0] == "swap" and max(op[1], op[2]) < len(lines):
            lines[op[1]], lines[op[2]] = lines[op[2]], lines[op[1]]
        elif op[0] == "indent" and op[1] < len(lines):
            line = lines[op[1]]
            lines[op[1]] = " " * op[2] + line if op[2] > 0 else line[-op[2] :]
        elif op[0] == "char":
            text = "".join(lines)
            pos = op[1] % max(len(text), 1)
            lines = (text[:pos] + op[2] + text[pos + 1 :]).splitlines(keepends=True)
    return "".join(lines)


@FUZZ
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_real_spec(ops):
    outcome(mutate(ops))


def test_the_real_spec_parses():
    assert parse(REAL, "rmpopt.yaml").instruction.mnemonic == "rmpopt"


# --- limits and strict values: never a traceback, whatever the size -----------

YAML11 = ["yes", "No", "ON", "off", "y", "N", "04000", "-0_7", "34:08", "1:02:03.5", "0o17",
          "0o", "0o8", "0b101", "0x_", "1_000", "+12", "-0", ".inf", ".NaN", "~", "Null"]  # fmt: skip
odd_values = st.one_of(
    st.sampled_from(YAML11),
    st.integers(-(2**300), 2**300).map(str),
    st.integers(-(2**300), 2**300).map(hex),
    st.tuples(st.integers(1, 5000), st.sampled_from(["", "K", "G", "E"])).map(
        lambda t: "9" * t[0] + t[1]
    ),
    st.integers(4000, 9000).map(lambda n: "y" * n),
    st.integers(1, 60).map(lambda n: ">-\n" + "\n".join(["      " + "z" * 99] * n)),
)
VALUE_LINES = [i for i, line in enumerate(REAL_LINES)
               if re.match(r"\s*(- )?\w+: \S", line) and not line.rstrip().endswith(":")]  # fmt: skip


@FUZZ
@given(st.sampled_from(VALUE_LINES), odd_values)
def test_real_spec_with_odd_values(index, value):
    lines = list(REAL_LINES)
    key = re.match(r"(\s*(- )?\w+: )", lines[index]).group(1)
    lines[index] = key + value + "\n"
    outcome("".join(lines))


def nested(depth: int, style: str, closed: bool) -> str:
    if style == "flow-list":
        return "x: " + "[" * depth + ("]" * depth if closed else "") + "\n"
    if style == "flow-map":
        return "x: " + "{a: " * depth + ("1" + "}" * depth if closed else "") + "\n"
    if style == "block-map":
        return "".join(" " * i + "a:\n" for i in range(depth)) + (
            " " * depth + "b: 1\n" if closed else ""
        )
    return "".join(" " * (2 * i) + "- \n" for i in range(depth)) + (
        " " * 2 * depth + "- 1\n" if closed else ""
    )


STYLES = ["flow-list", "flow-map", "block-map", "block-list"]


@FUZZ
@given(st.integers(1, 3000), st.sampled_from(STYLES), st.booleans())
def test_deep_nesting(depth, style, closed):
    outcome(nested(depth, style, closed))


@pytest.mark.parametrize("depth", [31, 32, 33, 330, 1000, 20_000])
@pytest.mark.parametrize("style", STYLES)
def test_deep_nesting_at_known_depths(depth, style):
    outcome(nested(depth, style, closed=True))


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=20), st.sampled_from(YAML11), odd_values), max_size=8))
def test_documents_of_odd_scalars(values):
    outcome("\n".join(f"k{i}: {v}" for i, v in enumerate(values)))
