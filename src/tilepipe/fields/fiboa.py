"""The fields layer's columns: fiboa 0.3.0 core (on Vecorel 0.1.0) plus tilepipe's own.

fiboa core (github.com/fiboa/specification, core/schema/schema.yaml at v0.3.0) inherits ``id``,
``collection`` and ``geometry`` (required) from Vecorel core (github.com/vecorel/specification
v0.1.0) and defines ``metrics:area`` and ``metrics:perimeter`` (SDL ``float``: Parquet FLOAT),
``determination:method`` and ``determination:datetime`` (UTC, milliseconds). A GeoParquet file
names its schemas under the ``collection`` file-metadata key; tilepipe's own columns are
described there too, under ``schemas:custom`` (the Vecorel CLI's place for them), so fiboa-cli
checks their types and ranges instead of warning that they have no schema.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

VECOREL_SCHEMA = "https://vecorel.org/specification/v0.1.0/schema.yaml"
FIBOA_SCHEMA = "https://fiboa.org/specification/v0.3.0/schema.yaml"
SDL_SCHEMA = "https://vecorel.org/sdl/v0.2.0/schema.json"
#: The collection every tilepipe field belongs to; ``id`` is unique across a whole campaign.
COLLECTION = "tilepipe"
#: fiboa's value for boundaries made by computer vision or ML from imagery.
METHOD = "auto-imagery"

COLUMNS = (
    "id",
    "collection",
    "field_id",
    "metrics:area",
    "metrics:perimeter",
    "determination:method",
    "determination:datetime",
    "score",
    "boundary_score",
    "masked_share",
    "tile",
    "date",
)
#: Vecorel's required properties: non-nullable Parquet fields.
REQUIRED = ("id", "collection", "geometry")

#: tilepipe's own columns in Vecorel SDL (written as ``schemas:custom``). ``bbox`` (Vecorel's
#: optional bounding box, here the GeoParquet covering) is required: GeoParquet 1.1 says a
#: covering column repeats as its geometry does, and Vecorel's geometry is required.
CUSTOM_SCHEMA = {
    "$schema": SDL_SCHEMA,
    "required": ["bbox"],
    "properties": {
        "field_id": {"type": "int64", "minimum": 1},
        "score": {"type": "double", "minimum": 0, "maximum": 1},
        "boundary_score": {"type": "double", "minimum": 0, "maximum": 1},
        "tile": {"type": "string"},
        "date": {"type": "string"},
        "masked_share": {"type": "double", "minimum": 0, "maximum": 1},
        "dates": {"type": "string"},
        "n_dates": {"type": "int64", "minimum": 0},
        "agreement": {"type": "double", "minimum": 0, "maximum": 1},
        "crop": {"type": "string"},
        "crop_prob": {"type": "double", "minimum": 0, "maximum": 1},
        "also_in": {"type": "string"},
    },
}
#: Per-field values field_columns turns into fiboa's columns (the rest pass through).
CONSUMED = ("field_id", "area_m2", "perimeter_m", "score", "boundary_score", "tile", "date")


def collection_metadata() -> dict:
    """The ``collection`` file metadata: the schemas of collection ``tilepipe`` and our own."""
    schemas = {COLLECTION: [VECOREL_SCHEMA, FIBOA_SCHEMA]}
    return {"schemas": schemas, "schemas:custom": CUSTOM_SCHEMA}


def field_ids(field_id: np.ndarray, tile: str, date: str) -> np.ndarray:
    """fiboa ``id``: ``{tile}_{date}_{field_id}``, unique across the scenes of a campaign."""
    return np.array([f"{tile}_{date}_{int(i)}" for i in field_id], dtype=object)


def observed(date: str, n: int) -> np.ndarray:
    """``determination:datetime``: the scene's date at 00:00 UTC (ms); NaT when it is unknown
    (a season layer's name is not a date)."""
    try:
        day = np.datetime64(str(date), "D")
    except ValueError:
        day = np.datetime64("NaT", "D")
    if str(day) != str(date):  # one round trip: "2022" parses, as 2022-01-01, but is no date
        day = np.datetime64("NaT", "D")
    return np.full(n, day, dtype="datetime64[ms]")


def field_columns(columns: dict[str, np.ndarray], n: int, tile: str, date: str) -> dict:
    """The layer's columns in COLUMNS order, from the polygons' per-field values, then any
    other per-field column (a season's provenance) as it is."""
    fid = np.asarray(columns["field_id"], dtype=np.int64)
    extra = {
        k: np.asarray(v)
        for k, v in columns.items()
        if k not in CONSUMED and k not in COLUMNS and not k.startswith("_")
    }
    masked = np.asarray(columns.get("masked_share", np.full(n, np.nan)), dtype=np.float64)
    return {
        "id": field_ids(fid, tile, date),
        "collection": np.array([COLLECTION] * n, dtype=object),
        "field_id": fid,
        "metrics:area": np.asarray(columns["area_m2"], dtype=np.float32),
        "metrics:perimeter": np.asarray(columns["perimeter_m"], dtype=np.float32),
        "determination:method": np.array([METHOD] * n, dtype=object),
        "determination:datetime": observed(date, n),
        "score": np.asarray(columns["score"], dtype=np.float64),
        "boundary_score": np.asarray(columns["boundary_score"], dtype=np.float64),
        "masked_share": masked,  # NaN: no mask was given
        "tile": np.array([tile] * n, dtype=object),
        "date": np.array([date] * n, dtype=object),
    } | extra


def _arrow_type(values: np.ndarray) -> pa.DataType:
    """The Arrow type of an extra column: float64, int64 or string by its NumPy kind."""
    if values.dtype.kind == "f":
        return pa.float64()
    if values.dtype.kind in "iu":
        return pa.int64()
    return pa.string()


def arrow_columns(cols: dict[str, np.ndarray]) -> dict[str, pa.Array]:
    """The columns as Arrow arrays of the types fiboa's Parquet mapping asks for."""
    types = {
        "field_id": pa.int64(),
        "metrics:area": pa.float32(),
        "metrics:perimeter": pa.float32(),
        "determination:datetime": pa.timestamp("ms", tz="UTC"),
        "score": pa.float64(),
        "boundary_score": pa.float64(),
        "masked_share": pa.float64(),
    }
    out = {}
    for name, values in cols.items():
        kind = types.get(name) or _arrow_type(np.asarray(values))
        if name == "determination:datetime":
            out[name] = pa.array(values.astype("int64"), type=pa.int64(), mask=np.isnat(values))
            out[name] = out[name].cast(kind)
        else:
            out[name] = pa.array(values, type=kind)
    return out
