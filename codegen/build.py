"""Compiling generated kernel code in userspace, against the kernel-API shim.

The generated files are compiled unmodified: the shim header is forced in
with ``-include`` and the generated header fragment is found by the sweep's
own ``#include <asm/...>`` line through ``-I``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from .model import Spec
from .render import include_split, outputs
from .toolchain import Compiler

ROOT = Path(__file__).resolve().parent.parent
SHIM_DIR = ROOT / "tests" / "shim"
SHIM_HEADER = SHIM_DIR / "kshim.h"
KERNEL_WARNINGS = ("-Wall", "-Wextra", "-Werror", "-std=gnu11")


class BuildError(Exception):
    """The compiler rejected generated code; the message holds its output."""


@dataclass(frozen=True)
class Unit:
    """A translation unit that compiles one generated sweep form with its header."""

    name: str  # e.g. "rmpopt-kthread"
    source: Path


def write_files(files: dict[str, str], root: Path) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def include_dirs(spec: Spec, gen_root: Path) -> list[str]:
    """-I so that the sweep's `#include <asm/...>` finds the generated header fragment."""
    inc_dir, _ = include_split(spec.kernel.raw_helper.header)
    return ["-I", str(gen_root / spec.instruction.mnemonic / inc_dir), "-I", str(SHIM_DIR)]


def units(spec: Spec, gen_root: Path, work: Path, tail: str = "") -> list[Unit]:
    """One unit per generated file: the header alone, and each sweep form.

    Each unit calls the fragment's entry points so that no static function
    is unused; ``tail`` is C appended to every sweep unit (the harness's
    driver).
    """
    result = []
    for out in outputs(spec):
        src = gen_root / out.path
        if out.worker is None:
            body = f'#include "{src}"\n'
            name = f"{spec.instruction.mnemonic}-helpers"
        else:
            w = out.worker
            body = (
                f'#include "{src}"\n\n'
                "void kgen_entry_points(int which);\n"
                "void kgen_entry_points(int which)\n{\n"
                f"\tif (which == 0)\n\t\t{w.setup}();\n"
                f"\telse if (which == 1)\n\t\t{w.trigger}();\n"
                f"\telse\n\t\t{w.teardown}();\n}}\n{tail}"
            )
            name = f"{spec.instruction.mnemonic}-{w.kind}"
        path = work / f"{name}.c"
        path.write_text(body)
        result.append(Unit(name, path))
    return result


def compile_object(compiler: Compiler, unit: Unit, spec: Spec, gen_root: Path,
                   opt: str = "-O2", extra: tuple[str, ...] = ()) -> Path:  # fmt: skip
    obj = unit.source.with_suffix(f"{opt.replace('-', '.')}.{compiler.family}.o")
    cmd = compiler.command(
        *KERNEL_WARNINGS, opt, "-c", "-include", str(SHIM_HEADER),
        *include_dirs(spec, gen_root), *extra, "-o", str(obj), str(unit.source),
    )  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{compiler.name} {opt} rejected {unit.name}:\n{proc.stderr.strip()}")
    return obj
