"""The ``kgen`` command line.

Exit codes: 0 all good; 1 a finding (invalid spec, drift, mismatch,
conflict); 2 a usage error.  Problems print as ``path:line:col: message``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .diagnostics import SpecError
from .model import Spec
from .spec import load_all

DEFAULT_ISA_DIR = Path("isa")
DEFAULT_OUT_DIR = Path("generated")


def default_spec_paths() -> list[Path]:
    """Every spec in ./isa, sorted, or a usage error when there is none."""
    paths = sorted(DEFAULT_ISA_DIR.glob("*.yaml"))
    if not paths:
        raise click.UsageError(
            f"no spec files given and none found in {DEFAULT_ISA_DIR}/ "
            "(run from the project root or name the spec files)"
        )
    return paths


def load_specs(paths: tuple[str, ...]) -> list[Spec]:
    """Load the named specs (or every bundled one); exit 1 on any problem."""
    try:
        return load_all(paths or default_spec_paths())
    except SpecError as exc:
        report_problems(exc)
        sys.exit(1)


def report_problems(exc: SpecError) -> None:
    for d in exc.diagnostics:
        click.echo(str(d), err=True)
    n = len(exc.diagnostics)
    click.echo(f"kgen: {n} problem{'s' if n != 1 else ''} found", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="kgen")
def main() -> None:
    """Generate Linux kernel instruction helpers from a YAML spec, and prove them.

    Specs live in isa/*.yaml; commands that take SPEC... use all of them when
    none is named.  Exit status: 0 good, 1 a finding, 2 a usage error.
    """


@main.command()
@click.argument("specs", nargs=-1, metavar="[SPEC]...")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report.")
def validate(specs: tuple[str, ...], as_json: bool) -> None:
    """Check specs: structure, types, ranges, names and cross-field rules.

    Each valid spec is also rendered in memory and its output held to the
    kernel review rules.
    """
    try:
        loaded = load_all(specs or default_spec_paths())
    except SpecError as exc:
        if as_json:
            click.echo(json.dumps(_json_report([], exc), indent=2))
        else:
            report_problems(exc)
        sys.exit(1)
    findings = review_findings(loaded)
    if as_json:
        report = _json_report(loaded, None)
        report["review"] = [{"path": p, "rule": r, "message": m} for p, r, m in findings]
        report["ok"] = not findings
        click.echo(json.dumps(report, indent=2))
        sys.exit(1 if findings else 0)
    for path, rule, message in findings:
        click.echo(f"{path}: review [{rule}]: {message}", err=True)
    if findings:
        sys.exit(1)
    for spec in loaded:
        insn = spec.instruction
        codes = len(insn.function_codes.codes) if insn.function_codes else 0
        click.echo(
            f"{spec.path}: ok ({insn.mnemonic}: {len(insn.encoding)} encoding bytes, "
            f"{len(insn.inputs)} inputs, {len(insn.outputs)} outputs, {codes} function codes)"
        )


def review_findings(specs: list[Spec]) -> list[tuple[str, str, str]]:
    """Render each spec in memory and apply the kernel review rules to the result."""
    from .render import RenderError, render_spec
    from .review import review

    findings = []
    for spec in specs:
        try:
            files = render_spec(spec)
        except RenderError as exc:
            findings.append((spec.path, "render", str(exc)))
            continue
        findings += [(spec.path, rule, msg) for rule, msg in review(spec, files)]
    return findings


def _json_report(specs: list[Spec], exc: SpecError | None) -> dict:
    problems = exc.diagnostics if exc else []
    return {
        "ok": not problems,
        "specs": [{"path": s.path, "mnemonic": s.instruction.mnemonic} for s in specs],
        "problems": [
            {"path": d.mark.path, "line": d.mark.line, "col": d.mark.col, "message": d.message}
            for d in problems
        ],
    }


def render_specs(specs: list[Spec]) -> dict[str, str]:
    """Render in memory; exit 1 with the reason when a template cannot express a spec."""
    from .render import RenderError, render_all

    try:
        return render_all(specs)
    except RenderError as exc:
        click.echo(f"kgen: cannot render: {exc}", err=True)
        sys.exit(1)


def render_scope(named: tuple[str, ...], specs: list[Spec]) -> list[str] | None:
    """Rendering named specs touches only their own output directories."""
    return [s.instruction.mnemonic for s in specs] if named else None


out_option = click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT_DIR,
    show_default=True,
    help="Directory of the generated files.",
)


@main.command()
@click.argument("specs", nargs=-1, metavar="[SPEC]...")
@out_option
def render(specs: tuple[str, ...], out: Path) -> None:
    """Render kernel C from specs into the output directory.

    Output is byte-identical on every run; each file is replaced atomically,
    and nothing is written unless every file rendered.
    """
    from .render import write_tree

    loaded = load_specs(specs)
    files = render_specs(loaded)
    try:
        changed = write_tree(files, out, render_scope(specs, loaded))
    except OSError as exc:
        click.echo(f"kgen: cannot write {exc.filename or out}: {exc.strerror}", err=True)
        sys.exit(1)
    for path in changed:
        click.echo(f"  {'removed' if path not in files else 'wrote'} {out / path}")
    n = len(loaded)
    click.echo(
        f"rendered {len(files)} files from {n} spec{'s' if n != 1 else ''} into {out}/ "
        f"({len(changed)} changed)"
    )


@main.command()
@click.argument("specs", nargs=-1, metavar="[SPEC]...")
@out_option
def check(specs: tuple[str, ...], out: Path) -> None:
    """Exit 1 with a unified diff when the output directory differs from a fresh render.

    Never writes.  Run `kgen render` to bring the files up to date.
    """
    from .render import drift

    loaded = load_specs(specs)
    diffs = drift(render_specs(loaded), out, render_scope(specs, loaded))
    if diffs:
        click.echo("".join(diffs), nl=False)
        click.echo(f"kgen: {len(diffs)} generated file(s) out of date; run `kgen render`", err=True)
        sys.exit(1)
    click.echo(f"{out}/ is up to date with {len(loaded)} spec(s)")


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
    sys.exit(status)


@main.command()
def schema() -> None:
    """Print the spec format as a JSON Schema (for editors)."""
    from .jsonschema import spec_schema

    click.echo(json.dumps(spec_schema(), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
