"""Metadata can lie: download checks from the pixels that the offset it subtracts is in them."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import rasterio

from tilepipe.acquire.download import download_scene
from tilepipe.acquire.plausibility import DEFAULT_CHECK, check_harmonisation, judge_offset
from tilepipe.acquire.stac import read_manifest
from tilepipe.core.errors import InputError


def _row(demo, baseline_new: bool, **changes) -> dict:
    rows = read_manifest(demo["manifest"])
    row = next(r for r in rows if (r["baseline"] >= "04.00") == baseline_new)
    return {**row, **changes}


def _window(blue: np.ndarray, scl: int) -> dict[str, np.ndarray]:
    """Raw arrays of a window whose SCL is one class everywhere."""
    return {"B02": blue.astype(np.uint16), "SCL": np.full(blue.shape, scl, dtype=np.uint8)}


def test_metadata_claiming_an_offset_the_pixels_lack_fails_naming_the_check(demo, tmp_path):
    # a baseline-03.01 scene (no offset in its pixels) whose metadata says subtract 1000
    row = _row(demo, False, boa_offset_dn="1000", offset_source="raster:bands")
    with pytest.raises(
        InputError,
        match=rf"tile {row['tile']}, date {row['date']}, file .*B02.*check 'dark-surfaces' failed",
    ):
        download_scene(row, tmp_path / "s2.tif", tmp_path / "scl.tif", window=demo["window"])
    assert list(tmp_path.iterdir()) == []


def test_pixels_carrying_an_offset_the_metadata_omits_fail_naming_the_check(demo, tmp_path):
    # a baseline-05.09 scene (offset in its pixels) flagged as if the offset had been removed
    row = _row(demo, True, boa_offset_dn="0", offset_source="earthsearch:boa_offset_applied")
    with pytest.raises(InputError, match=r"check 'dark-surfaces' failed.*offset in the pixels"):
        download_scene(row, tmp_path / "s2.tif", tmp_path / "scl.tif", window=demo["window"])
    assert list(tmp_path.iterdir()) == []


def test_the_verdict_of_the_pixels_is_tagged_on_both_rasters(demo, tmp_path):
    s2, scl = tmp_path / "s2.tif", tmp_path / "scl.tif"
    download_scene(_row(demo, True), s2, scl, window=demo["window"])
    for path in (s2, scl):
        with rasterio.open(path) as src:
            assert src.tags()["HARMONISATION_CHECK"].startswith("consistent: dark-surfaces")


def test_a_double_subtraction_is_caught_by_the_floor_check_without_dark_classes():
    # bare soil (SCL 5) of blue reflectance 0.02-0.09, offset already out, 1000 claimed
    blue = np.random.default_rng(0).integers(200, 900, (40, 40))
    verdict = judge_offset(_window(blue, 5), 1000)
    assert verdict.failed == "offset-floor"


def test_the_floor_check_tolerates_the_few_negative_reflectances_of_a_real_offset():
    blue = np.random.default_rng(0).integers(1100, 1600, (40, 40))
    blue[:1, :40] = 900  # 2.5 % of pixels with negative blue reflectance
    assert judge_offset(_window(blue, 5), 1000).failed is None


def test_a_uniformly_bright_window_cannot_tell_and_keeps_the_metadata_saying_so(caplog):
    blue = np.full((40, 40), 2500)  # bright bare soil everywhere: 0.25 or 0.15, who knows
    with caplog.at_level(logging.WARNING):
        line = check_harmonisation(_window(blue, 5), 0, "processing baseline", where="t: ")
    assert line.startswith("undecided")
    assert "pixels cannot tell" in caplog.text and "keeping 0 DN from processing baseline" in (
        caplog.text
    )


def test_too_few_dark_pixels_do_not_decide():
    blue = np.full((40, 40), 2500)
    scl = np.full(blue.shape, 5, dtype=np.uint8)
    scl[0, : DEFAULT_CHECK.min_dark_pixels - 1] = 4  # one vegetation pixel short
    blue[scl == 4] = 1300
    verdict = judge_offset({"B02": blue.astype(np.uint16), "SCL": scl}, 0)
    assert verdict.failed is None and not verdict.decided


def test_cloud_snow_and_nodata_pixels_are_not_judged():
    blue = np.full((40, 40), 300)  # dark, but all of it cloud: nothing to judge
    verdict = judge_offset(_window(blue, 9), 1000)
    assert verdict.failed is None and not verdict.decided
