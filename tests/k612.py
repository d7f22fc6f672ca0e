"""Where the tests find Linux 6.12's source (Debian's linux-source-6.12, 6.12.117).

$KGEN_K612 if set, else the tree tests/kernel/get-kernel-material prepares (see
tests/kernel/tree.py), else ~/.cache/kgen/k612/linux-source-6.12; where that is
missing and the package is installed (/usr/src/linux-source-6.12.tar.xz), the
files the tests read are extracted there once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
TOP = "linux-source-6.12"
MEMBERS = ("scripts/min-tool-version.sh", "arch/x86/include", "include", "arch/x86/virt/svm/sev.c")


def _default() -> Path:
    return Path.home() / ".cache" / "kgen" / "k612" / TOP


def tree() -> tuple[Path | None, str]:
    """(the tree, "") or (None, why not)."""
    given = os.environ.get("KGEN_K612")
    if not given:
        from tests.kernel.tree import cache  # the whole tree that get-kernel-material prepares

        prepared = cache()
        if prepared is not None and all((prepared / "src" / m).exists() for m in MEMBERS):
            return prepared / "src", ""
    root = Path(given) if given else _default()
    if all((root / m).exists() for m in MEMBERS):
        return root, ""
    if given:
        return None, f"$KGEN_K612={given} is not a Linux 6.12 tree"
    if not TARBALL.is_file():
        return None, f"no {TARBALL}: apt-get install linux-source-6.12"
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        proc = subprocess.run(["tar", "-xJf", str(TARBALL), "-C", tmp, *(f"{TOP}/{m}" for m in MEMBERS)],
                              capture_output=True, text=True)  # fmt: skip
        if proc.returncode != 0:
            return None, f"cannot extract {TARBALL}: {proc.stderr.strip()}"
        if not root.exists():
            shutil.move(str(Path(tmp) / TOP), root)
    return root, ""
