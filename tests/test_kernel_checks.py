"""The generated code against real kernel material: checkpatch, and kbuild with gcc and clang.

`make test` runs tests/kernel/get-kernel-material first, which installs Debian's
linux-source-6.1 and linux-headers-amd64 and extracts what these tests read into
.kernel/; where that cannot be done these tests skip with its reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from codegen.kernelapi import detect
from codegen.model import PREREQUISITE_CHECKS
from codegen.render import c_parameter, include_split, outputs, raw_shape, render_spec
from codegen.spec import load
from codegen.toolchain import find_clang, find_gcc
from tests.conftest import ISA, RMPOPT_YAML, ROOT

KERNEL = ROOT / ".kernel"
CHECKPATCH = KERNEL / "src" / "scripts" / "checkpatch.pl"
SPEC = load(RMPOPT_YAML)
SPECS = [load(p) for p in sorted(ISA.glob("*.yaml"))]
SIBLINGS = [spec for spec in SPECS if spec.kernel.sweep is None]


def _status() -> str:
    status = KERNEL / "STATUS"
    return (
        status.read_text().strip()
        if status.exists()
        else "tests/kernel/get-kernel-material has not run"
    )


def _kdir() -> Path | None:
    kdir = KERNEL / "KDIR"
    if not kdir.exists() or not kdir.read_text().strip():
        return None
    path = Path(kdir.read_text().strip())
    return path if (path / "Makefile").exists() else None


needs_checkpatch = pytest.mark.skipif(
    not CHECKPATCH.exists(), reason=f"no checkpatch.pl: {_status()}"
)
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
    path.write_text(
        render_spec(SPEC)[out.path].replace("\tpa_end   = ALIGN(", "        pa_end = ALIGN(", 1)
    )
    report = checkpatch(path)
    assert "ERROR: code indent should use tabs" in report


KERNEL_DOC = KERNEL / "src-6.12" / "scripts" / "kernel-doc"  # 6.1's has no -Wall
needs_kernel_doc = pytest.mark.skipif(not KERNEL_DOC.exists(), reason=f"no kernel-doc: {_status()}")


def kernel_doc(path: Path, *args: str) -> str:
    proc = subprocess.run(
        ["perl", str(KERNEL_DOC), *args, str(path)], capture_output=True, text=True
    )
    return proc.stdout + proc.stderr.replace("Warning: Sphinx version not found. Using default "
                                             "(Sphinx version 1.2.0)\n", "")  # fmt: skip


@needs_kernel_doc
@pytest.mark.parametrize("out", [o for o in outputs(SPEC) if o.worker is not None],
                         ids=lambda o: o.worker.kind)  # fmt: skip
def test_the_exported_functions_have_clean_kernel_doc(out, tmp_path):
    path = tmp_path / Path(out.path).name
    path.write_text(render_spec(SPEC)[out.path])
    assert kernel_doc(path, "-none", "-Wall") == ""
    w = out.worker
    for name in (w.setup, w.trigger, w.teardown):
        doc = kernel_doc(path, "-rst", "-function", name)
        assert "c:function:: " in doc and f" {name} (void)" in doc, doc
        assert "**Context**" in doc, doc
    assert "**Return**" in kernel_doc(path, "-rst", "-function", w.setup)


@needs_kernel_doc
def test_kernel_doc_catches_an_undocumented_return(tmp_path):
    out = next(o for o in outputs(SPEC) if o.worker is not None)
    path = tmp_path / Path(out.path).name
    text = render_spec(SPEC)[out.path]
    at = text.index(" * Return: ")
    path.write_text(text[:at] + text[text.index(" */\nint ", at) :])
    assert "No description found for return value" in kernel_doc(path, "-none", "-Wall")
    path.write_text(
        text.replace("/**\n * " + out.worker.trigger + "()", "/*\n * " + out.worker.trigger + "()")
    )
    assert "not found" in kernel_doc(path, "-rst", "-function", out.worker.trigger)


def _tree_include_dirs() -> list[Path]:
    """The kbuild tree's header directories (Debian splits them into -amd64 and -common)."""
    kdir = _kdir()
    roots = [kdir, kdir.parent / kdir.name.replace("-amd64", "-common")]
    return [r / sub for r in roots for sub in ("arch/x86/include", "include") if (r / sub).is_dir()]


def _splice(real: str, fragment: str) -> str:
    """The real header with the fragment inserted before its final #endif (its guard's)."""
    at = real.rstrip().rfind("#endif")
    assert at > 0, "no final #endif"
    return real[:at] + fragment + "\n" + real[at:]


def _with_constant(real: str, prefix: str, constant: str) -> str:
    """The real header with ``constant`` added after the last enum constant named ``prefix*``."""
    at = real.rfind("\n\t" + prefix)
    assert at >= 0, f"no {prefix} constant"
    end = real.index("\n", at + 1)
    return real[:end] + f"\n\t{constant}," + real[end:]


def _overlay(files: dict[str, str], work: Path) -> Path:
    """Copies of the tree's real headers, each with its generated fragment spliced in.

    A prerequisite's constant that the tree's header lacks is added to its enum: 6.1 has no
    CC_ATTR_HOST_SEV_SNP (the SNP host series adds it in 6.8), and RMPOPT needs that series.
    """
    overlay = work / "overlay"
    for p in SPEC.kernel.enable.requires:
        name, prefix = PREREQUISITE_CHECKS[p.check]
        real = next(d / name for d in _tree_include_dirs() if (d / name).is_file()).read_text()
        if not re.search(rf"\b{p.argument}\b", real):
            (overlay / name).parent.mkdir(parents=True, exist_ok=True)
            (overlay / name).write_text(_with_constant(real, prefix, p.argument))
    for out in outputs(SPEC):
        if not out.destination.endswith(".h"):
            continue
        _, name = include_split(out.destination)
        real = next(d / name for d in _tree_include_dirs() if (d / name).is_file())
        (overlay / name).parent.mkdir(parents=True, exist_ok=True)
        (overlay / name).write_text(_splice(real.read_text(), files[out.path]))
    return overlay


MODULE_TAIL = '\n#include <linux/module.h>\nMODULE_LICENSE("GPL");\n'


def _module(files: dict[str, str], work: Path) -> list[str]:
    """One module per generated file, each included first and alone, the headers spliced."""
    gen = work / "gen"
    for rel, text in files.items():
        (gen / rel).parent.mkdir(parents=True, exist_ok=True)
        (gen / rel).write_text(text)
    units = {}
    for out in outputs(SPEC):
        if out.worker is not None:
            units["kgen_" + out.worker.kind.replace("-", "_")] = f'#include "{gen / out.path}"\n'
        elif out.fragment:  # on its own: it includes what it uses (the helper header: below)
            stem = "kgen_h_" + Path(out.destination).stem.replace("-", "_")
            units[stem] = f'#include "{gen / out.path}"\n'
    # the spliced special_insns.h, for an includer that includes nothing before it, and for one
    # that includes <linux/mm.h> first (the real 6.1 asm/sev.h is not self-contained: its
    # splice is compiled through the sweep sources, as in the kernel)
    # a caller built without the sweep's Kconfig symbol (ccp or kvm-amd without SEV): the
    # exported functions' stubs must stand in for them
    if SPEC.kernel.sweep.config:
        decls = next(o for o in outputs(SPEC) if o.destination.endswith("/sev.h") and o.fragment)
        calls = "".join(f"\t{name}();\n" for name in _exported_names())
        units["kgen_without_config"] = (
            f'#undef {SPEC.kernel.sweep.config}\n#include "{gen / decls.path}"\n\n'
            f"void kgen_call_all(void);\nvoid kgen_call_all(void)\n{{\n{calls}}}\n"
        )
    helper = include_split(SPEC.kernel.raw_helper.header)[1]
    units["kgen_spliced_alone"] = f"#include <{helper}>\n"
    units["kgen_spliced_mm_first"] = f"#include <linux/mm.h>\n#include <{helper}>\n"
    for name, body in units.items():
        (work / f"{name}.c").write_text(
            "// SPDX-License-Identifier: GPL-2.0-only\n" + body + MODULE_TAIL
        )
    return [f"{name}.o" for name in units]


def _exported_names() -> list[str]:
    return list(dict.fromkeys(name for w in SPEC.kernel.sweep.workers
                              for name in (w.setup, w.trigger, w.teardown)))  # fmt: skip


def _helper_modules(specs, work: Path) -> list[str]:
    """A module per low-level helper that calls it, so that every line of it is compiled."""
    objs = []
    for spec in specs:
        gen = work / "gen"
        for rel, text in render_spec(spec, profile=_profile()).items():  # the tree's flag outputs
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


def kbuild(files: dict[str, str], work: Path, compiler: str, siblings=(), only=()) -> str:
    """Build the modules of the generated files (and of the siblings' helpers); `only` names
    the modules to build, for a test about one of them (a module takes a second or two)."""
    objs = _module(files, work) + _helper_modules(siblings, work)
    if only:
        assert set(only) <= set(objs), (only, objs)
        objs = list(only)
    overlay = _overlay(files, work)
    # NOSTDINC_FLAGS comes before the tree's own -I: the spliced copies shadow the real headers
    (work / "Kbuild").write_text(
        f"NOSTDINC_FLAGS += -I{overlay}\nobj-m := " + " ".join(objs) + "\n"
    )
    env = dict(os.environ)
    args = ["make", "-s", "-k", "-C", str(_kdir()), f"M={work}", "W=1", *objs]
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
    output = kbuild(render_spec(SPEC, profile=_profile()), tmp_path, compiler, SIBLINGS)
    assert "warning" not in output and "error" not in output, output


def _profile():
    return detect(_tree_include_dirs())


@needs_kbuild
def test_the_profile_follows_the_tree():
    """6.1 has wrmsrl_on_cpu() and no EXPORT_SYMBOL_FOR_MODULES(); its sizes.h lacks SZ_2T;
    its asm/asm.h has CC_SET()/CC_OUT(), which its minimum GCC 5.1 needs for flags."""
    profile = _profile()
    assert profile.wrmsr_on_cpu == "wrmsrl_on_cpu" and not profile.export_for_modules
    assert not profile.flag_outputs
    text = render_spec(SPEC, profile=profile)[outputs(SPEC)[1].path]
    assert "wrmsrl_on_cpu(" in text and "EXPORT_SYMBOL_GPL(" in text and "SZ_2T" not in text


@needs_kbuild
def test_the_real_header_without_the_fragment_s_includes_fails(tmp_path):
    """The fragment's own #include lines are what make the spliced header build."""
    files = render_spec(SPEC, profile=_profile())
    header = outputs(SPEC)[0].path
    files[header] = files[header].replace("#include <linux/sizes.h>\n", "")
    output = kbuild(files, tmp_path, "gcc", only=["kgen_spliced_alone.o"])
    plain = output.replace("\u2018", "'").replace("\u2019", "'")
    assert "kgen_spliced_alone.c:" in plain and "'SZ_1G' undeclared" in plain


@needs_kbuild
def test_kbuild_catches_a_warning(tmp_path):
    files = render_spec(SPEC, profile=_profile())
    sweep = outputs(SPEC)[1].path
    files[sweep] = files[sweep].replace(
        "\tunsigned int cpu, leader;\n", "\tunsigned int cpu, leader, spare;\n"
    )
    worker = outputs(SPEC)[1].worker
    output = kbuild(files, tmp_path, "gcc", only=[f"kgen_{worker.kind.replace('-', '_')}.o"])
    assert "warning: unused variable" in output


@needs_kbuild
def test_a_caller_without_the_sweep_s_config_needs_the_stubs(tmp_path):
    """Without its #else stubs, a module built without CONFIG_KVM_AMD_SEV cannot call them."""
    files = render_spec(SPEC, profile=_profile())
    decls = next(o for o in outputs(SPEC) if o.destination.endswith("/sev.h") and o.fragment)
    text = files[decls.path]
    assert "#else\n" in text
    files[decls.path] = text[: text.index("#else\n")] + text[text.index("#endif") :]
    output = kbuild(files, tmp_path, "gcc", only=["kgen_without_config.o"])
    assert "kgen_without_config.c:" in output and "implicit declaration" in output, output
