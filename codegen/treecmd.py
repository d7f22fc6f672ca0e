"""``kgen apply``, ``kgen patch`` and ``kgen check --tree``: the generated code in a kernel tree."""

from __future__ import annotations

import difflib
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import click

from .diagnostics import plural, shown_path


def _plan(specs, tree_dir: Path):
    from .tree import KernelTree, TreeError, plan

    try:
        tree = KernelTree.open(tree_dir)
    except TreeError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    return plan(specs, tree)


def _result(p):
    for spec, why in p.skipped:
        click.echo(f"{shown_path(str(spec.path))}: note: {why}", err=True)
    texts, errors = p.result()
    if errors:
        for e in errors:
            click.echo(str(e), err=True)
        click.echo(f"kgen: {plural(len(errors), 'problem')} in {shown_path(str(p.tree.root))}; "
                   "nothing was written", err=True)  # fmt: skip
        sys.exit(1)
    return texts


def diff(p, texts: dict[str, str]) -> list[str]:
    out = []
    for path, text in sorted(texts.items()):
        old = p.tree.text(path)
        if old != text:
            out.append("".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                    f"a/{path}", f"b/{path}")))  # fmt: skip
    return out


# --- what kgen wrote, to tell it from a local edit -------------------------------


def _git_dir(root: Path) -> Path | None:
    top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "--absolute-git-dir"],
                         capture_output=True, text=True)  # fmt: skip
    if top.returncode:
        return None
    lines = top.stdout.splitlines()
    if len(lines) != 2 or Path(lines[0]).resolve() != root.resolve():
        return None
    return Path(lines[1])


def _owned(p, texts: dict[str, str]) -> dict[str, dict[str, str]]:
    """sha256 of each item kgen owns, by file and kind:name, in ``texts``."""
    from . import ctext
    from .tree import Block, MsrDefine, Upsert

    names: dict[str, set[tuple[str, str]]] = {}
    for op in p.ops:
        inner = op.then + op.otherwise if isinstance(op, Block) else op.ops if isinstance(op, MsrDefine) else (op,)
        for u in inner:
            if isinstance(u, Upsert) and u.kind not in ("struct-declaration",):
                names.setdefault(u.path, set()).add((u.kind, u.name))
    result: dict[str, dict[str, str]] = {}
    for path, wanted in names.items():
        text = texts[path]
        for item in ctext.items(text):
            if (item.kind, item.name) in wanted:
                key = f"{item.kind}:{item.name}:{'/'.join(b for _, b in item.conditions)}"
                result.setdefault(path, {})[key] = hashlib.sha256(item.text(text).encode()).hexdigest()
    return result


def _state_path(root: Path) -> Path | None:
    git = _git_dir(root)
    return git / "kgen" / "applied.json" if git else None


def local_edits(p) -> list[str]:
    """Items kgen wrote whose text changed since (by someone else)."""
    state = _state_path(p.tree.root)
    if state is None or not state.is_file():
        return []
    try:
        recorded = json.loads(state.read_text())
    except (OSError, ValueError):
        return []
    now = _owned(p, {path: p.tree.text(path) for path in p.files()})
    head = _owned(p, {path: _head_text(p.tree.root, path) for path in p.files()})
    edits = []
    for path, items in recorded.items():
        for key, sha in items.items():
            current = now.get(path, {}).get(key)
            # as kgen wrote it, or as the tree's last commit has it: not a local edit
            if current is not None and current not in (sha, head.get(path, {}).get(key)):
                kind, name, _ = key.split(":", 2)
                edits.append(f"{p.tree.root / path}: error: {kind} {name} was edited since kgen "
                             "wrote it; kgen does not overwrite local edits (commit or drop them, "
                             "or run with --force)")  # fmt: skip
    return edits


def _head_text(root: Path, path: str) -> str:
    proc = subprocess.run(["git", "-C", str(root), "show", f"HEAD:{path}"], capture_output=True)
    return proc.stdout.decode("utf-8", "replace") if proc.returncode == 0 else ""


def _record(p, texts: dict[str, str]) -> None:
    state = _state_path(p.tree.root)
    if state is None:
        return
    state.parent.mkdir(exist_ok=True)
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps(_owned(p, texts), indent=1, sort_keys=True) + "\n")
    tmp.replace(state)


# --- commands ----------------------------------------------------------------------


def apply(specs, tree_dir: Path, force: bool) -> None:
    from .outtree import TreeError as WriteError
    from .outtree import update_files

    p = _plan(specs, tree_dir)
    texts = _result(p)
    if not force:
        edits = local_edits(p)
        if edits:
            for e in edits:
                click.echo(e, err=True)
            click.echo("kgen: nothing was written", err=True)
            sys.exit(1)
    changes = {path: (p.tree.data(path), text) for path, text in texts.items()}
    try:
        changed = update_files(p.tree.root, changes)
    except WriteError as exc:
        click.echo(f"{exc}", err=True)
        sys.exit(1)
    _record(p, texts)
    for path in changed:
        click.echo(f"  changed {shown_path(str(p.tree.root / path))}")
    click.echo(f"applied {plural(len(specs), 'spec')} to {shown_path(str(p.tree.root))} "
               f"(Linux {p.tree.version}): {plural(len(changed), 'file')} changed")  # fmt: skip


def check(specs, tree_dir: Path) -> None:
    p = _plan(specs, tree_dir)
    texts = _result(p)
    diffs = diff(p, texts)
    if diffs:
        click.echo("".join(diffs), nl=False)
        click.echo(f"kgen: {plural(len(diffs), 'file')} of {shown_path(str(p.tree.root))} differ from a "
                   "fresh render; run `kgen apply --tree`", err=True)  # fmt: skip
        sys.exit(1)
    click.echo(f"{shown_path(str(p.tree.root))} (Linux {p.tree.version}) is up to date with "
               f"{plural(len(specs), 'spec')}")  # fmt: skip


def patch(specs, tree_dir: Path, out: Path, signoff: bool) -> None:
    from .series import SeriesError, identity, message, write_series
    from .tree import TreeError

    p = _plan(specs, tree_dir)
    _result(p)
    who = identity(p.tree.root)
    if who is None:
        raise click.UsageError("a patch needs an author: set git config user.name and user.email "
                               "(or GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL)")  # fmt: skip
    try:
        files = write_series(p, out, who, signoff)
    except (SeriesError, TreeError) as exc:
        click.echo(f"kgen: error: {exc}" if isinstance(exc, SeriesError) else str(exc), err=True)
        sys.exit(1)
    del message
    for f in files:
        click.echo(shown_path(str(f)))
    click.echo(f"wrote {plural(len(files) - 1, 'patch', 'patches')} and a cover letter for "
               f"Linux {p.tree.version} into {shown_path(str(out))}")  # fmt: skip
