"""The README cannot drift: every example command it shows is run and its output compared.

An example is a ``` block whose first line starts with `$ kgen`; each `$ kgen` line in it is a
command, and the lines up to the next one its output (standard output and error, as a
terminal shows them). Only marked parts may vary: `...` alone on a line stands for any
lines, `...` in a line for any text, and durations, rates and version numbers are not
compared. A block after `<!-- readme: not run (REASON) -->` is shown, not run; one after
`<!-- readme: after STEP; STEP... -->` runs in a copy of isa/ and generated/ once the steps
are done there: `git commit` (of the copy as it is), `edit FILE "OLD" "NEW"`, or `kgen ...`.
"""

from __future__ import annotations

import re
import shlex

import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"
NOT_RUN = re.compile(r"<!-- readme: not run \((.+)\) -->")
SETUP = re.compile(r"<!-- readme: after (.+) -->")
VARIABLE = [
    (re.compile(r"\b\d+(\.\d+)? s\b"), "<seconds> s"),
    (re.compile(r"\b[\d,]+ executions/s\b"), "<rate> executions/s"),
    (re.compile(r"\b\d+\.\d+\.\d+\b"), "<version>"),
]


def examples(text: str) -> list[tuple[int, str, list[str], str | None, str | None]]:
    """(line number, command, expected output lines, why not run, setup steps) of every example."""
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("```") and i + 1 < len(lines) and lines[i + 1].startswith("$ kgen"):
            why = NOT_RUN.fullmatch(lines[i - 1].strip()) if i else None
            setup = SETUP.fullmatch(lines[i - 1].strip()) if i else None
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            block = lines[i + 1 : end]
            starts = [k for k, line in enumerate(block) if line.startswith("$ kgen")]
            for a, b in zip(starts, starts[1:] + [len(block)], strict=True):
                out = block[a + 1 : b]
                while out and not out[-1].strip():
                    out.pop()
                found.append(
                    (i + 2 + a, block[a], out, why and why.group(1), setup and setup.group(1))
                )
            i = end
        i += 1
    return found


def normal(line: str) -> str:
    for pattern, repl in VARIABLE:
        line = pattern.sub(repl, line)
    return line


def pattern_of(expected: list[str]) -> re.Pattern:
    parts = []
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(map(re.escape, normal(line).split("..."))) + r"\n")
    return re.compile("".join(parts), re.DOTALL)


EXAMPLES = examples(README.read_text())


def test_the_readme_has_examples_that_run():
    assert sum(why is None for *_, why, _ in EXAMPLES) >= 4


def _param(line, command, expected, why, setup):
    marks = [pytest.mark.slow] if " compare" in command or " mutate" in command else []
    if why:
        marks.append(pytest.mark.skip(reason=f"README.md:{line}: not run: {why}"))
    elif "--reference .kernel" in command and not (ROOT / ".kernel" / "src").is_dir():
        marks.append(pytest.mark.skip(reason="needs the kernel material of `make test`"))
    return pytest.param(command, expected, setup, marks=marks, id=f"README.md:{line}")


def _steps(steps: str) -> list[list[str]]:
    """The words of each step of ``steps``: separated by ';' outside quotes."""
    lexer = shlex.shlex(steps, posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    found: list[list[str]] = [[]]
    for token in lexer:
        if token == ";":
            found.append([])
        else:
            found[-1].append(token)
    return [words for words in found if words]


def test_setup_steps_split_at_semicolons_outside_quotes():
    assert _steps('edit f "a;" "b"; kgen render') == [["edit", "f", "a;", "b"], ["kgen", "render"]]


def _set_up(steps: str, where, run_kgen) -> None:
    import shutil
    import subprocess

    shutil.copytree(ROOT / "isa", where / "isa")
    shutil.copytree(ROOT / "generated", where / "generated")
    for words in _steps(steps):
        step = shlex.join(words)
        if words == ["git", "commit"]:
            git = ["git", "-c", "user.name=kgen", "-c", "user.email=kgen@localhost"]
            for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "before"]):
                subprocess.run([*git, *args], cwd=where, check=True, capture_output=True)
        elif words[0] == "edit":
            path, old, new = where / words[1], words[2], words[3]
            text = path.read_text()
            assert text.count(old) == 1, f"{words[1]} has {old!r} {text.count(old)} times"
            path.write_text(text.replace(old, new))
        else:
            assert words[0] == "kgen", f"unknown README setup step {step!r}"
            assert run_kgen(*words[1:], cwd=where).exit_code == 0, step


@pytest.mark.parametrize("command, expected, setup", [_param(*e) for e in EXAMPLES])
def test_readme_example(run_kgen, tmp_path, command, expected, setup):
    words = shlex.split(command[2:], comments=True)
    assert words[0] == "kgen"
    if setup:
        _set_up(setup, tmp_path, run_kgen)
    result = run_kgen(*words[1:], **({"cwd": tmp_path} if setup else {}))
    got = "".join(normal(line) + "\n" for line in result.output.splitlines())
    assert pattern_of(expected).fullmatch(got), (
        f"`{command}` no longer prints what the README shows; it prints:\n{result.output}"
    )
