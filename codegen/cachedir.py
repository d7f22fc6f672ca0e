"""Keeping kgen's caches (below :func:`codegen.cache_root`) to a bounded size.

Each cache directory holds entries (a file, a directory, or a file with sidecars named
``<entry>.<suffix>``).  An entry taken from a cache is marked used; when a store makes a
directory hold more than its limit, the entries used longest ago are removed.  Another
kgen may be storing or reading meanwhile: what it finds gone is a cache miss, never an
error, and removal never follows a link out of the directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from pathlib import Path

# entries kept in each cache directory: a level is ~200 KB (a spec's units and harnesses at
# one optimisation level, per compiler), a harness object ~50 KB, a checked spec ~10 KB, a
# compiled template ~20 KB (seven of them for each version of kgen's code), a decoder's
# reading of some bytes ~200 bytes
LIMITS = {"levels": 256, "objects": 256, "loaded": 512, "decoded": 512, "templates": 64}
ABANDONED = 24 * 3600  # seconds after which a temporary name (a dot name) is a dead store's


def read_own(path: Path | str, limit: int) -> bytes | None:
    """The bytes of the cache file ``path`` when it is a regular file of this user that nobody
    else may write, at most ``limit`` bytes long; otherwise (or unreadable) None.  A link is
    not followed, and a FIFO or device is refused without waiting for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or st.st_size > limit):  # fmt: skip
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)  # a file that grew since fstat is not read without end
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) <= limit else None


def make_dir(directory: Path | str) -> None:
    """Make ``directory`` and whichever of its parents are missing, each 0700 whatever the
    umask (in a directory another user may write, that user may rename or replace an
    entry); OSError when it cannot be made, or is a link to a directory that is no cache
    (see :func:`_followable`)."""
    missing = []
    path = Path(directory)
    while not path.is_dir() and path != path.parent:
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    if not _followable(Path(directory)):
        raise NotADirectoryError(f"{directory}: a link to a directory that is not kgen's")


def write_own(path: Path | str, data: bytes) -> None:
    """``data`` at the cache file ``path``, whole or not at all: written to a temporary name
    beside it (a dot name, 0600, never through a link), then renamed; the directory and its
    missing parents are made 0700.  The temporary file goes on any exit, Ctrl-C included
    (pruning leaves a dot name to its writer for a day).  OSError when it cannot be kept."""
    path = Path(path)
    make_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)  # fmt: skip
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def used(entry: Path) -> None:
    """Mark ``entry`` as just used (its modification time), so pruning keeps it longest; a
    link's own time, never its target's."""
    with contextlib.suppress(OSError, NotImplementedError):
        os.utime(entry, follow_symlinks=False)


def _followable(directory: Path) -> bool:
    """Whether ``directory`` may be walked as a cache directory: one kgen made, or a link to
    a directory of this user's that nobody else may enter (0700, as kgen makes them).  A
    link to anything else (the user's own files, /) is no cache: its files are neither
    counted nor removed."""
    try:
        if not stat.S_ISLNK(os.lstat(directory).st_mode):
            return True
        st = os.stat(directory)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def _group(name: str, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def prune(directory: Path, keep: int | None = None, sidecars: tuple[str, ...] = ()) -> list[str]:
    """When ``directory`` holds more than ``keep`` entries (its limit in :data:`LIMITS` by
    default), remove the entries used longest ago until a tenth fewer than ``keep`` are left
    (all but ``keep`` below 10); returns the names removed.  A name starting with a dot (an
    entry being written) is left alone unless it is older than :data:`ABANDONED` (a store
    killed before it could clean up), and a file ``<entry><sidecar>`` goes with its entry.
    """
    keep = LIMITS[directory.name] if keep is None else keep
    if not _followable(directory):
        return []
    groups: dict[str, list[os.DirEntry]] = {}
    abandoned: list[os.DirEntry] = []
    try:
        with os.scandir(directory) as it:
            for e in it:
                if not e.name.startswith("."):
                    groups.setdefault(_group(e.name, sidecars), []).append(e)
                elif _age(e) > ABANDONED:
                    abandoned.append(e)
    except OSError:
        return []
    for e in abandoned:
        _remove(e)
    if len(groups) <= keep:
        return []
    keep -= keep // 10  # then down a tenth below the limit: the next stores need not look

    def last_used(name: str) -> float:
        times = []
        for e in groups[name]:
            with contextlib.suppress(OSError):
                times.append(e.stat(follow_symlinks=False).st_mtime)
        return max(times, default=0.0)

    removed = []
    for name in sorted(groups, key=last_used)[: len(groups) - keep]:
        for e in groups[name]:
            _remove(e)
        removed.append(name)
    return removed


def usage(root: Path) -> list[tuple[str, int, int]]:
    """(name, entries, bytes) of each cache directory below ``root`` that exists, counted as
    :func:`prune` counts them (an object's ``.sha256`` goes with it; a name being written,
    starting with a dot, is not an entry)."""
    found = []
    for name in LIMITS:
        directory = root / name
        if not _followable(directory):
            continue
        groups: set[str] = set()
        size = 0
        try:
            for dirpath, dirnames, filenames in os.walk(directory):
                if dirpath == str(directory):
                    groups.update(_group(n, (".sha256",)) for n in [*dirnames, *filenames]
                                  if not n.startswith("."))  # fmt: skip
                for f in filenames:
                    with contextlib.suppress(OSError):
                        size += os.lstat(os.path.join(dirpath, f)).st_size
        except OSError:
            continue
        if directory.is_dir():
            found.append((name, len(groups), size))
    return found


def _age(e: os.DirEntry) -> float:
    try:
        return time.time() - e.stat(follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def _remove(e: os.DirEntry) -> None:
    with contextlib.suppress(OSError):
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path)
        else:
            os.unlink(e.path)
