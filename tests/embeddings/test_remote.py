"""Embeddings from HTTP mirrors: a TESSERA mirror in geotessera's layout and AEF COGs with their
index, served by the loopback server (``/mirror/tessera/``, ``/mirror/aef/``) from the demo."""

from __future__ import annotations

import numpy as np
import rasterio

from tilepipe.core.grid import tile_grid
from tilepipe.embeddings.aef import build_tile_embeddings_aef
from tilepipe.embeddings.tessera import build_tile_embeddings

from ..loopback import Fault

TILE, YEAR = "33UXP", 2022


def _grid(demo) -> dict:
    grid = tile_grid(TILE)
    transform, width, height = grid.window(*demo["window"])
    return {"crs": grid.crs, "transform": transform, "width": width, "height": height}


def _mirror_requests(server, name: str) -> list[str]:
    return [r[1] for r in server.stats()["requests"] if r[1].startswith(f"/mirror/{name}/")]


def test_tessera_from_a_mirror_url_equals_the_local_build(server, demo, tmp_path):
    url, grid = server.mirror_url("tessera"), _grid(demo)
    build_tile_embeddings(demo["tessera"], YEAR, tmp_path / "local.tif", tile=TILE, **grid)
    info = build_tile_embeddings(
        url, YEAR, tmp_path / "remote.tif", tile=TILE, cache=tmp_path / "cache", **grid
    )
    with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(tmp_path / "remote.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    fetched = _mirror_requests(server, "tessera")
    assert "/mirror/tessera/registry.parquet" in fetched and info["cells"]
    assert any(p.endswith("_scales.npy") for p in fetched)


def test_a_second_build_from_a_mirror_reads_only_the_verified_cache(server, demo, tmp_path):
    url, grid, cache = server.mirror_url("tessera"), _grid(demo), tmp_path / "cache"
    build_tile_embeddings(url, YEAR, tmp_path / "a.tif", tile=TILE, cache=cache, **grid)
    server.reset()
    build_tile_embeddings(url, YEAR, tmp_path / "b.tif", tile=TILE, cache=cache, **grid)
    assert _mirror_requests(server, "tessera") == []


def test_a_truncated_download_is_retried_and_verified(server, demo, tmp_path):
    server.inject(Fault("truncate", 1, match=".npy"))
    info = build_tile_embeddings(
        server.mirror_url("tessera"), YEAR, tmp_path / "e.tif", tile=TILE,
        cache=tmp_path / "cache", **_grid(demo),
    )  # fmt: skip
    assert info["valid_fraction"] > 0.9
    assert any(r[2] == 599 for r in server.stats()["requests"])  # the cut response happened


def test_aef_from_a_mirror_url_reads_the_index_and_cogs_over_http(server, demo, tmp_path):
    grid = _grid(demo)
    build_tile_embeddings_aef(demo["aef"], YEAR, tmp_path / "local.tif", tile=TILE, **grid)
    build_tile_embeddings_aef(
        server.mirror_url("aef"), YEAR, tmp_path / "remote.tif", tile=TILE,
        cache=tmp_path / "cache", **grid,
    )  # fmt: skip
    with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(tmp_path / "remote.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    fetched = _mirror_requests(server, "aef")
    assert "/mirror/aef/aef_index.parquet" in fetched
    assert any(p.endswith(f"aef_{TILE}.tiff") for p in fetched)
