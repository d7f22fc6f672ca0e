"""`kgen compare --reference TREE`: the kernel function copied from a tree's source, or a refusal.

These run without kernel material: a small stand-in tree is written into a
temporary directory, with psmash() as 6.12's arch/x86/virt/svm/sev.c has it
and a configured-out stub beside it.
"""

from __future__ import annotations

import json

import pytest

from codegen import cases
from codegen.reference import (
    ReferenceProblem,
    find_function,
    kernel_args,
    kernel_case,
    kernel_result,
    tree_unit,
)
from codegen.spec import load, parse
from tests.conftest import ISA

PSMASH = load(ISA / "psmash.yaml")
RMPUPDATE = load(ISA / "rmpupdate.yaml")
FAST = ("--cases", "30", "--opt=-O2", "--engine", "emulator", "--cc", "clang")

SEV_C = """\
// SPDX-License-Identifier: GPL-2.0-only
#include <asm/sev.h>

#ifdef CONFIG_KVM_AMD_SEV
/*
 * PSMASH a 2MB aligned page into 4K pages in the RMP table while preserving the
 * Validated bit.
 */
int psmash(u64 pfn)
{
	unsigned long paddr = pfn << PAGE_SHIFT;
	int ret;

	if (!cc_platform_has(CC_ATTR_HOST_SEV_SNP))
		return -ENODEV;

	if (!pfn_valid(pfn))
		return -EINVAL;

	/* Binutils version 2.36 supports the PSMASH mnemonic. */
	asm volatile(".byte 0xF3, 0x0F, 0x01, 0xFF"
		      : "=a" (ret)
		      : "a" (paddr)
		      : "memory", "cc");

	return ret;
}
EXPORT_SYMBOL_GPL(psmash);
#else
static inline int psmash(u64 pfn) { return -ENODEV; }
#endif
"""


def _tree(tmp_path, sev_c: str = SEV_C):
    root = tmp_path / "linux"
    (root / "arch" / "x86" / "include" / "asm").mkdir(parents=True)
    (root / "include" / "linux").mkdir(parents=True)
    (root / "arch" / "x86" / "include" / "asm" / "sev.h").write_text("#define RMP_PG_SIZE_4K 0\n")
    (root / "arch" / "x86" / "virt" / "svm").mkdir(parents=True)
    (root / "arch" / "x86" / "virt" / "svm" / "sev.c").write_text(sev_c)
    return root


def test_the_configured_definition_is_taken(tmp_path):
    """The #else stub is not what a kernel with CONFIG_KVM_AMD_SEV builds."""
    root = _tree(tmp_path)
    fn = find_function(root / "arch/x86/virt/svm/sev.c", "psmash", "sev.c")
    assert (
        fn.line == 9
        and fn.text.startswith("int psmash(u64 pfn)\n{")
        and fn.text.endswith("return ret;\n}")
    )
    unit = tree_unit(PSMASH, root)
    assert "return (u64)psmash(args[0] >> 12);" in unit.source
    assert f'#line 9 "{root}/arch/x86/virt/svm/sev.c"\nint psmash(u64 pfn)' in unit.source


def test_the_tree_function_is_compared_and_named(run_kgen, tmp_path):
    root = _tree(tmp_path)
    r = run_kgen("compare", ISA / "psmash.yaml", *FAST, "--reference", root, "--json")
    assert r.exit_code == 0, r.output
    (spec,) = json.loads(r.output)["specs"]
    assert spec["references"] == [{"directory": str(root), "files": ["arch/x86/virt/svm/sev.c"],
                                   "definition": f"{root}/arch/x86/virt/svm/sev.c:9"}]  # fmt: skip


def test_a_wrong_parameter_shift_is_caught(run_kgen, tmp_path):
    """The spec says pfn is paddr >> 13: the kernel's pfn << PAGE_SHIFT gives another RAX."""
    root = _tree(tmp_path)
    wrong = tmp_path / "psmash.yaml"
    wrong.write_text(PSMASH.source.replace("input: paddr, shift: 12", "input: paddr, shift: 13"))
    r = run_kgen("compare", wrong, *FAST, "--reference", root)
    assert r.exit_code == 1 and "MISMATCH" in r.output, r.output


def test_a_function_that_differs_is_caught(run_kgen, tmp_path):
    root = _tree(tmp_path, SEV_C.replace("unsigned long paddr = pfn << PAGE_SHIFT;",
                                         "unsigned long paddr = pfn << (PAGE_SHIFT + 1);"))  # fmt: skip
    r = run_kgen("compare", ISA / "psmash.yaml", *FAST, "--reference", root)
    assert r.exit_code == 1 and "MISMATCH" in r.output, r.output


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("int psmash(u64 pfn)\n{", "int psmash_4k(u64 pfn)\n{")
     .replace("static inline int psmash(u64 pfn) { return -ENODEV; }", ""),
     "sev.c does not define psmash(): nothing of the kernel's to compare"),
    (lambda s: s.replace("#ifdef CONFIG_KVM_AMD_SEV", "#if FROB > 1"),
     "must define psmash() once where every CONFIG_ option is on; it has {root}/arch/x86/virt/svm/sev.c:9 "
     "(under a condition kgen cannot decide), {root}/arch/x86/virt/svm/sev.c:30 (under a condition "
     "kgen cannot decide)"),
    (lambda s: s.replace("#else\n", ""),
     "it has {root}/arch/x86/virt/svm/sev.c:9, {root}/arch/x86/virt/svm/sev.c:29"),
])  # fmt: skip
def test_a_missing_or_undecidable_function_is_an_error(run_kgen, tmp_path, edit, message):
    root = _tree(tmp_path, edit(SEV_C))
    with pytest.raises(ReferenceProblem):
        tree_unit(PSMASH, root)
    r = run_kgen("compare", ISA / "psmash.yaml", *FAST, "--reference", root)
    assert r.exit_code == 1 and message.format(root=root) in r.output, r.output
    assert "ok:" not in r.output


def test_a_configured_out_definition_is_not_taken(tmp_path):
    """With the condition reversed, the stub is what the kernel builds, and what is compared."""
    root = _tree(tmp_path, SEV_C.replace("#ifdef CONFIG_KVM_AMD_SEV", "#ifndef CONFIG_KVM_AMD_SEV"))
    assert (
        tree_unit(PSMASH, root).function.text
        == "static inline int psmash(u64 pfn) { return -ENODEV; }"
    )


def test_a_tree_without_the_source_file_is_an_error(run_kgen, tmp_path):
    root = _tree(tmp_path)
    (root / "arch/x86/virt/svm/sev.c").unlink()
    r = run_kgen("compare", ISA / "psmash.yaml", *FAST, "--reference", root)
    assert r.exit_code == 1 and "sev.c: cannot be read" in r.output, r.output


def test_a_tree_comes_alone(run_kgen, tmp_path):
    root = _tree(tmp_path)
    r = run_kgen(
        "compare", ISA / "psmash.yaml", *FAST, "--reference", root, "--reference", tmp_path
    )
    assert r.exit_code == 1 and "give it as the only --reference" in r.output, r.output


def test_a_directory_that_is_neither_is_an_error(run_kgen, tmp_path):
    (tmp_path / "arch").mkdir()
    r = run_kgen("compare", ISA / "psmash.yaml", *FAST, "--reference", tmp_path)
    assert r.exit_code == 1 and "no asm/sev.h in the --reference directory" in r.output, r.output


def test_the_spec_maps_inputs_to_parameters_and_the_result():
    assert kernel_args(RMPUPDATE, [0x12345678_9ABC_DEF0, 7]) == [0x12345678_9ABC_D000, 7]
    assert kernel_result(RMPUPDATE, 0) == 0
    assert (
        kernel_result(RMPUPDATE, 4)
        == kernel_result(RMPUPDATE, 0xFFFF_FFFF_FFFF_FFFF)
        == (-14) & (2**64 - 1)
    )
    assert kernel_result(PSMASH, 0x87) == 0x87  # psmash() returns the code
    case = next(c for c in cases.generate(PSMASH, 1, 50) if any(int(a.split(":")[2], 0) & 0xFFF
                                                               for a in c.actions))  # fmt: skip
    mapped = kernel_case(PSMASH, case)
    assert all(int(a.split(":")[2], 0) & 0xFFF == 0 for a in mapped.actions)
    assert [a.split(":")[:2] for a in mapped.actions] == [a.split(":")[:2] for a in case.actions]


def test_without_out_of_line_the_raw_helper_of_the_header_is_taken(tmp_path):
    spec = parse(PSMASH.source.split("  out_of_line:")[0], str(ISA / "psmash.yaml"))
    root = _tree(tmp_path)
    with pytest.raises(ReferenceProblem, match=r"asm/sev.h does not define __psmash\(\)"):
        tree_unit(spec, root)


@pytest.mark.parametrize("text, active", [
    ("#ifdef CONFIG_X\na\n#else\nb\n#endif\n", [True, True, False, False, True, True]),
    ("#ifndef CONFIG_X\na\n#else\nb\n#endif\n", [False, False, True, True, True, True]),
    ("#ifndef _GUARD_H\n#define _GUARD_H\na\n#endif\n", [True, True, True, True, True]),
    ("#if IS_ENABLED(CONFIG_A) && !defined(__ASSEMBLY__)\na\n#endif\n", [True, True, True, True]),
    ("#if FOO > 1\na\n#elif defined(CONFIG_X)\nb\n#else\nc\n#endif\n",
     [None, None, None, None, None, None, True, True]),
    ("#ifdef CONFIG_X\na\n#elif FOO\nb\n#else\nc\n#endif\n",
     [True, True, False, False, False, False, True, True]),
])  # fmt: skip
def test_conditionals_are_read_with_every_option_on(text, active):
    from codegen.reference import _active_lines

    assert _active_lines(text) == active


def test_a_retry_past_the_bound_is_explained():
    """An unbounded retry (a mutant of kgen's own helper) is reported with what it means."""
    from codegen import compare, host, toolchain
    from codegen.render import render_spec
    from tests.mutants import apply, helper_catalogue

    (mutant,) = [m for m in helper_catalogue(RMPUPDATE) if m.name == "an unbounded retry loop"]
    files = apply(mutant, render_spec(RMPUPDATE))
    result = compare.compare(RMPUPDATE, toolchain.find_clang(), host.choose_engine("emulator", RMPUPDATE),
                             seed=1, count=40, opts=("-O2",), files=files, workers=1)  # fmt: skip
    assert not result.ok
    assert (
        "again after __rmpupdate()'s 16 retries, where max_retries stops"
        in result.mismatches[0].note
    )
