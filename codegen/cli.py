"""The ``kgen`` command line.

Exit codes: 0 all good; 1 a finding (invalid spec, drift, mismatch,
conflict); 2 a usage error.  Problems print as ``path:line:col: message``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__
from .diagnostics import Diagnostic, Mark, SpecError, plural, shown_path
from .kernelapi import PROFILES as PROFILE_NAMES
from .limits import MAX_CPUS, PAGE_SHIFT, PHYS_BITS
from .model import Spec
from .mutation_ops import OPERATORS as MUTATION_OPERATORS
from .report import (
    compare_report,
    json_diag,
    json_head,
    json_report,
    print_changes,
    print_compare,
    report_problems,
    stale_line,
    sweep_json,
    sweep_summary,
)
from .spec import load_all

DEFAULT_ISA_DIR = Path("isa")
MAX_CASES = 10**6  # cases one compare may ask for (codegen.cases generates about 40 000 a second)
DEFAULT_OUT_DIR = Path("generated")
DEFAULT_EQUIVALENTS = Path("tests/mutation/equivalent.yaml")


class PathParam(click.Path):
    """click.Path that refuses an empty value: Path("") is the working directory, so
    ``--out ''`` (an unset shell variable) would have written there."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value:
            self.fail("an empty path ('.' is this directory)", param, ctx)
        return super().convert(value, param, ctx)


def default_spec_paths() -> list[Path]:
    """Every spec in ./isa, sorted, or a usage error when there is none."""
    paths = sorted(DEFAULT_ISA_DIR.glob("*.yaml"))
    if not paths:
        raise click.UsageError(
            f"no spec files given and none found in {DEFAULT_ISA_DIR}/ "
            "(run from the project root or name the spec files)"
        )
    return paths


def _existing(paths: tuple[str, ...]) -> tuple[str, ...]:
    """Named spec files must exist: a name that finds nothing is a usage error (exit 2)."""
    import os

    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        raise click.BadParameter("no such file: " + ", ".join(map(shown_path, missing)),
                                 param_hint="SPEC")  # fmt: skip
    return paths


def interruptible(command):
    """Ctrl-C (SIGINT) or SIGTERM stops ``command`` promptly and quietly: what it started is
    stopped and its temporary files go as the exception unwinds, then kgen exits 130 or 143."""

    owner: list[int] = []  # the process that runs the command
    raised: list[tuple[int, BaseException]] = []  # what stop raised, until the command sees it

    def stop(signum, _frame):
        if owner and os.getpid() != owner[-1]:
            # a worker forked before it set its own handlers: the command stops it
            if signum == signal.SIGINT:
                return
            os._exit(128 + signum)
        for sig in (signal.SIGINT, signal.SIGTERM):  # the cleanup is not interrupted in turn
            signal.signal(sig, signal.SIG_IGN)
        exc = KeyboardInterrupt() if signum == signal.SIGINT else SystemExit(128 + signum)
        raised[:] = [(signum, exc)]
        raise exc

    def dropped(unraisable) -> None:
        """Python drops an exception raised where it cannot propagate (an at-fork callback
        such as logging's lock release, a __del__): when that was stop's, the signal comes
        again a moment later, from a thread (sent from here, its handler would run here and
        be dropped in turn), and stops the command wherever it lands."""
        if raised and unraisable.exc_value is raised[0][1] and owner and os.getpid() == owner[-1]:
            import threading
            import time

            signum, pid = raised.pop()[0], os.getpid()

            def again() -> None:
                time.sleep(0.01)
                os.kill(pid, signum)

            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, stop)
            threading.Thread(target=again, daemon=True).start()
            return
        hook(unraisable)

    hook = sys.unraisablehook

    @functools.wraps(command)
    def run(*args, **kwargs):
        nonlocal hook
        import threading

        if threading.current_thread() is not threading.main_thread():
            return command(*args, **kwargs)  # only the main thread takes signals
        owner.append(os.getpid())
        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        hook, sys.unraisablehook = sys.unraisablehook, dropped
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            raise _interrupted() from None
        except SystemExit as exc:
            if raised and exc is raised[0][1]:
                click.echo("kgen: terminated", err=True)
            raise
        finally:
            raised.clear()
            sys.unraisablehook = hook
            owner.pop()
            for sig, handler in previous.items():
                with contextlib.suppress(TypeError):
                    signal.signal(sig, handler)

    return run


def load_specs(paths: tuple[str, ...]) -> list[Spec]:
    """Load the named specs (or every bundled one); exit 1 on any problem."""
    try:
        return load_all(paths or default_spec_paths(), cached=True)
    except SpecError as exc:
        report_problems(exc)
        raise click.exceptions.Exit(1) from None


def _interrupted() -> click.exceptions.Exit:
    """What Ctrl-C ends a command with: a word on stderr, then 130, as a shell reports it."""
    click.echo("kgen: interrupted", err=True)
    return click.exceptions.Exit(128 + signal.SIGINT)


class _Commands(click.Group):
    """kgen's commands: Ctrl-C exits 130 from any of them (click alone says "Aborted!", 1),
    and a spec the templates cannot express is one message naming it and exit status 1,
    whichever command rendered it."""

    def invoke(self, ctx):
        from .render import RenderError

        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _interrupted() from None
        except RenderError as exc:
            where = exc.spec_path
            click.echo(f"{Mark(where, 0, 0)}: error: cannot render: {exc}" if where
                       else f"kgen: cannot render: {exc}", err=True)  # fmt: skip
            raise click.exceptions.Exit(1) from None
        except OSError as exc:
            if not _stdout_failed(exc):
                raise
            # a reader that went away wants no word, as click says none
            if exc.errno != errno.EPIPE:
                click.echo(f"kgen: error: cannot write the output: {exc.strerror}", err=True)
            raise click.exceptions.Exit(1) from None


def _stdout_failed(exc: OSError) -> bool:
    """Whether ``exc`` is standard output refusing what was written to it (by click.echo, or
    to sys.stdout itself) on a full disk or a closed pipe; if so it goes to /dev/null, so
    that exit does not fail flushing it again."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    frame = tb.tb_frame
    echo = frame.f_code.co_name == "echo" and frame.f_globals.get("__name__") == "click.utils"
    if not (echo and not frame.f_locals.get("err")
            or any(v is sys.stdout for v in frame.f_locals.values())):  # fmt: skip
        return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return True


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="kgen")
def main() -> None:
    """Generate Linux kernel instruction helpers from a YAML spec, and prove them.

    Specs live in isa/*.yaml; commands that take SPEC... use all of them when
    none is named.  Exit status: 0 good, 1 a finding, 2 a usage error.
    """
    import os

    if os.environ.get("NO_COLOR"):  # https://no-color.org: set and not empty
        click.get_current_context().color = False


@main.command()
@click.argument(
    "specs", nargs=-1, metavar="[SPEC]...", callback=lambda ctx, param, value: _existing(value)
)
@click.option("--base", metavar="REV_OR_FILE", callback=lambda ctx, param, value: _base_option(value),
              help="Compare each spec with an older version: a file, or the same path at a git "
                   "revision (HEAD, main, a commit).")  # fmt: skip
@click.option(
    "--compare",
    "run_compare",
    is_flag=True,
    help="Also run compile-and-compare on the specs (-O0, -O2, -Os).",
)
@click.option(
    "--cases",
    "count",
    type=click.IntRange(1, MAX_CASES),
    default=3000,
    show_default=True,
    help="Configurations for --compare.",
)
@click.option("--out", type=PathParam(file_okay=False, path_type=Path), default=None,
              help="With --base: the generated files to hold to a fresh render [default: "
                   "generated/ beside the spec's directory, e.g. generated/ for isa/*.yaml].")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@click.option(
    "-q", "--quiet", is_flag=True, help="Leave out the notes; print errors and the result only."
)
@click.option("--skip-rule", "skip_rules", multiple=True, metavar="RULE", callback=lambda c, p, v: _rules(v),
              help="Do not apply this kernel review rule (repeat); reported as skipped.")  # fmt: skip
@interruptible
def validate(specs: tuple[str, ...], base: str | None, run_compare: bool, count: int,
             out: Path | None, as_json: bool, quiet: bool, skip_rules: tuple[str, ...]) -> None:  # fmt: skip
    """Check specs: structure, types, ranges, names and cross-field rules.

    Each valid spec is also rendered in memory and its output held to the
    kernel review rules, and its encoding is checked against the other specs
    and the known encodings of its opcode space.  With --base, also say what
    changed since the older version, grouped by meaning, with the re-rendered
    diff and the mirror's behaviour before and after.  One exit code says
    whether the change is ready: 0 yes, 1 a finding.
    """
    try:
        loaded = load_all(specs or default_spec_paths(), cached=True)
    except SpecError as exc:
        if as_json:
            click.echo(json.dumps(json_head("validate") | json_report([], exc), indent=2))
        else:
            report_problems(exc)
        sys.exit(1)
    from .review import rule_names

    known_rules = rule_names()
    skips = {s.path: skipped_rules(s, skip_rules) for s in loaded}
    findings = review_findings(loaded, skips)
    cross = cross_findings(loaded)
    changes = [_changes_since(spec, base) for spec in loaded] if base else []
    base_problems = [p for c in changes for p in c.get("problems", [])]
    if base:  # ready means `kgen check` passes too
        generated = _generated_drift(loaded, out)
        for change, found in zip(changes, generated, strict=True):
            change.setdefault("problems", []).extend(found["problems"])
            change["generated"] = found
        base_problems += [p for found in generated for p in found["problems"]]
    compared, stopped = _compare_all(loaded, count) if run_compare else ([], None)
    ok = (not findings and not cross.problems and not base_problems and stopped is None
          and all(r.ok for r in compared))  # fmt: skip
    if as_json:
        report = json_report(loaded, SpecError(cross.problems) if cross.problems else None)
        report["review"] = [{"path": p, "rule": r, "message": m} for p, r, m in findings]
        report["skipped"] = [{"path": path, "rule": r, "reason": why}
                             for path, found in skips.items() for r, why, _ in found if r in known_rules]  # fmt: skip
        report["notes"] = [json_diag(d) for d in cross.notes]
        if base:
            report["changes"] = changes
        if run_compare:
            report["compare"] = (
                compare_report(compared, 1, compared[0].compilers) if compared else None
            )
            if stopped is not None:
                report["compare"] = (report["compare"] or {}) | _stopped_json(
                    loaded, compared, stopped
                )
        report["ok"] = ok
        click.echo(json.dumps(json_head("validate") | report, indent=2))
        sys.exit(0 if ok else 1)
    for d in [] if quiet else cross.notes:
        click.echo(str(d))
    for path, skipped_here in [] if quiet else skips.items():
        for r, why, mark in skipped_here:
            if r in known_rules:
                click.echo(f"{mark or path}: note: review [{r}] skipped: {why}")
    for path, rule, message in findings:
        click.echo(f"{path}: error: review [{rule}]: {message}", err=True)
    if cross.problems:
        report_problems(SpecError(cross.problems))
    for change in changes:
        print_changes(change)
    for result in compared:
        print_compare(result)
    if stopped is not None:
        click.echo(stopped, err=True)
    if not ok:
        sys.exit(1)
    for spec in loaded:
        insn = spec.instruction
        codes = len(insn.function_codes.codes) if insn.function_codes else 0
        counts = [(len(insn.encoding), "encoding byte"), (len(insn.inputs), "input"),
                  (len(insn.outputs), "output"), (codes, "function code")]  # fmt: skip
        click.echo(
            f"{shown_path(spec.path)}: ok ({insn.mnemonic}: "
            + ", ".join(plural(n, what) for n, what in counts)
            + ")"
        )


def _base_option(value: str | None) -> str | None:
    """A revision or a file; never empty, and never what git would take for an option."""
    if value is None:
        return None
    if not value.strip():
        raise click.BadParameter("is empty: name a file or a git revision")
    if value.startswith("-") and not Path(value).exists():
        raise click.BadParameter(f"{value!r} starts with '-': a revision never does "
                                 f"(write ./{value} for a file)")  # fmt: skip
    return value


def _changes_since(spec: Spec, base: str) -> dict:
    """What changed in ``spec`` since ``base``, as a report (JSON-ready)."""
    from .render import RenderError, render_spec
    from .spec import parse
    from .specdiff import BaseError, base_text, behaviour_changes, code_diff, spec_changes

    report: dict = {"path": spec.path, "base": base}
    try:
        label, text = base_text(spec.path, base)
        report["base"] = label
        # render under the spec's own path: the banners then differ by the hash alone
        old = dataclasses.replace(parse(text, label), path=spec.path)
    except BaseError as exc:
        report["problems"] = [f"{shown_path(spec.path)}: error: cannot read the base: {exc}"]
        return report
    except SpecError as exc:
        report["problems"] = [f"{d} (the base of {shown_path(spec.path)})" for d in exc.diagnostics]
        return report
    report["changes"] = [vars(c) for c in spec_changes(old, spec)]
    try:
        report["diff"] = code_diff(render_spec(old), render_spec(spec))
    except RenderError as exc:
        report["problems"] = [f"{shown_path(spec.path)}: error: cannot render: {exc}"]
        report["diff"] = ""
    report["behaviour"] = behaviour_changes(old, spec)
    return report


def _generated_drift(specs: list[Spec], out: Path | None) -> list[dict]:
    """Each spec's generated files against a fresh render, as `kgen check` holds them."""
    from .outtree import drift
    from .render import RenderError, render_spec

    reports = []
    for spec in specs:
        where = out if out is not None else Path(spec.path).parent.parent / "generated"
        found: dict = {"out": str(where), "checked": where.is_dir(), "problems": []}
        reports.append(found)
        if not where.is_dir():
            found["note"] = (f"{shown_path(spec.path)}: note: generated files not checked: no directory "
                             f"{where}/ (name it with --out)")  # fmt: skip
            continue
        try:
            d = drift(render_spec(spec), where, [spec.instruction.mnemonic])
        except RenderError:
            continue  # a review finding already
        found["problems"] += [f"{shown_path(spec.path)}: error: {exc}" for exc in d.problems]
        for diff in d.diffs:
            name = next(ln[6:] for ln in diff.splitlines() if ln.startswith("+++ b/"))
            found["problems"].append(f"{shown_path(spec.path)}: error: {where.parent / name} is out of date "
                                     "with the spec; run `kgen render`")  # fmt: skip
        found["problems"] += [
            f"{shown_path(spec.path)}: error: {stale_line(where, st)}" for st in d.stale
        ]
    return reports


def _compare_all(specs: list[Spec], count: int) -> tuple[list, str | None]:
    """validate --compare: each spec's result, in order, and why the run stopped early (the
    message), or None."""
    from . import compare as cmp
    from .build import BuildError
    from .execcheck import UnsafeCode
    from .host import EngineRefused, choose_engine
    from .toolchain import ToolchainError, find_clang, find_gcc

    try:  # the compilers compare uses by default: clang, and gcc where there is one
        compilers = (find_clang(), *filter(None, [find_gcc()]))
    except ToolchainError as exc:
        return [], f"kgen: error: {exc}"

    def plan(spec: Spec):
        if why := _cannot_run(spec, "compared"):
            raise _Refused(why)
        return cmp.Comparison(spec, compilers, choose_engine("auto", spec), 1, count)

    results: list = []
    # every spec validated is compared (none is reported ok untested), overlapped as compare does
    with contextlib.closing(cmp.compare_each(functools.partial(plan, s) for s in specs)) as each:
        try:
            for result in each:
                results.append(result)
        except _Refused as exc:
            return results, str(exc)
        except (BuildError, RuntimeError, UnsafeCode, EngineRefused) as exc:
            return results, f"kgen: {shown_path(specs[len(results)].path)}: error: {exc}"
    return results, None


def _rules(names: tuple[str, ...]) -> tuple[str, ...]:
    """--skip-rule names, each a review rule; another name is a usage error."""
    from .review import rule_names

    unknown = [n for n in names if n not in rule_names()]
    if unknown:
        raise click.BadParameter(
            f"no review rule {unknown[0]!r}; the rules are: {', '.join(rule_names())}"
        )
    return names


def skipped_rules(spec: Spec, names: tuple[str, ...]) -> list[tuple[str, str, Mark | None]]:
    """The review rules not applied to ``spec``, each with its reason: the spec's, then --skip-rule's."""
    from .review import skipped

    return skipped(spec, {n: "--skip-rule on the command line" for n in names})


def review_findings(specs: list[Spec], skips: dict | None = None) -> list[tuple[str, str, str]]:
    """Render each spec in memory and apply the kernel review rules to the result.

    The rules ``skips`` names for a spec's path are not applied; a name that is no rule is a
    finding at the spec's line.
    """
    from .render import RenderError, render_spec
    from .review import review, rule_names

    findings = []
    for spec in specs:
        try:
            files = render_spec(spec)
        except RenderError as exc:
            findings.append((spec.path, "render", str(exc)))
            continue
        skip = (skips or {}).get(spec.path, [])
        findings += [(str(mark), "skip", f"no review rule {name!r}; the rules are: {', '.join(rule_names())}")
                     for name, _, mark in skip if name not in rule_names()]  # fmt: skip
        findings += [
            (spec.path, rule, msg)
            for rule, msg in review(spec, files, frozenset(n for n, *_ in skip))
        ]
    return findings


def cross_findings(specs: list[Spec], independent: bool = True, notes_too: bool = True):
    """Collisions and repeated names between the specs and every other valid spec beside them.

    The others are the specs in each named spec's directory and in isa/.  Every
    problem is reported on a named spec, with a note at the other side.  With
    ``independent``, also the checks against an assembler, iced-x86's operand
    facts and binutils.
    """
    from .conflicts import cross_check

    named = {Path(s.path).resolve() for s in specs}
    dirs = list(
        dict.fromkeys([Path(s.path).parent.resolve() for s in specs] + [DEFAULT_ISA_DIR.resolve()])
    )
    others = []
    for d in dirs:
        for path in sorted(d.glob("*.yaml")) if d.is_dir() else ():
            if path.resolve() in named:
                continue
            with contextlib.suppress(SpecError):  # reported when that spec itself is validated
                others += load_all([_shown(path)], cached=True)
    # a spec of the same instruction elsewhere is a version of the named one, not a rival;
    # beside it, it is a second spec rendering into the same place
    own = {(s.instruction.mnemonic, Path(s.path).parent.resolve()) for s in specs}
    mnemonics = {m for m, _ in own}
    others = [o for o in others if o.instruction.mnemonic not in mnemonics
              or (o.instruction.mnemonic, Path(o.path).parent.resolve()) in own]  # fmt: skip
    found = cross_check(specs + others, notes_too=notes_too)
    if independent:
        _independent_findings(specs, found)
    keep = {s.path for s in specs}
    found.problems[:] = [d for d in found.problems if d.mark.path in keep]
    found.notes[:] = [d for d in found.notes if d.mark.path in keep]
    found.notes.extend(note for path, note in found.others if path in keep)
    return found


def refuse_clashes(loaded: list[Spec]) -> list[Spec]:
    """Specs that would clash in a kernel tree (with each other or a spec beside them) are
    neither rendered nor written into a tree: exit 1 with the problems."""
    clashes = cross_findings(loaded, independent=False, notes_too=False).problems
    if clashes:
        report_problems(SpecError(clashes))
        raise click.exceptions.Exit(1) from None
    return loaded


def _independent_findings(specs: list[Spec], found) -> None:
    """The specs against tools kgen did not write: clang's assembler, iced-x86, binutils."""
    try:
        from .conflicts import assembler_check
        from .toolchain import ToolchainError, find_clang

        by_assembler = assembler_check(specs, find_clang())
        found.problems.extend(by_assembler.problems)
        found.notes.extend(by_assembler.notes)
    except ToolchainError as exc:
        found.notes.append(Diagnostic(Mark(specs[0].path, 0, 0),
                                      f"encodings not checked against an assembler: {exc}", "note"))  # fmt: skip
    from .operands import binutils_check, find_gas, operand_check

    for independent in (operand_check(specs), binutils_check(specs, find_gas())):
        found.problems.extend(independent.problems)
        found.notes.extend(independent.notes)


def _shown(path: Path) -> Path:
    """``path`` relative to the working directory where it is below it, as specs are named."""
    try:
        return path.relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def render_specs(specs: list[Spec], cached: bool = False) -> dict[str, str]:
    """Render in memory; exit 1 with the reason when a template cannot express a spec.

    With ``cached``, each spec's render of the same inputs kept by :mod:`codegen.loadcache`
    is used, so that after an edit only the spec edited renders again (only `kgen render`
    does: `kgen check` and every other command render afresh, so a check after a render
    compares the two)."""
    from . import render
    from .render import render_all, render_spec, spec_inputs, template_inputs

    if cached:
        from .loadcache import remembered

        templates = render.TEMPLATES  # what is rendered with is what the key names
        common = template_inputs(templates)  # read once for all the specs

        def render_one(spec: Spec) -> dict[str, str]:
            return remembered("render", common + spec_inputs([spec]),
                              lambda: render_spec(spec, templates))  # fmt: skip

        # the whole render in one entry, for the run that changed nothing
        return remembered("renders", common + spec_inputs(specs),
                          lambda: render_all(specs, templates, render_one))  # fmt: skip
    return render_all(specs)


def render_scope(named: tuple[str, ...], specs: list[Spec]) -> list[str] | None:
    """Rendering named specs touches only their own output directories."""
    return [s.instruction.mnemonic for s in specs] if named else None


def spec_dirs(specs: list[Spec]) -> list[Path]:
    """Where the spec of a stale file is looked for: beside the specs, and isa/."""
    dirs = [Path(s.path).parent for s in specs]
    return list(dict.fromkeys(dirs + ([DEFAULT_ISA_DIR] if DEFAULT_ISA_DIR.is_dir() else [])))


out_option = click.option(
    "--out",
    type=PathParam(file_okay=False, path_type=Path),
    default=DEFAULT_OUT_DIR,
    show_default=True,
    help="Directory of the generated files (it may be a link; nothing below it may).",
)


@main.command()
@click.argument(
    "specs", nargs=-1, metavar="[SPEC]...", callback=lambda ctx, param, value: _existing(value)
)
@out_option
@click.option("--prune", is_flag=True,
              help="Also remove generated files that no spec renders any more, each only when "
                   "a render of the spec its banner names reproduces it byte for byte.")  # fmt: skip
@interruptible
def render(specs: tuple[str, ...], out: Path, prune: bool) -> None:
    """Render kernel C from specs into the output directory.

    Output is byte-identical on every run.  kgen writes only the paths the
    specs render, replaces only files with its banner, and changes all of
    them or none.  Generated files that no spec renders are reported, and
    removed only with --prune.
    """
    from .outtree import TreeError, prune as prune_files, stale_files, write_tree

    loaded = refuse_clashes(load_specs(specs))
    files = render_specs(loaded, cached=True)
    try:
        changed = write_tree(files, out)
    except TreeError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    for path in changed:
        click.echo(f"  wrote {out / path}")
    stale = stale_files(out, files, render_scope(specs, loaded))
    removed, refused = prune_files(out, stale, spec_dirs(loaded)) if prune else ([], [])
    for path in removed:
        click.echo(f"  removed {out / path}")
    for refusal in refused:
        click.echo(str(refusal), err=True)
    if not prune:
        for s in stale:
            click.echo(stale_line(out, s))
    n = len(loaded)
    gone = f", {len(removed)} removed" if removed else ""
    click.echo(f"rendered {plural(len(files), 'file')} from {plural(n, 'spec')} into {out}/ "
               f"({len(changed)} changed{gone})")  # fmt: skip
    if refused:
        sys.exit(1)


def tree_option(help: str = "A Linux kernel tree (a git repository or a plain tree).",
                required: bool = False):  # fmt: skip
    """``--tree DIR``, an existing directory, as every command that takes a kernel tree has it."""
    return click.option("--tree", "tree_dir", metavar="DIR", required=required, help=help,
                        type=PathParam(file_okay=False, exists=True, path_type=Path))  # fmt: skip


@main.command()
@click.argument(
    "specs", nargs=-1, metavar="[SPEC]...", callback=lambda ctx, param, value: _existing(value)
)
@out_option
@tree_option()
def check(specs: tuple[str, ...], out: Path, tree_dir: Path | None) -> None:
    """Exit 1 with a unified diff when the output directory differs from a fresh render.

    Never writes.  Compares the exact bytes of each file a render writes (a
    copy with CRLF line endings is out of date), never follows a link or
    opens anything but a regular file, and lists generated files that no
    spec renders any more.  Run `kgen render` to bring the files up to date.
    With --tree DIR, checks the generated parts of that kernel tree instead.
    """
    from .outtree import drift

    loaded = load_specs(specs)
    if tree_dir is not None:
        from . import treecmd

        treecmd.check(refuse_clashes(loaded), tree_dir)
        return
    found = drift(render_specs(loaded), out, render_scope(specs, loaded))
    for problem in found.problems:
        click.echo(str(problem), err=True)
    if found.diffs:
        click.echo("".join(found.diffs), nl=False)
    for s in found.stale:
        click.echo(stale_line(out, s))
    if found.problems:
        click.echo(
            f"kgen: {plural(len(found.problems), 'generated file')} cannot be compared", err=True
        )
    if found.diffs:
        click.echo(f"kgen: {plural(len(found.diffs), 'generated file')} out of date; run `kgen render`",
                   err=True)  # fmt: skip
    if found.stale:
        click.echo(f"kgen: {plural(len(found.stale), 'stale generated file')}; "
                   "`kgen render --prune` removes them", err=True)  # fmt: skip
    if found.problems or found.diffs or found.stale:
        sys.exit(1)
    click.echo(f"{out}/ is up to date with {plural(len(loaded), 'spec')}")


class SizeParam(click.ParamType):
    """A non-negative integer (decimal or 0x hex) or a size such as 2M, 1G, 3T, up to ``hi``."""

    name = "size"

    def __init__(self, hi: int, hi_text: str):
        self.hi, self.hi_text = hi, hi_text

    def convert(self, value, param, ctx):
        from .diagnostics import quote
        from .spec import parse_size
        from .yamlsource import INT_BITS

        text = quote(value)
        n: int | None
        if isinstance(value, int):
            n = value
        else:
            try:
                n = parse_size(str(value))
            except ValueError as exc:
                self.fail(str(exc))
            if n is None:
                try:
                    n = int(str(value).strip(), 0)
                except ValueError:
                    self.fail(f"{text} is not a number or a size (e.g. 4096, 0x1000, 2M, 3T)")
        if n < 0:
            self.fail(f"{text} is negative")
        if n >= 1 << INT_BITS:
            self.fail(f"{text} does not fit {INT_BITS} bits")
        if n > self.hi:
            self.fail(
                f"{text} is beyond {PHYS_BITS}-bit physical addresses (at most {self.hi_text})"
            )
        return n


class RangeParam(click.ParamType):
    """START-END physical addresses, each a number or size: 0x1000-0x3000, 1G-1G+4K is not."""

    name = "start-end"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        start, sep, end = str(value).partition("-")
        if not sep:
            self.fail(f"{value!r} is not START-END")
        lo, hi = ADDRESS_END.convert(start, param, ctx), ADDRESS_END.convert(end, param, ctx)
        if hi <= lo:
            self.fail(f"{value!r}: END must be above START")
        return (lo, hi)


# The mirror's machines stay within x86-64's 52-bit physical addresses.
ADDRESS_END = SizeParam(1 << PHYS_BITS, "4P")  # an end of memory or of a range
ADDRESS = SizeParam((1 << PHYS_BITS) - 1, f"{(1 << PHYS_BITS) - 1:#x}")
PFN = SizeParam(1 << (PHYS_BITS - PAGE_SHIFT), f"{1 << (PHYS_BITS - PAGE_SHIFT):#x} pages")


@main.command()
@click.argument(
    "spec_path", metavar="SPEC", callback=lambda ctx, param, value: _existing((value,))[0]
)
@click.option("--min-pfn", type=PFN, default=0, show_default=True, help="min_low_pfn.")
@click.option("--max-pfn", type=PFN, help="max_pfn (exclusive end of RAM, in pages).")
@click.option(
    "--memory", type=ADDRESS_END, help="End of RAM as a size, e.g. 3T (sets max_pfn); at most 4P."
)
@click.option("--cores", type=click.IntRange(1, MAX_CPUS), default=1, show_default=True)
@click.option("--threads-per-core", type=click.IntRange(1, MAX_CPUS), default=1, show_default=True)
@click.option(
    "--numbering", type=click.Choice(["spread", "adjacent"]), default="spread", show_default=True,
    help="How Linux numbers SMT siblings: spread (CPU t*cores+c) or adjacent (CPU c*threads+t).",
)  # fmt: skip
@click.option("--leader", type=click.IntRange(0, MAX_CPUS - 1), default=0, show_default=True,
              help="The CPU the sweep runs on.")  # fmt: skip
@click.option("--offline", type=click.IntRange(0, MAX_CPUS - 1), multiple=True,
              help="An offline CPU (repeat).")  # fmt: skip
@click.option("--assigned", type=RangeParam(), multiple=True,
              help="Guest-assigned physical range START-END (repeat), e.g. 0x1000-0x3000 or 4G-5G.")  # fmt: skip
@click.option("--base", type=ADDRESS,
              help="RMPOPT_BASE of every CPU before setup writes the MSR (setup then writes the "
                   "start of the range) [default: start of the range].")  # fmt: skip
@click.option(
    "--without-feature",
    is_flag=True,
    help="A machine whose CPUs lack the instruction (its CPUID bit is clear).",
)
@click.option("--without", "without", metavar="NAME", multiple=True,
              help="A machine that lacks the spec's prerequisite NAME (kernel.enable.requires), "
                   "e.g. snp-host (repeat).")  # fmt: skip
@click.option(
    "--json", "as_json", is_flag=True, help="Print the whole trace, one JSON object a line."
)
def sweep(spec_path, min_pfn, max_pfn, memory, cores, threads_per_core, numbering, leader,
          offline, assigned, base, without_feature, without, as_json) -> None:  # fmt: skip
    """Run the mirror: setup, one pass of the sweep and teardown on a machine, and the
    tables it leaves.

    Prints a summary, or with --json the trace: wrmsr (cpu, msr, value) by setup, log,
    rmpopt (cpu, rax, rcx, cf), resched and ipi events in order, wrmsr by teardown, then
    one table event per online CPU with the regions its RMPOPT table marks optimized.
    """
    from . import mirror

    if (max_pfn is None) == (memory is None):
        raise click.UsageError("give exactly one of --max-pfn and --memory")
    if cores * threads_per_core > MAX_CPUS:
        raise click.UsageError(f"{cores} cores x {threads_per_core} threads: the mirror simulates "
                               f"at most {MAX_CPUS} CPUs")  # fmt: skip
    (spec,) = load_specs((spec_path,))
    if spec.kernel.sweep is None:
        click.echo(f"{shown_path(spec.path)}: error: the spec describes no sweep", err=True)
        sys.exit(1)
    if max_pfn is None:
        max_pfn = -(-memory // (1 << mirror.PAGE_SHIFT))
    known = [p.name for p in spec.kernel.enable.requires] if spec.kernel.enable else []
    for name in without:
        if name not in known:
            listed = ", ".join(known) if known else "none"
            raise click.BadParameter(f"{name!r} is not a prerequisite of {shown_path(spec.path)} "
                                     f"(it lists: {listed})", param_hint="'--without'")  # fmt: skip
    try:
        machine = mirror.Machine(
            min_pfn, max_pfn, cores, threads_per_core, numbering, leader, frozenset(offline),
            tuple(assigned), base, not without_feature, frozenset(without),
        )  # fmt: skip
        hw = mirror.hardware_for(spec, machine, enabled=False)
    except mirror.MachineTooLarge as exc:
        raise click.UsageError(
            f"{shown_path(spec.path)}: {exc}; give less memory or fewer CPUs"
        ) from None
    except mirror.MachineError as exc:
        raise click.UsageError(f"impossible machine: {exc}") from None
    if as_json:
        sweep_json(spec, machine, hw)
    else:
        sweep_summary(spec, machine)


@main.command()
@click.argument(
    "specs", nargs=-1, metavar="[SPEC]...", callback=lambda ctx, param, value: _existing(value)
)
@click.option("--cases", "count", type=click.IntRange(1, MAX_CASES), default=3000, show_default=True,
              help="Configurations per spec: every boundary, then random ones.")  # fmt: skip
@click.option("--seed", type=click.IntRange(0, (1 << 64) - 1), default=1, show_default=True,
              help="Seed of the random cases.")  # fmt: skip
@click.option("--case", "only", type=click.IntRange(0, MAX_CASES - 1),
              help="Run only this case (see a report).")  # fmt: skip
@click.option("--engine", type=click.Choice(["auto", "native", "emulator"]), default="auto",
              show_default=True, help="Trap natively, or run the code in a CPU emulator.")  # fmt: skip
@click.option("--opt", "opts", multiple=True, type=click.Choice(["-O0", "-O1", "-O2", "-O3", "-Os"]),
              help="Optimisation level (repeat) [default: -O0 -O2 -Os].")  # fmt: skip
@click.option("--keep-going", is_flag=True, help="Report every mismatching level, not the first.")
@click.option("--generated", type=PathParam(file_okay=False, exists=True, path_type=Path),
              help="Compile the files in this directory (as kgen render writes them) "
                   "instead of a fresh render.")  # fmt: skip
@click.option("--reference", multiple=True, type=PathParam(file_okay=False, exists=True, path_type=Path),
              help="Run the kernel's own helper instead: an include directory (repeat) where "
                   "the spec's header, e.g. asm/sev.h, and what it includes are found; or a "
                   "kernel tree's top directory, whose function (the spec's out_of_line, else "
                   "its helper) is copied from its source.")  # fmt: skip
@click.option("--cc", "cc", type=click.Choice(["both", "clang", "gcc"]), default=None,
              help="Compiler(s) that build the generated code [default: both where gcc is "
                   "present, else clang].")  # fmt: skip
@click.option("--coverage", is_flag=True,
              help="Report the lines and branches of each generated file that the cases ran "
                   "(gcc -O0 build, gcov; native engine).")  # fmt: skip
@click.option("--profile", "profile_name", type=click.Choice(sorted(PROFILE_NAMES)),
              help="Render for this kernel's spellings (e.g. 6.12: CC_SET/CC_OUT flag outputs) "
                   "[default: newest].")  # fmt: skip
@tree_option("Render for the profile detected from this kernel tree's top directory.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@interruptible
def compare(specs, count, seed, only, engine, opts, keep_going, generated, reference, cc,
            coverage, profile_name, tree_dir, as_json) -> None:  # fmt: skip
    """Compile the generated C with clang and gcc and check it against the mirror.

    The generated code runs in a trap harness that executes the real
    instruction bytes; its trace (every instruction with its registers,
    cross-CPU calls, cond_resched() calls, log lines, helper results) must
    equal the mirror's for every case at every optimisation level.  With
    --reference, the kernel's hand-written helper of the same name is held
    to the same trace; with --profile or --tree, the code rendered for that
    kernel is.
    """
    from . import compare as cmp
    from .build import BuildError
    from .execcheck import UnsafeCode
    from .host import EngineRefused, choose_engine
    from .reference import ReferenceProblem
    from .toolchain import ToolchainError, find_clang, find_gcc

    if only is not None and only >= count:
        raise click.BadParameter(f"case {only} does not exist: seed {seed} has cases 0..{count - 1} "
                                 f"(raise --cases)", param_hint="--case")  # fmt: skip
    loaded = load_specs(specs)
    opts = tuple(opts) or cmp.DEFAULT_OPTS
    if coverage and cc == "clang":
        raise click.BadParameter("coverage is measured with gcc (gcov): not with --cc clang",
                                 param_hint="--coverage")  # fmt: skip
    if coverage and "-O0" not in opts:
        raise click.BadParameter(
            "coverage counts the -O0 build: add --opt=-O0", param_hint="--coverage"
        )
    if coverage and reference:
        raise click.BadParameter("coverage measures the generated code, which --reference replaces",
                                 param_hint="--coverage")  # fmt: skip
    if coverage and engine == "emulator":
        raise click.BadParameter("the emulated harness cannot write gcov's counts: use the native "
                                 "engine", param_hint="--coverage")  # fmt: skip
    profile, profile_option = _compare_profile(profile_name, tree_dir, generated)
    try:
        compilers = []
        if cc in (None, "both", "clang"):
            compilers.append(find_clang())
        if cc in (None, "both", "gcc") or coverage:
            gcc = find_gcc()
            if gcc is None and (cc is not None or coverage):
                raise ToolchainError("no gcc found (tried $GCC, then gcc on PATH)")
            compilers += [gcc] if gcc else []
    except ToolchainError as exc:
        click.echo(f"kgen: error: {exc}", err=True)
        sys.exit(1)

    def plan(spec: Spec):
        """The compare of one spec, made when its turn comes; _Refused says why it cannot run."""
        if why := _cannot_run(spec, "compared"):
            raise _Refused(why)
        try:
            choice = choose_engine(engine, spec)
        except EngineRefused as exc:
            raise _Refused(f"{spec.instruction.mark('encoding')}: error: {exc}") from None
        files = None
        if coverage and choice.engine != "native":
            try:
                choice = choose_engine("native", spec)
            except EngineRefused:
                from .host import native_plan

                raise _Refused(f"{spec.instruction.mark('encoding')}: error: --coverage needs the "
                               "native engine (the emulated harness cannot write gcov's counts), "
                               f"which does not run these bytes: {native_plan(spec).why}") from None  # fmt: skip
        if generated is not None:
            from .outtree import read_tree
            from .render import outputs

            files = read_tree(generated, [spec.instruction.mnemonic])
            missing = [o.path for o in outputs(spec) if o.path not in files]
            if missing:
                raise _Refused(f"{generated}/{missing[0]}: error: no such generated file")
        return cmp.Comparison(spec, tuple(compilers), choice, seed, count, opts, only, files,
                              generated, keep_going, tuple(reference), coverage, profile,
                              profile_option)  # fmt: skip

    stream = _progress_stream()
    bars: dict[int, _ProgressBar] = {}

    def progress(done: int, total: int, result) -> None:
        if id(result) not in bars:
            bars[id(result)] = _progress_bar(result.spec, stream)
        bars[id(result)](done, total, result)

    show = progress if stream.isatty() and not as_json else None
    reports: list = []
    failed = False
    # the specs overlap (the next one builds while the last cases of those before it run), and
    # each report comes in order, once it and those before it are done
    plans = (functools.partial(plan, spec) for spec in loaded)

    def stopped(message: str) -> NoReturn:
        """A spec that could not be compared ends the command: said on stderr, and with
        --json also in the report, after the specs compared before it."""
        click.echo(message, err=True)
        if as_json:
            report = json_head("compare") | compare_report(reports, seed, tuple(compilers))
            click.echo(json.dumps(report | _stopped_json(loaded, reports, message), indent=2))
        sys.exit(1)

    with contextlib.closing(cmp.compare_each(plans, show)) as each:
        try:
            for result in each:
                if id(result) in bars:
                    bars.pop(id(result)).close()
                failed |= not result.ok
                reports.append(result)
                if not as_json:
                    print_compare(result)
        except _Refused as exc:
            stopped(str(exc))
        except SpecError as exc:
            if as_json:
                stopped(str(exc))
            report_problems(exc)
            sys.exit(1)
        except ReferenceProblem as exc:
            stopped(f"kgen: {shown_path(loaded[len(reports)].path)}: error: {exc}")
        except (BuildError, ValueError, RuntimeError, UnsafeCode, EngineRefused) as exc:
            stopped(f"kgen: {shown_path(loaded[len(reports)].path)}: error: "
                    f"{_in_generated(str(exc), generated)}")  # fmt: skip
        finally:
            for bar in bars.values():
                bar.close()
    if as_json:
        click.echo(
            json.dumps(
                json_head("compare") | compare_report(reports, seed, tuple(compilers)), indent=2
            )
        )
    sys.exit(1 if failed else 0)


class _Refused(Exception):
    """A spec compare cannot run: the message, as printed."""


def _stopped_json(specs: list[Spec], done: list, message: str) -> dict:
    """What a compare's JSON report (compare's, or validate --compare's part) says when the
    spec after those ``done`` stopped it (None where every spec was done)."""
    spec = shown_path(specs[len(done)].path) if len(done) < len(specs) else None
    return {"ok": False, "error": {"spec": spec, "message": message}}


def _cannot_run(spec: Spec, what: str) -> str | None:
    """The message when the harness cannot run ``spec``'s helper (it is then not ``what``:
    compared, mutated), or None."""
    from .oracle import harness_limit

    why = harness_limit(spec)
    if why is None:
        return None
    return f"kgen: {shown_path(spec.path)}: error: not {what}: the harness cannot run this helper: {why}"


def _compare_profile(name: str | None, tree: Path | None, generated: Path | None):
    """The kernel profile compare renders for, and the option that chose it."""
    from .kernelapi import PROFILES, detect, min_gcc, tree_include_dirs

    if name and tree:
        raise click.BadParameter("give --profile or --tree, not both", param_hint="--tree")
    if (name or tree) and generated is not None:
        raise click.BadParameter("--generated files are compared as they are, rendered for no profile",
                                 param_hint="--profile" if name else "--tree")  # fmt: skip
    if name:
        return PROFILES[name], f"--profile {name}"
    if tree is None:
        return None, ""
    if min_gcc(tree) is None or not all(d.is_dir() for d in tree_include_dirs(tree)):
        raise click.BadParameter(f"{shown_path(str(tree))} is not the top directory of a kernel tree (no "
                                 "scripts/min-tool-version.sh naming a GCC, or no include and "
                                 "arch/x86/include)", param_hint="--tree")  # fmt: skip
    found = detect(root=tree)
    profile = dataclasses.replace(
        found, name=f"detected from {shown_path(str(tree))}: {found.summary()}"
    )
    return profile, f"--tree {tree}"


def _in_generated(text: str, generated: Path | None) -> str:
    """A compiler's message about the copy compare builds, pointed at the --generated file it copies."""
    import re

    if generated is None:
        return text
    return re.sub(r"[^\s'\"]*/kgen-compare-[^/\s]*/gen/", lambda _: f"{generated}/", text)


def _progress_stream():
    """Where the progress bar goes: standard error, and only when it is a terminal."""
    return sys.stderr


class _ProgressBar:
    """click's progress bar of the cases run; call it with (done, total, result)."""

    def __init__(self, label: str, stream) -> None:
        self.label, self.stream = label, stream
        self.bars = contextlib.ExitStack()
        self.bar: Any = None  # click's ProgressBar, made when the total is known

    def __call__(self, done: int, total: int, result) -> None:
        if self.bar is None:
            self.bar = self.bars.enter_context(
                click.progressbar(length=total, label=self.label, file=self.stream)
            )
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        self.bars.close()


def _progress_bar(label: str, stream) -> _ProgressBar:
    return _ProgressBar(label, stream)


@main.command()
@click.argument(
    "specs", nargs=-1, metavar="[SPEC]...", callback=lambda ctx, param, value: _existing(value)
)
@click.option("--operator", "operators", multiple=True, type=click.Choice(MUTATION_OPERATORS),
              help="Only this mutation operator (repeat) [default: all].")  # fmt: skip
@click.option(
    "--sample", type=click.IntRange(1), help="Run only this many mutants, drawn with --seed."
)
@click.option("--seed", type=click.IntRange(0, (1 << 64) - 1), default=0, show_default=True,
              help="Seed of --sample's draw: the same mutants on every run.")  # fmt: skip
@click.option(
    "--jobs", type=click.IntRange(1), help="Mutants compared at once [default: the cores]."
)
@click.option("--equivalents", type=PathParam(dir_okay=False, path_type=Path),
              help="The reviewed equivalent mutants [default: tests/mutation/equivalent.yaml "
                   "when it exists].")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
@interruptible
def mutate(specs, operators, sample, seed, jobs, equivalents, as_json) -> None:
    """Mutate the generated C, one small change at a time, and compare each mutant.

    Score per spec and operator; each survivor with its diff.  Exit 1 when a
    mutant survives that tests/mutation/equivalent.yaml does not list, when
    an entry there matches no mutant any more, or when the unmutated code
    fails compare.
    """
    from . import mutate as mut
    from .toolchain import ToolchainError, find_clang, find_gcc

    loaded = load_specs(specs)
    for spec in loaded:
        if why := _cannot_run(spec, "mutated"):
            click.echo(why, err=True)
            sys.exit(1)
    path = equivalents or DEFAULT_EQUIVALENTS
    if equivalents is not None and not equivalents.is_file():
        why = "not a regular file" if os.path.lexists(equivalents) else "no such file"
        raise click.BadParameter(
            f"{why}: {shown_path(str(equivalents))}", param_hint="--equivalents"
        )
    try:
        listed = mut.load_equivalents(path) if path.is_file() else []
        compilers = (find_clang(), *filter(None, [find_gcc()]))
    except SpecError as exc:
        report_problems(exc)
        sys.exit(1)
    except ToolchainError as exc:
        click.echo(f"kgen: error: {exc}", err=True)
        sys.exit(1)
    stream = _progress_stream()
    bar = _progress_bar("mutants", stream) if stream.isatty() and not as_json else None
    try:
        report = mut.mutate(loaded, mut.Plan(compilers), listed, tuple(operators), sample, seed, jobs,
                            progress=bar)  # fmt: skip
    except SpecError as exc:
        report_problems(exc)
        sys.exit(1)
    except mut.BaselineFailed as exc:
        for line in str(exc).splitlines():
            click.echo(f"kgen: {line}", err=True)
        sys.exit(1)
    finally:
        if bar:
            bar.close()
    if as_json:
        click.echo(json.dumps(json_head("mutate") | mut.json_report(report), indent=2))
    else:
        click.echo("\n".join(mut.text_report(report)))
    if not report.ok:
        n = len(report.failures)
        click.echo(f"kgen: {plural(n, 'mutant')} neither killed nor listed in {shown_path(str(path))}",
                   err=True)  # fmt: skip
    sys.exit(0 if report.ok else 1)


@main.command()
def doctor() -> None:
    """Say which compilers kgen uses, their versions and where they come from."""
    from .toolchain import ToolchainError, find_clang, find_gcc

    status = 0
    try:
        clang = find_clang()
        click.echo(f"clang: {clang.name}, from {clang.origin}")
        click.echo(f"       command: {' '.join(clang.argv)}")
    except ToolchainError as exc:
        click.echo(f"clang: missing: {exc}", err=True)
        status = 1
    gcc = find_gcc()
    click.echo(f"gcc:   {gcc.name}, from {gcc.origin}" if gcc else "gcc:   not found (optional)")
    if status == 0:
        from .assembler import assemble
        from .conflicts import known_encodings

        known: list[str] = []
        unknown: list[str] = []
        snp = [
            e.mnemonic
            for e in known_encodings()
            if e.vendor == "amd" and e.mnemonic.startswith(("rmp", "pvalidate", "psmash"))
        ]
        for path in sorted(DEFAULT_ISA_DIR.glob("*.yaml")):  # and the bundled specs'
            with contextlib.suppress(SpecError):
                snp += [s.instruction.mnemonic for s in load_all([path], cached=True)]
        try:
            for mnemonic in dict.fromkeys(snp):
                (known if assemble(clang, mnemonic) else unknown).append(mnemonic)
        except ToolchainError as exc:
            click.echo(f"clang: cannot assemble: {exc}", err=True)
            sys.exit(1)
        click.echo(f"SNP mnemonics clang assembles: {' '.join(known) or 'none'}")
        click.echo(
            f"SNP mnemonics it does not:     {' '.join(unknown) or 'none'} (kgen emits .byte)"
        )
    _doctor_engines()
    _doctor_caches()
    sys.exit(status)


def _doctor_caches() -> None:
    """Where kgen keeps what it built or read before, and how much of it there is."""
    from . import cache_root, cachedir
    from .loadcache import OFF

    root = cache_root()
    held = ", ".join(f"{name} {plural(n, 'entry', 'entries')} ({size / 1e6:.1f} MB)"
                     for name, n, size in cachedir.usage(root))  # fmt: skip
    click.echo(f"cache: {root}: {held or 'empty'}")
    if os.environ.get(OFF):
        click.echo(f"cache: checked specs, renders and decodings are neither kept nor taken "
                   f"({OFF} is set)")  # fmt: skip


def _doctor_engines() -> None:
    """Which engine `kgen compare` picks for each bundled spec on this CPU, and why."""
    from .host import choose_engine, host_cpu
    from .x86 import decoder_name

    cpu = host_cpu()
    click.echo(f"cpu:   {cpu.vendor}{' with CLZERO' if cpu.clzero else ''}; "
               f"bytes decoded by {decoder_name()}")  # fmt: skip
    for path in sorted(DEFAULT_ISA_DIR.glob("*.yaml")):
        try:
            (spec,) = load_all([path], cached=True)
        except SpecError:
            continue
        choice = choose_engine("auto", spec, cpu)
        click.echo(f"engine {shown_path(spec.path)} (auto): {choice.engine}: {choice.reason}")


@main.command()
@click.argument(
    "specs", nargs=-1, metavar="[SPEC]...", callback=lambda ctx, param, value: _existing(value)
)
@tree_option("The Linux kernel tree to change (a git repository or a plain tree).", required=True)
@click.option(
    "--force", is_flag=True, help="Overwrite generated parts edited since kgen wrote them."
)
@interruptible
def apply(specs: tuple[str, ...], tree_dir: Path, force: bool) -> None:
    """Write the generated code into a kernel tree, in place.

    Finds each generated part by name (function, #define, enum, include, table
    entry, call) and leaves it as a fresh render says: a second run changes
    nothing.  Writes all files or none; a file or function that is not where
    kgen looks, or a part edited since kgen wrote it (in a git tree), is an
    error and nothing is written.
    """
    from . import treecmd

    treecmd.apply(refuse_clashes(load_specs(specs)), tree_dir, force)


@main.command()
@click.argument(
    "specs", nargs=-1, metavar="[SPEC]...", callback=lambda ctx, param, value: _existing(value)
)
@tree_option("The Linux kernel tree the series applies to.", required=True)
@click.option(
    "-o",
    "--output-directory",
    "out",
    metavar="OUTDIR",
    default=Path("patches"),
    show_default=True,
    type=PathParam(file_okay=False, path_type=Path),
    help="Where the numbered patch files go.",
)
@click.option(
    "-s",
    "--signoff",
    is_flag=True,
    help="Add Signed-off-by with your git identity, as git format-patch -s does.",
)
@interruptible
def patch(specs: tuple[str, ...], tree_dir: Path, out: Path, signoff: bool) -> None:
    """Write a git format-patch series that brings the generated code into a kernel tree.

    One patch a step, in the order a maintainer reviews it (feature bit, MSR,
    helpers, setup, trigger, callers; then each sibling helper), and a cover
    letter naming the kgen version and each spec's hash.  Never touches the
    tree; `git am OUTDIR/*.patch` applies the series there.
    """
    from . import treecmd

    treecmd.patch(refuse_clashes(load_specs(specs)), tree_dir, out, signoff)


@main.command()
def schema() -> None:
    """Print the spec format as a JSON Schema (for editors)."""
    from .jsonschema import spec_schema

    click.echo(json.dumps(spec_schema(), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
