"""The workflow and the package keep the project's style: snakemake --lint, snakefmt, ruff."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (pip install -e '.[dev]')")
    return path


def test_snakemake_lint_is_clean():
    run = _run(sys.executable, "-m", "snakemake", "--lint")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Congratulations" in run.stdout + run.stderr, run.stdout + run.stderr


def test_snakefiles_are_snakefmt_formatted():
    run = _run(_tool("snakefmt"), "--check", "Snakefile", "workflow/rules")
    assert run.returncode == 0, run.stdout + run.stderr


def test_python_is_ruff_clean():
    run = _run(_tool("ruff"), "check", "src", "tests", "scripts", "benchmarks")
    assert run.returncode == 0, run.stdout + run.stderr


def test_package_never_imports_snakemake():
    offenders = [
        p.name
        for p in (REPO / "src/tilepipe").glob("*.py")
        if "import snakemake" in p.read_text() or "from snakemake" in p.read_text()
    ]
    assert offenders == []
