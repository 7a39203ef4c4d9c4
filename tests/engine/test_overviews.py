"""Overviews built while the engine writes rows (issue 15): valid COGs, averages, panels, files."""

from __future__ import annotations

import numpy as np
import rasterio
from affine import Affine

from tilepipe.core.raster import gtiff_profile
from tilepipe.engine.overviews import reduce2
from tilepipe.engine.tiling import run_tiled

from ..cog import assert_valid_cog

TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5300000.0)


def write_src(path, data: np.ndarray, nodata=0) -> str:
    """A small uint16 source raster."""
    c, h, w = data.shape
    prof = gtiff_profile(
        width=w,
        height=h,
        count=c,
        dtype="uint16",
        crs="EPSG:32633",
        transform=TRANSFORM,
        nodata=nodata,
    )
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
    return str(path)


def values(shape, seed=0) -> np.ndarray:
    """Valid reflectance-like uint16 values (1..5000)."""
    return np.random.default_rng(seed).integers(1, 5000, shape).astype(np.uint16)


def upsample(scale):
    """A predict function: nearest upsampling, so output values are known exactly."""

    def predict(x):
        return np.repeat(np.repeat(x, scale, axis=-2), scale, axis=-1)

    return predict


def run(src, dst, scale=10, bands=2, **kw):
    """The engine with DR's output kind: uint16, nodata 0, a COG with overviews."""
    args = dict(scale=scale, out_bands=bands, out_dtype="uint16", patch=16, overlap=4, batch=4)
    args.update(nodata_out=0, src_nodata=0, cog=True, overviews=True)
    args.update(kw)
    return run_tiled(src, dst, upsample(scale), **args)


def overview(path, level) -> np.ndarray:
    """Overview ``level`` (0: the 1/2 one) as stored in the file."""
    with rasterio.open(path, OVERVIEW_LEVEL=level) as ov:
        return ov.read()


def test_engine_cog_with_overviews_passes_rio_cogeo_validate_without_warnings(tmp_path):
    src = write_src(tmp_path / "s.tif", values((2, 70, 60)))
    run(src, tmp_path / "dr.tif")
    assert_valid_cog(tmp_path / "dr.tif")
    with rasterio.open(tmp_path / "dr.tif") as out:
        assert out.overviews(1) == [2, 4]  # 700 px: the 1/4 overview fits one 256 px block


def test_first_overview_is_the_2x2_mean_of_the_full_resolution_ignoring_nodata(tmp_path):
    data = values((2, 33, 27), seed=1)
    data[:, :7, :5] = 0  # a nodata corner whose edge falls inside 2x2 cells
    src = write_src(tmp_path / "s.tif", data)
    run(src, tmp_path / "dr.tif", scale=10)
    with rasterio.open(tmp_path / "dr.tif") as out:
        full = out.read().astype(np.float64)
    valid = full != 0
    h, w = full.shape[1] // 2, full.shape[2] // 2
    total = (full * valid).reshape(2, h, 2, w, 2).sum(axis=(2, 4))
    count = valid.reshape(2, h, 2, w, 2).sum(axis=(2, 4))
    expected = np.where(count > 0, np.floor(total / np.maximum(count, 1) + 0.5), 0)
    assert np.array_equal(overview(tmp_path / "dr.tif", 0), expected.astype(np.uint16))


def test_column_panels_give_the_same_overviews_as_one_full_width_pass(tmp_path):
    """Panels 48 px wide: levels 1/32 and 1/64 straddle panel edges and are built afterwards."""
    src = write_src(tmp_path / "s.tif", values((1, 20, 1000), seed=2))
    run(src, tmp_path / "one.tif", scale=1, bands=1, panel_px=100_000)
    run(src, tmp_path / "panels.tif", scale=1, bands=1, panel_px=48)
    with rasterio.open(tmp_path / "panels.tif") as out:
        assert len(out.overviews(1)) == 6  # 1/2 .. 1/64: the last fits one 16 px block
    for level in range(6):
        panels, one = (
            overview(tmp_path / "panels.tif", level),
            overview(tmp_path / "one.tif", level),
        )
        assert np.array_equal(panels, one)


def test_odd_sizes_average_the_last_row_and_column_alone():
    x = np.array([[[2, 4, 6], [6, 8, 10], [1, 3, 9]]], dtype=np.uint16)
    assert reduce2(x, 0).tolist() == [[[5, 8], [2, 9]]]


def test_a_2x2_cell_of_nodata_stays_nodata_and_partial_cells_average_their_valid_pixels():
    x = np.array([[[0, 0, 0, 7], [0, 0, 1, 0]]], dtype=np.uint16)
    assert reduce2(x, 0).tolist() == [[[0, 4]]]


def test_level_files_and_the_vrt_are_gone_after_the_run(tmp_path):
    src = write_src(tmp_path / "s.tif", values((2, 40, 40), seed=3))
    out = tmp_path / "out"
    out.mkdir()
    run(src, out / "dr.tif")
    assert sorted(p.name for p in out.iterdir()) == ["dr.tif"]


def test_overviews_keep_tags_descriptions_and_nodata(tmp_path):
    src = write_src(tmp_path / "s.tif", values((2, 40, 40), seed=4))
    run(src, tmp_path / "dr.tif", band_descriptions=["B02", "B03"], tags={"DR_METHOD": "x"})
    with rasterio.open(tmp_path / "dr.tif") as out:
        assert out.descriptions == ("B02", "B03") and out.nodata == 0
        assert out.tags()["DR_METHOD"] == "x"
        assert out.profile["compress"] == "deflate" and out.overviews(1) == [2]
