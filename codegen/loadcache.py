"""Checked documents kept between runs, so that a command starts without re-reading them.

Reading a spec (or the table of known encodings) is a pure function of its text, the
path it is shown as, kgen's code and the libraries that read it (PyYAML and iced-x86).
:func:`remembered` keeps a result under :func:`codegen.cache_root`/``loaded``, keyed by
every one of those, and returns it when the same key comes again: a changed byte in the
document, in any of kgen's modules or data files, or another library version or Python is
another key.  Only documents without a problem are kept: a spec that fails is read again,
so its messages are always the loader's own.

An entry names its key and holds the sha256 of its payload; it is used only when both
match, it is a regular file of the user who runs kgen, and nobody else may write it;
anything else is a miss.  A cache that cannot be read or written is no cache, and with
``KGEN_NO_LOAD_CACHE`` set (not empty) there is none.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypeVar

from . import cache_root, cachedir

T = TypeVar("T")
PACKAGE = Path(__file__).resolve().parent
MAGIC = b"kgen-loaded 1\n"
OFF = "KGEN_NO_LOAD_CACHE"  # set and not empty: nothing is kept or taken from the cache
MAX_ENTRY = 64 << 20  # bytes: a checked spec is ~10 KB; anything this big is not kgen's


def library(name: str) -> str:
    """Which installed copy of a library ``name`` is, found without importing it: where it
    is, the versions its directory's dist-info entries name, and its files' sizes and times."""
    from importlib.machinery import PathFinder

    found = PathFinder.find_spec(name)
    if found is None or not found.origin:
        return f"{name}: none"
    origin = Path(found.origin)
    home = origin.parent.parent if found.submodule_search_locations else origin.parent
    parts = [str(origin)]
    try:
        parts += sorted(
            e
            for e in os.listdir(home)
            if e.endswith(".dist-info") and e.lower().startswith(f"{name.lower()}-")
        )
        with os.scandir(origin.parent) as entries:
            parts += sorted(f"{e.name}:{e.stat().st_size}:{e.stat().st_mtime_ns}"
                            for e in entries if e.is_file())  # fmt: skip
    except OSError:
        pass
    return "\0".join(parts)


def files_digest(directory: Path) -> str:
    """sha256 over the names and bytes of every file below ``directory``, also through a link
    to a directory (as Jinja's loader reads them); a directory reached twice is read once."""
    h = hashlib.sha256()
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(directory, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(set(dirs) - {"__pycache__"})
        for name in sorted(files):
            path = Path(root, name)
            if path.is_file():
                try:
                    data = b"=" + path.read_bytes()
                except OSError as exc:  # gone since it was listed, or unreadable, as for Jinja
                    data = b"?%d" % (exc.errno or 0)
                h.update(str(path.relative_to(directory)).encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def package_digest(package: Path = PACKAGE) -> str | None:
    """sha256 over the bytes of a package's modules and its data/ files, with their names;
    None when its modules cannot be read as files (then nothing may be cached).  Not their
    times: a write through a shared mapping moves none, and on some file systems (sshfs,
    FAT, squashfs) the change time is the modification time, which anyone may set back."""
    h = hashlib.sha256()
    modules = 0
    try:
        for sub in ("", "data/"):
            for name in sorted(os.listdir(package / sub)):
                if name.endswith((".py", ".yaml")):
                    modules += name.endswith(".py")
                    with open(package / sub / name, "rb") as f:
                        h.update(f"{sub}{name}".encode() + b"\0" + f.read() + b"\0")
    except OSError:
        return None
    return h.hexdigest() if modules else None


@cache
def code_digest() -> str | None:
    """What reading a document depends on besides the document: kgen's modules and data
    (their bytes), Python, PyYAML and iced-x86 (where they are, their versions and files);
    None when kgen's own modules cannot be read."""
    import yaml

    package = package_digest()
    if package is None:
        return None
    h = hashlib.sha256()
    for part in (sys.version, sys.implementation.cache_tag, yaml.__version__,
                 str(yaml.__with_libyaml__), library("yaml"), library("iced_x86"), package):  # fmt: skip
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def _directory(name: str) -> Path:
    return cache_root() / name


def _key(code: str, kind: str, parts: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for part in (code, kind, *parts):  # each with its length: no two lists of parts meet
        data = part.encode("utf-8", "surrogatepass")
        h.update(b"%d:%s" % (len(data), data))
    return h.hexdigest()[:32]


def _read(entry: Path) -> bytes | None:
    """The payload of ``entry`` if it is whole and only its owner (this user) could write it."""
    data = cachedir.read_own(entry, MAX_ENTRY)
    if data is None:
        return None
    head, _, rest = data.partition(b"\n")
    key, _, rest = rest.partition(b"\n")
    digest, _, payload = rest.partition(b"\n")
    if (head + b"\n" != MAGIC or key != entry.name.encode()
            or hashlib.sha256(payload).hexdigest().encode() != digest):  # fmt: skip
        return None  # not whole, or another key's entry under this name
    return payload


def _store(entry: Path, value: object) -> None:
    try:
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - a value pickle cannot keep is not kept
        return
    data = b"%s%s\n%s\n%s" % (MAGIC, entry.name.encode(), hashlib.sha256(payload).hexdigest().encode(),
                              payload)  # fmt: skip
    try:
        cachedir.write_own(entry, data)
    except OSError:
        return
    cachedir.prune(entry.parent)


def remembered(
    kind: str, parts: tuple[str, ...], compute: Callable[[], T], directory: str = "loaded"
) -> T:
    """``compute()``, or what it returned last time for the same ``kind`` of result, ``parts``
    (everything it depends on besides kgen's code) and code, kept in the cache ``directory``
    (one of :data:`codegen.cachedir.LIMITS`).  Whatever ``compute`` raises is raised, and
    nothing kept."""
    code = code_digest()
    if code is None or os.environ.get(OFF):
        return compute()
    entry = _directory(directory) / _key(code, kind, parts)
    payload = _read(entry)
    if payload is not None:
        try:
            value = pickle.loads(payload)
        except Exception:  # noqa: BLE001 - an entry of another kgen's classes: compute again
            pass
        else:
            cachedir.used(entry)
            return value
    value = compute()
    _store(entry, value)
    return value
