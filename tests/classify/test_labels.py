"""Label geometries that are not valid polygons are repaired (make_valid, polygonal parts) or
refused, with the counts logged, so a bowtie never trains a classifier without a word."""

from __future__ import annotations

import logging
import struct

import numpy as np
import pytest
import shapely

from tilepipe.classify.labels import valid_label_geometries
from tilepipe.classify.train import read_labels, train_classifier
from tilepipe.core.errors import InputError

from .test_classify import TILE, field_boxes, write_embeddings, write_labels

SQUARE = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0), (0.0, 0.0)]
BOWTIE = [(0.0, 0.0), (10.0, 10.0), (10.0, 0.0), (0.0, 10.0), (0.0, 0.0)]


def polygon_wkb(ring: list[tuple[float, float]]) -> bytes:
    """WKB of a one-ring polygon exactly as given (shapely would close or refuse the ring)."""
    out = struct.pack("<BII", 1, 3, 1) + struct.pack("<I", len(ring))
    return out + b"".join(struct.pack("<dd", x, y) for x, y in ring)


def _check(rings: list, invalid: str = "repair"):
    wkb = np.array([polygon_wkb(r) if isinstance(r, list) else r for r in rings], dtype=object)
    return valid_label_geometries(wkb, np.arange(1, len(rings) + 1), invalid=invalid, where="t: ")


def test_a_self_intersecting_bowtie_is_repaired_into_its_two_triangles(caplog):
    with caplog.at_level(logging.WARNING):
        wkb, keep = _check([SQUARE, BOWTIE])
    assert keep.tolist() == [True, True]
    repaired = shapely.from_wkb(wkb[1])
    assert repaired.is_valid and repaired.geom_type == "MultiPolygon" and repaired.area == 50
    assert "repaired 1 invalid label geometries, dropped 0 (field_id [2])" in caplog.text


def test_a_ring_that_is_not_closed_is_closed():
    wkb, keep = _check([SQUARE[:-1]])
    assert keep.tolist() == [True] and shapely.from_wkb(wkb[0]).area == 100


def test_empty_too_few_points_and_nan_coordinates_are_dropped_and_counted(caplog):
    empty = shapely.to_wkb(shapely.Polygon())
    few = [(0.0, 0.0), (10.0, 0.0), (0.0, 0.0)]
    nan = [(0.0, 0.0), (float("nan"), 0.0), (10.0, 10.0), (0.0, 10.0), (0.0, 0.0)]
    with caplog.at_level(logging.WARNING):
        wkb, keep = _check([SQUARE, empty, few, nan, None])
    assert keep.tolist() == [True, False, False, False, False] and len(wkb) == 1
    assert "repaired 0 invalid label geometries, dropped 4 (field_id [2, 3, 4, 5])" in caplog.text


def test_refuse_names_the_invalid_labels():
    with pytest.raises(InputError, match=r"t: 1 invalid label geometries \(field_id \[2\]\)"):
        _check([SQUARE, BOWTIE], invalid="refuse")


def test_no_valid_label_left_is_a_named_error():
    with pytest.raises(InputError, match="t: no valid label geometry: all 2 dropped"):
        _check([[(0.0, 0.0), (1.0, 0.0), (0.0, 0.0)], shapely.to_wkb(shapely.Polygon())])


def _bowtie_labels(path) -> None:
    """The classify tests' 36 labelled squares, the first drawn as a bowtie over its square."""
    boxes, classes = field_boxes()
    x0, y0, x1, y1 = boxes[0].bounds
    boxes[0] = shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
    write_labels(path, boxes, classes, range(1, 37))


def test_training_on_a_bowtie_label_repairs_it_and_says_so(tmp_path, caplog):
    write_embeddings(tmp_path / "emb.tif")
    _bowtie_labels(tmp_path / "labels.gpkg")
    embeddings, outputs = (
        {TILE: str(tmp_path / "emb.tif")},
        (tmp_path / "m.cbm", tmp_path / "m.json"),
    )
    with caplog.at_level(logging.WARNING):
        train_classifier(tmp_path / "labels.gpkg", embeddings, *outputs, iterations=5)
    assert "repaired 1 invalid label geometries, dropped 0 (field_id [1])" in caplog.text
    assert shapely.from_wkb(read_labels(tmp_path / "labels.gpkg").geometry[0]).is_valid
