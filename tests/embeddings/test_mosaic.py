"""The shared mosaic pattern: windows cover the grid once, the first source wins, no half output."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from tilepipe.embeddings.mosaic import TargetGrid, fill_nan_from, mosaic_writer, windows

from ..cog import assert_valid_cog

CRS_UTM = CRS.from_epsg(32633)
TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5300000.0)


def test_windows_cover_the_raster_exactly_once():
    hits = np.zeros((300, 530), dtype=int)
    for win in windows(530, 300, size=128):
        hits[win.row_off : win.row_off + win.height, win.col_off : win.col_off + win.width] += 1
    assert (hits == 1).all()


def test_the_first_source_to_cover_a_pixel_wins():
    out = np.full((2, 4, 4), np.nan, dtype=np.float32)
    first = np.full((2, 4, 2), 1.0, dtype=np.float32)  # the western half
    second = np.full((2, 4, 4), 2.0, dtype=np.float32)
    assert fill_nan_from(out, first, TRANSFORM, CRS_UTM, TRANSFORM, CRS_UTM)
    assert fill_nan_from(out, second, TRANSFORM, CRS_UTM, TRANSFORM, CRS_UTM)
    assert not fill_nan_from(out, second, TRANSFORM, CRS_UTM, TRANSFORM, CRS_UTM)
    np.testing.assert_array_equal(out[:, :, :2], 1.0)
    np.testing.assert_array_equal(out[:, :, 2:], 2.0)


def test_a_failing_check_inside_the_writer_leaves_no_output(tmp_path):
    dst = tmp_path / "emb.tif"
    with pytest.raises(ValueError), mosaic_writer(dst, TargetGrid(CRS_UTM, TRANSFORM, 32, 32), 3):
        raise ValueError("all nodata")
    assert list(tmp_path.iterdir()) == []


def test_a_mosaic_is_a_valid_band_interleaved_cog(tmp_path):
    dst = tmp_path / "emb.tif"
    with mosaic_writer(dst, TargetGrid(CRS_UTM, TRANSFORM, 32, 32), 3) as ds:
        ds.write(np.ones((3, 32, 32), dtype=np.float32))
    assert_valid_cog(dst)
    with rasterio.open(dst) as src:
        assert src.interleaving.name.lower() == "band" and np.isnan(src.nodata)
