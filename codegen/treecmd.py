"""``kgen apply``, ``kgen patch`` and ``kgen check --tree``: the generated code in a kernel tree."""

from __future__ import annotations

import contextlib
import difflib
import errno
import hashlib
import json
import os
import secrets
import stat
import sys
from pathlib import Path

import click

from .diagnostics import plural, shown_path


def _plan(specs, tree_dir: Path):
    from .tree import KernelTree, TreeError, plan

    try:
        return plan(specs, KernelTree.open(tree_dir))
    except TreeError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


def _result(p, failed: str = "nothing was written"):
    for spec, why in p.skipped:
        click.echo(f"{shown_path(str(spec.path))}: note: {why}", err=True)
    texts, errors = p.result()
    if errors:
        errors = list(dict.fromkeys(map(str, errors)))  # C kgen cannot read: once, not once an op
        for e in errors:
            click.echo(e, err=True)
        click.echo(f"kgen: {plural(len(errors), 'problem')} in {shown_path(str(p.tree.root))}; {failed}",
                   err=True)  # fmt: skip
        sys.exit(1)
    return texts


def _specs_done(specs, p) -> str:
    """How many specs an apply or check took, and how many had nothing to do in the tree."""
    idle = len(p.skipped)
    return plural(len(specs) - idle, "spec") + (
        f" ({idle} more with nothing to do here)" if idle else ""
    )


def changed(p, texts: dict[str, str]) -> list[str]:
    """The files whose new text differs from the tree's."""
    return [path for path, text in sorted(texts.items()) if text != p.tree.text(path)]


def diff(p, texts: dict[str, str]) -> list[str]:
    return ["".join(difflib.unified_diff(p.tree.text(path).splitlines(True), texts[path].splitlines(True),
                                         f"a/{path}", f"b/{path}")) for path in changed(p, texts)]  # fmt: skip


# --- what kgen wrote, to tell it from a local edit -------------------------------


def _git_dir(root: Path) -> Path | None:
    """The git directory of the repository whose top is ``root``; None for a plain tree (or
    without git, which a plain tree does not need)."""
    from .treeio import GitNotFound, git

    try:
        top = git(root, "rev-parse", "--show-toplevel", "--absolute-git-dir")
    except GitNotFound:
        return None
    if top.returncode:
        return None
    lines = top.stdout.splitlines()
    if len(lines) != 2 or Path(lines[0]).resolve() != root.resolve():
        return None
    return Path(lines[1])


def _owned_names(p) -> dict[str, set[tuple[str, str]]]:
    """(kind, name) of each item the plan owns, by file."""
    from .tree import Block, MsrDefine, Upsert

    names: dict[str, set[tuple[str, str]]] = {}
    for op in p.ops:
        inner = (
            op.then + op.otherwise
            if isinstance(op, Block)
            else op.ops
            if isinstance(op, MsrDefine)
            else (op,)
        )
        for u in inner:
            if isinstance(u, Upsert) and u.kind not in ("struct-declaration",):
                names.setdefault(u.path, set()).add((u.kind, u.name))
    return names


def _owned(p, texts: dict[str, str]) -> dict[str, dict[str, str]]:
    """sha256 of each item kgen owns, by file and kind:name, in ``texts``."""
    from . import ctext

    names = _owned_names(p)
    result: dict[str, dict[str, str]] = {}
    for path, wanted in names.items():
        text = texts[path]
        try:
            found = ctext.items(text)
        except ctext.CTextError:  # the last commit's text may be C kgen cannot read
            continue
        for item in found:
            if (item.kind, item.name) in wanted:
                key = f"{item.kind}:{item.name}:{'/'.join(b for _, b in item.conditions)}"
                result.setdefault(path, {})[key] = hashlib.sha256(
                    item.text(text).encode()
                ).hexdigest()
    return result


RECORD = "applied.json"
_RECORD_LIMIT = 1 << 20


class RecordError(Exception):
    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _state_dir(root: Path) -> Path | None:
    git = _git_dir(root)
    return git / "kgen" if git else None


def _read_record(state_dir: Path) -> dict[str, dict[str, str]]:
    """What kgen recorded it wrote; an unreadable or malformed record is a RecordError."""
    from .treeio import Refused, read_below

    try:
        data = read_below(state_dir.parent, f"kgen/{RECORD}", _RECORD_LIMIT)
    except Refused as exc:
        raise RecordError(exc.filename, exc.reason) from None
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RecordError(state_dir / RECORD, f"cannot read: {exc.strerror}") from None
    try:
        recorded = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
        recorded = None
    if not (isinstance(recorded, dict) and all(
            isinstance(items, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in items.items())
            for items in recorded.values())):  # fmt: skip
        raise RecordError(state_dir / RECORD, "is not a record kgen wrote (a JSON object of "
                                              "files, each an object of item hashes)")  # fmt: skip
    return recorded


def local_edits(p) -> list[str]:
    """Items kgen wrote whose text changed since (by someone else)."""
    state_dir = _state_dir(p.tree.root)
    if state_dir is None:
        return []
    try:
        recorded = _read_record(state_dir)
    except RecordError as exc:
        click.echo(f"{exc.path}: warning: {exc.reason}; kgen ignores it (and writes a new one), "
                   "so local edits of generated parts are not told from old renders", err=True)  # fmt: skip
        return []
    if not recorded:
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


def _merged_record(p, state_dir: Path | None, texts: dict[str, str]) -> dict[str, dict[str, str]]:
    """The record after this apply: what this plan owns, as written now, and what the record
    held for parts of other specs, which an apply of some specs only leaves as it was."""
    mine = _owned(p, texts)
    try:
        old = _read_record(state_dir) if state_dir is not None else {}
    except RecordError:
        old = {}
    names = _owned_names(p)
    merged: dict[str, dict[str, str]] = {}
    for path, items in old.items():
        keep = {
            k: v
            for k, v in items.items()
            if tuple(k.split(":", 2)[:2]) not in names.get(path, set())
        }
        if keep:
            merged[path] = keep
    for path, items in mine.items():
        merged.setdefault(path, {}).update(items)
    return merged


def _head_text(root: Path, path: str) -> str:
    """The file as the tree's last commit has it, in the form KernelTree.text gives."""
    from .tree import decode
    from .treeio import GitNotFound, git

    try:
        proc = git(root, "show", f"HEAD:{path}", text=False)
    except GitNotFound:
        return ""
    if proc.returncode:
        return ""
    try:
        return decode(proc.stdout)[0]
    except UnicodeDecodeError:
        return proc.stdout.decode("utf-8", "replace")


def _write_record(state_dir: Path, payload: bytes) -> None:
    """Write the record through a new temporary file renamed into place, following no link:
    .git/kgen must be a directory of its own."""
    from .outtree import write_all

    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(state_dir, 0o777)
        fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        why = ("is a symbolic link: kgen does not follow it" if state_dir.is_symlink()
               else "is not a directory" if exc.errno in (errno.ENOTDIR, errno.EEXIST)
               else str(exc.strerror))  # fmt: skip
        raise RecordError(state_dir, why) from None
    tmp = f".{RECORD}.{secrets.token_hex(8)}.tmp"
    try:
        try:
            st = os.stat(RECORD, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise RecordError(state_dir / RECORD, "is not a regular file: kgen does not replace it")
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          0o666, dir_fd=fd)  # fmt: skip
            try:
                write_all(out, payload)
            finally:
                os.close(out)
            os.rename(tmp, RECORD, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
            raise RecordError(state_dir / RECORD, f"cannot write: {exc.strerror}") from None
    finally:
        os.close(fd)


# --- commands ----------------------------------------------------------------------


def apply(specs, tree_dir: Path, force: bool) -> None:
    from .outtree import TreeError as WriteError, update_files

    p = _plan(specs, tree_dir)
    texts = _result(p)
    state_dir = _state_dir(p.tree.root)
    if not force:
        edits = local_edits(p)
        if edits:
            for e in edits:
                click.echo(e, err=True)
            click.echo("kgen: nothing was written", err=True)
            sys.exit(1)
    # each file in its own form (line endings, byte order mark), as update_files writes text
    changes = {
        path: (p.tree.data(path), p.tree.encode(path, text).decode("utf-8"))
        for path, text in texts.items()
    }
    payload = (
        json.dumps(_merged_record(p, state_dir, texts), indent=1, sort_keys=True) + "\n"
    ).encode()
    unrecorded: list[RecordError] = []

    def record() -> None:  # with the files, before a held Ctrl-C may stop kgen
        if state_dir is not None:
            try:
                _write_record(state_dir, payload)
            except RecordError as exc:
                unrecorded.append(exc)

    try:
        changed = update_files(p.tree.root, changes, then=record)
    except WriteError as exc:
        click.echo(f"{exc}", err=True)
        sys.exit(1)
    for path in changed:
        click.echo(f"  changed {shown_path(str(p.tree.root / path))}")
    click.echo(f"applied {_specs_done(specs, p)} to {shown_path(str(p.tree.root))} "
               f"(Linux {p.tree.version}): {plural(len(changed), 'file')} changed")  # fmt: skip
    if unrecorded:
        bad = unrecorded[0]
        click.echo(f"{bad.path}: warning: {bad.reason}: the files were written but this record of "
                   "what kgen wrote was not, so the next apply cannot tell local edits of generated "
                   "parts from old renders", err=True)  # fmt: skip
        sys.exit(1)


def check(specs, tree_dir: Path) -> None:
    p = _plan(specs, tree_dir)
    texts = _result(p, "the tree was not compared")
    diffs = diff(p, texts)
    if diffs:
        click.echo("".join(diffs), nl=False)
        verb = "differs" if len(diffs) == 1 else "differ"
        click.echo(f"kgen: {plural(len(diffs), 'file')} of {shown_path(str(p.tree.root))} {verb} from a "
                   "fresh render; run `kgen apply --tree`", err=True)  # fmt: skip
        sys.exit(1)
    click.echo(f"{shown_path(str(p.tree.root))} (Linux {p.tree.version}) is up to date with "
               f"{_specs_done(specs, p)}")  # fmt: skip


def patch(specs, tree_dir: Path, out: Path, signoff: bool) -> None:
    from .series import OutputError, SeriesError, base_commit, identity, write_series
    from .tree import TreeError
    from .treeio import GitNotFound

    p = _plan(specs, tree_dir)
    texts = _result(p)

    def nothing_to_do() -> None:
        click.echo(f"nothing to do: {shown_path(str(p.tree.root))} (Linux {p.tree.version}) is up to "
                   f"date with {_specs_done(specs, p)}; no patches written")  # fmt: skip

    if not changed(p, texts):
        return nothing_to_do()
    try:
        who = identity(p.tree.root)
        base, dirty = base_commit(p.tree.root, p.files())
    except GitNotFound:
        click.echo("kgen: error: kgen patch needs git, and there is no git on PATH", err=True)
        sys.exit(1)
    if who is None:
        raise click.UsageError("a patch needs an author: set git config user.name and user.email "
                               "(or GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL)")  # fmt: skip
    if dirty:
        click.echo(f"kgen: warning: {', '.join(dirty)} {'differs' if len(dirty) == 1 else 'differ'} "
                   "from the tree's last commit: the "
                   "series is made from the files as they are, and the cover letter names no "
                   "base-commit", err=True)  # fmt: skip
    try:
        files = write_series(p, out, who, signoff, base)
    except (SeriesError, TreeError) as exc:
        plain = isinstance(exc, SeriesError) and not isinstance(exc, OutputError)
        click.echo(f"kgen: error: {exc}" if plain else str(exc), err=True)
        sys.exit(1)
    if not files:
        return nothing_to_do()
    for f in files:
        click.echo(shown_path(str(f)))
    click.echo(f"wrote {plural(len(files) - 1, 'patch', 'patches')} and a cover letter for "
               f"Linux {p.tree.version} into {shown_path(str(out))}")  # fmt: skip
