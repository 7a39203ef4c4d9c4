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


#: The one Snakemake import the package may hold: the Slurm plugin, imported inside a function
#: of campaign/slurm_arrays.py that only the workflow (which runs under Snakemake) calls.
LAZY_PLUGIN_IMPORT = ("campaign/slurm_arrays.py", "snakemake_executor_plugin_slurm")


def _snakemake_imports(path: Path) -> list[tuple[str, bool]]:
    """(module, inside a function) of each import of Snakemake or a Snakemake plugin."""
    tree = ast.parse(path.read_text())
    functions = (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))
    lazy = {id(node) for f in functions for node in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(name, id(node) in lazy) for name in names if name.startswith("snakemake")]
    return found


def test_package_never_imports_snakemake():
    """The steps run in images without Snakemake: no package module imports it or a plugin, at
    its top or in a function. The one exception, LAZY_PLUGIN_IMPORT, is the Slurm plugin imported
    inside the function that fixes its job arrays, which only a Snakemake run on Slurm calls."""
    root = REPO / "src/tilepipe"
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        for module, lazy in _snakemake_imports(path):
            if not (lazy and (rel, module) == LAZY_PLUGIN_IMPORT):
                offenders.append((rel, module))
    assert offenders == []


def test_the_snakemake_import_check_tells_top_level_from_lazy_imports(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        "import snakemake.io\nfrom snakemake_executor_plugin_slurm import Executor\n"
        "def f():\n    from snakemake_executor_plugin_slurm import Executor\n    import os\n"
    )
    assert _snakemake_imports(path) == [
        ("snakemake.io", False),
        ("snakemake_executor_plugin_slurm", False),
        ("snakemake_executor_plugin_slurm", True),
    ]


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
