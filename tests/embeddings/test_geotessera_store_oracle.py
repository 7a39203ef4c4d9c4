"""geotessera 0.11 and tilepipe agree on TESSERA Zarr stores, geotessera >= 0.8's format.

The oracle is geotessera 0.11.0 in its own Python >= 3.12 interpreter, ``.venv-geotessera-0.11``
(``make test`` builds it from ``tests/oracles/geotessera-0.11.0.txt`` when such an interpreter
is found). Two directions:

- geotessera's ``GeoTesseraZarr`` reads the store tilepipe's demo writes, to tilepipe's numbers;
- geotessera's ``GeoTessera("v1")`` fetches the demo's tile tree over loopback as it fetches
  from Source Cooperative (manifest, landmasks, MD5 ETags), to the numbers tilepipe reads there;
- geotessera's own store builder (``geotessera-registry zarr-init`` / ``zarr-fill``, from a cell
  laid out on the footprint geotessera gives it and a manifest its ``file-scan`` writes) makes a
  store that tilepipe reads to the numbers of the cell's ``.npy`` files.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from tilepipe.demo.campaign import demo_window
from tilepipe.demo.tessera import landmask_columns, write_landmask, write_registry
from tilepipe.embeddings.tessera import build_tile_embeddings, cell_files, snap
from tilepipe.embeddings.tessera_store import build_tile_embeddings_store

from ..conftest import REPO

YEAR, CELL, CENTRE = 2022, "grid_17.05_48.25", (17.05, 48.25)  # the demo's 33UXP cell
VENV = Path(os.environ.get("TILEPIPE_GEOTESSERA011_VENV") or REPO / ".venv-geotessera-0.11")
SCRIPT = Path(__file__).parents[1] / "oracles" / "geotessera_store.py"


@pytest.fixture(scope="module")
def oracle() -> Path:
    """The geotessera 0.11 venv, or a skip saying how to build it."""
    if not (VENV / "bin" / "python").is_file():
        pytest.skip(
            f"geotessera 0.11 oracle not installed at {VENV}: it needs Python >= 3.12; "
            "`make .venv-geotessera-0.11/.installed` builds it when one is found (`make test` "
            "does), or set TILEPIPE_GEOTESSERA011_VENV"
        )
    return VENV


def _run(oracle: Path, *args) -> str:
    """Run the oracle script (or a geotessera command) and return its stdout."""
    first, *rest = map(str, args)
    cmd = [oracle / "bin" / first, *rest] if first.startswith("geotessera") else None
    cmd = cmd or [oracle / "bin" / "python", SCRIPT, first, *rest]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        raise RuntimeError(f"{cmd}: {run.stdout[-2000:]}{run.stderr[-3000:]}")
    return run.stdout


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return np.moveaxis(src.read(), 0, -1)


def test_geotessera_reads_the_demo_store_to_tilepipe_s_numbers(oracle, demo, tmp_path):
    transform, width, height = demo_window("33UXP", demo["size"])
    left, top = transform.c - 50, transform.f + 50  # 5 px of nodata around the demo window
    right, bottom = left + 10 * (width + 10), top - 10 * (height + 10)
    out = tmp_path / "geotessera.npy"
    args = (demo["tessera_store"], 33, YEAR, left, bottom, right, top, out)
    georef = json.loads(_run(oracle, "read-region", *args).splitlines()[-1])
    theirs = np.load(out)
    grid = dict(crs=georef["crs"], transform=Affine(*georef["transform"]))
    build_tile_embeddings_store(
        demo["tessera_store"], YEAR, tmp_path / "tilepipe.tif",
        width=theirs.shape[1], height=theirs.shape[0], **grid,
    )  # fmt: skip
    ours = _read(tmp_path / "tilepipe.tif")
    assert np.isfinite(theirs).any() and np.isnan(theirs).any()
    assert np.array_equal(ours, theirs, equal_nan=True)


def test_geotessera_fetches_the_demo_tile_tree_to_tilepipe_s_numbers(oracle, server, tmp_path):
    root = server.mirror_url("tessera-sc")
    out = tmp_path / "geotessera.npy"
    args = (root, tmp_path / "gt-cache", tmp_path / "gt-tiles", YEAR, *CENTRE, out)
    georef = json.loads(_run(oracle, "fetch", *args).splitlines()[-1])
    theirs = np.load(out)
    fetched = {r[1].split("/tessera-sc/", 1)[-1] for r in server.stats()["requests"]}
    assert {"npy/v1/manifest.parquet", "landmasks/v1/landmasks.parquet"} <= fetched
    grid = dict(crs=georef["crs"], transform=Affine(*georef["transform"]))
    build_tile_embeddings(
        f"{root}/npy/v1", YEAR, tmp_path / "tilepipe.tif", cache=tmp_path / "tp-cache",
        width=theirs.shape[1], height=theirs.shape[0], **grid,
    )  # fmt: skip
    assert np.array_equal(_read(tmp_path / "tilepipe.tif"), theirs, equal_nan=True)


@pytest.fixture(scope="module")
def whole_cell(oracle, tmp_path_factory) -> dict:
    """One whole 0.1° cell on geotessera's footprint, its manifest from geotessera's scan."""
    root = tmp_path_factory.mktemp("cell")
    foot = json.loads(_run(oracle, "footprint", *CENTRE).splitlines()[-1])
    height, width = foot["height"], foot["width"]
    rng = np.random.default_rng(7)
    files = cell_files(CELL, YEAR)
    for rel in files.values():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    np.save(root / files["embeddings"], rng.integers(-127, 128, (height, width, 128), np.int8))
    scales = rng.uniform(0.01, 0.2, (height, width)).astype(np.float32)
    scales[:40, :40] = np.nan  # a corner without data
    np.save(root / files["scales"], scales)
    write_landmask(root / files["landmask"], foot["crs"], Affine(*foot["transform"]), height, width)
    write_registry(root, [(YEAR, CELL)])  # geotessera 0.7's registries (tilepipe's cell reader)
    assert landmask_columns(root, [CELL])["file_size"][0] > 0
    _run(oracle, "geotessera-registry", "file-scan", root / "global_0.1_degree_representation",
         "--output", root / "manifest.parquet")  # fmt: skip
    return {"root": root, **foot}


def test_tilepipe_reads_a_store_geotessera_built_to_the_cell_s_numbers(
    oracle, whole_cell, tmp_path
):
    root, store = whole_cell["root"], tmp_path / "built.zarr"
    sources = [
        "--registry-dir", root,
        "--source-npy-root", root / "global_0.1_degree_representation",
        "--source-landmask-root", root / "global_0.1_degree_tiff_all",
    ]  # fmt: skip
    _run(oracle, "geotessera-registry", "zarr-init", root, "--years", YEAR, "--output", store,
         *sources)  # fmt: skip
    fill = ("zarr-fill", root, store, "--year", YEAR, "--workers", 1)  # a 2 GB buffer a worker
    _run(oracle, "geotessera-registry", *fill, *sources)
    cell = snap(Affine(*whole_cell["transform"]))  # where the pixels lie
    for c0, r0 in ((400, 300), (-60, -60), (whole_cell["width"] - 100, 500)):
        where = dict(crs=whole_cell["crs"], transform=cell * Affine.translation(c0, r0))
        where.update(width=160, height=160)
        build_tile_embeddings(root, YEAR, tmp_path / "cells.tif", **where)
        build_tile_embeddings_store(store, YEAR, tmp_path / "store.tif", **where)
        assert np.array_equal(_read(tmp_path / "cells.tif"), _read(tmp_path / "store.tif"), True)
