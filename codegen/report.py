"""What kgen prints: problems, the changes since a base, compare and sweep reports, in words
or as JSON.  The commands in :mod:`codegen.cli` compute, then hand their results here."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .diagnostics import SpecError, plural, shown_path, size_text
from .model import Spec


def report_problems(exc: SpecError) -> None:
    for d in exc.diagnostics:
        click.echo(str(d), err=True)
    n = len(exc.diagnostics)
    click.echo(f"kgen: {plural(n, 'problem')} found", err=True)


def print_changes(report: dict) -> None:
    if report.get("generated", {}).get("note"):
        click.echo(report["generated"]["note"])
    for problem in report.get("problems", []):
        click.echo(problem, err=True)
    if "changes" not in report:
        return
    changes = report["changes"]
    if not changes:
        click.echo(f"{shown_path(report['path'])}: nothing changed since {report['base']}")
        return
    click.secho(f"{shown_path(report['path'])}: {plural(len(changes), 'change')} "
                f"since {report['base']}", bold=True)  # fmt: skip
    group = None
    for c in changes:
        if c["group"] != group:
            group = c["group"]
            click.secho(f"  {group}", bold=True)
        click.echo(f"    {c['message']} ({c['where']})")
    if report["behaviour"]:
        click.secho("  mirror behaviour", bold=True)
        for line in report["behaviour"]:
            click.echo(f"    {line}")
    diff = report.get("diff", "")
    files = [ln[6:] for ln in diff.splitlines() if ln.startswith("+++ b/")]
    click.secho(f"  generated code: {plural(len(files), 'file')} change",
                bold=True)  # fmt: skip
    for line in diff.splitlines():
        color = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        click.secho(f"    {line}", fg=color)


def json_diag(d) -> dict:
    return {"path": d.mark.path, "line": d.mark.line, "col": d.mark.col, "message": d.message}


def json_report(specs: list[Spec], exc: SpecError | None) -> dict:
    problems = exc.diagnostics if exc else []
    return {
        "ok": not problems,
        "specs": [{"path": s.path, "mnemonic": s.instruction.mnemonic} for s in specs],
        "problems": [json_diag(d) for d in problems],
    }


def stale_line(out: Path, stale) -> str:
    b = stale.banner
    return (f"stale: {out / stale.path} (from {b.spec}, sha256 {b.digest}): no spec renders it; "
            "`kgen render --prune` removes it if it is that spec's unedited output")  # fmt: skip


def cpus_text(cpus: list[int]) -> str:
    """[3] -> 'CPU 3', [0, 1, 2, 5] -> 'CPUs 0-2,5'."""
    return f"CPU {cpus[0]}" if len(cpus) == 1 else f"CPUs {cpu_ranges(cpus)}"


def cpu_ranges(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    out, start = [], None
    for i, cpu in enumerate(cpus):
        if start is None:
            start = cpu
        if i + 1 == len(cpus) or cpus[i + 1] != cpu + 1:
            out.append(f"{start}" if start == cpu else f"{start}-{cpu}")
            start = None
    return ",".join(out)


def sweep_json(spec, machine, hw) -> None:
    from . import mirror

    out = sys.stdout
    for chunk in mirror.json_lines(spec, machine, hw):
        out.write(chunk)


def sweep_summary(spec, machine) -> None:
    from . import mirror

    summary, hw = mirror.summarize(spec, machine)
    t = spec.instruction.table
    r = summary.range
    pa = mirror.pa_text
    followers = mirror.followers(machine)
    online = machine.online
    click.echo(
        f"{shown_path(spec.path)}: one pass on {plural(len(online), 'online CPU')} ({plural(machine.cores, 'core')} x "
        f"{plural(machine.threads_per_core, 'thread')}, {machine.numbering} numbering), leader CPU "
        f"{machine.leader}"
    )
    rows = [
        ("range", f"{pa(r.pa_start)} - {pa(r.pa_end)}: {plural(summary.regions, 'region')} of "
                  f"{size_text(t.region_size)}"),
        ("above cap", f"{size_text(r.uncapped_end - r.pa_end)} not optimized "
                      f"({pa(r.pa_end)} - {pa(r.uncapped_end)})" if r.capped else "none"),
        (spec.instruction.mnemonic.upper(),
         f"{plural(summary.rmpopt, 'execution')} ({summary.regions} by the leader, "
         f"{plural(len(followers), 'follower')} x {summary.regions}); {summary.cf_set} returned CF=1"),
        ("cross-CPU", f"{plural(summary.ipis, 'call')} to {cpus_text(followers)}" if summary.ipis else "none"),
        ("cond_resched", str(summary.rescheds)),
    ]  # fmt: skip
    msr = spec.instruction.msr
    if spec.kernel.enable is not None and msr is not None:
        missing = [p for p in spec.kernel.enable.requires if p.name in machine.without]
        if not machine.feature:
            rows.insert(0, ("feature", f"{spec.instruction.cpuid.feature} absent: setup returns "
                                       "before any MSR write; nothing runs"))  # fmt: skip
        elif missing:
            rows.insert(0, ("requires", f"{missing[0].name} absent ({missing[0].check}("
                                        f"{missing[0].argument}) is false): setup returns before "
                                        "any MSR write; nothing runs"))  # fmt: skip
        else:
            cpus = mirror.msr_cpus(spec, machine)
            rows.insert(0, ("wrmsr", f"{msr.name} = {mirror.msr_value(spec, machine):#x} on "
                                     f"{cpus_text(cpus)} (one per {msr.scope}) at setup; "
                                     f"{plural(summary.wrmsrs, 'write')} in all"))  # fmt: skip
    by_count: dict[int, list[int]] = {}
    for cpu, n in summary.optimized.items():
        by_count.setdefault(n, []).append(cpu)
    for n, cpus in sorted(by_count.items(), key=lambda kv: kv[1][0]):
        rows.append(("optimized", f"{cpus_text(cpus)}: {n} of {plural(t.entries, 'region')}"))
    for text in summary.logs:
        rows.append(("log", text))
    for key, value in rows:
        click.echo(f"  {key:<13}{value}")


def print_compare(r) -> None:
    levels = " ".join(r.opts)
    rate = r.executions / max(r.seconds - r.build_seconds, 1e-9)
    ccs = " and ".join(c.family for c in r.compilers)
    click.echo(
        f"{shown_path(r.spec)}: {'ok' if r.ok else 'MISMATCH'}: {plural(r.cases, 'case')} x "
        f"{plural(len(r.opts), 'level')} "
        f"({levels}) x {ccs}, {plural(r.executions, 'execution' if r.ok else 'matching execution')} checked"
    )
    for c in r.compilers:
        click.echo(f"  {c.name} ({c.origin})")
    click.echo(f"  engine {r.engine.engine}: {r.engine.reason}")
    click.echo(
        f"  seed {r.seed}; build {r.build_seconds:.1f} s, total {r.seconds:.1f} s, "
        f"{rate:,.0f} executions/s"
    )
    if r.profile != "newest":
        click.echo(f"  rendered for kernel profile {r.profile}")
    for ref in r.references:
        took = plural(len(ref.files), "file")
        click.echo(
            f"  reference {ref.directory}: {took}"
            + (f"; {ref.definition} defines the helper compared" if ref.definition else "")
        )
    for f in r.coverage:
        click.echo(f"  coverage {f.path}: lines {f.lines_hit}/{len(f.lines)}, "
                   f"branches {f.branches_taken}/{f.branch_count}")  # fmt: skip
        for line, what in f.missed():
            click.echo(f"    missed {f.path}:{line}: {what}")
    for m in r.mismatches:
        click.echo(f"  case {m.case} at {m.opt}: line {m.index} of its trace differs")
        click.echo(f"    machine:  {m.description}")
        for line in m.context:
            click.echo(f"    same:     {line}")
        click.echo(f"    expected: {m.expected}")
        click.echo(f"    got:      {m.got}")
        if m.note:
            click.echo(f"    note:     {m.note}")
        click.echo(f"    reproduce: {m.reproduce}")


def json_head(command: str) -> dict:
    """What every JSON report starts with: which kgen wrote it, for which command."""
    return {"kgen": __version__, "command": command}


def compare_report(results: list, seed: int, compilers) -> dict:
    """The compare part of a report: verdict, seed and compilers once, then one entry a spec."""
    return {
        "ok": all(r.ok for r in results), "seed": seed,
        "compiler": compilers[0].name, "compiler_origin": compilers[0].origin,
        "compilers": [{"name": c.name, "family": c.family, "origin": c.origin} for c in compilers],
        "specs": [compare_json(r) for r in results],
    }  # fmt: skip


def compare_json(r) -> dict:
    return {
        "spec": r.spec, "ok": r.ok, "engine": r.engine.engine, "engine_reason": r.engine.reason,
        "compiler": r.compiler.name, "compiler_origin": r.compiler.origin, "seed": r.seed,
        "compilers": [{"name": c.name, "family": c.family, "origin": c.origin} for c in r.compilers],
        "cases": r.cases, "opts": list(r.opts), "executions": r.executions,
        "seconds": round(r.seconds, 3), "build_seconds": round(r.build_seconds, 3),
        "levels": {o: vars(s) for o, s in r.stats.items()},
        "mismatches": [vars(m) | {"context": list(m.context)} for m in r.mismatches],
        "references": [ref.json() for ref in r.references],
        "coverage": [f.json() for f in r.coverage],
    }  # fmt: skip
