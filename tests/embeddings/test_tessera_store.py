"""TESSERA from a Zarr store (geotessera >= 0.8's format): the same numbers as the 0.1° cells,
invalid scales as nodata, and named errors for what a store can get wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr
from affine import Affine

from tilepipe.core.errors import InputError
from tilepipe.core.grid import tile_grid
from tilepipe.demo.campaign import demo_window
from tilepipe.embeddings.tessera import build_tile_embeddings, is_store
from tilepipe.embeddings.tessera_store import build_tile_embeddings_store

YEAR = 2022


def _grid(tile: str, size: int, pad: int = 8) -> dict:
    """The demo window of ``tile`` grown by ``pad`` px: embeddings inside, nodata around."""
    transform, _, _ = demo_window(tile, size)
    shifted = transform * Affine.translation(-pad, -pad)
    side = size + 2 * pad
    return dict(crs=tile_grid(tile).crs, transform=shifted, width=side, height=side, tile=tile)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


@pytest.fixture
def store_copy(demo, tmp_path) -> Path:
    """A writable copy of the demo's store."""
    return Path(shutil.copytree(demo["tessera_store"], tmp_path / "zarr" / "v1"))


def _pixel(store: Path, tile: str, row: int, col: int) -> tuple[str, int, int]:
    """(zone group, row, col) in the store of a pixel of the tile's demo window."""
    group = zarr.open_group(store, mode="r")["utm" + tile[:2]]
    c, f = (group.attrs["spatial:transform"][i] for i in (2, 5))
    transform, _, _ = demo_window(tile, 1)
    r0 = round((f - transform.f) / 10) + row
    c0 = round((transform.c - c) / 10) + col
    return "utm" + tile[:2], r0, c0


@pytest.mark.parametrize("tile", ["33UXP", "31UFS"])
def test_the_store_gives_the_cells_numbers(demo, tmp_path, tile):
    where = _grid(tile, demo["size"])
    build_tile_embeddings(demo["tessera"], YEAR, tmp_path / "cells.tif", **where)
    stats = build_tile_embeddings(demo["tessera_store"], YEAR, tmp_path / "store.tif", **where)
    assert stats["zones"] == [f"utm{tile[:2]}"]
    assert np.array_equal(_read(tmp_path / "cells.tif"), _read(tmp_path / "store.tif"), True)


def test_pixels_outside_the_written_area_are_nodata(demo, tmp_path):
    where = _grid("33UXP", demo["size"], pad=8)
    build_tile_embeddings_store(demo["tessera_store"], YEAR, tmp_path / "e.tif", **where)
    data = _read(tmp_path / "e.tif")
    assert np.isnan(data[:, :8]).all() and np.isfinite(data[:, 8:-8, 8:-8]).all()


def test_the_store_over_http_gives_the_local_numbers(demo, server, tmp_path):
    where = _grid("33UXP", demo["size"])
    url = server.mirror_url("tessera-sc") + "/zarr/v1"
    assert is_store(url)
    build_tile_embeddings(url, YEAR, tmp_path / "http.tif", **where)
    build_tile_embeddings(demo["tessera_store"], YEAR, tmp_path / "local.tif", **where)
    assert np.array_equal(_read(tmp_path / "http.tif"), _read(tmp_path / "local.tif"), True)
    ranged = [r for r in server.stats()["requests"] if r[2] in (200, 206)]
    assert any("/embeddings/c/" in r[1] for r in ranged)


@pytest.mark.parametrize("value", [np.nan, np.inf, 0.0, -0.1, 1.5])
def test_an_unusable_scale_is_a_nodata_pixel(demo, store_copy, tmp_path, value):
    name, row, col = _pixel(store_copy, "33UXP", 5, 7)
    zarr.open_group(store_copy, mode="r+")[name]["scales"][0, row, col] = value
    where = _grid("33UXP", demo["size"], pad=0)
    build_tile_embeddings_store(store_copy, YEAR, tmp_path / "e.tif", **where)
    data = _read(tmp_path / "e.tif")
    assert np.isnan(data[:, 5, 7]).all()
    assert np.isfinite(data[:, 5, 8]).all() and np.isfinite(data[:, 6, 7]).all()


def test_a_year_the_store_lacks_is_named(demo, tmp_path):
    with pytest.raises(InputError, match=r"33UXP.*year 2019 is not in utm33 \(years: \[2022\]\)"):
        build_tile_embeddings_store(
            demo["tessera_store"], 2019, tmp_path / "e.tif", **_grid("33UXP", demo["size"])
        )
    assert not (tmp_path / "e.tif").exists()


def test_a_zone_the_store_lacks_is_named(demo, tmp_path):
    crs, transform = "EPSG:32632", Affine(10, 0, 500000, 0, -10, 5300000)
    where = dict(crs=crs, transform=transform, width=16, height=16, tile="32UPU")
    with pytest.raises(InputError, match=r"32UPU.*no group utm32 \(zones: \['utm31', 'utm33'\]\)"):
        build_tile_embeddings_store(demo["tessera_store"], YEAR, tmp_path / "e.tif", **where)


def test_a_damaged_shard_is_named_and_nothing_is_written(demo, store_copy, tmp_path):
    shards = [p for p in (store_copy / "utm33" / "embeddings").rglob("*") if p.is_file()]
    shard = next(p for p in shards if p.name != "zarr.json")
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(InputError, match=r"33UXP.*zarr/v1.*year 2022: reading the store"):
        build_tile_embeddings_store(
            store_copy, YEAR, tmp_path / "e.tif", **_grid("33UXP", demo["size"])
        )
    assert not (tmp_path / "e.tif").exists()


def test_a_zarr_store_without_geoemb_attributes_is_refused(tmp_path):
    zarr.open_group(tmp_path / "other.zarr", mode="w", zarr_format=3).create_group("utm33")
    where = dict(crs="EPSG:32633", transform=Affine(10, 0, 6e5, 0, -10, 5.4e6), width=4, height=4)
    with pytest.raises(InputError, match="not a TESSERA store"):
        build_tile_embeddings(tmp_path / "other.zarr", YEAR, tmp_path / "e.tif", **where)


def test_a_store_is_recognised_without_a_request():
    assert is_store("https://data.source.coop/tessera/tessera/zarr/v1.1-dclimate")
    assert is_store("https://example.org/tessera.zarr/")
    assert not is_store("https://dl2.geotessera.org/v1")
