"""Specs that load but that kgen cannot turn into kernel text, and text that git's mail tools
would read as something else: one message and exit status 1, or text that says what the spec
says, never a traceback."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from codegen.cli import main
from tests.conftest import ISA, ROOT

MINI = ROOT / "tests" / "minitree"


def project(tmp_path: Path, edit=None) -> Path:
    """A copy of the bundled specs, rmpopt.yaml passed through ``edit``; returns its isa/."""
    isa = tmp_path / "isa"
    shutil.copytree(ISA, isa)
    if edit is not None:
        spec = isa / "rmpopt.yaml"
        spec.write_text(edit(spec.read_text()))
    return isa


def long_title(text: str) -> str:
    # loads (a title may run to 4096 characters) but makes a line of cpufeatures.h too long
    return text.replace("title: RMP Optimize", "title: " + "RMP Optimize " * 8, 1)


@pytest.mark.parametrize("command", [
    ["compare", "--cases", "2", "--cc", "clang", "--opt=-O0"],
    ["mutate", "--sample", "1"],
    ["apply", "--tree", "TREE"],
    ["check", "--tree", "TREE"],
    ["patch", "--tree", "TREE", "-o", "OUT"],
    ["render", "--out", "OUT"],
])  # fmt: skip
def test_a_spec_that_cannot_be_rendered_is_one_message_for_every_command(tmp_path, command):
    isa = project(tmp_path, long_title)
    assert "RMP Optimize RMP" in (isa / "rmpopt.yaml").read_text()
    tree = tmp_path / "linux"
    shutil.copytree(MINI, tree)
    args = [{"TREE": str(tree), "OUT": str(tmp_path / "out")}.get(a, a) for a in command]
    result = CliRunner().invoke(main, [*args, str(isa / "rmpopt.yaml")])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert f"{isa / 'rmpopt.yaml'}: error: cannot render: " in result.output, result.output
    assert "line longer than 100 columns" in result.output


URL = "https://www.amd.com/content/dam/amd/en/documents/processor-tech-docs/24594.pdf"
DESCRIPTION = "    Checks whether a 1 GB region"  # the first words of rmpopt.yaml's description


def _description(first: str = "", after_url: str = ""):
    """rmpopt.yaml's description with ``first`` before it, and ``after_url`` after a word too
    long for a line of a commit message (so that ``after_url`` starts the next line)."""

    def edit(text: str) -> str:
        if first:
            text = text.replace(DESCRIPTION, f"    {first}\n{DESCRIPTION}", 1)
        if after_url:
            text = text.replace("    checks are skipped for it.\n",
                                f"    checks are skipped for it; see\n    {URL}\n    {after_url}\n", 1)  # fmt: skip
        return text

    return edit


@pytest.mark.parametrize("edit", [
    _description(first="From: Eve <eve@example.org>"),  # an in-body header: the author
    _description(first="Subject: something else"),
    _description(first="[PATCH] something else"),
    _description(first="From 0123 Mon Sep 17 00:00:00 2001"),  # an mbox separator
    _description(after_url="--- volume 3, RMPOPT; these words are kept."),  # where the diff starts
    _description(after_url="From 0123 Mon Sep 17 00:00:00 2001, these words are kept."),
    _description(after_url="diff -u of the two tables; these words are kept."),
    _description(after_url="Index: RMPOPT; these words are kept."),
])  # fmt: skip
def test_git_am_gives_back_every_word_of_each_commit_message(tmp_path, edit):
    import re

    import yaml

    from tests.test_tree import GIT_ENV, git, make_tree

    isa = project(tmp_path, edit)
    tree = make_tree(tmp_path)
    out = tmp_path / "patches"
    result = CliRunner().invoke(main, ["patch", str(isa / "rmpopt.yaml"), "--tree", str(tree),
                                       "-o", str(out), "--signoff"], env=GIT_ENV)  # fmt: skip
    assert result.exit_code == 0, result.output
    files = sorted(out.iterdir())[1:]
    git(tree, "am", "-q", *map(str, files))
    log = git(tree, "log", "--reverse", "--format=%an <%ae>%x01%B%x02", f"HEAD~{len(files)}..HEAD")
    commits = [c.strip("\n").split("\x01") for c in log.split("\x02") if c.strip()]
    assert len(commits) == len(files)
    description = yaml.safe_load((isa / "rmpopt.yaml").read_text())["instruction"]["description"]
    words = " ".join(description.split()[1:])  # the first may be joined to the mnemonic
    said = 0
    for (author, msg), f in zip(commits, files, strict=True):
        subject = " ".join(re.search(r"^Subject: \[PATCH \d+/\d+\] (.*(?:\n .*)*)", f.read_text(),
                                     re.M).group(1).split())  # fmt: skip
        assert author == "Ada Example <ada@example.org>", (f.name, author)
        assert msg.splitlines()[0] == subject, f.name
        assert msg.rstrip().endswith("Signed-off-by: Ada Example <ada@example.org>"), msg
        said += words in " ".join(msg.split())
    assert said == 2, log  # the helpers and the setup say what the instruction does


KERNEL_DOC_SECTION = re.compile(  # scripts/kernel-doc's $doc_sect, as it reads every line
    r"^\s*\*\s*(@[.\w]+|@\.\.\.|description|context|returns?|notes?|examples?)\s*:([^:].*)?$",
    re.I,
)


@pytest.mark.parametrize("word", ["Return:", "returns:", "@validate:", "Context:", "Note:",
                                  "Example:", "Description:", "@...:"])  # fmt: skip
def test_spec_words_never_open_a_kernel_doc_section(word):
    """Wherever the line breaks before the word, it stays text; where the word before it is
    too long to share a line with it, rendering says so."""
    from codegen.render import RenderError, render_spec
    from codegen.spec import parse

    text = (ISA / "pvalidate.yaml").read_text()
    refused = []
    for length in range(40, 120):
        url = "https://example.org/" + "x" * (length - 20)
        spec = parse(text.replace("description: Guest virtual address of the page\n",
                                  f'description: "{url} {word} the words after it"\n', 1),
                     "pvalidate.yaml")  # fmt: skip
        try:
            (header,) = render_spec(spec).values()
        except RenderError as exc:
            assert "would open a kernel-doc section" in str(exc), exc
            refused.append(length)
            continue
        doc = header[header.index("/**") : header.index("*/", header.index("/**"))]
        sections = [m.group(1) for m in map(KERNEL_DOC_SECTION.match, doc.splitlines()) if m]
        assert sections == ["@vaddr", "@rmp_psize", "@validate", "Return"], (length, doc)
    # only where the word before it fits the first line, the two do not, and it is too short
    # to be broken: 100 columns less " * @vaddr: "
    room = 100 - len(" * @vaddr: ")
    assert refused == [n for n in range(40, 120) if n <= room < n + 1 + len(word)], refused


@pytest.mark.parametrize("xdg", ["relative/dir", "/dev/null"])
def test_the_cache_variables_leave_the_working_directory_alone_and_clang_found(tmp_path, xdg):
    """The ziglang clang keeps a cache of its own where XDG_CACHE_HOME says, relative or not:
    a relative one was a directory made in the working directory, and one that cannot be
    made was 'no clang found'."""
    import os
    import subprocess
    import sys

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "ZIG_GLOBAL_CACHE_DIR")}
    env.update(XDG_CACHE_HOME=xdg, PYTHONPATH=str(ROOT), PATH="/usr/bin:/bin")
    proc = subprocess.run([sys.executable, "-m", "codegen.cli", "validate", str(ISA / "psmash.yaml")],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said
    assert "no clang found" not in said and "encodings not checked" not in said, said
    assert os.listdir(work) == []


def _latin1(tree: Path) -> None:
    p = tree / "arch/x86/include/asm/sev.h"
    p.write_bytes(p.read_bytes().replace(b"#endif", b"/* caf\xe9 */\n#endif", 1))


def _unterminated(tree: Path) -> None:
    p = tree / "arch/x86/include/asm/sev.h"
    p.write_bytes(p.read_bytes() + b"/* never closed\n")


def _missing(tree: Path) -> None:
    (tree / "arch/x86/include/asm/sev.h").unlink()


def _link(tree: Path) -> None:
    p = tree / "arch/x86/include/asm/sev.h"
    p.unlink()
    p.symlink_to("/etc/passwd")


@pytest.mark.parametrize("damage, said", [
    (_latin1, "sev.h: error: is not UTF-8 text"),
    (_unterminated, "sev.h:65:1: error: kgen cannot read this C: unterminated comment"),
    (_missing, "sev.h: error: kgen must change this file, but it is not in the tree"),
    (_link, "sev.h: error: kgen must change this file, but it is a symbolic link"),
])  # fmt: skip
@pytest.mark.parametrize("command", [["apply"], ["check"], ["patch", "-o", "OUT"]])
def test_a_header_kgen_reads_first_is_one_message_when_it_cannot(tmp_path, damage, said, command):
    """The sibling specs look in the tree's header for the helper they replace before any
    change is planned: what the header holds that kgen cannot read is named as the changes
    name it, never a traceback, and nothing is written."""
    from tests.test_tree import GIT_ENV, make_tree, snapshot

    tree = make_tree(tmp_path)
    damage(tree)
    before = snapshot(tree)
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    result = CliRunner().invoke(main, [*args, "--tree", str(tree), *map(str, sorted(ISA.glob("*.yaml")))],
                                env=GIT_ENV)  # fmt: skip
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert said in result.output, result.output
    assert snapshot(tree) == before and not (tmp_path / "out").exists()


def _stub_first(tree: Path, path: str, function: str, stub: str) -> str:
    """The tree's ``function`` in the #else of an #ifdef whose branch defines ``stub`` first."""
    p = tree / path
    text = p.read_text()
    start = re.search(rf"^\w[^\n]*\b{function}\([^;\n]*\)\n{{", text, re.M).start()
    end = text.index("\n}\n", start) + 3
    p.write_text(text[:start] + f"#ifdef CONFIG_KGEN_TEST_STUB\n{stub}#else\n" + text[start:end]
                 + "#endif\n" + text[end:])  # fmt: skip
    return p.read_text()


@pytest.mark.parametrize("path, function, stub, spec", [
    ("arch/x86/virt/svm/sev.c", "psmash", "int psmash(u64 pfn)\n{\n\treturn -ENODEV;\n}\n",
     "psmash.yaml"),
    ("arch/x86/kvm/svm/sev.c", "sev_vm_destroy", "void sev_vm_destroy(struct kvm *kvm)\n{\n}\n",
     "rmpopt.yaml"),
])  # fmt: skip
def test_of_two_definitions_the_one_that_holds_what_kgen_changes_is_changed(tmp_path, path, function,
                                                                             stub, spec):  # fmt: skip
    """A function defined in both branches of an #ifdef (a stub and the real one, in either
    order) is changed where it holds the asm or the statement kgen looks for."""
    from tests.test_tree import GIT_ENV, make_tree

    tree = make_tree(tmp_path)
    before = _stub_first(tree, path, function, stub)
    assert before.count(f" {function}(") >= 2
    result = CliRunner().invoke(main, ["apply", "--tree", str(tree), str(ISA / spec)], env=GIT_ENV)
    assert result.exit_code == 0, result.output
    after = (tree / path).read_text()
    assert after != before and stub in after  # the stub as it was
    assert f"#ifdef CONFIG_KGEN_TEST_STUB\n{stub}#else\n" in after


def test_two_definitions_that_both_hold_it_are_refused(tmp_path):
    from tests.test_tree import GIT_ENV, make_tree

    tree = make_tree(tmp_path)
    p = tree / "arch/x86/virt/svm/sev.c"
    text = p.read_text()
    start = text.index("int psmash(u64 pfn)")
    end = text.index("\n}\n", start) + 3
    p.write_text(text[:start] + "#ifdef CONFIG_KGEN_TEST_STUB\n" + text[start:end] + "#else\n"
                 + text[start:end] + "#endif\n" + text[end:])  # fmt: skip
    result = CliRunner().invoke(main, ["apply", "--tree", str(tree), str(ISA / "psmash.yaml")],
                                env=GIT_ENV)  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "psmash() is defined 2 times (lines 17, 34)" in result.output, result.output


@pytest.mark.parametrize("args, said", [
    (["validate", "isa/psmash.yaml", "--base", "no-such-revision"],
     "isa/psmash.yaml: error: cannot read the base: "),
    (["sweep", "isa/psmash.yaml", "--memory", "1G"], "isa/psmash.yaml: error: the spec describes no sweep"),
    (["compare", "isa/psmash.yaml", "--cases", "1", "--generated", "GEN"],
     "/psmash/arch/x86/include/asm/sev.h: error: no such generated file"),
])  # fmt: skip
def test_a_finding_is_a_line_that_says_error(run_kgen, tmp_path, args, said):
    """Every problem a user can cause reads `path: error: message`, as a compiler says it."""
    args = [str(tmp_path) if a == "GEN" else a for a in args]
    result = run_kgen(*args)
    assert result.exit_code == 1, result.output
    assert said in result.output, result.output


@pytest.mark.parametrize("name, line", [("snp_fixup_e820_tables", 58), ("setup_ghcb", 49)])
def test_a_name_the_file_has_already_is_not_added_again(tmp_path, name, line):
    """A spec's helper named as something the header already declares or defines (in either
    branch of an #ifdef) would be a second definition that breaks the build: refused, and
    nothing is written."""
    from tests.test_tree import GIT_ENV, make_tree, snapshot

    isa = tmp_path / "isa"
    isa.mkdir()
    spec = isa / "psmash.yaml"
    spec.write_text((ISA / "psmash.yaml").read_text().replace("name: __psmash", f"name: {name}", 1))
    tree = make_tree(tmp_path)
    before = snapshot(tree)
    result = CliRunner().invoke(main, ["apply", "--tree", str(tree), str(spec)], env=GIT_ENV)
    assert result.exit_code == 1, result.output
    assert (f"arch/x86/include/asm/sev.h:{line}:1: error: {name} is in this file already: kgen "
            "would add another") in result.output, result.output  # fmt: skip
    assert snapshot(tree) == before


@pytest.mark.parametrize("profile", ["newest", "6.1", "6.12"])
def test_every_size_is_named_with_constants_the_kernel_has(profile):
    """A region or coverage beyond the largest <linux/sizes.h> constant (64T) was named
    SZ_128T ... SZ_8388608T, which no header defines: the generated C did not compile."""
    from codegen.kernelapi import PROFILES
    from codegen.render import f_sz

    shim = (ROOT / "codegen" / "shim" / "kshim.h").read_text()
    defined = set(re.findall(r"^#define\s+(SZ_\w+)", shim, re.M))
    for shift in range(64):
        named = set(re.findall(r"SZ_\w+", f_sz(1 << shift, PROFILES[profile].sizes)))
        assert named and named <= defined, (shift, named - defined)


@pytest.mark.parametrize(
    "coverage, entries, native", [("32T", 32768, True), ("128T", 131072, False)]
)
def test_clzero_runs_natively_only_where_every_address_is_behind_the_guard(
    coverage, entries, native
):
    """RMPOPT's bytes are CLZERO to a CPU that ignores the prefix: natively they fault only
    below the guard (64 TB).  A table whose passes reach above it ran natively anyway and
    zeroed 64 bytes wherever the harness had memory there (a case of the 128T table showed
    executions missing); such a spec is emulated, and --engine native is refused."""
    from codegen.host import EngineRefused, HostCpu, check_engine, choose_engine
    from codegen.spec import parse

    text = (ISA / "rmpopt.yaml").read_text()
    text = text.replace("entries: 2048", f"entries: {entries}").replace(
        "coverage: 2T", f"coverage: {coverage}"
    )
    spec = parse(text, "rmpopt.yaml")
    amd = HostCpu("AuthenticAMD", True)
    assert (choose_engine("auto", spec, amd).engine == "native") == native
    if native:
        check_engine(spec, choose_engine("native", spec, amd))
    else:
        with pytest.raises(EngineRefused, match="above the guard"):
            choose_engine("native", spec, amd)


def test_a_coverage_named_by_an_expression_passes_the_cap_review():
    """Above SZ_64T the coverage is an expression, (SZ_64T * 2): the cap review rule read it
    as a regular expression and found no cap in code that has one."""
    from codegen.cli import review_findings
    from codegen.spec import parse

    text = (ISA / "rmpopt.yaml").read_text()
    spec = parse(text.replace("entries: 2048", "entries: 131072").replace("coverage: 2T", "coverage: 128T"),
                 "rmpopt.yaml")  # fmt: skip
    assert [f for f in review_findings([spec]) if f[1] == "cap-plain-if"] == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full to write to")
@pytest.mark.parametrize("args", [["schema"], ["validate", "-q", "--json", "isa/psmash.yaml"],
                                  ["sweep", "isa/rmpopt.yaml", "--memory", "3T", "--json"]])  # fmt: skip
def test_output_that_cannot_be_written_is_a_message(args):
    """Standard output on a full disk (/dev/full) was a traceback from every command."""
    import os
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "codegen.cli", *args], cwd=ROOT, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == "kgen: error: cannot write the output: No space left on device\n"


def test_patch_runs_no_command_the_tree_s_git_config_names(tmp_path):
    """`git status` in the tree ran its core.fsmonitor and the clean filters its
    .gitattributes name: a tree handed to kgen ran code of its own."""
    from tests.test_tree import GIT_ENV, git, make_tree

    tree = make_tree(tmp_path)
    ran = tmp_path / "ran"
    git(tree, "config", "core.fsmonitor", f"touch {ran}-fsmonitor; false #")
    git(tree, "config", "filter.evil.clean", f"touch {ran}-filter; cat")
    (tree / ".gitattributes").write_text("* filter=evil\n")
    sev = tree / "arch/x86/virt/svm/sev.c"
    sev.write_text(sev.read_text() + "\n")  # an uncommitted change: the series names no base
    result = CliRunner().invoke(main, ["patch", "--tree", str(tree), "-o", str(tmp_path / "p"),
                                       *map(str, sorted(ISA.glob("*.yaml")))], env=GIT_ENV)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ran")) == []
    assert "arch/x86/virt/svm/sev.c" in result.output  # still told from the last commit
    assert "base-commit" not in (tmp_path / "p" / "0000-cover-letter.patch").read_text()


def test_pruning_never_follows_a_link_to_files_not_kept_for_kgen(tmp_path):
    """A cache directory that is a link to a directory of the user's (levels -> ~/notes) was
    pruned as if every file there were a cache entry: the oldest were removed.  A link to a
    private directory (0700, as kgen makes its own) is still a cache."""
    import os

    from codegen import cachedir

    notes = tmp_path / "notes"
    notes.mkdir(mode=0o755)
    notes.chmod(0o755)
    for n in range(40):
        (notes / f"note-{n}.txt").write_text("mine")
        os.utime(notes / f"note-{n}.txt", (n, n))
    cache = tmp_path / "cache" / "kgen"
    cache.mkdir(parents=True)
    (cache / "levels").symlink_to(notes)
    assert cachedir.prune(cache / "levels", keep=10) == []
    assert len(list(notes.iterdir())) == 40
    assert cachedir.usage(cache) == []
    with pytest.raises(OSError):  # nor is anything stored there
        cachedir.write_own(cache / "levels" / ("0" * 24), b"level")
    assert len(list(notes.iterdir())) == 40
    notes.chmod(0o700)  # now a private directory: a cache kept elsewhere
    assert len(cachedir.prune(cache / "levels", keep=10)) == 31
    assert cachedir.usage(cache) == [("levels", 9, 36)]


def _path_options():
    """(command, option) for every option of every command that takes a path."""
    import click

    from codegen.cli import PathParam

    found = []
    for name, command in sorted(main.commands.items()):
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.type, click.Path):
                assert isinstance(param.type, PathParam), f"kgen {name} {param.opts[0]} takes ''"
                found.append((name, max(param.opts, key=len)))
    return found


PATH_OPTIONS = _path_options()


def test_every_path_option_is_found():
    assert ("render", "--out") in PATH_OPTIONS and ("compare", "--reference") in PATH_OPTIONS
    assert len(PATH_OPTIONS) >= 7


@pytest.mark.parametrize("command, option", PATH_OPTIONS, ids=[" ".join(o) for o in PATH_OPTIONS])
def test_an_empty_path_is_a_usage_error_not_the_working_directory(run_kgen, tmp_path, command,
                                                                  option):  # fmt: skip
    shutil.copytree(ISA, tmp_path / "isa")
    result = run_kgen(command, f"{option}=", cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert "an empty path" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["isa"]
