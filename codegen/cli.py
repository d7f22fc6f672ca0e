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
    """Check specs: structure, types, ranges, names and cross-field rules."""
    try:
        loaded = load_all(specs or default_spec_paths())
    except SpecError as exc:
        if as_json:
            click.echo(json.dumps(_json_report([], exc), indent=2))
        else:
            report_problems(exc)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(_json_report(loaded, None), indent=2))
        return
    for spec in loaded:
        insn = spec.instruction
        codes = len(insn.function_codes.codes) if insn.function_codes else 0
        click.echo(
            f"{spec.path}: ok ({insn.mnemonic}: {len(insn.encoding)} encoding bytes, "
            f"{len(insn.inputs)} inputs, {len(insn.outputs)} outputs, {codes} function codes)"
        )


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


@main.command()
def schema() -> None:
    """Print the spec format as a JSON Schema (for editors)."""
    from .jsonschema import spec_schema

    click.echo(json.dumps(spec_schema(), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
