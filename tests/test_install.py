"""A normal (non-editable) install runs every command from any directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """kgen built as a wheel and installed into a fresh virtual environment."""
    work = tmp_path_factory.mktemp("install")
    if shutil.which("git") is None:
        pytest.skip("git is needed to copy the checkout")
    # build from a clean copy of the tracked files, so nothing of the working tree leaks in
    src = work / "src"
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    for rel in filter(None, files.decode().split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    quiet = ["-q", "--disable-pip-version-check"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", *quiet, "--no-deps", "-w", work / "dist", src],
                   check=True, capture_output=True)  # fmt: skip
    (wheel,) = (work / "dist").glob("kgen-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", *quiet, "-c", ROOT / "constraints.txt",
                    wheel], check=True, capture_output=True)  # fmt: skip
    return venv / "bin" / "kgen"


@pytest.fixture()
def project(tmp_path):
    """A directory with a copy of isa/ and nothing else of the checkout."""
    shutil.copytree(ROOT / "isa", tmp_path / "isa")
    return tmp_path


def _run(kgen, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(kgen), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def test_the_installed_package_is_not_the_checkout(installed, project):
    where = subprocess.run([installed.parent / "python", "-c", "import codegen; print(codegen.__file__)"],
                           cwd=project, capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "site-packages" in where and str(ROOT) not in where


@pytest.mark.parametrize("args", [
    ["render"],
    ["validate", "isa/pvalidate.yaml"],
    ["compare", "isa/pvalidate.yaml", "--cases", "20", "--opt=-O2"],
    ["compare", "isa/rmpopt.yaml", "--cases", "20", "--opt=-O2"],
    ["sweep", "isa/rmpopt.yaml", "--memory", "3T"],
    ["doctor"],
    ["schema"],
])  # fmt: skip
def test_installed_kgen_runs_every_command_outside_the_checkout(installed, project, args):
    proc = _run(installed, *args, cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
