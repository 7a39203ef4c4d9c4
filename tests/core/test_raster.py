"""Atomic outputs: one output, or a set of them published together (all or nothing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling

from tilepipe.core.raster import atomic_output, atomic_outputs, gtiff_profile, rewrite_as_cog

from ..cog import assert_valid_cog


def test_a_set_of_outputs_appears_together_when_the_block_succeeds(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "sub" / "b.json"
    with atomic_outputs(a, b) as (ta, tb):
        ta.write_text("a")
        tb.write_text("b")
        assert not a.exists() and not b.exists()
    assert a.read_text() == "a" and b.read_text() == "b"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.txt", "b.json"]


def test_a_failure_in_the_block_leaves_no_output_and_no_temporary(tmp_path):
    with pytest.raises(RuntimeError), atomic_outputs(tmp_path / "a.txt", tmp_path / "b.txt") as t:
        t[0].write_text("a")
        raise RuntimeError("the second output could not be made")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_in_the_block_keeps_the_outputs_of_an_earlier_run(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")
    with pytest.raises(RuntimeError), atomic_outputs(a, b) as (ta, _):
        ta.write_text("new a")
        raise RuntimeError
    assert (a.read_text(), b.read_text()) == ("old a", "old b")


def test_a_rename_failing_half_way_leaves_none_of_the_set(tmp_path):
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    c.write_text("old c")
    b.mkdir()  # a is renamed into place, then b cannot be
    with pytest.raises(OSError), atomic_outputs(a, b, c) as temps:
        for tmp in temps:
            tmp.write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"] and b.is_dir()


def test_a_single_output_whose_rename_fails_keeps_nothing_beside_it(tmp_path):
    out = tmp_path / "out.txt"
    out.mkdir()
    with pytest.raises(OSError), atomic_output(out) as tmp:
        tmp.write_text("new")
    assert list(tmp_path.iterdir()) == [out]


def _write(path, data: np.ndarray, nodata, **extra) -> Path:
    """A plain tiled GeoTIFF as tilepipe writes it, before it is made a COG."""
    c, h, w = data.shape
    prof = gtiff_profile(
        width=w,
        height=h,
        count=c,
        dtype=str(data.dtype),
        crs="EPSG:32633",
        transform=Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5300000.0),
        nodata=nodata,
    )
    prof.update(extra)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
        dst.update_tags(HARMONISATION="none")
        dst.update_tags(1, CLASSES="[]")
        dst.set_band_description(1, "B02")
    return Path(path)


def test_rewrite_as_cog_gives_a_valid_cog_with_overviews_keeping_tags_and_codec(tmp_path):
    data = np.random.default_rng(0).integers(1, 5000, (2, 600, 700)).astype(np.uint16)
    path = _write(tmp_path / "s2.tif", data, 0)
    rewrite_as_cog(path)
    assert_valid_cog(path)
    with rasterio.open(path) as src:
        assert src.overviews(1) == [2, 4] and np.array_equal(src.read(), data)
        assert src.tags()["HARMONISATION"] == "none" and src.tags(1)["CLASSES"] == "[]"
        assert src.descriptions[0] == "B02" and src.nodata == 0
        assert src.profile["compress"] == "deflate" and src.block_shapes[0] == (256, 256)


def test_class_overviews_take_nearest_classes_never_averages(tmp_path):
    data = np.where(np.indices((600, 600)).sum(axis=0) % 2, 3, 9).astype(np.uint8)[None]
    path = _write(tmp_path / "classes.tif", data, 255)
    rewrite_as_cog(path, Resampling.nearest)
    with rasterio.open(path, OVERVIEW_LEVEL=0) as ov:
        assert set(np.unique(ov.read())) <= {3, 9}


def test_a_band_interleaved_float_raster_stays_band_interleaved(tmp_path):
    data = np.random.default_rng(1).random((3, 520, 520)).astype(np.float32)
    path = _write(tmp_path / "emb.tif", data, float("nan"), interleave="band")
    rewrite_as_cog(path)
    assert_valid_cog(path)
    with rasterio.open(path) as src:
        assert src.interleaving.name.lower() == "band" and np.array_equal(src.read(), data)
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
