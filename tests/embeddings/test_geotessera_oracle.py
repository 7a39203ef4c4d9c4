"""geotessera itself reads the demo's TESSERA mirror, and tilepipe reads it to the same numbers.

The oracle is geotessera 0.7.5 (the newest for Python 3.11) in its own interpreter,
``.venv-geotessera`` (``make test`` builds it from ``tests/oracles/geotessera-0.7.5.txt``), so
its 80-odd dependencies never enter tilepipe's environment. It fetches over the loopback server
exactly as it fetches from ``dl2.geotessera.org``: both registries, then a cell's files, each
verified against the registry's SHA-256; tilepipe's mosaic of the same mirror onto the cell's
own grid must equal geotessera's dequantised cell.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from tilepipe.core.errors import InputError
from tilepipe.embeddings.tessera import build_tile_embeddings, cell_files

from ..conftest import REPO
from ..loopback import Loopback

YEAR, CELL, CENTRE = 2022, "grid_17.05_48.25", (17.05, 48.25)  # the demo's 33UXP cell
ORACLE = Path(os.environ.get("TILEPIPE_GEOTESSERA_PYTHON") or REPO / ".venv-geotessera/bin/python")
SCRIPT = Path(__file__).parents[1] / "oracles" / "geotessera_fetch.py"


@pytest.fixture(scope="module")
def oracle() -> Path:
    """The geotessera interpreter, or a skip saying how to build it."""
    if not ORACLE.is_file():
        pytest.skip(
            f"geotessera oracle not installed at {ORACLE}: `make .venv-geotessera/.installed` "
            "(or TILEPIPE_GEOTESSERA_PYTHON) builds it; `make test` does"
        )
    return ORACLE


def _geotessera(oracle: Path, base: str, version: str, work: Path) -> tuple[np.ndarray, dict]:
    """Run geotessera's ``fetch_embedding`` for the demo cell; its array and georeference."""
    out = work / "geotessera.npy"
    args = [base, version, work / "embeddings", work / "cache", YEAR, *CENTRE, out]
    run = subprocess.run(
        [oracle, SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=300
    )
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-3000:])
    return np.load(out), json.loads(run.stdout.splitlines()[-1])


def _tilepipe(source: str, georef: dict, shape: tuple[int, int], dst: Path) -> np.ndarray:
    """tilepipe's mosaic of ``source`` onto the cell's own grid, as (H, W, C)."""
    transform = Affine(*georef["transform"])
    height, width = shape
    build_tile_embeddings(
        source, YEAR, dst, crs=georef["crs"], transform=transform, width=width, height=height,
        cache=dst.parent / "tilepipe-cache",
    )  # fmt: skip
    with rasterio.open(dst) as src:
        return np.moveaxis(src.read(), 0, -1)


def test_geotessera_fetches_and_verifies_the_demo_mirror_over_http(oracle, server, tmp_path):
    url = server.mirror_url("tessera")
    base, version = url.rsplit("/", 1)  # geotessera fetches {base}/{version}/…
    cell, georef = _geotessera(oracle, base, version, tmp_path)
    fetched = {r[1].rsplit("/", 1)[-1] for r in server.stats()["requests"] if r[2] == 200}
    assert {"registry.parquet", "landmasks.parquet", f"{CELL}.npy", f"{CELL}_scales.npy"} <= fetched
    assert cell.shape[2] == 128 and georef["crs"] == "EPSG:32633"


def test_tilepipe_reads_the_mirror_to_geotessera_s_numbers(oracle, server, tmp_path):
    base, version = server.mirror_url("tessera").rsplit("/", 1)
    cell, georef = _geotessera(oracle, base, version, tmp_path)
    ours = _tilepipe(server.mirror_url("tessera"), georef, cell.shape[:2], tmp_path / "e.tif")
    np.testing.assert_array_equal(ours, cell.astype(np.float32))


def test_tilepipe_reads_what_geotessera_downloaded_once_its_registries_lie_beside(
    oracle, server, tmp_path
):
    base, version = server.mirror_url("tessera").rsplit("/", 1)
    cell, georef = _geotessera(oracle, base, version, tmp_path)
    filled = tmp_path / "embeddings"  # what geotessera wrote: the cell's files, no registries
    for registry in ("registry.parquet", "landmasks.parquet"):
        shutil.copy(tmp_path / "cache" / registry, filled / registry)
    ours = _tilepipe(str(filled), georef, cell.shape[:2], tmp_path / "e.tif")
    np.testing.assert_array_equal(ours, cell.astype(np.float32))


def test_geotessera_reads_the_mirror_as_a_local_directory(oracle, demo, tmp_path):
    shutil.copytree(demo["tessera"], tmp_path / "embeddings")
    cell, georef = _geotessera(oracle, "local", "v1", tmp_path)
    ours = _tilepipe(str(tmp_path / "embeddings"), georef, cell.shape[:2], tmp_path / "e.tif")
    np.testing.assert_array_equal(ours, cell.astype(np.float32))


def test_a_cell_unlike_its_registry_hash_is_refused_by_geotessera_and_by_tilepipe(
    oracle, demo, tmp_path
):
    mirror = tmp_path / "mirror"
    shutil.copytree(demo["tessera"], mirror)
    npy = mirror / cell_files(CELL, YEAR)["embeddings"]
    data = bytearray(npy.read_bytes())
    data[-1] ^= 0x01  # one code changed, size kept: only the hash can tell
    npy.write_bytes(bytes(data))
    server = Loopback(tmp_path, mounts={"tessera": mirror})
    try:
        base, version = server.mirror_url("tessera").rsplit("/", 1)
        with pytest.raises(RuntimeError, match=r"(?i)hash"):
            _geotessera(oracle, base, version, tmp_path)
        georef = {"crs": "EPSG:32633", "transform": [10.0, 0.0, 650000.0, 0.0, -10.0, 5350000.0]}
        with pytest.raises(InputError, match=CELL):
            _tilepipe(server.mirror_url("tessera"), georef, (64, 64), tmp_path / "e.tif")
    finally:
        server.close()
