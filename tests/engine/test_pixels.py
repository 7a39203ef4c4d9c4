"""The engine's pixel work: strips, nodata masks and fill, window selection, output dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from tilepipe.engine.pixels import (
    cut_windows,
    fill_invalid,
    invalid_mask,
    read_strip,
    to_dtype,
    upsample_mask,
)

from .test_tiling import write_tif


def ramp_tif(tmp_path, h: int = 6, w: int = 8) -> str:
    """A one-band raster whose pixel (r, c) is 10 r + c."""
    data = (10 * np.arange(h)[:, None] + np.arange(w)[None, :]).astype(np.float32)[None]
    return write_tif(tmp_path / "ramp.tif", data)


def test_read_strip_reads_only_the_columns_of_the_windows(tmp_path):
    with rasterio.open(ramp_tif(tmp_path)) as src:
        strip = read_strip(src, 1, [2, 4], patch=2)
    assert strip.dtype == np.float32
    np.testing.assert_array_equal(strip[0], [[12, 13, 14, 15], [22, 23, 24, 25]])


def test_read_strip_reflect_pads_beyond_the_image(tmp_path):
    with rasterio.open(ramp_tif(tmp_path)) as src:
        strip = read_strip(src, -1, [-1], patch=3)
    np.testing.assert_array_equal(strip[0], [[11, 10, 11], [1, 0, 1], [11, 10, 11]])


def test_invalid_mask_marks_pixels_that_are_nodata_in_every_band():
    data = np.array([[[0, 0, 5]], [[0, 3, 5]]], dtype=np.float32)
    assert invalid_mask(data, 0.0).tolist() == [[True, False, False]]


def test_invalid_mask_marks_pixels_not_finite_in_any_band():
    data = np.array([[[np.nan, 1, np.inf]], [[1, 1, 1]]], dtype=np.float32)
    assert invalid_mask(data, None).tolist() == [[True, False, True]]


def test_invalid_mask_understands_a_nan_nodata():
    data = np.array([[[np.nan, 1]]], dtype=np.float32)
    assert invalid_mask(data, float("nan")).tolist() == [[True, False]]


def test_fill_invalid_uses_the_per_band_mean_of_valid_pixels():
    patch = np.array([[[1, 3, 99]], [[10, 30, 99]]], dtype=np.float32)
    bad = np.array([[False, False, True]])
    out = fill_invalid(patch, bad)
    assert out[:, 0, 2].tolist() == [2, 20] and patch[0, 0, 2] == 99


def test_fill_invalid_of_a_wholly_invalid_patch_is_zero():
    out = fill_invalid(np.full((2, 2, 2), 7, dtype=np.float32), np.ones((2, 2), dtype=bool))
    assert (out == 0).all()


def test_cut_windows_leaves_out_wholly_invalid_windows():
    strip = np.ones((1, 4, 12), dtype=np.float32)
    bad = np.zeros((4, 12), dtype=bool)
    bad[:, :4] = True
    jobs = cut_windows(strip, bad, np.zeros_like(bad), [-2, 2, 6], patch=4)
    assert [c for c, _ in jobs] == [2, 6]


def test_cut_windows_leaves_out_windows_wholly_outside_the_aoi():
    strip = np.ones((1, 4, 12), dtype=np.float32)
    outside = np.zeros((4, 12), dtype=bool)
    outside[:, 8:] = True
    jobs = cut_windows(strip, np.zeros_like(outside), outside, [0, 4, 8], patch=4)
    assert [c for c, _ in jobs] == [0, 4]


def test_cut_windows_fill_the_invalid_pixels_of_the_windows_they_keep():
    strip = np.arange(8, dtype=np.float32).reshape(1, 2, 4)
    bad = np.zeros((2, 4), dtype=bool)
    bad[0, 0] = True
    [(_, patch)] = cut_windows(strip, bad, np.zeros_like(bad), [0], patch=4)
    assert patch[0, 0, 0] == strip[0][~bad].mean() and strip[0, 0, 0] == 0


def test_upsample_mask_repeats_each_pixel_scale_by_scale():
    mask = np.array([[True, False]])
    assert upsample_mask(mask, 2).tolist() == [[True, True, False, False]] * 2


def test_to_dtype_rounds_and_clips_integers():
    values = np.array([-5.0, 0.4, 1.6, 70000.0], dtype=np.float32)
    assert to_dtype(values, "uint16", None).tolist() == [0, 0, 2, 65535]


def test_to_dtype_keeps_valid_pixels_off_the_nodata_value():
    values = np.array([0.0, 255.0], dtype=np.float32)
    assert to_dtype(values.copy(), "uint8", 0).tolist() == [1, 255]
    assert to_dtype(values.copy(), "uint8", 255).tolist() == [0, 254]


def test_to_dtype_of_a_float_dtype_only_casts():
    values = np.array([0.4, -1.6], dtype=np.float32)
    out = to_dtype(values, "float64", None)
    assert out.dtype == np.float64 and out.tolist() == values.astype(np.float64).tolist()


def test_to_dtype_refuses_non_finite_values_for_integer_outputs():
    for value in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="non-finite values cannot be cast to uint16"):
            to_dtype(np.array([1.0, value], dtype=np.float32), "uint16", 0)
