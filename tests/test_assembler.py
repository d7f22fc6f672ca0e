"""clang's assembler as a check of a spec's bytes (codegen/assembler.py).

An assembler that does not know a mnemonic is a note; one that fails for another reason (a
full disk under its cache, a crash) says nothing about the mnemonic, and must not be
reported as not knowing it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from codegen import toolchain
from codegen.cli import main

ROOT = Path(__file__).resolve().parent.parent


def fake_clang(tmp_path: Path, stderr: str) -> Path:
    """A clang that knows no instruction: it prints ``stderr`` and fails."""
    script = tmp_path / "clang"
    script.write_text(
        '#!/bin/sh\nif [ "$1" = --version ]; then echo "clang version 22.1.8"; exit 0; fi\n'
        f"cat >&2 <<'END'\n{stderr}\nEND\nexit 1\n"
    )
    script.chmod(0o755)
    return script


@pytest.mark.parametrize(
    ("stderr", "shown"),
    [
        ("insn.s:1:1: error: invalid instruction mnemonic 'rmpopt'",
         "clang 22.1.8 does not know 'rmpopt'"),
        ("clang -cc1as: fatal error: error in backend: IO failure on output stream: No space "
         "left on device", "encodings not checked against an assembler: clang 22.1.8 could not "
         "assemble 'rmpopt': clang -cc1as: fatal error: error in backend: IO failure on output "
         "stream: No space left on device"),
    ],
)  # fmt: skip
def test_an_assembler_that_fails_is_not_one_that_does_not_know(
    tmp_path, monkeypatch, stderr, shown
):
    monkeypatch.setenv("CC", str(fake_clang(tmp_path, stderr)))
    toolchain.find_clang.cache_clear()
    try:
        result = CliRunner().invoke(main, ["validate", str(ROOT / "isa" / "rmpopt.yaml")])
    finally:
        toolchain.find_clang.cache_clear()  # the next test finds its own
    assert shown in result.output
    if "invalid" not in stderr:
        assert "does not know" not in result.output
