"""Reading a kernel tree's files and running git, safely whatever the tree or environment holds.

A tree file is opened without following a link, without blocking (a FIFO would otherwise
hang kgen), checked to be a regular file and read to at most :data:`READ_LIMIT` bytes.
Every git that kgen runs gets an environment without the caller's ``GIT_*`` variables, so
that ``GIT_DIR``, ``GIT_INDEX_FILE``, ``GIT_WORK_TREE`` and the like (set inside a git
hook, say) never point a command at another repository than the one kgen names with
``-C``.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # run only where git is: not every command starts one
    import subprocess

READ_LIMIT = 4 << 20  # bytes: no kernel source file kgen reads is near this
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Refused(OSError):
    """A path kgen does not read: why is in ``reason`` (a phrase that follows the path)."""

    def __init__(self, reason: str, err: int = errno.EINVAL):
        super().__init__(err, reason)
        self.reason = reason


class GitNotFound(OSError):
    pass


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "is a symbolic link: kgen does not follow links inside the tree"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    return "is not a regular file (a FIFO, socket or device): kgen reads only regular files"


def _read_fd(fd: int, limit: int) -> bytes:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise Refused(_kind(st.st_mode))
    if st.st_size > limit:
        raise Refused(f"is larger than {limit >> 20} MiB: kgen does not read it", errno.EFBIG)
    chunks, size = [], 0
    while size <= limit and (chunk := os.read(fd, min(1 << 16, limit + 1 - size))):
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:  # grew since the fstat
        raise Refused(f"is larger than {limit >> 20} MiB: kgen does not read it", errno.EFBIG)
    return b"".join(chunks)


def read_regular(path: Path | str, limit: int = READ_LIMIT, follow: bool = False) -> bytes:
    """The bytes of the regular file ``path``; a link (unless ``follow``), a directory, a FIFO,
    a device or a file over ``limit`` bytes raises :class:`Refused`, a missing one OSError."""
    st = os.stat(path, follow_symlinks=follow)
    if not stat.S_ISREG(st.st_mode):  # a device is not even opened
        raise Refused(_kind(st.st_mode))
    fd = os.open(path, _FLAGS | (0 if follow else os.O_NOFOLLOW))
    try:
        return _read_fd(fd, limit)
    finally:
        os.close(fd)


def read_below(root: Path, rel: str, limit: int = READ_LIMIT) -> bytes:
    """The bytes of the regular file ``rel`` below ``root``, following no link below ``root``
    (``root`` itself may be one); raises :class:`Refused` naming the path at fault in
    ``exc.filename``, or OSError when a component is missing."""
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        err = Refused("is not a path inside the tree")
        err.filename = str(root / rel)
        raise err
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, name in enumerate(parts[:-1]):
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    err = Refused(
                        _kind(st.st_mode) if stat.S_ISLNK(st.st_mode) else "is not a directory"
                    )
                    err.filename = str(root / "/".join(parts[: i + 1]))
                    raise err from None
                raise
            os.close(dir_fd)
            dir_fd = fd
        st = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):  # a device is not even opened
            err = Refused(_kind(st.st_mode))
            err.filename = str(root / rel)
            raise err
        fd = os.open(parts[-1], _FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            return _read_fd(fd, limit)
        except Refused as exc:
            exc.filename = str(root / rel)
            raise
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a git kgen runs: the caller's without any ``GIT_*``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(extra or {})
    return env


def git(repo: Path, *args: str, env: dict[str, str] | None = None, text: bool = True,
        ) -> subprocess.CompletedProcess:  # fmt: skip
    """``git -C repo args`` with :func:`git_env`; :class:`GitNotFound` when there is no git."""
    import subprocess

    try:
        # core.fsmonitor is a command the repository's config names, run by any git that
        # looks at the work tree: a tree handed to kgen does not choose what kgen runs
        return subprocess.run(["git", "-c", "core.fsmonitor=false", "-C", str(repo), *args],
                              capture_output=True, text=text, env=git_env(env),
                              stdin=subprocess.DEVNULL)  # fmt: skip
    except FileNotFoundError:
        raise GitNotFound(errno.ENOENT, "git is not on PATH") from None
