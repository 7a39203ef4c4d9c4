"""The engine's geometry: window origins, blend weights, the grid, column panels and the AOI."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from affine import Affine

from tilepipe.core.errors import InputError
from tilepipe.engine.windows import (
    Grid,
    aoi_mask,
    aoi_window,
    axis_weight_sum,
    blend_weights,
    column_panels,
    finished_mask,
    make_panels,
    misses_aoi,
    owned_windows,
    panel_windows,
    resume_row,
    window_origins,
)

TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5300000.0)


def test_window_origins_cover_the_image_with_margin():
    origins = window_origins(100, patch=32, overlap=8)
    assert origins[0] == -4
    assert np.diff(origins).tolist() == [24] * (len(origins) - 1)
    assert origins[-1] + 32 >= 100 + 4


def test_an_image_smaller_than_a_patch_gets_one_window():
    assert window_origins(5, patch=16, overlap=4) == [-2]


def test_blend_weights_form_partition_of_unity_in_overlap():
    w = blend_weights(16, 4).astype(np.float64)
    assert np.allclose(w[-4:] + w[:4], 1.0, atol=2e-3)
    assert w.min() > 0


def test_blend_weights_without_overlap_are_flat_ones():
    assert blend_weights(8, 0).tolist() == [1.0] * 8


def test_axis_weight_sum_adds_every_window_from_the_first_origin():
    total = axis_weight_sum([-1, 2, 5], np.ones(4, dtype=np.float32), scale=1)
    assert total.tolist() == [1, 1, 1, 2, 1, 1, 2, 1, 1, 1]


def test_axis_weight_sum_places_windows_at_scaled_origins():
    total = axis_weight_sum([0, 1], np.ones(4, dtype=np.float32), scale=2)
    assert total.tolist() == [1, 1, 2, 2, 1, 1]


def test_grid_back_counts_earlier_window_rows_reaching_into_a_stride():
    assert Grid.build(50, 50, patch=16, overlap=4, scale=1).back == 1
    assert Grid.build(50, 50, patch=16, overlap=10, scale=1).back == 2
    assert Grid.build(50, 50, patch=16, overlap=0, scale=1).back == 0


def test_grid_output_sizes_are_the_source_sizes_times_scale():
    grid = Grid.build(20, 30, patch=8, overlap=2, scale=3)
    assert (grid.out_h, grid.out_w, grid.p_out, grid.s_out) == (60, 90, 24, 18)
    assert grid.total == len(grid.row_origins) * len(grid.col_origins)


def test_grid_weights_are_constant_over_each_source_pixel_block():
    grid = Grid.build(20, 20, patch=8, overlap=4, scale=3)
    assert len(grid.weights) == 24
    assert (grid.weights.reshape(8, 3) == grid.weights[::3, None]).all()


def test_grid_inverse_weights_are_indexed_by_output_row_and_column():
    grid = Grid.build(20, 30, patch=8, overlap=4, scale=3)  # windows start 2 px (6 out) early
    np.testing.assert_array_equal(grid.inv_row_weights(0, 4), 1.0 / grid.wy[6:10])
    np.testing.assert_array_equal(grid.inv_col_weights(9, 12), 1.0 / grid.wx[15:18])


def test_resume_row_of_a_finished_panel_is_past_the_last_window_row():
    assert resume_row(rows_done=100, next_row=9, out_h=100, n_rows=9, back=1) == 9


def test_resume_row_recomputes_the_last_journaled_window_rows_that_reach_below():
    assert resume_row(rows_done=48, next_row=5, out_h=100, n_rows=9, back=1) == 4
    assert resume_row(rows_done=48, next_row=5, out_h=100, n_rows=9, back=2) == 3


def test_resume_row_never_goes_before_the_first_window_row():
    assert resume_row(rows_done=10, next_row=1, out_h=100, n_rows=9, back=2) == 0


def test_resume_row_of_an_empty_journal_is_the_first_window_row():
    assert resume_row(rows_done=0, next_row=0, out_h=100, n_rows=9, back=1) == 0


def test_panels_are_cut_at_multiples_of_block_and_scale():
    assert column_panels(4000, unit=768, panel_px=2000) == [(0, 1536), (1536, 3072), (3072, 4000)]


def test_a_panel_is_at_least_one_unit_wide():
    assert column_panels(600, unit=256, panel_px=100) == [(0, 256), (256, 512), (512, 600)]


def test_panel_windows_are_those_whose_output_reaches_into_the_panel():
    origins = [-2, 10, 22, 34]  # patch 16: output of window j covers [o, o + 16)
    assert panel_windows(origins, 1, 16, 20, 30) == slice(1, 3)
    assert panel_windows(origins, 1, 16, 0, 10) == slice(0, 1)


def test_each_window_column_is_owned_by_exactly_one_panel():
    origins = window_origins(100, 16, 6)
    cuts = column_panels(300, unit=30, panel_px=60)
    assert sum(owned_windows(origins, 3, b0, b1) for b0, b1 in cuts) == len(origins)


def test_make_panels_use_the_lcm_of_block_width_and_scale():
    grid = Grid.build(10, 200, patch=16, overlap=4, scale=3)
    panels = make_panels(grid, block_w=256, panel_px=1000)
    assert [(p.b0, p.b1) for p in panels] == [(0, 600)]
    panels = make_panels(grid, block_w=16, panel_px=100)
    assert [p.b0 for p in panels] == [0, 96, 192, 288, 384, 480, 576]


def test_panel_slices_locate_its_columns_in_the_accumulator_and_the_strip():
    grid = Grid.build(10, 100, patch=16, overlap=4, scale=2)
    panel = make_panels(grid, block_w=16, panel_px=48)[1]  # output columns [48, 96)
    assert (panel.b0, panel.b1, panel.c0) == (48, 96, 10)
    assert panel.own == slice(28, 76) and panel.src_own == slice(14, 38)
    assert panel.width == (panel.cols[-1] - 10 + 16) * 2 == 2 * panel.src_width


def fake_src(height: int = 100, width: int = 80) -> SimpleNamespace:
    """What aoi_window reads of a dataset."""
    return SimpleNamespace(height=height, width=width, transform=TRANSFORM, name="s.tif")


def test_no_aoi_is_the_whole_raster():
    assert aoi_window(fake_src(), None, margin=5) == (0, 100, 0, 80)


def test_aoi_window_adds_the_margin_and_stays_inside_the_raster():
    x0, y0 = TRANSFORM * (20, 50)
    x1, y1 = TRANSFORM * (40, 30)
    assert aoi_window(fake_src(), (x0, y0, x1, y1), margin=2) == (28, 52, 18, 42)
    assert aoi_window(fake_src(), (x0, y0, x1, y1), margin=30) == (0, 80, 0, 70)


def test_an_aoi_outside_the_raster_is_refused():
    x0, y0 = TRANSFORM * (200, 300)
    x1, y1 = TRANSFORM * (210, 290)
    with pytest.raises(InputError, match="does not intersect"):
        aoi_window(fake_src(), (x0, y0, x1, y1), margin=0)


def test_a_window_row_misses_the_aoi_only_when_it_lies_wholly_outside():
    box = (20, 40, 0, 80)
    assert misses_aoi(box, 4, 16) and misses_aoi(box, 40, 16)
    assert not misses_aoi(box, 5, 16) and not misses_aoi(box, 39, 16)


def test_aoi_mask_marks_rows_and_columns_outside_the_box():
    outside = aoi_mask((12, 14, 3, 5), row0=10, col0=1, patch=6, n_cols=6)
    inside = np.zeros((6, 6), dtype=bool)
    inside[2:4, 2:4] = True
    np.testing.assert_array_equal(outside, ~inside)


def test_finished_mask_takes_the_panels_columns_and_marks_rows_off_the_image_bad():
    bad_strip = np.zeros((8, 10), dtype=bool)
    bad_strip[:, 4] = True
    bad = finished_mask(bad_strip, row0=-2, n_src=6, height=3, src_own=slice(3, 7))
    expected = np.zeros((6, 4), dtype=bool)
    expected[:, 1] = True
    expected[:2] = expected[5:] = True  # rows -2, -1 and 3 are off a 3-row image
    np.testing.assert_array_equal(bad, expected)
