"""The generated code against real kernel material: checkpatch, and kbuild with gcc and clang.

`make test` runs tests/kernel/get-kernel-material first, which installs Debian's
linux-source-6.1 and linux-headers-amd64 and extracts what these tests read into
.kernel/; where that cannot be done these tests skip with its reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from codegen.render import c_parameter, f_sz, outputs, raw_shape, render_spec
from codegen.spec import load
from codegen.toolchain import find_clang, find_gcc
from tests.conftest import ISA, ROOT, RMPOPT_YAML

KERNEL = ROOT / ".kernel"
CHECKPATCH = KERNEL / "src" / "scripts" / "checkpatch.pl"
SPEC = load(RMPOPT_YAML)
SPECS = [load(p) for p in sorted(ISA.glob("*.yaml"))]
SIBLINGS = [spec for spec in SPECS if spec.kernel.sweep is None]


def _status() -> str:
    status = KERNEL / "STATUS"
    return status.read_text().strip() if status.exists() else "tests/kernel/get-kernel-material has not run"


def _kdir() -> Path | None:
    kdir = KERNEL / "KDIR"
    if not kdir.exists() or not kdir.read_text().strip():
        return None
    path = Path(kdir.read_text().strip())
    return path if (path / "Makefile").exists() else None


needs_checkpatch = pytest.mark.skipif(not CHECKPATCH.exists(), reason=f"no checkpatch.pl: {_status()}")
needs_kbuild = pytest.mark.skipif(_kdir() is None or shutil.which("make") is None,
                                  reason=f"no kbuild tree: {_status()}")  # fmt: skip


def checkpatch(path: Path) -> str:
    proc = subprocess.run(["perl", str(CHECKPATCH), "--no-tree", "--strict", "-f", str(path)],
                          capture_output=True, text=True)  # fmt: skip
    return proc.stdout


@needs_checkpatch
@pytest.mark.parametrize("spec, out", [(s, o) for s in SPECS for o in outputs(s)],
                         ids=lambda x: getattr(x, "path", ""))  # fmt: skip
def test_checkpatch_is_clean(spec, out, tmp_path):
    path = tmp_path / Path(out.path).name
    path.write_text(render_spec(spec)[out.path])
    report = checkpatch(path)
    assert "total: 0 errors, 0 warnings, 0 checks" in report, report


@needs_checkpatch
def test_checkpatch_catches_a_style_break(tmp_path):
    out = outputs(SPEC)[1]
    path = tmp_path / Path(out.path).name
    path.write_text(render_spec(SPEC)[out.path].replace("\tpa_end   = ALIGN(", "        pa_end = ALIGN(", 1))
    report = checkpatch(path)
    assert "ERROR: code indent should use tabs" in report


def _module(files: dict[str, str], work: Path) -> list[str]:
    """An out-of-tree module per sweep form that compiles the generated files as they are."""
    gen = work / "gen"
    for rel, text in files.items():
        (gen / rel).parent.mkdir(parents=True, exist_ok=True)
        (gen / rel).write_text(text)
    header = gen / outputs(SPEC)[0].path
    # <linux/sizes.h> of 6.1 predates the larger SZ_*T constants; newer kernels have them
    cov = f_sz(SPEC.instruction.table.coverage)
    objs = []
    for out in outputs(SPEC)[1:]:
        w = out.worker
        name = "kgen_" + w.kind.replace("-", "_")
        (work / f"{name}.c").write_text(
            "// SPDX-License-Identifier: GPL-2.0-only\n"
            "#include <linux/module.h>\n#include <linux/sizes.h>\n#include <asm/special_insns.h>\n"
            f"#ifndef {cov}\n#define {cov} _AC({SPEC.instruction.table.coverage:#x}, ULL)\n#endif\n"
            f'#include "{header}"\n#include "{gen / out.path}"\n\n'
            f"static int __init kgen_init(void)\n{{\n\tint ret = {w.setup}();\n\n"
            f"\tif (!ret)\n\t\t{w.trigger}();\n\treturn ret;\n}}\n\n"
            f"static void __exit kgen_exit(void)\n{{\n\t{w.teardown}();\n}}\n\n"
            "module_init(kgen_init);\nmodule_exit(kgen_exit);\nMODULE_LICENSE(\"GPL\");\n"
        )
        objs.append(f"{name}.o")
    return objs


def _helper_modules(specs, work: Path) -> list[str]:
    """A module per low-level helper that calls it, so that every line of it is compiled."""
    objs = []
    for spec in specs:
        gen = work / "gen"
        for rel, text in render_spec(spec).items():
            (gen / rel).parent.mkdir(parents=True, exist_ok=True)
            (gen / rel).write_text(text)
        insn, raw = spec.instruction, spec.kernel.raw_helper.name
        name = f"kgen_{insn.mnemonic}"
        params = ", ".join(c_parameter(i) for i in insn.inputs)
        args = ", ".join(i.name for i in insn.inputs)
        (work / f"{name}.c").write_text(
            "// SPDX-License-Identifier: GPL-2.0-only\n#include <linux/module.h>\n"
            f'#include "{gen / outputs(spec)[0].path}"\n\n'
            f"{raw_shape(spec).ret} {name}({params});\n{raw_shape(spec).ret} {name}({params})\n"
            f"{{\n\treturn {raw}({args});\n}}\nEXPORT_SYMBOL_GPL({name});\n\n"
            'MODULE_LICENSE("GPL");\n'
        )
        objs.append(f"{name}.o")
    return objs


def kbuild(files: dict[str, str], work: Path, compiler: str, siblings=()) -> str:
    objs = _module(files, work) + _helper_modules(siblings, work)
    (work / "Kbuild").write_text("obj-m := " + " ".join(objs) + "\n")
    env = dict(os.environ)
    args = ["make", "-s", "-C", str(_kdir()), f"M={work}", "W=1", *objs]
    if compiler == "clang":
        env["KGEN_CLANG"] = " ".join(find_clang().argv)
        args.append(f"CC={ROOT / 'tests' / 'kernel' / 'kclang'}")
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 or "error" in output, output
    missing = [o for o in objs if not (work / o).exists()]
    return output + "".join(f"\nerror: {o} was not built" for o in missing)


@needs_kbuild
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_kbuild_compiles_the_generated_code_without_warnings(compiler, tmp_path):
    if compiler == "gcc" and find_gcc() is None:
        pytest.skip("no gcc")
    output = kbuild(render_spec(SPEC), tmp_path, compiler, SIBLINGS)
    assert "warning" not in output and "error" not in output, output


@needs_kbuild
def test_kbuild_catches_a_warning(tmp_path):
    files = render_spec(SPEC)
    sweep = outputs(SPEC)[1].path
    files[sweep] = files[sweep].replace("\tunsigned int cpu, leader;\n", "\tunsigned int cpu, leader, spare;\n")
    output = kbuild(files, tmp_path, "gcc")
    assert "warning: unused variable" in output
