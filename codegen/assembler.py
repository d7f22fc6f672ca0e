"""Encodings checked against clang's integrated assembler.

LLVM's MC tests (llvm/test/MC/X86/SNP-64.s) are the reference for the SNP
encodings; here the installed clang assembles a mnemonic and its bytes are
compared with what a spec or the table of known encodings says.
"""

from __future__ import annotations

import subprocess
import tempfile
from functools import cache
from pathlib import Path

from .toolchain import Compiler, ToolchainError


@cache
def assemble(compiler: Compiler, mnemonic: str) -> bytes | None:
    """The bytes ``compiler`` emits for ``mnemonic`` alone, or None if it does not know it; a
    ToolchainError when it fails otherwise (a full disk under its cache says nothing of the
    mnemonic)."""
    with tempfile.TemporaryDirectory(prefix="kgen-as-") as tmp:
        src, obj = Path(tmp) / "insn.s", Path(tmp) / "insn.o"
        src.write_text(f"{mnemonic}\n")
        proc = subprocess.run(compiler.command("-c", "-x", "assembler", str(src), "-o", str(obj)),
                              capture_output=True, check=False)  # fmt: skip
        if proc.returncode != 0:
            said = proc.stderr.decode(errors="replace")
            if "invalid instruction mnemonic" in said:
                return None
            why = next((line for line in said.splitlines() if "error" in line), said.strip())
            raise ToolchainError(f"{compiler.name} could not assemble '{mnemonic}': "
                                 f"{why or f'exit status {proc.returncode}'}")  # fmt: skip
        with open(obj, "rb") as f:
            from elftools.elf.elffile import ELFFile  # heavy, and only needed here

            text = ELFFile(f).get_section_by_name(".text")
            return text.data() if text is not None else None
