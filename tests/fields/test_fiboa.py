"""``tilepipe fields`` writes fiboa fields: GeoParquet 1.1 that geoparquet-validator passes in
core, covering and distribution, fiboa 0.3.0 core columns and metadata that fiboa-cli
validates, and a GeoPackage with the same columns (issue 15)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely

from tilepipe.cli import main
from tilepipe.fields.fiboa import COLLECTION, COLUMNS, FIBOA_SCHEMA, VECOREL_SCHEMA

from ..validators import assert_distributable, fiboa_validate
from .test_fields import dr, nir_model  # noqa: F401  (fixtures: a demo scene, a fields model)

TILE, DATE = "33UXP", "2022-06-21"


def _tilepipe_fields(tmp_path, image: str, model: str, *flags: str) -> dict:
    """Run ``tilepipe fields`` on ``image``; its fields.gpkg and fields.parquet."""
    out = {"gpkg": tmp_path / "fields.gpkg", "parquet": tmp_path / "fields.parquet"}
    argv = ["fields", "--tile", TILE, "--date", DATE, "--image", image, "--model", model]
    argv += ["--out", str(out["gpkg"]), "--parquet", str(out["parquet"]), *flags]
    assert main([*argv, "--patch", "64", "--overlap", "16", "--device", "cpu"]) == 0
    return out


@pytest.fixture
def fields(tmp_path, dr, nir_model) -> dict:  # noqa: F811
    """``tilepipe fields`` on the demo scene: its fields.gpkg and fields.parquet."""
    return _tilepipe_fields(tmp_path, dr, nir_model)


def test_fields_parquet_passes_geoparquet_validator_core_covering_and_distribution(fields):
    verdicts = assert_distributable(fields["parquet"])
    core = {k: v for k, v in verdicts.items() if k.startswith("/conf/core/")}
    assert "fail" not in core.values() and core["/conf/core/wkb"] == "pass"


def test_fields_parquet_names_the_vecorel_and_fiboa_core_schemas(fields):
    meta = pq.read_schema(fields["parquet"]).metadata
    collection = json.loads(meta[b"collection"])
    assert collection["schemas"] == {COLLECTION: [VECOREL_SCHEMA, FIBOA_SCHEMA]}
    assert FIBOA_SCHEMA == "https://fiboa.org/specification/v0.3.0/schema.yaml"
    assert json.loads(meta[b"geo"])["version"] == "1.1.0"


def test_fields_parquet_columns_have_fiboas_parquet_types(fields):
    schema = pq.read_schema(fields["parquet"])
    assert schema.names == [*COLUMNS, "geometry", "bbox"]
    assert schema.field("metrics:area").type == pa.float32()  # SDL float
    assert schema.field("determination:datetime").type == pa.timestamp("ms", tz="UTC")
    assert [n for n in schema.names if not schema.field(n).nullable] == [
        "id",
        "collection",
        "geometry",
        "bbox",
    ]


def test_a_scene_without_fields_still_passes_geoparquet_validator(tmp_path, dr, nir_model):  # noqa: F811
    out = _tilepipe_fields(tmp_path, dr, nir_model, "--min-area-m2", "1e9")
    assert pq.ParquetFile(out["parquet"]).metadata.num_rows == 0
    assert_distributable(out["parquet"])  # no row group rather than one without statistics


def test_fiboa_values_describe_each_field_of_the_scene(fields):
    table = pq.read_table(fields["parquet"])
    col = {n: table.column(n).to_pylist() for n in table.column_names}
    geoms = shapely.from_wkb(col["geometry"])
    assert col["id"] == [f"{TILE}_{DATE}_{i}" for i in col["field_id"]]
    assert len(set(col["id"])) == len(geoms) >= 2 and set(col["collection"]) == {COLLECTION}
    np.testing.assert_allclose(col["metrics:area"], shapely.area(geoms), rtol=1e-6)
    np.testing.assert_allclose(col["metrics:perimeter"], shapely.length(geoms), rtol=1e-6)
    assert set(col["determination:method"]) == {"auto-imagery"}
    assert {d.isoformat() for d in col["determination:datetime"]} == {f"{DATE}T00:00:00+00:00"}


def test_fiboa_validator_passes_the_fields_parquet(fields):
    assert "VALID" in fiboa_validate(fields["parquet"])


def test_geopackage_carries_the_same_columns_names_with_colons_included(fields):
    info = pyogrio.read_info(fields["gpkg"])
    assert tuple(info["fields"]) == COLUMNS
    kinds = dict(zip(info["fields"], info["ogr_types"], strict=True))
    assert kinds["determination:datetime"] == "OFTDateTime" and kinds["id"] == "OFTString"
    stamps = pyogrio.raw.read(
        fields["gpkg"], columns=["determination:datetime"], datetime_as_string=True
    )[3][0]
    assert set(stamps) == {f"{DATE}T00:00:00Z"}  # UTC, as in the GeoParquet
    table = pq.read_table(fields["parquet"]).sort_by("field_id")
    meta, _, _, data = pyogrio.raw.read(fields["gpkg"])
    gpkg = dict(zip(meta["fields"], data, strict=True))
    for name in ("id", "field_id", "metrics:area", "score", "tile", "date"):
        assert gpkg[name].tolist() == table.column(name).to_pylist()
