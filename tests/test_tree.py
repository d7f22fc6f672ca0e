"""kgen apply, check --tree and patch on a miniature kernel tree (tests/minitree).

The miniature holds only the lines kgen reads or changes, so these tests run without
kernel material; tests/test_tree_612.py does the same against Debian's Linux 6.12 and
builds the result.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from codegen import ctext
from codegen.cli import main
from codegen.spec import load
from codegen.tree import KernelTree, plan
from tests.conftest import ISA, ROOT

MINI = ROOT / "tests" / "minitree"
SPECS = sorted(ISA.glob("*.yaml"))
GIT_ENV = {"GIT_AUTHOR_NAME": "Ada Example", "GIT_AUTHOR_EMAIL": "ada@example.org",
           "GIT_COMMITTER_NAME": "Ada Example", "GIT_COMMITTER_EMAIL": "ada@example.org",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}  # fmt: skip


def git(tree: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def make_tree(tmp_path: Path) -> Path:
    """A git clone of the mini kernel tree below ``tmp_path``."""
    dest = tmp_path / "linux"
    shutil.copytree(MINI, dest)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "base")
    return dest


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path)


def kgen(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env={**GIT_ENV, **(env or {})})


def snapshot(tree: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*"))
            if p.is_file() and ".git" not in p.parts}  # fmt: skip


def test_apply_writes_then_changes_nothing(tree):
    first = kgen("apply", *SPECS, "--tree", tree)
    assert first.exit_code == 0, first.output
    assert "8 files changed" in first.output
    # RMPREAD has nothing to replace in this tree: it is not counted as applied
    assert f"applied 5 specs (1 more with nothing to do here) to {tree}" in first.output
    after = snapshot(tree)
    second = kgen("apply", *SPECS, "--tree", tree)
    assert second.exit_code == 0 and "0 files changed" in second.output
    assert snapshot(tree) == after
    check = kgen("check", *SPECS, "--tree", tree)
    assert check.exit_code == 0, check.output
    assert "is up to date with 5 specs (1 more with nothing to do here)" in check.output
    patch = kgen("patch", *SPECS, "--tree", tree, "-o", tree.parent / "patches")
    assert patch.exit_code == 0, patch.output  # counted as check counts them
    assert (
        "is up to date with 5 specs (1 more with nothing to do here); no patches written"
        in patch.output
    )


def test_check_tree_reports_a_diff_and_writes_nothing(tree):
    before = snapshot(tree)
    result = kgen("check", *SPECS, "--tree", tree)
    assert result.exit_code == 1
    assert "+++ b/arch/x86/include/asm/special_insns.h" in result.output
    assert "+static inline bool __rmpopt(u64 pa_start, u64 op_type)" in result.output
    assert re.search(r"kgen: \d+ files of \S+ differ from a fresh render", result.output)
    assert snapshot(tree) == before
    one = kgen("check", str(ISA / "pvalidate.yaml"), "--tree", tree)
    assert one.exit_code == 1 and re.search(r"kgen: 1 file of \S+ differs from a", one.output)


def test_what_apply_puts_where(tree):
    assert kgen("apply", *SPECS, "--tree", tree).exit_code == 0
    read = lambda rel: (tree / rel).read_text()  # noqa: E731
    # the spec's slot (3*32+7) is X86_FEATURE_P4 here: a free bit of a scattered word instead
    features = read("arch/x86/include/asm/cpufeatures.h")
    assert "#define X86_FEATURE_RMPOPT\t\t(21 * 32 + 0)" in features
    assert features.index("X86_FEATURE_RMPOPT") < features.index("X86_FEATURE_CLEAR_BHB_LOOP")
    scattered = read("arch/x86/kernel/cpu/scattered.c")
    assert (
        "\t{ X86_FEATURE_RMPOPT,\t\tCPUID_EDX,  0, 0x80000025, 0 },\n\t{ 0, 0, 0, 0, 0 }"
        in scattered
    )
    msr = read("arch/x86/include/asm/msr-index.h")
    assert "MSR_AMD64_RMP_END\t\t0xc0010133\n#define MSR_AMD64_RMPOPT_BASE" in msr
    # the tree's minimum GCC (5.1) has no flag outputs
    insns = read("arch/x86/include/asm/special_insns.h")
    assert "CC_OUT(c) (optimized)" in insns and "=@ccc" not in insns
    assert insns.index("__rmpopt") < insns.index("#endif /* __KERNEL__ */")
    assert (
        "#include <linux/errno.h>\n#include <linux/irqflags.h>\n#include <linux/sizes.h>" in insns
    )
    sev_h = read("arch/x86/include/asm/sev.h")
    # the tree's own constants stay as they are; the stubs go into the #else branch
    assert sev_h.count("#define PVALIDATE_FAIL_NOUPDATE") == 1
    assert "/* Software defined (when rFlags.CF = 1) */" in sev_h
    decl = sev_h.index("int snp_setup_rmpopt(void);")
    assert sev_h.index("#ifdef CONFIG_KVM_AMD_SEV") < decl < sev_h.index("#else", decl)
    stub = sev_h.index("static inline int snp_setup_rmpopt(void) { return 0; }")
    assert sev_h.index("#else", decl) < stub
    # the stub of pvalidate() in the !CONFIG_AMD_MEM_ENCRYPT branch is left alone
    assert (
        "static inline int pvalidate(unsigned long vaddr, bool rmp_psize, bool validate) { return 0; }"
        in sev_h
    )
    host = read("arch/x86/virt/svm/sev.c")
    # an asm whose result the function only returns becomes `return helper(...);`, and the
    # variable that held the result goes with it; one the function still reads stays
    psmash = host[host.index("int psmash(u64 pfn)") : host.index("EXPORT_SYMBOL_GPL(psmash);")]
    assert psmash.endswith("\n\treturn __psmash(paddr);\n}\n"), psmash
    assert "ret" not in ctext.tokens(psmash) and "PSMASH mnemonic" not in host
    assert "\tret = __rmpupdate(paddr, state);\n" in host and "do {" not in host
    ccp = read("drivers/crypto/ccp/sev-dev.c")
    assert "\tsev->snp_initialized = true;\n\tsnp_setup_rmpopt();\n" in ccp
    # teardown once SNP is shut down, and not on the panic path, where nothing may sleep
    assert (
        "\tsev->snp_initialized = false;\n\n\tif (!panic)\n\t\trmpopt_cleanup();\n\n\tdev_dbg("
        in ccp
    )
    # the helpers that pass a u64 in one register build only for x86-64
    block = insns[insns.index("#ifdef CONFIG_X86_64") : insns.index("#endif /* CONFIG_X86_64 */")]
    assert "static inline bool __rmpopt(" in block and "static inline bool rmpopt(" in block
    assert "enum rmpopt_function" not in block
    assert sev_h.count("#ifdef CONFIG_X86_64") == 2  # __psmash(), __rmpupdate()
    kvm = read("arch/x86/kvm/svm/sev.c")
    assert "\t\t\treturn;\n\n\t\tsnp_rmpopt_all_physmem();\n\t} else {" in kvm


def test_the_spec_slot_is_used_where_it_is_free(tree):
    path = tree / "arch/x86/include/asm/cpufeatures.h"
    path.write_text(
        path.read_text().replace("#define X86_FEATURE_P4\t\t\t( 3*32+ 7) /* P4 */\n", "")
    )
    assert kgen("apply", ISA / "rmpopt.yaml", "--tree", tree).exit_code == 0
    assert "#define X86_FEATURE_RMPOPT\t\t(3 * 32 + 7)" in path.read_text()


def test_a_spec_edit_changes_exactly_its_part(tree, tmp_path):
    assert kgen("apply", *SPECS, "--tree", tree).exit_code == 0
    git(tree, "commit", "-q", "-am", "rmpopt")
    spec = tmp_path / "isa" / "rmpopt.yaml"
    spec.parent.mkdir()
    spec.write_text(
        (ISA / "rmpopt.yaml").read_text().replace("rearm_delay_ms: 10000", "rearm_delay_ms: 20000")
    )
    for other in SPECS:
        if other.name != "rmpopt.yaml":
            shutil.copy(other, spec.parent)
    specs = sorted(spec.parent.glob("*.yaml"))
    drift = kgen("check", *specs, "--tree", tree)
    assert drift.exit_code == 1
    assert kgen("apply", *specs, "--tree", tree).exit_code == 0
    changed = [line for line in git(tree, "diff", "-U0").splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]  # fmt: skip
    # the delay and the comment that says it, in the one file that has them
    assert git(tree, "diff", "--name-only").split() == ["arch/x86/virt/svm/sev.c"]
    assert changed[:2] == [
        "-#define RMPOPT_REARM_DELAY_MS\t10000",
        "+#define RMPOPT_REARM_DELAY_MS\t20000",
    ]
    rest = changed[2:]
    assert rest and all(line[1:].startswith(" *") for line in rest), rest
    assert any("10 s from now" in line for line in rest if line[0] == "-")
    assert any("20 s from now" in line for line in rest if line[0] == "+")
    assert kgen("check", *specs, "--tree", tree).exit_code == 0


@pytest.mark.parametrize("rel, old, new, said", [
    ("arch/x86/kvm/svm/sev.c", "void sev_vm_destroy(", "void sev_vm_teardown(",
     "has no function sev_vm_destroy()"),
    ("drivers/crypto/ccp/sev-dev.c", "sev->snp_initialized = true;", "sev->snp_up = true;",
     "the statement `sev->snp_initialized = true;` that the call to snp_setup_rmpopt() follows is not there"),
    ("arch/x86/virt/svm/sev.c", '".byte 0xF3, 0x0F, 0x01, 0xFF"', '"psmash"',
     "in psmash(), kgen looked for one asm statement with the bytes F3 0F 01 FF and found none"),
    ("arch/x86/include/asm/sev.h", "#ifdef CONFIG_KVM_AMD_SEV\nint psmash",
     "#ifdef CONFIG_KVM_AMD_SEV\n#endif\n#ifdef CONFIG_KVM_AMD_SEV\nint psmash",
     "#ifdef CONFIG_KVM_AMD_SEV opens 2 blocks"),
])  # fmt: skip
def test_a_tree_without_what_kgen_changes_is_refused_whole(tree, rel, old, new, said):
    path = tree / rel
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    before = snapshot(tree)
    result = kgen("apply", *SPECS, "--tree", tree)
    assert result.exit_code == 1
    assert f"{tree / rel}: error: " in result.output and said in result.output
    assert "nothing was written" in result.output
    assert snapshot(tree) == before


def test_a_missing_file_is_named(tree):
    (tree / "arch/x86/kernel/cpu/scattered.c").unlink()
    before = snapshot(tree)
    result = kgen("apply", *SPECS, "--tree", tree)
    assert result.exit_code == 1
    assert (
        f"{tree}/arch/x86/kernel/cpu/scattered.c: error: kgen must change this file"
        in result.output
    )
    assert "; nothing was written" in result.output
    assert snapshot(tree) == before
    check = kgen("check", *SPECS, "--tree", tree)
    assert check.exit_code == 1 and "; the tree was not compared" in check.output
    assert "nothing was written" not in check.output


def test_not_a_kernel_tree(tmp_path):
    result = kgen("apply", *SPECS, "--tree", tmp_path)
    assert result.exit_code == 1
    assert f"{tmp_path}: error: not a Linux kernel tree" in result.output
    assert list(tmp_path.iterdir()) == []


def test_local_edits_in_a_generated_part_are_kept(tree):
    assert kgen("apply", *SPECS, "--tree", tree).exit_code == 0
    path = tree / "arch/x86/virt/svm/sev.c"
    edited = path.read_text().replace("rmpopt_write_msr(0);", "rmpopt_write_msr(0); /* mine */")
    path.write_text(edited)
    before = snapshot(tree)
    result = kgen("apply", *SPECS, "--tree", tree)
    assert result.exit_code == 1
    assert (
        f"{path}: error: function rmpopt_work_stop was edited since kgen wrote it" in result.output
    )
    assert snapshot(tree) == before
    # committed, the edit is the user's tree; --force overwrites it either way
    forced = kgen("apply", *SPECS, "--tree", tree, "--force")
    assert forced.exit_code == 0 and "/* mine */" not in path.read_text()


def test_a_committed_tree_is_not_a_local_edit(tree):
    assert kgen("apply", *SPECS, "--tree", tree).exit_code == 0
    git(tree, "checkout", "-q", ".")  # back to the hand-written helpers
    result = kgen("apply", *SPECS, "--tree", tree)
    assert result.exit_code == 0, result.output


def test_every_operation_is_idempotent_alone(tree):
    kt = KernelTree.open(tree)
    p = plan([load(s) for s in SPECS], kt)
    for op in p.ops:
        text = kt.text(op.path)
        once = op.apply(text, kt) if not hasattr(op, "patches") else op.apply(text, kt, None)
        twice = op.apply(once, kt) if not hasattr(op, "patches") else op.apply(once, kt, None)
        assert once == twice, op.what


# --- the series -----------------------------------------------------------------------


def test_patch_series_applies_and_equals_apply(tree, tmp_path):
    out = tmp_path / "patches"
    result = kgen("patch", *SPECS, "--tree", tree, "-o", out, "--signoff")
    assert result.exit_code == 0, result.output
    files = sorted(out.iterdir())
    names = [f.name for f in files]
    assert names[0] == "0000-cover-letter.patch"
    subjects = [" ".join(re.search(r"^Subject: \[PATCH \d+/\d+\] (.*(?:\n .*)*)", f.read_text(), re.M)
                         .group(1).split()) for f in files[1:]]  # fmt: skip
    assert subjects[:7] == [
        "x86/cpufeatures: Add X86_FEATURE_RMPOPT",
        "x86/msr-index: Add MSR_AMD64_RMPOPT_BASE",
        "x86/sev: Add the RMPOPT instruction helpers",
        "x86/sev: Enable RMPOPT and run a pass after SNP initialization",
        "x86/sev: Add snp_rmpopt_all_physmem() to ask for an RMPOPT pass",
        "crypto: ccp - Set up RMPOPT after SNP init and tear it down at shutdown",
        "KVM: SEV: Ask for an RMPOPT pass when an SNP guest is destroyed",
    ]
    assert (
        "isa/rmpread.yaml: note: arch/x86/include/asm/sev.h has no __rmpread() to replace"
        in result.output
    )
    assert subjects[7:] == [
        "x86/sev: Move the PSMASH instruction into __psmash()",
        "x86/sev: Add kernel-doc to pvalidate()",
        "x86/sev: Add kernel-doc to rmpadjust()",
        "x86/sev: Move the RMPUPDATE instruction into __rmpupdate()",
    ]
    cover = files[0].read_text()
    assert "Subject: [PATCH 00/11] x86/sev: Add RMPOPT support\n" in cover
    from codegen.render import spec_digest

    for spec in SPECS:
        listed = f"{spec.name}  sha256 {spec_digest(spec.read_bytes())}" in cover
        assert listed == (spec.name != "rmpread.yaml"), spec.name
    assert "kgen 0.1.0" in cover and "Linux 6.12.0" in cover
    for f in files[1:]:
        text = f.read_text()
        assert "Signed-off-by: Ada Example <ada@example.org>" in text
        body = text.split("\n\n", 1)[1].split("\n---\n")[0]
        assert all(len(line) <= 75 for line in body.splitlines()), f.name
    # git am of the series gives exactly what apply gives
    applied = tmp_path / "applied"
    shutil.copytree(tree, applied)
    assert kgen("apply", *SPECS, "--tree", applied).exit_code == 0
    git(tree, "am", "-q", *map(str, files[1:]))
    assert snapshot(tree) == snapshot(applied)
    assert len(git(tree, "log", "--oneline").splitlines()) == 1 + len(files) - 1


def test_every_step_of_the_series_is_a_tree_the_plan_makes(tree):
    kt = KernelTree.open(tree)
    p = plan([load(s) for s in SPECS], kt)
    done = []
    for patch in p.patches():
        done.append(patch)
        texts, errors = p.result(done)
        assert not errors
        # the declarations of the setup patch do not declare the trigger, which comes later
        if patch.key == "setup":
            assert "snp_setup_rmpopt(void);" in texts["arch/x86/include/asm/sev.h"]
            assert "snp_rmpopt_all_physmem" not in texts["arch/x86/include/asm/sev.h"]
            assert "snp_rmpopt_all_physmem" not in texts["arch/x86/virt/svm/sev.c"]


def test_a_patch_adds_no_file_local_name_that_only_a_later_patch_uses(tree):
    """A #define or static a patch adds to a .c file is used in that file by the same patch:
    one that only the trigger uses comes with the trigger, not a patch before it."""
    kt = KernelTree.open(tree)
    p = plan([load(s) for s in SPECS], kt)
    done: list = []
    before, _ = p.result(done)
    for patch in p.patches():
        done.append(patch)
        texts, _ = p.result(done)
        for path, text in texts.items():
            if not path.endswith(".c"):
                continue
            old = before.get(path, "")
            added = re.findall(r"^#define\s+(\w+)", text, re.M)
            added += re.findall(r"^static\s+[\w\s*]+?\b(\w+)\s*[;=(\[]", text, re.M)
            added += re.findall(r"^static\s+[A-Z_]+\((\w+)", text, re.M)  # DEFINE_MUTEX(name)
            for name in added:
                if re.search(rf"\b{name}\b", old):
                    continue
                uses = len(re.findall(rf"\b{name}\b", text))
                assert uses > 1, f"{patch.key}: {path} adds {name}, which nothing uses yet"
        before = texts


def test_a_kernel_doc_patch_says_when_it_rewrites_the_code_too(tree, tmp_path):
    """An "Add kernel-doc" patch is what a reviewer expects; a patch that also rewrites the asm
    statement (the tree's upper-case bytes and trailing "\\n\\t") says so in its changelog,
    one that leaves the code token for token as it was says only kernel-doc, and one that
    changes what the asm does does not call it unchanged."""
    from codegen.series import message

    def body_of(tree_dir: Path) -> str:
        p = plan([load(ISA / "pvalidate.yaml")], KernelTree.open(tree_dir))
        (patch,) = p.patches()
        subject, body = message(patch, p)
        assert subject == "x86/sev: Add kernel-doc to pvalidate()"
        return " ".join(body.split())

    said = body_of(tree)
    assert "reformats the asm statement" in said, said
    # the tree's pvalidate() already written as kgen writes it: only the kernel-doc is new
    same = tmp_path / "same"
    shutil.copytree(tree, same)
    assert kgen("apply", ISA / "pvalidate.yaml", "--tree", same).exit_code == 0
    sev = same / "arch/x86/include/asm/sev.h"
    text = sev.read_text()
    start = text.index("/**\n * pvalidate()")
    sev.write_text(text[:start] + text[text.index("static inline int pvalidate(", start) :])
    said = body_of(same)
    assert "reformats the asm statement" not in said and "code is unchanged" in said, said
    # an operand the tree's helper does not pass is a change of the code, not of its layout
    sev.write_text(sev.read_text().replace('"d" (validate)', '"d" (0)'))
    said = body_of(same)
    assert "It also changes the code of pvalidate()" in said and "unchanged" not in said, said


@pytest.mark.parametrize("teardown", ["clear", "keep"])
def test_the_setup_changelog_names_the_cpu_hotplug_state(tree, tmp_path, teardown):
    """The MSRs are written by a CPU hotplug state's callbacks, the part of the setup patch a
    reviewer checks hardest: its changelog says so, and what the teardown callback does."""
    from codegen.series import message

    spec = tmp_path / "rmpopt.yaml"
    text = (ISA / "rmpopt.yaml").read_text()
    assert "msr_on_teardown: clear" in text
    spec.write_text(text.replace("msr_on_teardown: clear", f"msr_on_teardown: {teardown}"))
    p = plan([load(spec)], KernelTree.open(tree))
    setup = next(x for x in p.patches() if x.key == "setup")
    said = " ".join(message(setup, p)[1].split())
    assert 'CPU hotplug state (CPUHP_AP_ONLINE_DYN, "x86/rmpopt:online")' in said, said
    assert "on each core that comes online" in said, said
    assert ("last online thread of a core goes offline" in said) == (teardown == "clear"), said


def test_a_new_define_takes_the_column_of_the_define_it_follows(tree):
    """RMPUPDATE_MAX_RETRIES goes after the tree's RMPUPDATE_FAIL_OVERLAP, whose value is at
    column 40: its value goes there too, not where a single tab after its shorter name would
    put it; and a second apply changes nothing."""
    assert kgen("apply", ISA / "rmpupdate.yaml", "--tree", tree).exit_code == 0
    text = (tree / "arch/x86/include/asm/sev.h").read_text()
    lines = [line for line in text.splitlines() if line.startswith("#define RMPUPDATE_")]
    names = [line.split()[1] for line in lines]
    assert names == ["RMPUPDATE_FAIL_OVERLAP", "RMPUPDATE_MAX_RETRIES"]
    assert {line.expandtabs(8).index(line.split()[2]) for line in lines} == {40}, lines
    before = snapshot(tree)
    assert kgen("apply", ISA / "rmpupdate.yaml", "--tree", tree).exit_code == 0
    assert snapshot(tree) == before
    assert kgen("check", ISA / "rmpupdate.yaml", "--tree", tree).exit_code == 0


def test_the_cover_letter_says_what_the_feature_is(tree, tmp_path):
    """A maintainer reads the cover letter first: it says what the instruction the series
    enables does, and lists the siblings as a sentence does ("A, B and C")."""
    out = tmp_path / "patches"
    assert kgen("patch", *SPECS, "--tree", tree, "-o", out).exit_code == 0
    cover = " ".join((out / "0000-cover-letter.patch").read_text().split())
    assert "RMPOPT checks whether a 1 GB region of system physical memory" in cover, cover
    assert "hand-written PSMASH, PVALIDATE, RMPADJUST and RMPUPDATE code" in cover, cover


def test_no_signoff_is_invented(tree, tmp_path):
    out = tmp_path / "p"
    assert kgen("patch", ISA / "pvalidate.yaml", "--tree", tree, "-o", out).exit_code == 0
    assert all("Signed-off-by" not in f.read_text() for f in out.iterdir())
    nobody = kgen("patch", ISA / "pvalidate.yaml", "--tree", tree, "-o", tmp_path / "q",
                  env={"GIT_AUTHOR_NAME": "", "GIT_AUTHOR_EMAIL": "", "HOME": str(tmp_path)})  # fmt: skip
    assert nobody.exit_code == 2 and "needs an author" in nobody.output
    assert not (tmp_path / "q").exists()


def test_patch_never_overwrites(tree, tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    (out / "0001-x86-sev-Add-kernel-doc-to-pvalidate.patch").write_text("mine\n")
    result = kgen("patch", ISA / "pvalidate.yaml", "--tree", tree, "-o", out)
    assert result.exit_code == 1 and "exists; kgen does not overwrite it" in result.output
    assert (out / "0001-x86-sev-Add-kernel-doc-to-pvalidate.patch").read_text() == "mine\n"
    assert sorted(p.name for p in out.iterdir()) == [
        "0001-x86-sev-Add-kernel-doc-to-pvalidate.patch"
    ]


def test_unreadable_c_is_a_message_not_a_traceback(tree):
    path = tree / "arch/x86/virt/svm/sev.c"
    path.write_text(path.read_text().replace("int psmash(u64 pfn)\n{", "int psmash(u64 pfn)\n{{"))
    result = kgen("apply", *SPECS, "--tree", tree)
    assert result.exit_code == 1 and "Traceback" not in result.output
    # path:line:col of the brace left open, once however many parts of the file kgen changes
    said = f"{path}:17:1: error: kgen cannot read this C: unclosed '{{'"
    assert result.output.count(said) == 1, result.output


def test_ctext_finds_items_by_name():
    text = (MINI / "arch/x86/include/asm/sev.h").read_text()
    found = ctext.items(text)
    kinds = {(i.kind, i.name) for i in found}
    assert ("define", "PVALIDATE_FAIL_NOUPDATE") in kinds and ("struct", "rmp_state") in kinds
    pv = ctext.find(found, "function", "pvalidate")
    assert len(pv) == 2 and pv[1].conditions[-1] == ("ifdef CONFIG_AMD_MEM_ENCRYPT", "else")
    assert (
        ctext.find(found, "function", "rmpadjust")[0].text(text).startswith("/* RMPADJUST changes")
    )


def test_specs_that_clash_are_not_applied(tree, tmp_path):
    """Two specs of one instruction with different function codes: which would win depends on
    the order given, so nothing is written, as render refuses them."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil.copy(ISA / "rmpopt.yaml", a)
    (b / "rmpopt.yaml").write_text(
        (ISA / "rmpopt.yaml").read_text().replace("value: 1\n", "value: 2\n")
    )
    before = snapshot(tree)
    for command in ("apply", "check", "patch"):
        args = [command, a / "rmpopt.yaml", b / "rmpopt.yaml", "--tree", tree]
        result = kgen(*args, *(["-o", tmp_path / "p"] if command == "patch" else []))
        assert result.exit_code == 1, (command, result.output)
        assert "also defined by" in result.output
    assert snapshot(tree) == before and not (tmp_path / "p").exists()


def test_applying_some_specs_keeps_the_record_of_the_others(tree):
    """An apply of one spec must not forget what kgen wrote for the others: their local edits
    are still refused."""
    assert kgen("apply", *SPECS, "--tree", tree).exit_code == 0
    assert kgen("apply", ISA / "pvalidate.yaml", "--tree", tree).exit_code == 0
    path = tree / "arch/x86/virt/svm/sev.c"
    path.write_text(
        path.read_text().replace("rmpopt_write_msr(0);", "rmpopt_write_msr(0); /* mine */")
    )
    result = kgen("apply", *SPECS, "--tree", tree)
    assert result.exit_code == 1 and "function rmpopt_work_stop was edited" in result.output
