"""GeoParquet 1.1 written with pyarrow: WKB column, 'geo' metadata, CRS as PROJJSON; for
distribution a bbox covering, Hilbert order, ZSTD and bounded row groups."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
from shapely.geometry import MultiPolygon, box

from tilepipe.core.geoparquet import (
    ZSTD_LEVEL,
    hilbert_index,
    hilbert_order,
    read_geoparquet,
    write_geoparquet,
)

from ..validators import assert_distributable, geoparquet_report


def test_round_trip_keeps_geometries_columns_crs_and_bbox(tmp_path):
    geoms = [box(0, 0, 10, 10), MultiPolygon([box(20, 0, 30, 5), box(40, 0, 45, 5)])]
    cols = {"field_id": np.array([1, 2]), "tile": np.array(["33UXP", "33UXP"], dtype=object)}
    path = tmp_path / "f.parquet"
    write_geoparquet(path, geoms, cols, "EPSG:32633")
    geo, back, back_cols = read_geoparquet(path)
    assert [g.wkt for g in back] == [g.wkt for g in geoms]
    assert back_cols["field_id"].tolist() == [1, 2]
    assert back_cols["tile"].tolist() == ["33UXP", "33UXP"]
    column = geo["columns"]["geometry"]
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    assert column["geometry_types"] == ["MultiPolygon", "Polygon"]
    assert column["crs"]["id"]["code"] == 32633
    assert column["bbox"] == [0.0, 0.0, 45.0, 10.0]


def test_file_metadata_is_plain_json_under_the_geo_key(tmp_path):
    path = tmp_path / "f.parquet"
    write_geoparquet(path, [box(0, 0, 1, 1)], {"field_id": np.array([1])}, "EPSG:32631")
    meta = pq.read_schema(path).metadata
    assert json.loads(meta[b"geo"])["columns"]["geometry"]["encoding"] == "WKB"
    assert pq.read_schema(path).field("geometry").type == "binary"


def test_an_empty_table_keeps_its_columns(tmp_path):
    path = tmp_path / "f.parquet"
    write_geoparquet(path, [], {"field_id": np.array([], dtype=np.int64)}, "EPSG:32633")
    geo, geoms, cols = read_geoparquet(path)
    assert geoms == [] and list(cols) == ["field_id"]
    assert geo["columns"]["geometry"]["geometry_types"] == []


def test_hilbert_index_walks_every_cell_once_through_neighbours():
    n = 1 << 4
    x, y = np.meshgrid(np.arange(n), np.arange(n))
    d = hilbert_index(x.ravel(), y.ravel(), bits=4)
    assert sorted(d.tolist()) == list(range(n * n))
    walk = np.argsort(d)
    steps = np.abs(np.diff(x.ravel()[walk])) + np.abs(np.diff(y.ravel()[walk]))
    assert (steps == 1).all()


def test_hilbert_order_of_nothing_or_one_point_is_trivial():
    assert hilbert_order(np.zeros((0, 4))).tolist() == []
    assert hilbert_order(np.array([[1.0, 1.0, 1.0, 1.0]])).tolist() == [0]


def _grid_boxes(n: int, seed: int = 0) -> list:
    """``n * n`` 10 m boxes on a 100 m grid, in shuffled order."""
    rng = np.random.default_rng(seed)
    boxes = [box(i * 100, j * 100, i * 100 + 10, j * 100 + 10) for i in range(n) for j in range(n)]
    return [boxes[k] for k in rng.permutation(len(boxes))]


def test_covering_column_holds_each_geometry_bounds_and_is_declared(tmp_path):
    geoms = [box(0, 0, 10, 10), box(20, 5, 30, 8)]
    path = tmp_path / "f.parquet"
    write_geoparquet(path, geoms, {"k": np.array([1, 2])}, "EPSG:32633", covering=True)
    table = pq.read_table(path)
    assert table.column("bbox").to_pylist() == [
        {"xmin": 0.0, "ymin": 0.0, "xmax": 10.0, "ymax": 10.0},
        {"xmin": 20.0, "ymin": 5.0, "xmax": 30.0, "ymax": 8.0},
    ]
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    assert list(read_geoparquet(path)[2]) == ["k"]  # the covering is not an attribute


def test_required_columns_and_the_covering_are_not_nullable(tmp_path):
    path = tmp_path / "f.parquet"
    cols = {"id": np.array(["a"], dtype=object), "note": np.array(["x"], dtype=object)}
    write_geoparquet(
        path, [box(0, 0, 1, 1)], cols, "EPSG:32633", covering=True, required=("id", "geometry")
    )
    schema = pq.read_schema(path)
    nullable = {name: schema.field(name).nullable for name in schema.names}
    assert nullable == {"id": False, "note": True, "geometry": False, "bbox": False}


def test_distribution_file_is_zstd_15_in_bounded_row_groups(tmp_path):
    path = tmp_path / "f.parquet"
    geoms = _grid_boxes(10)
    write_geoparquet(path, geoms, {"k": np.arange(100)}, "EPSG:32633", row_group_size=30)
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [30, 30, 30, 10]
    assert {meta.row_group(0).column(c).compression for c in range(meta.num_columns)} == {"ZSTD"}
    assert ZSTD_LEVEL == 15  # the best practices' level (a Parquet file does not record it)


def test_spatial_order_keeps_rows_together_with_their_attributes(tmp_path):
    path = tmp_path / "f.parquet"
    geoms = _grid_boxes(8)
    keys = np.array([int(g.bounds[0]) * 1000 + int(g.bounds[1]) for g in geoms])
    write_geoparquet(path, geoms, {"key": keys}, "EPSG:32633", spatial_order=True)
    _, back, cols = read_geoparquet(path)
    assert [int(g.bounds[0]) * 1000 + int(g.bounds[1]) for g in back] == cols["key"].tolist()
    assert sorted(cols["key"].tolist()) == sorted(keys.tolist())


def test_geoparquet_validator_finds_the_spatial_order_that_shuffled_rows_lack(tmp_path):
    geoms, cols = _grid_boxes(40), {}
    ordered, shuffled = tmp_path / "ordered.parquet", tmp_path / "shuffled.parquet"
    kw = {"covering": True, "row_group_size": 100, "required": ("geometry",)}
    write_geoparquet(ordered, geoms, cols, "EPSG:32633", spatial_order=True, **kw)
    write_geoparquet(shuffled, geoms, cols, "EPSG:32633", spatial_order=False, **kw)
    assert assert_distributable(ordered)["/conf/distribution/spatial-order"] == "pass"
    assert geoparquet_report(shuffled)["/conf/distribution/spatial-order"] == "fail"
