"""TESSERA cells: dequantisation, registry verification and reprojection onto a tile grid.

Fixtures follow geotessera 0.7.5's published layout (``geotessera/registry.py``:
``tile_to_embedding_paths``, ``tile_to_landmask_filename``, ``coord_to_grid_int``) and its
registries' columns (``geotessera/registry_cli.py``: ``registry.parquet`` with lat, lon, year,
hash = SHA-256 of the ``.npy``, file_size, scales_hash, scales_size; ``landmasks.parquet`` with
lat, lon, hash, file_size), written here by the demo's registry writer.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.warp import transform_bounds

from tilepipe.core.errors import InputError
from tilepipe.demo.tessera import write_landmask
from tilepipe.demo.tessera import write_registry as write_parquet_registry
from tilepipe.embeddings.tessera import (
    build_tile_embeddings,
    cell_files,
    cells_for_bounds,
    dequantise,
    read_registry,
)

YEAR, DIM, RES = 2022, 8, 20.0


def write_cell(root, name, crs, *, seed=0, dim=DIM, scales=None):
    """Write one cell (int8 embeddings, scales, landmask) georeferenced in ``crs``."""
    lon, lat = (float(v) for v in name.removeprefix("grid_").split("_"))
    left, bottom, right, top = transform_bounds(
        "EPSG:4326", crs, lon - 0.05, lat - 0.05, lon + 0.05, lat + 0.05
    )
    left, top = np.floor(left / RES) * RES, np.ceil(top / RES) * RES
    width, height = int(np.ceil((right - left) / RES)), int(np.ceil((top - bottom) / RES))
    transform = Affine(RES, 0, left, 0, -RES, top)
    rng = np.random.default_rng(seed)
    raw = rng.integers(-127, 128, size=(height, width, dim)).astype(np.int8)
    if scales is None:
        scales = rng.uniform(0.01, 0.05, size=(height, width)).astype(np.float32)
    files = cell_files(name, YEAR)
    for role in ("embeddings", "landmask"):
        (root / files[role]).parent.mkdir(parents=True, exist_ok=True)
    np.save(root / files["embeddings"], raw)
    np.save(root / files["scales"], scales)
    write_landmask(root / files["landmask"], crs, transform, height, width)
    return raw, scales, transform


def write_registry(root, names):
    """``registry.parquet`` and ``landmasks.parquet`` listing ``names`` for YEAR, as published."""
    write_parquet_registry(root, [(YEAR, name) for name in names])


SMALL = (16.32, 48.12, 16.38, 48.18)  # inside cell grid_16.35_48.15


def target_grid(lon0, lat0, lon1, lat1, crs="EPSG:32633", res=RES):
    """A north-up grid in ``crs`` covering the lon/lat box."""
    left, bottom, right, top = transform_bounds("EPSG:4326", crs, lon0, lat0, lon1, lat1)
    width, height = int((right - left) // res), int((top - bottom) // res)
    return {
        "crs": crs,
        "transform": Affine(res, 0, left, 0, -res, top),
        "width": width,
        "height": height,
    }


def test_dequantise_with_per_pixel_scales():
    raw = np.array([[[1, -2], [3, 4]]], dtype=np.int8)  # (1, 2, 2)
    scales = np.array([[0.5, 0.25]], dtype=np.float32)
    out = dequantise(raw, scales)
    assert out.dtype == np.float32 and out.shape == (1, 2, 2)
    np.testing.assert_allclose(out, [[[0.5, -1.0], [0.75, 1.0]]])


def test_dequantise_with_per_channel_scales():
    raw = np.array([[[1, -2], [3, 4]]], dtype=np.int8)
    scales = np.array([[[0.5, 0.75], [0.125, 0.25]]], dtype=np.float32)
    np.testing.assert_allclose(dequantise(raw, scales), [[[0.5, -1.5], [0.375, 1.0]]])


def test_dequantise_marks_zero_scale_pixels_nodata():
    raw = np.ones((1, 2, 3), dtype=np.int8)
    out = dequantise(raw, np.array([[0.0, 0.5]], dtype=np.float32))
    assert np.isnan(out[0, 0]).all() and (out[0, 1] == 0.5).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 0.0, -0.5, 1.0, 1e6])
def test_dequantise_marks_non_finite_non_positive_and_huge_scales_nodata(bad):
    # NaN = water, +inf = no data (geotessera/zarr.py "Scale sentinels"); <= 0 or >= 1 invalid
    scales = np.array([[0.1, bad]], dtype=np.float32)
    out = dequantise(np.ones((1, 2, 4), dtype=np.int8), scales, path="x_scales.npy")
    assert np.isnan(out[0, 1]).all()
    np.testing.assert_allclose(out[0, 0], 0.1)


def test_dequantise_marks_a_pixel_nodata_when_any_of_its_channel_scales_is_invalid():
    scales = np.full((1, 2, 3), 0.1, dtype=np.float32)
    scales[0, 1, 2] = np.nan
    out = dequantise(np.ones((1, 2, 3), dtype=np.int8), scales)
    assert np.isnan(out[0, 1]).all() and np.isfinite(out[0, 0]).all()


def test_dequantise_rejects_mismatched_shapes():
    with pytest.raises(InputError, match="scales shape"):
        dequantise(np.ones((2, 2, 4), dtype=np.int8), np.ones((2, 3), dtype=np.float32))


def test_cells_for_bounds_names_cells_by_centre_north_to_south():
    assert cells_for_bounds(16.31, 48.12, 16.38, 48.19) == ["grid_16.35_48.15"]
    assert cells_for_bounds(16.35, 48.15, 16.45, 48.25) == [
        "grid_16.35_48.25",
        "grid_16.45_48.25",
        "grid_16.35_48.15",
        "grid_16.45_48.15",
    ]
    assert cells_for_bounds(-0.08, -0.02, -0.01, -0.01) == ["grid_-0.05_-0.05"]


def test_build_reprojects_a_cell_from_another_utm_zone(tmp_path):
    # lon 12.0-12.1 lies in zone 33 but the cell is stored in zone 32 (as TESSERA may do)
    name = "grid_12.05_48.05"
    raw, scales, cell_transform = write_cell(tmp_path, name, "EPSG:32632")
    write_registry(tmp_path, [name])
    grid = target_grid(12.02, 48.02, 12.08, 48.08)
    dst = tmp_path / "out" / "embeddings.tif"
    info = build_tile_embeddings(tmp_path, YEAR, dst, tile="33UUP", **grid)
    assert info["cells"] == [name]
    with rasterio.open(dst) as src:
        assert src.crs.to_epsg() == 32633 and src.count == DIM and src.dtypes[0] == "float32"
        assert np.isnan(src.nodata)
        assert src.tags()["EMBEDDINGS_SOURCE"] == "tessera" and src.tags()["YEAR"] == str(YEAR)
        out = src.read()
    # each target pixel centre holds the cell pixel its centre falls in
    rows, cols = np.mgrid[5 : grid["height"] - 5 : 7, 5 : grid["width"] - 5 : 7]
    xs, ys = grid["transform"] @ (cols + 0.5, rows + 0.5)
    cx, cy = Transformer.from_crs("EPSG:32633", "EPSG:32632", always_xy=True).transform(xs, ys)
    ccol, crow = ~cell_transform @ (cx, cy)
    crow, ccol = np.floor(crow).astype(int), np.floor(ccol).astype(int)
    expected = raw[crow, ccol].astype(np.float32) * scales[crow, ccol][..., None]
    got = np.moveaxis(out[:, rows, cols], 0, -1)
    match = np.all(np.isclose(got, expected), axis=-1)
    assert match.mean() > 0.98


def test_build_mosaics_neighbouring_cells_without_gaps(tmp_path):
    west, east = "grid_12.05_48.05", "grid_12.15_48.05"
    write_cell(tmp_path, west, "EPSG:32632", seed=1)
    write_cell(tmp_path, east, "EPSG:32633", seed=2)
    write_registry(tmp_path, [west, east])
    grid = target_grid(12.06, 48.02, 12.14, 48.08)
    info = build_tile_embeddings(tmp_path, YEAR, tmp_path / "e.tif", **grid)
    assert sorted(info["cells"]) == [west, east]
    with rasterio.open(tmp_path / "e.tif") as src:
        assert np.isfinite(src.read(1)).all()


def test_the_registry_has_geotesseras_columns_and_keys_cells_by_centre(tmp_path):
    name = "grid_16.35_48.15"
    write_cell(tmp_path, name, "EPSG:32633")
    write_registry(tmp_path, [name])
    names = pq.read_schema(tmp_path / "registry.parquet").names
    assert {"lat", "lon", "year", "hash", "file_size", "scales_hash", "scales_size"} <= set(names)
    assert {"lat", "lon", "hash", "file_size"} <= set(
        pq.read_schema(tmp_path / "landmasks.parquet").names
    )
    listing = read_registry(tmp_path / "registry.parquet")[(YEAR, 1635, 4815)]
    assert (
        listing["embeddings"].size
        == (tmp_path / cell_files(name, YEAR)["embeddings"]).stat().st_size
    )


def test_sha256_mismatch_raises_naming_tile_year_and_file(tmp_path):
    name = "grid_16.35_48.15"
    write_cell(tmp_path, name, "EPSG:32633")
    write_registry(tmp_path, [name])
    path = tmp_path / cell_files(name, YEAR)["embeddings"]
    raw = np.load(path)
    raw[0, 0, 0] ^= 1
    np.save(path, raw)
    with pytest.raises(InputError, match=rf"tile 33UXP.*{name}\.npy.*year {YEAR}.*sha256 mismatch"):
        build_tile_embeddings(
            tmp_path, YEAR, tmp_path / "e.tif", tile="33UXP", **target_grid(*SMALL)
        )
    assert not (tmp_path / "e.tif").exists()


def test_a_file_shorter_than_listed_raises_a_size_mismatch(tmp_path):
    name = "grid_16.35_48.15"
    write_cell(tmp_path, name, "EPSG:32633")
    write_registry(tmp_path, [name])
    path = tmp_path / cell_files(name, YEAR)["scales"]
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputError, match=r"_scales\.npy.*size mismatch"):
        build_tile_embeddings(tmp_path, YEAR, tmp_path / "e.tif", **target_grid(*SMALL))


def test_truncated_npy_raises_input_error(tmp_path):
    name = "grid_16.35_48.15"
    write_cell(tmp_path, name, "EPSG:32633")
    path = tmp_path / cell_files(name, YEAR)["embeddings"]
    path.write_bytes(path.read_bytes()[:1000])
    write_registry(tmp_path, [name])  # the registry agrees with the damaged file
    with pytest.raises(InputError, match="truncated or corrupt"):
        build_tile_embeddings(tmp_path, YEAR, tmp_path / "e.tif", **target_grid(*SMALL))


def test_invalid_scales_in_a_cell_become_nodata_pixels_not_a_failed_build(tmp_path):
    name = "grid_16.35_48.15"
    _, scales, _ = write_cell(tmp_path, name, "EPSG:32633")
    scales[: scales.shape[0] // 2] = np.nan  # northern half water, as geotessera marks it
    scales[-3:] = np.inf  # a few rows of land without data
    np.save(tmp_path / cell_files(name, YEAR)["scales"], scales)
    write_registry(tmp_path, [name])
    grid = target_grid(16.31, 48.11, 16.39, 48.19)
    info = build_tile_embeddings(tmp_path, YEAR, tmp_path / "e.tif", **grid)
    assert 0.2 < info["valid_fraction"] < 0.6
    with rasterio.open(tmp_path / "e.tif") as src:
        band = src.read(1)
    assert np.isnan(band[:5]).all() and np.isfinite(band[-grid["height"] // 3]).any()


def test_a_cell_whose_scales_are_all_invalid_leaves_an_all_nodata_error(tmp_path):
    name = "grid_16.35_48.15"
    _, scales, _ = write_cell(tmp_path, name, "EPSG:32633")
    np.save(tmp_path / cell_files(name, YEAR)["scales"], np.full_like(scales, 1e9))
    write_registry(tmp_path, [name])
    with pytest.raises(InputError, match=rf"year {YEAR}: the embeddings are all NaN"):
        build_tile_embeddings(tmp_path, YEAR, tmp_path / "e.tif", **target_grid(*SMALL))
    assert not (tmp_path / "e.tif").exists()


def test_no_listed_cell_raises_naming_tile_year_and_cells(tmp_path):
    write_registry(tmp_path, [])
    with pytest.raises(InputError, match=rf"tile 33UXP: year {YEAR}: .*grid_16.35_48.15"):
        build_tile_embeddings(
            tmp_path, YEAR, tmp_path / "e.tif", tile="33UXP", **target_grid(*SMALL)
        )


def test_a_source_without_registry_parquet_raises_naming_it(tmp_path):
    with pytest.raises(InputError, match=r"registry\.parquet is missing"):
        build_tile_embeddings(tmp_path, YEAR, tmp_path / "e.tif", **target_grid(*SMALL))


@pytest.mark.parametrize("role", ["embeddings", "scales", "landmask"])
def test_missing_file_of_a_listed_cell_raises_naming_it(tmp_path, role):
    name = "grid_16.35_48.15"
    write_cell(tmp_path, name, "EPSG:32633")
    write_registry(tmp_path, [name])
    (tmp_path / cell_files(name, YEAR)[role]).unlink()
    with pytest.raises(
        InputError, match=rf"year {YEAR}: {role} file of listed cell {name} is missing"
    ):
        build_tile_embeddings(tmp_path, YEAR, tmp_path / "e.tif", **target_grid(*SMALL))
    assert not (tmp_path / "e.tif").exists()
