"""The SCL mask before polygons: upsampled by nearest, no seed under it, masked share per field."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from tilepipe.core.errors import InputError
from tilepipe.core.raster import gtiff_profile
from tilepipe.fields.mask import SceneMask
from tilepipe.fields.polygons import Params, delineate

from .test_polygons import TRANSFORM, prob_raster

SCL_TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5300000.0)
CLOUDY = (3, 8, 9, 10)


def write_scl(path, classes: np.ndarray, transform: Affine = SCL_TRANSFORM):
    """A uint8 scl.tif (band SCL) of ``classes`` on the 10 m grid."""
    h, w = classes.shape
    profile = gtiff_profile(
        width=w, height=h, count=1, dtype="uint8", crs="EPSG:32633", transform=transform, nodata=0
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(classes.astype(np.uint8)[None])
        dst.descriptions = ("SCL",)
    return path


def scl_with_cloud(tmp_path, rows, cols, shape=(10, 10)):
    """An scl.tif of vegetation (4) with class 9 over the SCL pixels ``rows`` x ``cols``."""
    classes = np.full(shape, 4, dtype=np.uint8)
    classes[rows, cols] = 9
    return write_scl(tmp_path / "scl.tif", classes)


def test_an_scl_pixel_masks_its_ten_by_ten_dr_pixels(tmp_path):
    scl = scl_with_cloud(tmp_path, slice(1, 2), slice(2, 3))
    with rasterio.Env():
        mask = SceneMask(scl, CLOUDY, TRANSFORM)
        got = mask.read(Window(0, 0, 40, 30))
        mask.close()
    want = np.zeros((30, 40), dtype=bool)
    want[10:20, 20:30] = True
    np.testing.assert_array_equal(got, want)


def test_a_window_not_on_scl_pixel_edges_reads_the_right_pixels(tmp_path):
    scl = scl_with_cloud(tmp_path, slice(1, 2), slice(2, 3))
    mask = SceneMask(scl, CLOUDY, TRANSFORM)
    got = mask.read(Window(15, 5, 20, 20))  # fine cols 15..34, rows 5..24
    mask.close()
    assert got[5:15, 5:15].all() and got.sum() == 100


def test_pixels_beyond_the_scl_raster_count_as_masked(tmp_path):
    scl = scl_with_cloud(tmp_path, slice(0, 0), slice(0, 0), shape=(2, 2))
    mask = SceneMask(scl, CLOUDY, TRANSFORM)
    got = mask.read(Window(10, 10, 20, 20))
    mask.close()
    assert not got[:10, :10].any() and got[10:, :].all() and got[:, 10:].all()


def test_the_buffer_grows_the_mask_by_whole_scl_pixels(tmp_path):
    scl = scl_with_cloud(tmp_path, slice(4, 5), slice(4, 5))
    mask = SceneMask(scl, CLOUDY, TRANSFORM, buffer=1)
    got = mask.read(Window(0, 0, 100, 100))
    mask.close()
    assert got.sum() == 900 and got[30:60, 30:60].all()


def test_an_scl_off_the_fields_grid_is_an_input_error_naming_the_file(tmp_path):
    shifted = Affine(10.0, 0.0, 600000.5, 0.0, -10.0, 5300000.0)
    scl = write_scl(tmp_path / "scl.tif", np.full((4, 4), 4), shifted)
    with pytest.raises(
        InputError, match=r"tile 33UXP, date 2022-06-21, file .*scl.tif: .*not aligned"
    ):
        SceneMask(scl, CLOUDY, TRANSFORM, tile="33UXP", date="2022-06-21")


def two_fields() -> np.ndarray:
    """Extent of two 40 x 40 m fields on the 1 m grid, 20 m apart."""
    extent = np.zeros((60, 120), dtype=np.float32)
    extent[10:50, 10:50] = 1.0
    extent[10:50, 70:110] = 1.0
    return extent


def fields_under(tmp_path, classes: np.ndarray, max_share: float = 0.5):
    """The fields of ``two_fields`` with the SCL classes ``classes`` (6 x 12) as mask."""
    scl = write_scl(tmp_path / "scl.tif", classes)
    mask = SceneMask(scl, CLOUDY, TRANSFORM)
    params = Params(min_area_m2=100, simplify_m=0, max_masked_share=max_share)
    try:
        return delineate(prob_raster(tmp_path, two_fields()), params, mask=mask)
    finally:
        mask.close()


def by_x(table, column: str) -> list[float]:
    """A column's values from west to east."""
    order = np.argsort([g.bounds[0] for g in table.geoms])
    return [float(table.columns[column][i]) for i in order]


def test_a_field_wholly_under_cloud_is_not_drawn(tmp_path):
    classes = np.full((6, 12), 4)
    classes[1:5, 7:11] = 9  # the second field's 4 x 4 SCL pixels
    table = fields_under(tmp_path, classes)
    assert len(table.geoms) == 1
    assert table.geoms[0].bounds == (600010.0, 5299950.0, 600050.0, 5299990.0)


def test_a_field_partly_under_shadow_carries_its_masked_share(tmp_path):
    classes = np.full((6, 12), 4)
    classes[1:2, 1:5] = 3  # one of the first field's four SCL rows: a quarter of it
    table = fields_under(tmp_path, classes)
    assert len(table.geoms) == 2
    np.testing.assert_allclose(by_x(table, "masked_share"), [0.25, 0.0])
    np.testing.assert_allclose(table.columns["area_m2"], [1600.0, 1600.0])


def test_a_field_mostly_masked_is_dropped_above_the_max_share(tmp_path):
    classes = np.full((6, 12), 4)
    classes[1:4, 1:5] = 10  # three quarters of the first field under cirrus
    assert len(fields_under(tmp_path, classes, max_share=0.5).geoms) == 1
    kept = fields_under(tmp_path, classes, max_share=0.8)
    np.testing.assert_allclose(by_x(kept, "masked_share"), [0.75, 0.0])
