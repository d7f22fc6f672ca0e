"""A patch series for a kernel tree: one commit a step, written as `git format-patch` does.

The series is made in a scratch git repository that holds only the files the plan
touches, as the tree has them; each patch's operations are applied on top of the
previous ones and committed with a message drawn from the spec.  The blobs are the
tree's, so `git am` (and `git am -3`) apply the files in the tree itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from types import EllipsisType

from . import __version__, ctext
from .diagnostics import size_text
from .outtree import signals_blocked
from .record import record
from .render import spec_digest
from .tree import SCATTERED, Call, FeatureBit, Patch, Plan, Upsert, default_worker
from .treeio import GitNotFound, git

WIDTH = 75  # commit message lines, as checkpatch wants them


class SeriesError(Exception):
    pass


class OutputError(SeriesError):
    """The output directory cannot take the series: ``path: error: message``."""

    def __init__(self, path: Path | str, message: str):
        super().__init__(f"{path}: error: {message}")


@record
class Identity:
    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


def identity(cwd: Path | None = None) -> Identity | None:
    """The user's git identity (user.name / user.email, or GIT_AUTHOR_*), as git itself finds it."""

    def get(key: str, env: str) -> str:
        if os.environ.get(env):
            return os.environ[env]
        return git(
            cwd if cwd and cwd.is_dir() else Path.cwd(), "config", "--get", key
        ).stdout.strip()

    name, email = get("user.name", "GIT_AUTHOR_NAME"), get("user.email", "GIT_AUTHOR_EMAIL")
    return Identity(name, email) if name and email else None


# --- subjects and bodies -------------------------------------------------------

_PREFIXES = (
    ("drivers/crypto/ccp/", "crypto: ccp - "),
    ("arch/x86/kvm/svm/sev.c", "KVM: SEV: "),
    ("arch/x86/kvm/", "KVM: x86: "),
    ("arch/x86/include/asm/cpufeatures.h", "x86/cpufeatures: "),
    (SCATTERED, "x86/cpufeatures: "),
    ("arch/x86/include/asm/msr-index.h", "x86/msr-index: "),
)


def prefix(paths: list[str]) -> str:
    for start, text in _PREFIXES:
        if any(p.startswith(start) for p in paths):
            return text
    return "x86/sev: "


# The start of a line that `git am` reads as other than message text: an mbox separator
# ("From " and a date), an in-body header at the top of the body (From:, Subject:, Date:,
# "[PATCH]", ">From"), and where the patch starts ("---", "diff -", "Index: ").  Matched
# loosely (a line that only looks like one is indented too): a spec's words may land at the
# start of any line.
_MAIL_SYNTAX = re.compile(r"From |>From|\[PATCH|---|diff -|Index: |(?i:from|subject|date):")


def wrap(paragraphs: list[str]) -> str:
    """The paragraphs filled to WIDTH columns, words never broken; a line that would start
    with what git's mail tools read as a header, a separator or the patch starts with a
    space instead, so `git am` gives back every word as it was written."""
    return "\n\n".join("\n".join(_fill(p)) for p in paragraphs if p)


def _fill(paragraph: str) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in paragraph.split():
        if line and len(line) + 1 + len(word) > WIDTH:
            lines.append(line)
            line = ""
        line = f"{line} {word}" if line else word
        if _MAIL_SYNTAX.match(line):
            line = " " + line
    return [*lines, line] if line else lines


def message(patch: Patch, plan: Plan) -> tuple[str, str]:
    """Subject and body of one patch, in the subsystem's style."""
    spec = patch.spec
    insn, k = spec.instruction, spec.kernel
    mn = insn.mnemonic.upper()
    paths = sorted({op.path for op in plan.ops if op.patch is patch})
    key = patch.key.split(":")[0]
    pre = prefix(paths)
    what = f"{insn.title} ({mn})"
    if key == "cpufeature":
        c = spec.as_sweep().cpuid
        op = next(o for o in plan.ops if o.patch is patch and isinstance(o, FeatureBit))
        word, bit = op.slot(plan.tree.text(op.path), plan.tree)
        where = ""
        if (word, bit) != (c.word, c.word_bit):
            text = plan.tree.text(op.path)
            taken = re.search(
                rf"#define\s+(X86_FEATURE_\w+)\s+\(\s*{c.word}\s*\*\s*32\s*\+\s*{c.word_bit}\s*\)",
                text,
            )
            holder = taken.group(1) if taken else "another feature"
            where = (f"Mainline has it at ({c.word}*32+{c.word_bit}), which is {holder} here, so it "
                     f"takes the first free bit of word {word}, a word whose features scattered.c "
                     "sets from CPUID.")  # fmt: skip
        body = [
            f"{what} is enumerated by CPUID {c.leaf:#x} {c.register.upper()}[{c.bit}]. "
            f"Add {c.feature} and set it from that leaf in scattered.c, so that code can test for "
            f"the instruction with cpu_feature_enabled() before it executes it.",
            where,
        ]
        return f"{pre}Add {c.feature}", wrap(body)
    if key == "msr":
        m = spec.as_sweep().msr
        body = [
            f"{mn} is enabled through {m.name} ({m.number:#x}), one MSR per {m.scope}: bit "
            f"{m.enable.bit} ({m.enable.name}) enables the instruction"
            + (
                f", bits {m.base.high_bit}:{m.base.low_bit} hold the base: "
                f"{_sentence(m.base.description)}"
                if m.base
                else "."
            ),
            f"An {mn} on a core whose enable bit is clear raises #{m.fault}.",
        ]
        return f"{pre}Add {m.name}", wrap(body)
    if key == "helpers":
        raw = k.raw_helper
        body = [
            _with_subject(mn, insn.description),
            f"Add {raw.name}(), which mirrors the instruction reference: "
            + ", ".join(f"{i.register.upper()} = {i.name}" for i in insn.inputs)
            + ", and returns "
            + _outputs(spec)
            + ".",
            (
                f"Add {k.helper.name}(), which takes a physical address anywhere in the region and "
                f"passes the function code {k.helper.function}."
                if k.helper
                else ""
            ),
            _assembler(spec),
        ]
        return f"{pre}Add the {mn} instruction helpers", wrap(body)
    if key == "setup":
        w = default_worker(spec)
        sw = spec.as_sweep()
        en = sw.enable
        reqs = "".join(f" and {r.check}({r.argument})" for r in en.requires)
        per_core = sw.msr.scope == "core"
        unit = "core" if per_core else "CPU"
        start = "allocates the workqueue" if w.kind == "delayed-work" else "starts the thread"
        body = [
            _with_subject(mn, insn.description),
            f"{w.setup}() enables {mn} and starts a worker that runs one pass over all memory "
            f"shortly after. It does nothing unless cpu_feature_enabled({sw.cpuid.feature})"
            f"{reqs}. It {start} first, so that a failure leaves the MSRs untouched, and it "
            f"runs once: a second call finds the worker and returns.",
            f"The MSRs are written by a CPU hotplug state ({en.hotplug.state}, "
            f'"{en.hotplug.name}") that setup registers: its callback writes {sw.msr.name} on '
            + ("the first online thread of each core" if per_core else "each CPU")
            + f", at once on those online and later on each {unit} that comes online"
            + (
                f"; its teardown callback writes 0 when the last online thread of a {unit} goes "
                f"offline, as INIT leaves the MSR as it is and a {unit} offline at teardown would "
                f"come back with {mn} enabled."
                if en.msr_on_teardown == "clear"
                else "."
            ),
            f"A pass runs {mn} on every {size_text(sw.table.region_size)} region from the lowest "
            f"to the highest page of memory, first on the current CPU and then on the primary "
            f"thread of every other core, so that the others find the scan result cached. The "
            f"table covers {size_text(sw.table.coverage)}: memory above that is not optimized, "
            f"and setup says so once.",
            f"{w.teardown}() cancels a pending pass, waits for a running one, "
            + ("destroys the workqueue" if w.kind == "delayed-work" else "stops the thread")
            + ", removes the hotplug state and "
            + (
                f"clears the MSR on every {unit}, under one cpus_read_lock() so that no CPU "
                "comes or goes in between."
                if en.msr_on_teardown == "clear"
                else "leaves the MSRs as they are."
            )
            + f" One mutex, {en.mutex}, orders setup, requests and teardown.",
            f"{w.setup}() and {w.teardown}() are for {en.setup_caller}, which initializes and "
            f"shuts down SNP.",
        ]
        return f"{pre}Enable {mn} and run a pass after SNP initialization", wrap(body)
    if key == "trigger":
        w = default_worker(spec)
        body = [
            f"Add {w.trigger}() for {spec.as_sweep().enable.trigger_caller}: it asks for one {mn} pass "
            + (
                f"{w.rearm_delay_ms // 1000} s from now. "
                if w.rearm_delay_ms and w.rearm_delay_ms % 1000 == 0
                else "soon. "
            )
            + "A request that finds a pass pending moves it back, so a burst of requests makes "
            "one pass. Before setup and after teardown it does nothing.",
        ]
        return f"{pre}Add {w.trigger}() to ask for an {mn} pass", wrap(body)
    if key in ("call-setup", "call-trigger"):
        calls = [o for o in plan.ops if o.patch is patch and isinstance(o, Call)]
        said = [f"{o.call.rstrip(';')} in {o.function}()"
                + (f" unless {o.unless}" if o.unless else "") for o in calls]  # fmt: skip
        w = default_worker(spec)
        if key == "call-trigger":
            delay = w.rearm_delay_ms
            subject = f"{pre}Ask for an {mn} pass when an SNP guest is destroyed"
            body = [f"Call {' and '.join(said)}. The guest's private memory goes back to the "
                    "host when its guest_memfd is released, which may be after this call; "
                    + (f"the pass runs {delay // 1000} s after the last request, "
                       if delay and delay % 1000 == 0 else "the pass runs later, ")
                    + f"and {w.trigger}() makes one pass of requests that come close together. "
                    "Regions that still hold guest pages are simply not optimized."]  # fmt: skip
        else:
            subject = f"{pre}Set up {mn} after SNP init and tear it down at shutdown"
            body = [f"Call {' and '.join(said)}. {mn} can be enabled only once SNP is."]
            if any(o.unless for o in calls):
                body.append(
                    "Teardown sleeps (it takes a mutex, waits for the worker and "
                    "writes the MSRs through IPIs), so it is left out of the panic path."
                )
        return subject, wrap(body)
    # a sibling: the tree's hand-written helper becomes the generated one
    raw = k.raw_helper
    ool = k.out_of_line
    body = [
        (
            f"Move the {mn} instruction of {ool.name}() into {raw.name}(), a helper that "
            f"mirrors the instruction reference, with kernel-doc that states its encoding, "
            f"registers and return value."
            if ool
            else f"Give {raw.name}() kernel-doc that states the encoding, the registers and the return "
            + {
                "none": "value. The code is unchanged.",
                "layout": "value. It also reformats the asm statement; the instruction bytes, "
                "the operands and the result are unchanged.",
                "code": f"value. It also changes the code of {raw.name}().",
            }[_code_change(patch, plan, raw.name)]
        ),
        (
            f"{raw.name}() executes {mn} again while it returns a retry code, at most "
            f"{raw.max_retries} times; the loop it replaces retried without bound, so a code "
            f"that persists now ends as a failure instead of a hang."
            if raw.max_retries and ool
            else ""
        ),
    ]
    if ool:
        return f"{pre}Move the {mn} instruction into {raw.name}()", wrap(body)
    return f"{pre}Add kernel-doc to {raw.name}()", wrap(body)


def _code_change(patch: Patch, plan: Plan, name: str) -> str:
    """What the patch changes in the code of function `name`, beyond its comments: "none",
    "layout" (the same tokens once the asm text is read as the assembler reads it: case,
    blanks and line breaks aside) or "code"."""
    for op in plan.ops:
        if op.patch is patch and isinstance(op, Upsert) and op.name == name:
            text = plan.tree.text(op.path)
            old = op._found(text, ctext.items(text), plan.tree)
            if old is None:
                return "code"
            was, now = ctext.tokens(old.code_text(text)), ctext.tokens(op.body)
            if was == now:
                return "none"
            return "layout" if _asm_read(was) == _asm_read(now) else "code"
    return "code"


def _asm_read(tokens: list[str]) -> list[str]:
    """String literals as the assembler reads them: case, blanks and line breaks aside."""
    return [re.sub(r"\s|\\n|\\t", "", t).lower() if t.startswith('"') else t for t in tokens]


def _listed(words: list[str]) -> str:
    """'A', 'A and B', 'A, B and C'."""
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def _with_subject(mnemonic: str, description: str) -> str:
    """'Checks whether ...' -> 'RMPOPT checks whether ...': a spec's description as a sentence."""
    text = _sentence(description)
    first = text.split(" ", 1)[0]
    if first[:1].isupper() and first[1:].islower() and first.endswith("s"):
        return f"{mnemonic} {first.lower()}{text[len(first) :]}"
    return text


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith(".") else text + "."


def _outputs(spec) -> str:
    outs = []
    for o in spec.instruction.outputs:
        outs.append(f"RFLAGS.{o.flag.upper()}" if o.flag else o.register.upper())
    return " and ".join(outs) or "nothing"


def _assembler(spec) -> str:
    a = spec.instruction.assembler
    mn = spec.instruction.mnemonic
    if a.binutils:
        return (
            f'The "{mn}" mnemonic needs binutils {a.binutils}, so the bytes are emitted with .byte.'
        )
    return (
        f'No binutils release knows the "{mn}" mnemonic yet, so the bytes are emitted with .byte.'
    )


# --- writing the series -----------------------------------------------------------


def _git(repo: Path, *args: str, env: dict | None = None) -> str:
    """git in the scratch repository: none of the caller's GIT_* variables, only ``env``."""
    try:
        proc = git(repo, *args, env=env)
    except GitNotFound:
        raise SeriesError("kgen patch needs git, and there is no git on PATH") from None
    if proc.returncode:
        raise SeriesError(f"git {' '.join(args[:2])} failed: {proc.stderr.strip()}")
    return proc.stdout


def tree_head(root: Path) -> str | None:
    proc = git(root, "rev-parse", "--verify", "-q", "HEAD")
    top = git(root, "rev-parse", "--show-toplevel")
    if proc.returncode or top.returncode or Path(top.stdout.strip()).resolve() != root.resolve():
        return None
    return proc.stdout.strip()


def base_commit(root: Path, files: list[str]) -> tuple[str | None, list[str]]:
    """The tree's HEAD, when the series applies to it, and the files kgen touches that differ
    from it (changed, staged or untracked): with any, the series is made from the files as
    they are, so no commit is its base."""
    head = tree_head(root)
    if head is None:
        return None, []
    # told by blob ids, not `git status`: that runs the tree's core.fsmonitor and the clean
    # filters its .gitattributes name, commands a tree handed to kgen would choose
    listed = git(root, "ls-tree", "-r", "-z", "--full-tree", head, "--", *files).stdout
    committed = {entry.split("\t", 1)[1]: entry.split()[2]
                 for entry in listed.split("\0") if "\t" in entry}  # fmt: skip
    present = [f for f in files if (root / f).is_file()]
    hashed = git(root, "hash-object", "--no-filters", "--", *present).stdout.split()
    now = dict(zip(present, hashed, strict=False))
    dirty = sorted(f for f in files if committed.get(f) is None or now.get(f) != committed[f])
    return (None if dirty else head), dirty


def write_series(plan: Plan, out: Path, who: Identity, signoff: bool,
                 base: str | None | EllipsisType = ...) -> list[Path]:  # fmt: skip
    """Write the numbered series (0000 the cover letter) into ``out``; returns the files.

    ``base``: the commit the cover letter names, as :func:`base_commit` found it (``...``:
    find it here).  A step whose operations fail raises its first TreeError.
    """
    patches = plan.patches()
    if base is ...:
        base = base_commit(plan.tree.root, plan.files())[0]
    env = {
        "GIT_AUTHOR_NAME": who.name, "GIT_AUTHOR_EMAIL": who.email,
        "GIT_COMMITTER_NAME": who.name, "GIT_COMMITTER_EMAIL": who.email,
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
    }  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="kgen-series-"))
    try:
        repo = work / "repo"
        repo.mkdir()
        _git(repo, "init", "-q", env=env)
        for path in plan.files():
            dest = repo / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(plan.tree.data(path))
        _git(repo, "add", "-A", env=env)
        _git(repo, "commit", "-q", "-m", "base", env=env)
        done: list[Patch] = []
        for patch in patches:
            done.append(patch)
            step, errors = plan.result(done)
            if errors:
                raise errors[0]
            for path, text in step.items():
                (repo / path).write_bytes(plan.tree.encode(path, text))
            subject, body = message(patch, plan)
            msg = work / "msg"
            msg.write_text(f"{subject}\n\n{body}\n")
            _git(repo, "add", "-A", env=env)
            if not _git(repo, "status", "--porcelain", env=env).strip():
                continue
            _git(
                repo,
                "commit",
                "-q",
                "--no-verify",
                "-F",
                str(msg),
                *(["-s"] if signoff else []),
                env=env,
            )
        count = _count(repo, env)
        if not count:
            return []  # the tree already has it all
        staged = work / "out"
        _git(
            repo,
            "format-patch",
            "-q",
            "--cover-letter",
            "-o",
            str(staged),
            f"HEAD~{count}",
            env=env,
        )
        files = sorted(staged.iterdir())
        _cover(files[0], plan, patches, base)
        return _publish(files, out)
    finally:
        with signals_blocked():  # a Ctrl-C now would leave the scratch repository behind
            shutil.rmtree(work, ignore_errors=True)


def _publish(files: list[Path], out: Path) -> list[Path]:
    """Put ``files`` into ``out`` all at once, or none of them: each is written to a directory
    inside ``out`` first, then linked into place under a name nothing has (not even a
    dangling link: kgen writes through no link)."""
    if os.path.lexists(out) and not out.is_dir():
        raise OutputError(out, "is a symbolic link to nothing: kgen does not create its target"
                          if not os.path.exists(out) else "is not a directory")  # fmt: skip
    created = not os.path.lexists(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(out, f"cannot create the output directory: {exc.strerror}") from None
    written: list[Path] = []
    stage = None
    try:
        clash = [out / f.name for f in files if os.path.lexists(out / f.name)]
        if clash:
            raise OutputError(clash[0], "exists; kgen does not overwrite it (use another -o)")
        try:
            stage = Path(tempfile.mkdtemp(prefix=".kgen-tmp-series-", dir=out))
        except OSError as exc:
            raise OutputError(out, f"cannot write: {exc.strerror}") from None
        for f in files:
            try:
                shutil.copyfile(f, stage / f.name)
            except OSError as exc:
                raise OutputError(out / f.name, f"cannot write: {exc.strerror}") from None
        with signals_blocked():
            try:
                for f in files:
                    try:
                        os.link(stage / f.name, out / f.name, follow_symlinks=False)
                    except FileExistsError:
                        raise OutputError(
                            out / f.name, "exists; kgen does not overwrite it (use another -o)"
                        ) from None
                    except OSError as exc:
                        raise OutputError(out / f.name, f"cannot write: {exc.strerror}") from None
                    written.append(out / f.name)
            except BaseException:
                for w in written:
                    with contextlib.suppress(OSError):
                        os.unlink(w)
                raise
    finally:
        with signals_blocked():
            if stage is not None:
                shutil.rmtree(stage, ignore_errors=True)
            if created and not written:
                with contextlib.suppress(OSError):
                    out.rmdir()  # the directory this run made for a series it did not write
    return written


def _count(repo: Path, env: dict) -> int:
    return int(_git(repo, "rev-list", "--count", "HEAD", env=env).strip()) - 1


def _cover(path: Path, plan: Plan, patches: list[Patch], base: str | None) -> None:
    specs = []
    for p in patches:
        if p.spec not in specs:
            specs.append(p.spec)
    mns = [s.instruction.mnemonic.upper() for s in specs]
    sweeps = [s.instruction.mnemonic.upper() for s in specs if s.kernel.sweep is not None]
    subject = (f"x86/sev: Add {' and '.join(sweeps)} support" if sweeps
               else f"x86/sev: {_listed(mns)} helpers from their instruction specs")  # fmt: skip
    lines = [_with_subject(s.instruction.mnemonic.upper(), s.instruction.description)
             for s in specs if s.kernel.sweep is not None]  # fmt: skip
    if sweeps and len(mns) > len(sweeps):
        lines.append(f"After the {' and '.join(sweeps)} patches, the hand-written "
                     f"{_listed([m for m in mns if m not in sweeps])} code gives way to helpers "
                     "generated from instruction specs of the same kind.")  # fmt: skip
    lines.append(f"This series was generated by kgen {__version__} from these instruction specs "
                 f"against Linux {plan.tree.version}:")  # fmt: skip
    blurb = (
        wrap(lines)
        + "\n\n"
        + "\n".join(f"  {Path(s.path).name}  sha256 {spec_digest(s.source)}" for s in specs)
    )
    if base:
        blurb += f"\n\nbase-commit: {base}"
    text = path.read_text()
    text = text.replace("*** SUBJECT HERE ***", subject).replace("*** BLURB HERE ***", blurb)
    path.write_text(text)


__all__ = ["write_series", "message", "identity", "SeriesError"]
