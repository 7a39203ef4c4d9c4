"""GeoParquet 1.1 writing and reading: WKB geometry column plus the 'geo' file metadata.

pyogrio's GDAL here has no Parquet driver, so tables are written with pyarrow: attribute
columns as Arrow arrays, geometries as WKB (shapely) and the GeoParquet 1.1.0 ``geo`` key with
the CRS as PROJJSON, the geometry types and the bounding box, which GDAL, GeoPandas, DuckDB and
QGIS read. For distribution (``covering=True``, ``spatial_order=True``) a file follows the
GeoParquet best practices (format-specs/distributing-geoparquet.md): a ``bbox`` covering column
declared in the metadata, rows in Hilbert order of their bounding-box centres, ZSTD level 15 and
at most ``ROW_GROUP_SIZE`` rows per row group, so readers can skip row groups by their
statistics.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from pyproj import CRS

from tilepipe.core.raster import atomic_output

GEOPARQUET_VERSION = "1.1.0"
#: Rows per row group: the best practices' 50,000-150,000.
ROW_GROUP_SIZE = 100_000
#: ZSTD level: the best practices' 15 (decompression speed does not depend on it).
ZSTD_LEVEL = 15
#: Cells per side of the Hilbert curve's grid over the data's extent (2**16).
HILBERT_BITS = 16
BBOX = "bbox"
_BBOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


def geo_metadata(geoms: list, crs: str | None, *, covering: bool = False) -> dict:
    """The GeoParquet ``geo`` metadata for one WKB ``geometry`` column (and its bbox covering)."""
    types = sorted({g.geom_type for g in geoms})
    column: dict[str, object] = {"encoding": "WKB", "geometry_types": types}
    if crs:
        column["crs"] = CRS.from_user_input(crs).to_json_dict()
    if geoms:
        column["bbox"] = [float(v) for v in shapely.total_bounds(np.array(geoms, dtype=object))]
    if covering:
        column["covering"] = {BBOX: {k: [BBOX, k] for k in _BBOX_FIELDS}}
    return {
        "version": GEOPARQUET_VERSION,
        "primary_column": "geometry",
        "columns": {"geometry": column},
    }


def hilbert_index(x: np.ndarray, y: np.ndarray, bits: int = HILBERT_BITS) -> np.ndarray:
    """Hilbert curve distance of integer cell coordinates (0 <= x, y < 2**bits), vectorised."""
    x, y = x.astype(np.int64), y.astype(np.int64)
    d = np.zeros(x.shape, dtype=np.int64)
    s = 1 << (bits - 1)
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        d += s * s * ((3 * rx) ^ ry)
        # rotate the quadrant so the curve stays continuous (the classic xy2d step)
        flip = ~ry & rx
        x = np.where(flip, s - 1 - x, x)
        y = np.where(flip, s - 1 - y, y)
        swap = ~ry
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        x, y = x & (s - 1), y & (s - 1)
        s >>= 1
    return d


def hilbert_order(bounds: np.ndarray, bits: int = HILBERT_BITS) -> np.ndarray:
    """Row order by the Hilbert index of each bounding box's centre over the total extent."""
    if len(bounds) == 0:
        return np.zeros(0, dtype=np.int64)
    cx = (bounds[:, 0] + bounds[:, 2]) / 2
    cy = (bounds[:, 1] + bounds[:, 3]) / 2
    cells = (1 << bits) - 1

    def scale(v: np.ndarray) -> np.ndarray:
        span = float(v.max() - v.min())
        return np.zeros(v.shape, np.int64) if span == 0 else ((v - v.min()) / span * cells)

    return np.argsort(hilbert_index(scale(cx), scale(cy), bits), kind="stable")


def _bbox_array(bounds: np.ndarray) -> pa.StructArray:
    """The covering column: one struct of xmin, ymin, xmax, ymax (float64) per geometry."""
    arrays = [pa.array(bounds[:, i], type=pa.float64()) for i in range(4)]
    return pa.StructArray.from_arrays(arrays, names=list(_BBOX_FIELDS))


def _as_arrow(values) -> pa.Array:
    """An attribute column as an Arrow array (Arrow arrays are kept as they are)."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    return pa.array(np.asarray(values).tolist())


def write_geoparquet(
    path: str | os.PathLike,
    geoms: list,
    columns: dict,
    crs: str | None,
    *,
    covering: bool = False,
    spatial_order: bool = False,
    required: Collection[str] = (),
    metadata: dict[str, object] | None = None,
    row_group_size: int = ROW_GROUP_SIZE,
) -> None:
    """Write attribute ``columns`` and ``geoms`` as a GeoParquet file, atomically.

    ``columns`` maps names to numpy or Arrow arrays; names in ``required`` (``geometry``
    included) are written as non-nullable fields, and so is the covering when ``geometry`` is
    among them; ``metadata`` adds JSON-encoded file metadata
    keys beside ``geo``.
    """
    geo_arr = np.array(geoms, dtype=object) if geoms else np.zeros(0, dtype=object)
    bounds = shapely.bounds(geo_arr).reshape(-1, 4) if len(geo_arr) else np.zeros((0, 4))
    order = hilbert_order(bounds) if spatial_order else np.arange(len(geo_arr))
    arrays = {name: _as_arrow(values).take(pa.array(order)) for name, values in columns.items()}
    arrays["geometry"] = pa.array(list(shapely.to_wkb(geo_arr[order])), type=pa.binary())
    if covering:
        arrays[BBOX] = _bbox_array(bounds[order])
    # a covering column repeats as its geometry does (GeoParquet 1.1, bbox covering encoding)
    nullable = {n: n not in required for n in arrays} | {BBOX: "geometry" not in required}
    fields = [pa.field(n, a.type, nullable=nullable[n]) for n, a in arrays.items()]
    meta = {"geo": geo_metadata(list(geo_arr), crs, covering=covering), **(metadata or {})}
    schema = pa.schema(fields, metadata={k: json.dumps(v) for k, v in meta.items()})
    table = pa.Table.from_arrays(list(arrays.values()), schema=schema)
    with (
        atomic_output(path) as tmp,
        pq.ParquetWriter(tmp, schema, compression="zstd", compression_level=ZSTD_LEVEL) as out,
    ):
        if table.num_rows:  # no rows, no row group: an empty one would have no statistics
            out.write_table(table, row_group_size=row_group_size)


def read_geoparquet(path: str | os.PathLike) -> tuple[dict, list, dict[str, np.ndarray]]:
    """Read a GeoParquet file: (geo metadata, shapely geometries, {column: numpy array}).

    The bbox covering column, when declared, is left out of the columns.
    """
    table = pq.read_table(path)
    geo = json.loads(table.schema.metadata[b"geo"])
    geom_col = geo["primary_column"]
    covering = geo["columns"][geom_col].get("covering", {}).get(BBOX, {})
    skip = {geom_col, *(v[0] for v in covering.values())}
    geoms = list(shapely.from_wkb(table.column(geom_col).to_pylist()))
    columns = {n: table.column(n).to_numpy() for n in table.column_names if n not in skip}
    return geo, geoms, columns
