"""AEF COGs (bottom-up, int8, nodata −128) onto a tile grid, found through ``aef_index.parquet``.

Fixtures come from the demo's AEF writer, whose index has the columns the official README lists
(https://developers.google.com/earth-engine/guides/aef_on_gcs_readme, "Manifest and index") plus
``path`` (as aef-loader and rasteret read the published index).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from affine import Affine

from tilepipe.cli import main
from tilepipe.core.errors import InputError
from tilepipe.core.grid import tile_grid
from tilepipe.demo.aef import aef_quantise, write_aef_demo, write_aef_index
from tilepipe.embeddings.aef import (
    build_tile_embeddings_aef,
    dequantise_aef,
    pixel_window,
    read_north_up,
)

TILE, YEAR, SIZE = "33UXP", 2022, 32


@pytest.fixture(scope="module")
def aef(tmp_path_factory):
    root = tmp_path_factory.mktemp("aef")
    written = write_aef_demo(root, TILE, YEAR, size=SIZE)
    write_aef_index(root)
    return {"root": root, **written}


def build(aef, dst, *, transform=None, width=SIZE, height=SIZE, **kwargs):
    return build_tile_embeddings_aef(
        aef["root"],
        YEAR,
        dst,
        crs=tile_grid(TILE).crs,
        transform=transform or aef["transform"],
        width=width,
        height=height,
        tile=TILE,
        **kwargs,
    )


def test_demo_aef_file_is_bottom_up_int8_with_nodata_minus_128(aef):
    with rasterio.open(aef["path"]) as src:
        assert src.transform.e > 0 and src.dtypes[0] == "int8" and src.nodata == -128
        assert src.count == 64


def test_bottom_up_cog_lands_north_up_on_the_tile_grid(aef, tmp_path):
    stats = build(aef, tmp_path / "e.tif")
    with rasterio.open(tmp_path / "e.tif") as src:
        values = src.read()
        assert src.transform == aef["transform"] and src.tags()["AEF_DEQUANTISE"] == "signed_square"
    np.testing.assert_allclose(values, aef["vectors"], atol=0.01)  # quantisation error only
    assert stats["valid_fraction"] == 1.0 and stats["unit_fraction"] == 1.0


def test_a_sub_window_is_read_by_pixel_index_with_the_right_rows(aef, tmp_path):
    sub = aef["transform"] * Affine.translation(5, 20)  # 20 rows down: south part of the window
    build(aef, tmp_path / "e.tif", transform=sub, width=8, height=6)
    with rasterio.open(tmp_path / "e.tif") as src:
        values = src.read()
    np.testing.assert_allclose(values, aef["vectors"][:, 20:26, 5:13], atol=0.01)


def test_pixel_window_of_bounds_on_a_bottom_up_transform_counts_rows_from_the_south():
    bottom_up = Affine(10, 0, 0, 0, 10, 0)  # row 0 spans y 0..10
    win = pixel_window((20, 30, 40, 50), bottom_up, 100, 100)
    assert (win.row_off, win.height) == (2, 4)  # rows 3, 4 (y 30..50) plus one each side
    assert (win.col_off, win.width) == (1, 4)


def test_read_north_up_flips_rows_and_transform(aef):
    with rasterio.open(aef["path"]) as src:
        data, transform = read_north_up(src, rasterio.windows.Window(0, 0, 10, 10))
        raw = src.read(1, window=rasterio.windows.Window(0, 0, 10, 10))
    assert transform.e < 0
    np.testing.assert_array_equal(data[0], raw[::-1])


def test_nodata_margin_becomes_nan(aef, tmp_path):
    outer = aef["transform"] * Affine.translation(-6, -6)  # 6 px beyond a 4 px nodata margin
    build(aef, tmp_path / "e.tif", transform=outer, width=SIZE + 12, height=SIZE + 12)
    with rasterio.open(tmp_path / "e.tif") as src:
        values = src.read()
    assert np.isnan(values[:, :6, :]).all() and np.isnan(values[:, :, :6]).all()
    assert np.isfinite(values[:, 6:-6, 6:-6]).all()


def test_dequantisation_formulas_on_known_codes():
    raw = np.array([[[127]], [[-64]], [[0]]], dtype=np.int8)
    np.testing.assert_allclose(
        dequantise_aef(raw, "signed_square")[:, 0, 0],
        [(127 / 127.5) ** 2, -((64 / 127.5) ** 2), 0.0],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        dequantise_aef(raw, "linear")[:, 0, 0], [127 / 127.5, -64 / 127.5, 0]
    )
    nodata = np.array([[[-128]], [[5]]], dtype=np.int8)
    assert np.isnan(dequantise_aef(nodata)).all()


def test_signed_square_quantisation_round_trips_unit_vectors():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(64, 5, 5))
    v /= np.linalg.norm(v, axis=0)
    back = dequantise_aef(aef_quantise(v))
    np.testing.assert_allclose(np.linalg.norm(back, axis=0), 1.0, atol=0.02)


def test_wrong_dequantisation_formula_is_rejected_and_leaves_no_output(aef, tmp_path):
    with pytest.raises(InputError, match=r"'linear' gives unit-length .* try 'signed_square'"):
        build(aef, tmp_path / "e.tif", formula="linear")
    assert not (tmp_path / "e.tif").exists()


def test_grid_outside_every_aef_file_raises_naming_tile_and_year(aef, tmp_path):
    far = aef["transform"] * Affine.translation(5000, 5000)
    with pytest.raises(InputError, match=rf"tile {TILE}: year {YEAR}: no AEF file"):
        build(aef, tmp_path / "e.tif", transform=far)


def test_non_int8_aef_file_is_rejected_naming_it(tmp_path):
    grid = tile_grid(TILE)
    path = tmp_path / str(YEAR) / "33N" / "bad.tif"
    path.parent.mkdir(parents=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=2,
        dtype="float32",
        crs=grid.crs,
        transform=grid.transform,
    ) as dst:
        dst.write(np.zeros((2, 4, 4), np.float32))
    write_aef_index(tmp_path)
    with pytest.raises(InputError, match=r"bad.tif: AEF files are int8"):
        build_tile_embeddings_aef(
            tmp_path,
            YEAR,
            tmp_path / "e.tif",
            crs=grid.crs,
            transform=grid.transform,
            width=4,
            height=4,
        )


def test_embeddings_cli_builds_aef_on_the_demo_window(aef, tmp_path):
    out = tmp_path / "emb.tif"
    grid = tile_grid(TILE)
    col = round((aef["transform"].c - grid.transform.c) / 10)
    row = round((grid.transform.f - aef["transform"].f) / 10)
    argv = ["embeddings", "--tile", TILE, "--year", str(YEAR), "--source", str(aef["root"])]
    argv += ["--kind", "aef", "--window", f"{col},{row},{SIZE},{SIZE}", "--out", str(out)]
    assert main(argv) == 0
    with rasterio.open(out) as src:
        assert src.count == 64 and src.tags()["EMBEDDINGS_SOURCE"] == "aef"


def test_the_index_has_the_official_columns_and_lists_each_cog_relative_to_itself(aef):
    table = pq.read_table(aef["root"] / "aef_index.parquet").to_pydict()
    official = {"crs", "year", "utm_zone", "utm_west", "utm_south", "utm_east", "utm_north"}
    official |= {"wgs84_west", "wgs84_south", "wgs84_east", "wgs84_north"}
    assert official | {"path"} <= set(table)
    assert table["path"] == [f"{YEAR}/33N/aef_{TILE}.tiff"] and table["utm_zone"] == ["33N"]
    assert table["crs"] == [f"EPSG:{tile_grid(TILE).epsg}"]


def test_a_cog_missing_from_the_index_is_not_read(aef, tmp_path):
    root = tmp_path / "aef"
    written = write_aef_demo(root, TILE, YEAR, size=SIZE)
    write_aef_index(root)
    Path(written["path"]).rename(Path(written["path"]).with_name("elsewhere.tiff"))
    with pytest.raises(InputError, match=r"aef_33UXP\.tiff: AEF file unreadable"):
        build({**aef, "root": root}, tmp_path / "e.tif")


def test_a_year_the_index_does_not_list_raises_naming_the_index(aef, tmp_path):
    with pytest.raises(InputError, match=rf"year {YEAR + 1}: no AEF file listed in .*aef_index"):
        build_tile_embeddings_aef(
            aef["root"], YEAR + 1, tmp_path / "e.tif", crs=tile_grid(TILE).crs,
            transform=aef["transform"], width=SIZE, height=SIZE, tile=TILE,
        )  # fmt: skip


def test_a_source_without_an_index_raises_naming_it(tmp_path):
    with pytest.raises(InputError, match=r"aef_index\.parquet is missing"):
        build_tile_embeddings_aef(
            tmp_path, YEAR, tmp_path / "e.tif", crs=tile_grid(TILE).crs,
            transform=tile_grid(TILE).transform, width=4, height=4,
        )  # fmt: skip
