"""GeoParquet 1.0 writing and reading: WKB geometry column plus the 'geo' file metadata.

pyogrio's GDAL here has no Parquet driver, so tables are written with pyarrow: attribute
columns as Arrow arrays, geometries as WKB (shapely) and the GeoParquet 1.0.0 ``geo`` key with
the CRS as PROJJSON, the geometry types and the bounding box, which GDAL, GeoPandas, DuckDB and
QGIS read.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from pyproj import CRS

from tilepipe.core.raster import atomic_output

GEOPARQUET_VERSION = "1.0.0"


def geo_metadata(geoms: list, crs: str | None) -> dict:
    """The GeoParquet ``geo`` metadata for one WKB ``geometry`` column."""
    types = sorted({g.geom_type for g in geoms})
    column: dict[str, object] = {"encoding": "WKB", "geometry_types": types}
    if crs:
        column["crs"] = CRS.from_user_input(crs).to_json_dict()
    if geoms:
        column["bbox"] = [float(v) for v in shapely.total_bounds(np.array(geoms, dtype=object))]
    return {
        "version": GEOPARQUET_VERSION,
        "primary_column": "geometry",
        "columns": {"geometry": column},
    }


def write_geoparquet(
    path: str | os.PathLike, geoms: list, columns: dict[str, np.ndarray], crs: str | None
) -> None:
    """Write attribute ``columns`` and ``geoms`` as a GeoParquet file, atomically."""
    wkb = shapely.to_wkb(np.array(geoms, dtype=object)) if geoms else []
    arrays = {name: pa.array(np.asarray(values).tolist()) for name, values in columns.items()}
    arrays["geometry"] = pa.array(list(wkb), type=pa.binary())
    table = pa.table(arrays)
    meta = {**(table.schema.metadata or {}), b"geo": json.dumps(geo_metadata(geoms, crs)).encode()}
    table = table.replace_schema_metadata(meta)
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_geoparquet(path: str | os.PathLike) -> tuple[dict, list, dict[str, np.ndarray]]:
    """Read a GeoParquet file: (geo metadata, shapely geometries, {column: numpy array})."""
    table = pq.read_table(path)
    geo = json.loads(table.schema.metadata[b"geo"])
    geom_col = geo["primary_column"]
    geoms = list(shapely.from_wkb(table.column(geom_col).to_pylist()))
    columns = {n: table.column(n).to_numpy() for n in table.column_names if n != geom_col}
    return geo, geoms, columns
