"""The campaign's fields as one hive-partitioned GeoParquet dataset.

Each tile-date's ``fields.parquet`` becomes ``tile=<tile>/date=<date>/part.parquet`` under the
dataset root, unchanged except that the ``tile`` and ``date`` columns move into the path (hive
convention: readers add them back from it, and a column in both places is a conflict for
pyarrow). Compression, row-group size, column order and the ``geo`` metadata are the scene
file's. One call reads the whole campaign: ``pyarrow.parquet.read_table(root)``,
``geopandas.read_parquet(root)`` or DuckDB's ``read_parquet('root/*/*/*.parquet',
hive_partitioning = true)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tilepipe.core.errors import InputError, context
from tilepipe.core.raster import atomic_output

PARTITION_KEYS = ("tile", "date")
PART_NAME = "part.parquet"


def partition_path(root: str | os.PathLike, tile: str, date: str) -> Path:
    """The partition file of one tile-date under the dataset root."""
    return Path(root) / f"tile={tile}" / f"date={date}" / PART_NAME


def _scene_table(path: Path, tile: str, date: str) -> tuple[pa.Table, pq.FileMetaData]:
    """The scene's fields and file metadata; its tile and date columns must name this scene."""
    try:
        file = pq.ParquetFile(path)
        table = file.read()
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{context(tile, date, path)}not a readable GeoParquet ({exc})") from exc
    if b"geo" not in (table.schema.metadata or {}):
        raise InputError(f"{context(tile, date, path)}no GeoParquet 'geo' metadata")
    for key, want in zip(PARTITION_KEYS, (tile, date), strict=True):
        if key in table.column_names and set(table[key].to_pylist()) - {want}:
            raise InputError(f"{context(tile, date, path)}column {key} holds another {key}")
    return table, file.metadata


def write_partition(src: str | os.PathLike, dest: str | os.PathLike, tile: str, date: str) -> int:
    """Write one scene's fields as its campaign partition; returns the number of fields."""
    table, meta = _scene_table(Path(src), tile, date)
    metadata = table.schema.metadata
    table = table.drop_columns([k for k in PARTITION_KEYS if k in table.column_names])
    table = table.replace_schema_metadata(metadata)
    compression = meta.row_group(0).column(0).compression if meta.num_row_groups else "ZSTD"
    rows = max((meta.row_group(i).num_rows for i in range(meta.num_row_groups)), default=1)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(dest) as tmp:
        pq.write_table(table, tmp, compression=compression, row_group_size=max(rows, 1))
    return table.num_rows


def read_campaign_fields(root: str | os.PathLike) -> pa.Table:
    """Every partition under ``root`` as one table, ``tile`` and ``date`` from the paths."""
    return pq.read_table(root, partitioning="hive")
