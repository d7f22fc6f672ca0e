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
HARNESS_DIR = ROOT / "tests" / "harness"
KERNEL_WARNINGS = ("-Wall", "-Wextra", "-Werror", "-std=gnu11")
# userspace stand-ins for kernel build flags; freestanding so the same
# objects also link into the bare ELF that the emulator runs
HARNESS_FLAGS = (
    "-ffreestanding", "-fno-builtin", "-fno-stack-protector", "-fcf-protection=none",
    "-mno-red-zone", "-fPIE", "-fno-sanitize=all",
)  # fmt: skip


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
    return [
        "-I", str(gen_root / spec.instruction.mnemonic / inc_dir),
        "-I", str(SHIM_DIR), "-I", str(HARNESS_DIR),
    ]  # fmt: skip


def _entry_name(kind: str) -> str:
    return "kgen_entry_" + kind.replace("-", "_")


def units(spec: Spec, gen_root: Path, work: Path) -> list[Unit]:
    """The generated files as translation units, each with its harness entry points.

    The header unit adds kgen_call_helper()/kgen_call_raw() around the
    helpers; each sweep unit adds kgen_entry_<kind>(), which calls the
    worker's setup, trigger and teardown, so no static function is unused;
    a last unit lists the forms.  Nothing in the generated files changes.
    """
    k, insn = spec.kernel, spec.instruction
    result = []
    forms = []
    for out in outputs(spec):
        src = gen_root / out.path
        if out.worker is None:
            args = ", ".join(f"args[{n}]" for n in range(len(insn.inputs)))
            helper = f"return {k.helper.name}(pa);" if k.helper else "(void)pa;\n\treturn false;"
            body = (
                f'#include "kharness.h"\n#include "{src}"\n\n'
                f"const int kgen_raw_nargs = {len(insn.inputs)};\n\n"
                f"bool kgen_call_helper(u64 pa)\n{{\n\t{helper}\n}}\n\n"
                f"bool kgen_call_raw(const u64 *args)\n{{\n"
                f"\treturn {k.raw_helper.name}({args});\n}}\n"
            )
            name = f"{insn.mnemonic}-helpers"
        else:
            w = out.worker
            entry = _entry_name(w.kind)
            forms.append((w.kind, entry))
            body = (
                f'#include "kharness.h"\n#include "{src}"\n\n'
                f"void {entry}(int which);\n"
                f"void {entry}(int which)\n{{\n"
                f"\tif (which == 0)\n\t\t{w.setup}();\n"
                f"\telse if (which == 1)\n\t\t{w.trigger}();\n"
                f"\telse\n\t\t{w.teardown}();\n}}\n"
            )
            name = f"{insn.mnemonic}-{w.kind}"
        path = work / f"{name}.c"
        path.write_text(body)
        result.append(Unit(name, path))
    table = "".join(f'\t{{ "{kind}", {entry} }},\n' for kind, entry in forms)
    decls = "".join(f"void {entry}(int which);\n" for _, entry in forms)
    path = work / f"{insn.mnemonic}-forms.c"
    path.write_text(
        f'#include "kharness.h"\n\n{decls}\nconst struct kgen_form kgen_forms[] = {{\n{table}'
        f"\t{{ 0, 0 }},\n}};\nconst int kgen_nforms = {len(forms)};\n"
    )
    result.append(Unit(f"{insn.mnemonic}-forms", path))
    return result


def compile_object(compiler: Compiler, unit: Unit, spec: Spec, gen_root: Path,
                   opt: str = "-O2", extra: tuple[str, ...] = (),
                   out_dir: Path | None = None) -> Path:  # fmt: skip
    stem = f"{unit.name}{opt.replace('-', '.')}.{compiler.family}.o"
    obj = (out_dir or unit.source.parent) / stem
    cmd = compiler.command(
        *KERNEL_WARNINGS, *HARNESS_FLAGS, opt, "-c", "-include", str(SHIM_HEADER),
        *include_dirs(spec, gen_root), *extra, "-o", str(obj), str(unit.source),
    )  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{compiler.name} {opt} rejected {unit.name}:\n{proc.stderr.strip()}")
    return obj


@dataclass(frozen=True)
class Harness:
    """The harness built at one optimisation level: a native program and a bare ELF."""

    opt: str
    native: Path
    emulated: Path


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"{what}:\n{proc.stderr.strip()}")


def build_harness(compiler: Compiler, spec: Spec, files: dict[str, str], work: Path,
                  opts: tuple[str, ...] = ("-O0", "-O2", "-Os")) -> list[Harness]:  # fmt: skip
    """Compile the generated files once per optimisation level and link both front ends."""
    gen_root = work / "gen"
    write_files(files, gen_root)
    tus = units(spec, gen_root, work)
    # the harness's own code is built once, optimised: only the generated code varies by level
    core_obj, emu_obj = (
        compile_object(compiler, Unit(name, HARNESS_DIR / f"{name}.c"), spec, gen_root, "-O2",
                       out_dir=work)
        for name in ("core", "emu")
    )  # fmt: skip
    native_obj = work / f"native.{compiler.family}.o"
    _run(
        compiler.command(*KERNEL_WARNINGS, "-O2", "-fPIE", "-I", str(HARNESS_DIR), "-c",
                         str(HARNESS_DIR / "native.c"), "-o", str(native_obj)),
        f"{compiler.name} rejected the native harness",
    )  # fmt: skip
    built = []
    for opt in opts:
        objs = [compile_object(compiler, u, spec, gen_root, opt, out_dir=work) for u in tus]
        objs.append(core_obj)
        native = work / f"harness{opt}.{compiler.family}"
        _run(compiler.command(*map(str, objs), str(native_obj), "-pie", "-o", str(native)),
             f"linking the native harness at {opt}")  # fmt: skip
        emulated = work / f"harness{opt}.{compiler.family}.elf"
        _run(
            compiler.command(*map(str, objs), str(emu_obj), "-nostdlib", "-static", "-no-pie",
                             "-Wl,-e,kgen_emu_run", "-o", str(emulated)),
            f"linking the emulated harness at {opt}",
        )  # fmt: skip
        built.append(Harness(opt, native, emulated))
    return built
