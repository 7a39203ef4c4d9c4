"""Block-wise polygonisation: instances, seams, duplicates, size filters, holes, repair."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from shapely.geometry import Polygon
from skimage.morphology import dilation, disk
from skimage.segmentation import find_boundaries

from tilepipe.core.errors import InputError
from tilepipe.demo.world import field_layout
from tilepipe.fields.polygons import Params, clean_geometry, delineate, write_probabilities

TRANSFORM = Affine(1.0, 0.0, 600000.0, 0.0, -1.0, 5300000.0)
CRS = "EPSG:32633"


def prob_raster(tmp_path, extent, boundary=None, distance=None, transform=TRANSFORM, name="p"):
    """Write probabilities (float arrays, NaN = nodata) as the fields step's prob raster."""
    probs = {"extent": extent}
    if boundary is not None:
        probs["boundary"] = boundary
    if distance is not None:
        probs["distance"] = distance
    path = tmp_path / f"{name}.tif"
    write_probabilities(path, probs, transform, CRS)
    return path


def ideal_probs(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What a perfect multitask model says about a label raster: extent and a boundary band."""
    extent = (ids > 0).astype(np.float32)
    edges = find_boundaries(ids, mode="inner") & (ids > 0)
    boundary = dilation(edges.astype(np.uint8), disk(1)).astype(np.float32) * extent
    return extent, boundary


def test_touching_fields_are_separated_by_the_boundary_head(tmp_path):
    extent = np.zeros((60, 100), dtype=np.float32)
    extent[10:50, 10:90] = 1.0  # two 40 x 40 fields sharing the edge at column 50
    boundary = np.zeros_like(extent)
    boundary[10:50, 49:51] = 1.0
    params = Params(min_area_m2=100, simplify_m=0)
    merged = delineate(prob_raster(tmp_path, extent, name="a"), params)
    split = delineate(prob_raster(tmp_path, extent, boundary, name="b"), params)
    assert len(merged.geoms) == 1
    assert len(split.geoms) == 2
    np.testing.assert_allclose(split.columns["area_m2"], [1600.0, 1600.0])
    assert shapely.intersection(*split.geoms).area == 0.0


def test_corner_touching_fields_stay_apart_and_are_scored(tmp_path):
    prob = np.zeros((20, 20), dtype=np.float32)
    prob[2:8, 2:8] = 0.9
    prob[8:14, 8:14] = 0.7
    prob[16:18, 16:18] = 0.95  # 4 px: below the minimum area
    path = prob_raster(tmp_path, prob, transform=Affine(2.0, 0, 0, 0, -2.0, 40.0))
    table = delineate(path, Params(min_area_m2=20.0, simplify_m=0.0))
    assert len(table.geoms) == 2
    np.testing.assert_allclose(table.columns["area_m2"], [144.0, 144.0])
    np.testing.assert_allclose(table.columns["score"], [0.9, 0.7], atol=0.002)
    np.testing.assert_allclose(table.columns["perimeter_m"], [48.0, 48.0])
    assert table.stats["too_small"] == 1


def test_tiny_blocks_give_the_same_fields_as_one_block(tmp_path):
    ids, _ = field_layout(3, 700, 900)
    path = prob_raster(tmp_path, *ideal_probs(ids))
    one = delineate(path, Params(block=4096, halo=16, min_area_m2=100))
    tiny = delineate(path, Params(block=64, halo=16, min_area_m2=100))
    assert len(one.geoms) == len(tiny.geoms) == len(np.unique(ids[ids > 0]))
    assert tiny.columns["field_id"].tolist() == one.columns["field_id"].tolist()
    for a, b in zip(one.geoms, tiny.geoms, strict=True):
        assert shapely.symmetric_difference(a, b).area < 1e-6
    np.testing.assert_allclose(tiny.columns["score"], one.columns["score"])


def test_fields_crossing_block_borders_come_out_whole_and_once(tmp_path):
    ids, _ = field_layout(5, 600, 600)
    path = prob_raster(tmp_path, *ideal_probs(ids))
    table = delineate(path, Params(block=48, halo=8, min_area_m2=100, simplify_m=0))
    true_areas = np.sort(np.bincount(ids.ravel())[1:])
    np.testing.assert_allclose(np.sort(table.columns["area_m2"]), true_areas)
    assert all(g.geom_type == "Polygon" and g.is_valid for g in table.geoms)
    union = shapely.union_all(table.geoms)
    assert union.area == pytest.approx(sum(g.area for g in table.geoms))  # no overlaps


def test_area_limits_drop_small_and_large_fields(tmp_path):
    extent = np.zeros((100, 100), dtype=np.float32)
    extent[5:15, 5:15] = 1.0  # 100 m²
    extent[20:40, 20:40] = 1.0  # 400 m²
    extent[45:95, 45:95] = 1.0  # 2500 m²
    table = delineate(
        prob_raster(tmp_path, extent), Params(min_area_m2=200, max_area_m2=1000, simplify_m=0)
    )
    np.testing.assert_allclose(table.columns["area_m2"], [400.0])
    assert table.stats["too_small"] == 1 and table.stats["too_large"] == 1


def test_holes_below_the_fill_size_are_filled_and_larger_ones_kept(tmp_path):
    extent = np.zeros((100, 100), dtype=np.float32)
    extent[10:90, 10:90] = 1.0
    extent[20:23, 20:23] = 0.0  # 9 m² hole: a tree
    extent[50:70, 50:70] = 0.0  # 400 m² hole: a farmyard
    table = delineate(prob_raster(tmp_path, extent), Params(fill_holes_m2=50, simplify_m=0))
    (geom,) = table.geoms
    assert len(geom.interiors) == 1
    assert geom.area == pytest.approx(6400 - 400)


def test_nodata_is_never_part_of_a_field(tmp_path):
    extent = np.ones((80, 80), dtype=np.float32)
    extent[:, :30] = np.nan
    table = delineate(prob_raster(tmp_path, extent), Params(simplify_m=0, min_area_m2=100))
    (geom,) = table.geoms
    assert geom.bounds[0] == TRANSFORM.c + 30
    assert geom.area == pytest.approx(80 * 50)


def test_self_intersecting_geometry_is_repaired():
    bowtie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    assert not bowtie.is_valid
    fixed = clean_geometry(bowtie, Params(simplify_m=0))
    assert fixed.is_valid and fixed.area == pytest.approx(50.0)


def test_undescribed_multiband_raster_is_refused_with_its_name(tmp_path):
    path = tmp_path / "bad.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=8,
        height=8,
        count=2,
        dtype="uint8",
        crs=CRS,
        transform=TRANSFORM,
    ) as dst:
        dst.write(np.zeros((2, 8, 8), dtype=np.uint8))
    with pytest.raises(InputError, match=r"bad\.tif.*extent first"):
        delineate(path, Params())
