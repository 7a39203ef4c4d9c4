"""Download lands every scene on the tile grid as harmonised reflectance, or fails cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling

from tilepipe.acquire.download import download_scene, harmonise, read_window
from tilepipe.acquire.stac import manifest_row, read_manifest
from tilepipe.core.errors import InputError
from tilepipe.core.grid import tile_grid

from ..cog import assert_valid_cog


def _row(demo, baseline_new: bool) -> dict:
    rows = read_manifest(demo["manifest"])
    return next(r for r in rows if (r["baseline"] >= "04.00") == baseline_new)


def _download(demo, row, tmp_path):
    s2, scl = tmp_path / "s2.tif", tmp_path / "scl.tif"
    download_scene(row, s2, scl, window=demo["window"])
    return s2, scl


def test_harmonise_subtracts_the_offset_and_keeps_nodata_and_valid_pixels_apart():
    dn = np.array([0, 500, 1000, 1001, 11000], dtype=np.uint16)
    assert harmonise(dn, 1000).tolist() == [0, 1, 1, 1, 10000]
    assert harmonise(dn, 0).tolist() == dn.tolist()


def test_s2_lands_on_the_tile_window_grid_as_tagged_uint16(demo, tmp_path):
    row = _row(demo, True)
    s2, scl = _download(demo, row, tmp_path)
    transform, width, height = tile_grid(row["tile"]).window(*demo["window"])
    with rasterio.open(s2) as src:
        assert src.crs.to_string() == tile_grid(row["tile"]).crs
        assert src.transform == transform and (src.width, src.height) == (width, height)
        assert src.count == 4 and src.dtypes[0] == "uint16" and src.nodata == 0
        assert src.descriptions == ("B02", "B03", "B04", "B08")
        assert src.profile["tiled"] and src.profile["compress"] == "deflate"
        tags = src.tags()
        assert tags["TILE"] == row["tile"] and tags["SOURCE_ITEM"] == row["item_id"]
        assert "1000" in tags["HARMONISATION"]
    with rasterio.open(scl) as src:
        assert src.transform == transform and src.dtypes[0] == "uint8"


def test_s2_and_scl_are_valid_cogs(demo, tmp_path):
    """issue 15: `rio cogeo validate` passes on both, without warnings."""
    s2, scl = _download(demo, _row(demo, True), tmp_path)
    assert_valid_cog(s2)
    assert_valid_cog(scl)


@pytest.mark.parametrize("baseline_new", [True, False])
def test_reflectance_is_harmonised_whatever_the_baseline(demo, tmp_path, baseline_new):
    row = _row(demo, baseline_new)
    s2, _ = _download(demo, row, tmp_path)
    with rasterio.open(json.loads(row["assets"])["B08"]) as asset:
        raw = asset.read(1).astype(int)
    with rasterio.open(s2) as src:
        out = src.read(4).astype(int)
    valid = raw > 0
    offset = 1000 if baseline_new else 0
    assert np.array_equal(out[valid], np.maximum(raw[valid] - offset, 1))
    # vegetation NIR sits near 0.2-0.5 reflectance after harmonisation, whatever the baseline
    assert 1500 < np.median(out[valid]) < 5500


def test_scl_is_resampled_from_20_m_to_the_10_m_grid(demo, tmp_path):
    row = _row(demo, True)
    _, scl = _download(demo, row, tmp_path)
    with rasterio.open(json.loads(row["assets"])["SCL"]) as asset:
        raw = asset.read(1)
    with rasterio.open(scl) as src:
        out = src.read(1)
    assert np.array_equal(out[::2, ::2], raw)


def test_an_asset_in_the_wrong_crs_fails_naming_tile_date_and_file(demo, tmp_path):
    row = dict(_row(demo, True))
    hrefs = json.loads(row["assets"])
    bad = tmp_path / "wrong_crs.tif"
    with rasterio.open(hrefs["B03"]) as src:
        profile = {**src.profile, "crs": "EPSG:32632", "driver": "GTiff"}
        data = src.read()
    with rasterio.open(bad, "w", **profile) as dst:
        dst.write(data)
    hrefs["B03"] = str(bad)
    row["assets"] = json.dumps(hrefs)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(
        InputError, match=rf"tile {row['tile']}, date {row['date']}, file .*wrong_crs"
    ):
        download_scene(row, out / "s2.tif", out / "scl.tif", window=demo["window"])
    assert list(out.iterdir()) == []


def test_a_truncated_asset_fails_and_leaves_no_output(demo, tmp_path):
    row = dict(_row(demo, True))
    hrefs = json.loads(row["assets"])
    cut = tmp_path / "truncated.tif"
    blob = Path(hrefs["B02"]).read_bytes()
    cut.write_bytes(blob[: len(blob) // 3])
    hrefs["B02"] = str(cut)
    row["assets"] = json.dumps(hrefs)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match="truncated"):
        download_scene(row, out / "s2.tif", out / "scl.tif", window=demo["window"])
    assert list(out.iterdir()) == []


def test_a_tile_date_missing_from_the_manifest_is_named(demo):
    with pytest.raises(InputError, match="tile 33UXP, date 2030-01-01"):
        manifest_row(demo["manifest"], "33UXP", "2030-01-01")


def test_a_window_reaching_past_the_asset_reads_its_part_and_zeros_outside(demo):
    row = _row(demo, True)
    hrefs = json.loads(row["assets"])
    grid = tile_grid(row["tile"])
    transform, width, height = grid.window(4990, 4990, 64, 64)  # 10 px above and left of it
    for band, step in (("B08", 1), ("SCL", 2)):
        out = read_window(hrefs[band], transform, width, height, grid.crs, where="")
        with rasterio.open(hrefs[band]) as src:
            raw = src.read(1)
        assert not out[:10].any() and not out[:, :10].any()
        inside = out[10:, 10:][::step, ::step]
        assert np.array_equal(inside, raw[: inside.shape[0], : inside.shape[1]])


# -- issue 18: float assets are refused; s2.tif and scl.tif appear together or not at all


def _row_with_asset(demo, tmp_path, band: str, change) -> dict:
    """The new-baseline row with ``band``'s asset replaced by ``change(data, profile)``."""
    row = dict(_row(demo, True))
    hrefs = json.loads(row["assets"])
    with rasterio.open(hrefs[band]) as src:
        profile, data = {**src.profile, "driver": "GTiff"}, src.read()
    data = change(data, profile)
    path = tmp_path / f"changed_{band}.tif"
    with rasterio.open(path, "w", **{**profile, "dtype": data.dtype}) as dst:
        dst.write(data)
    row["assets"] = json.dumps({**hrefs, band: str(path)})
    return row


def test_an_all_nodata_scl_leaves_neither_s2_nor_scl(demo, tmp_path):
    row = _row_with_asset(demo, tmp_path, "SCL", lambda d, p: np.zeros_like(d))
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"scl\.tif: written raster holds only nodata"):
        download_scene(row, out / "s2.tif", out / "scl.tif", window=demo["window"])
    assert list(out.iterdir()) == []


def test_scl_that_cannot_be_put_in_place_takes_s2_back_out(demo, tmp_path):
    out = tmp_path / "out"
    (out / "scl.tif").mkdir(parents=True)  # renaming onto a directory fails after s2.tif's
    with pytest.raises(OSError):
        download_scene(_row(demo, True), out / "s2.tif", out / "scl.tif", window=demo["window"])
    assert [p.name for p in out.iterdir()] == ["scl.tif"] and (out / "scl.tif").is_dir()


def test_a_float_reflectance_asset_is_refused_naming_its_dtype(demo, tmp_path):
    row = _row_with_asset(demo, tmp_path, "B04", lambda d, p: (d / 10000).astype(np.float32))
    out = tmp_path / "out"
    with pytest.raises(
        InputError,
        match=rf"tile {row['tile']}, date {row['date']}, file .*changed_B04.*found float32",
    ):
        download_scene(row, out / "s2.tif", out / "scl.tif", window=demo["window"])
    assert not out.exists() or list(out.iterdir()) == []


# -- issue 14: the further L2A bands a model takes, 20 m and 60 m ones on the 10 m grid


def test_further_bands_follow_the_core_four_in_l2a_order(demo, tmp_path):
    row = _row(demo, True)
    s2, scl = tmp_path / "s2.tif", tmp_path / "scl.tif"
    download_scene(row, s2, scl, window=demo["window"], bands=["B11", "B05", "B01"])
    with rasterio.open(s2) as src:
        assert src.descriptions == ("B02", "B03", "B04", "B08", "B01", "B05", "B11")
        assert src.count == 7 and (src.width, src.height) == demo["window"][2:]
    assert_valid_cog(s2)


@pytest.mark.parametrize(("band", "step"), [("B05", 2), ("B01", 6)])
def test_nearest_puts_each_coarse_pixel_on_its_10_m_pixels_harmonised(demo, tmp_path, band, step):
    row = _row(demo, True)
    s2, scl = tmp_path / "s2.tif", tmp_path / "scl.tif"
    download_scene(row, s2, scl, window=demo["window"], bands=[band], resampling="nearest")
    with rasterio.open(json.loads(row["assets"])[band]) as asset:
        raw = asset.read(1).astype(int)
    with rasterio.open(s2) as src:
        out = src.read(5).astype(int)
    coarse = out[::step, ::step]
    valid = (coarse > 0) & (raw[: coarse.shape[0], : coarse.shape[1]] > 0)
    assert valid.mean() > 0.5
    assert np.array_equal(coarse[valid], raw[: coarse.shape[0], : coarse.shape[1]][valid] - 1000)


def test_bilinear_leaves_nodata_out_of_the_interpolation(tmp_path):
    """A 20 m band of constant 3000 DN with a nodata half: no valid 10 m pixel is darker."""
    grid = tile_grid("33UXP")
    transform, _, _ = grid.window(5000, 5000, 64, 64)
    data = np.full((1, 32, 32), 3000, dtype=np.uint16)
    data[:, :, :16] = 0
    path = tmp_path / "b05.tif"
    profile = {"driver": "GTiff", "count": 1, "dtype": "uint16", "nodata": 0, "crs": grid.crs}
    t20 = transform * transform.scale(2)
    with rasterio.open(path, "w", width=32, height=32, transform=t20, **profile) as dst:
        dst.write(data)
    out = read_window(
        str(path), transform, 64, 64, grid.crs, where="", resampling=Resampling.bilinear
    )
    assert set(np.unique(out[:, 33:])) == {3000} and not out[:, :31].any()


def test_a_further_band_the_item_lacks_is_named_with_what_it_has(demo, tmp_path):
    row = dict(_row(demo, True))
    hrefs = json.loads(row["assets"])
    row["assets"] = json.dumps({b: h for b, h in hrefs.items() if b != "B11"})
    with pytest.raises(InputError, match=r"band B11 \(20 m, which the config asks for\)"):
        download_scene(row, tmp_path / "s2.tif", tmp_path / "scl.tif", bands=["B11"])
    assert not list(tmp_path.iterdir())
