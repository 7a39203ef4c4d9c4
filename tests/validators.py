"""The independent validators run on tilepipe's outputs, as their authors ship them.

- geoparquet-validator 0.2.0 (``dev`` extra, tilepipe's environment): its Python API, the
  same code as its ``geoparquet-validator check`` command.
- fiboa-cli 0.21.0: its ``fiboa validate`` command in its own interpreter, ``.venv-fiboa``
  (``make .venv-fiboa/.installed`` builds it from ``tests/oracles/fiboa-cli-0.21.0.txt``):
  it pins pyarrow < 24 and fsspec 2025.7.0, which tilepipe's environment does not have.
  fiboa-cli loads the Vecorel and fiboa core schemas and the GeoParquet JSON schema from
  vecorel.org, fiboa.org and geoparquet.org; no package ships them, and only the first two can be
  pointed at local files (``-s URL,FILE``, from ``TILEPIPE_FIBOA_SCHEMAS``). Where a schema cannot
  be fetched the check is skipped with fiboa-cli's own message (docs/fields.md).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import geoparquet_validator as gpv
import pytest

from tilepipe.fields.fiboa import FIBOA_SCHEMA, VECOREL_SCHEMA

REPO = Path(__file__).resolve().parents[1]
FIBOA = Path(os.environ.get("TILEPIPE_FIBOA") or REPO / ".venv-fiboa/bin/fiboa")
#: Local copies of the published schemas, by file name, in ``TILEPIPE_FIBOA_SCHEMAS``.
SCHEMA_FILES = {VECOREL_SCHEMA: "vecorel-0.1.0.yaml", FIBOA_SCHEMA: "fiboa-0.3.0.yaml"}
#: fiboa-cli's words when a schema could not be loaded (no network).
UNREACHABLE = re.compile(r"can't be loaded|internal error: https?://\S+")


def geoparquet_report(path: str | os.PathLike) -> dict[str, str]:
    """geoparquet-validator's verdicts on a file: {test id: pass | fail | skip}."""
    return {o["id"]: o["status"] for o in gpv.check(str(path))["outcomes"]}


def assert_distributable(path: str | os.PathLike) -> dict[str, str]:
    """Core, covering and distribution conformant, the covering claimed (none skipped)."""
    report = gpv.check(str(path))
    verdicts = {o["id"]: o["status"] for o in report["outcomes"]}
    failed = {o["id"]: o["message"] for o in report["outcomes"] if o["status"] == "fail"}
    assert not failed, failed
    covering = {k: v for k, v in verdicts.items() if k.startswith("/conf/covering/")}
    assert covering and set(covering.values()) == {"pass"}, covering
    assert verdicts["/conf/distribution/geospatial-statistics"] == "pass"
    return verdicts


def fiboa_validate(path: str | os.PathLike) -> str:
    """Run ``fiboa validate -n -1`` on a file and return its output; skip where it cannot run."""
    if not FIBOA.is_file():
        pytest.skip(
            f"fiboa-cli not installed at {FIBOA}: `make .venv-fiboa/.installed` (or TILEPIPE_FIBOA)"
        )
    args = [str(FIBOA), "validate", str(path), "-n", "-1"]
    local = Path(os.environ.get("TILEPIPE_FIBOA_SCHEMAS") or "/nonexistent")
    for url, name in SCHEMA_FILES.items():
        if (local / name).is_file():
            args += ["-s", f"{url},{local / name}"]
    run = subprocess.run(args, capture_output=True, text=True, timeout=300)
    out = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)
    offline = UNREACHABLE.search(out)
    if run.returncode != 0 and offline:
        pytest.skip(f"fiboa-cli could not load a schema (offline?): {offline.group(0)}")
    assert run.returncode == 0 and "INVALID" not in out, out
    return out
