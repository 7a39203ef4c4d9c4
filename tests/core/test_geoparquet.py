"""GeoParquet 1.0 written with pyarrow: WKB column, 'geo' metadata, CRS as PROJJSON."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
from shapely.geometry import MultiPolygon, box

from tilepipe.core.geoparquet import read_geoparquet, write_geoparquet


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
    assert geo["version"] == "1.0.0" and geo["primary_column"] == "geometry"
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
