"""The workflow and the package keep the project's style: snakemake --lint, snakefmt, ruff."""

from __future__ import annotations

import ast
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
        for p in (REPO / "src/tilepipe").rglob("*.py")
        if "import snakemake" in p.read_text() or "from snakemake" in p.read_text()
    ]
    assert offenders == []


def _imports(path: Path) -> set[str]:
    """The tilepipe modules a file imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tilepipe"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tilepipe"))
    return found


def test_the_stages_of_the_package_import_each_other_without_circles():
    """A stage (a subpackage such as acquire or qc) never imports one that imports it back."""
    root = REPO / "src"
    edges: dict[str, set[str]] = {}
    for path in (root / "tilepipe").rglob("*.py"):
        stage = path.relative_to(root).parts[1].removesuffix(".py")
        for module in _imports(path):
            other = module.split(".")[1] if "." in module else ""
            if other and other != stage:
                edges.setdefault(stage, set()).add(other)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    circles = sorted(s for s in edges if reaches(s, s, {s}))
    assert circles == [], {s: sorted(edges[s]) for s in circles}
