"""docs/models.md runs as written: its code blocks in order, in an empty directory.

A ``python`` block whose first line is ``# file: PATH`` is written to PATH; any other ``python``
block is executed; each ``tilepipe model check`` line of a ``bash`` block is run through the CLI
(the FTW checkpoint's in ``.venv-ftw``, on a checkpoint Lightning writes the way ftw-tools does).
``pip install`` lines are what ``.venv-ftw`` already did; blocks without a language are output.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from tilepipe.cli import main

from ..conftest import REPO
from .test_ftw import FTW_PYTHON, WRITER, in_ftw_env

PAGE = REPO / "docs" / "models.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    """The page's fenced blocks as (language, text), in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(PAGE.read_text())]


def check_commands() -> list[list[str]]:
    """The ``tilepipe model check`` command lines of the page's bash blocks."""
    lines = [ln for lang, text in blocks() if lang == "bash" for ln in text.splitlines()]
    return [shlex.split(ln.split("#")[0]) for ln in lines if ln.startswith("tilepipe model check")]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``tilepipe ARGV`` in this process: status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> dict[str, tuple[int, str, str]]:
    """Every block of the page done in order in an empty directory; model -> check result."""
    work = tmp_path_factory.mktemp("docs_models")
    cwd, results = Path.cwd(), {}
    sys.path.insert(0, str(work))
    os.chdir(work)
    try:
        for lang, text in blocks():
            first, _, rest = text.partition("\n")
            if lang == "python" and first.startswith("# file: "):
                target = work / first.removeprefix("# file: ").strip()
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(rest)
            elif lang == "python":
                exec(compile(text, str(PAGE), "exec"), {"__name__": "docs_models"})
            elif lang == "bash":
                for argv in check_commands():
                    if argv[3] in text and not argv[3].endswith(".ckpt"):
                        results[argv[3]] = run_cli(argv[1:])
    finally:
        os.chdir(cwd)
        sys.path.remove(str(work))
        for name in [m for m in sys.modules if m.split(".")[0] == "mysr"]:
            del sys.modules[name]
    return results


def test_the_page_checks_a_model_of_every_route():
    models = [argv[3] for argv in check_commands()]
    assert [Path(m).suffix for m in models] == [".pt2", ".pt", ".ts", ".ckpt"]


def test_export_example_checks_at_x4(ran):
    rc, out, err = ran["sr_x4.pt2"]
    assert rc == 0, err
    assert "(4, 4, 64, 64) -> (4, 4, 256, 256), finite" in out


def test_printed_model_check_output_is_what_it_prints(ran):
    shown = next(t for lang, t in blocks() if not lang and t.startswith("model sr_x4.pt2"))
    actual = ran["sr_x4.pt2"][1].splitlines()
    for line in shown.splitlines():
        if "…" not in line:
            assert line in actual


def test_class_example_builds_the_users_class(ran):
    rc, out, err = ran["tiny_x2.pt"]
    assert rc == 0, err
    assert "mysr.nets:TinySR" in out and "(4, 4, 32, 32) -> (4, 4, 64, 64), finite" in out


def test_torchscript_example_checks_at_x10(ran):
    rc, out, err = ran["sr_x10.ts"]
    assert rc == 0, err
    assert "(2, 4, 32, 32) -> (2, 4, 320, 320), finite" in out


def test_ftw_example_checks_a_checkpoint_as_it_is(tmp_path):
    if not FTW_PYTHON.is_file():
        pytest.skip(f"{FTW_PYTHON} missing: `make .venv-ftw/.installed` (or `make test`) builds it")
    argv = next(a for a in check_commands() if a[3].endswith(".ckpt"))
    name = Path(argv[3]).stem
    written = in_ftw_env(WRITER, tmp_path, f"{name}:8:3:efficientnet-b0")
    assert written.returncode == 0, written.stderr[-3000:]
    args = [str(tmp_path / argv[3]) if a == argv[3] else a for a in argv[1:]]
    run = in_ftw_env("-m", "tilepipe.cli", *args)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "(2, 8, 64, 64) -> (2, 3, 64, 64), finite" in run.stdout
