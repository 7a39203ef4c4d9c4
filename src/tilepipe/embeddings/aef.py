"""AlphaEarth Foundations (AEF) embeddings: bottom-up int8 COGs onto a tile's 10 m grid.

AEF annual embeddings come as COGs of 64 int8 bands per UTM zone and year, with nodata −128
and a *positive* y pixel size: row 0 is the southern edge. GDAL's ``from_bounds`` and windowed
reads by bounds assume north-up rasters, so every read here is by pixel index, computed with the
inverse of the file's own transform, and the rows are flipped to north-up afterwards.

Files are found through the dataset's index, ``aef_index.parquet`` beside the ``{year}/``
directories (``gs://alphaearth_foundations/satellite_embedding/v1/annual/`` and its Source
Cooperative copy ``https://data.source.coop/tge-labs/aef/v1/annual/``). Its columns, from the
official README (https://developers.google.com/earth-engine/guides/aef_on_gcs_readme, "Manifest
and index"): a WGS84 polygon geometry, ``crs`` (``EPSG:326xx``), ``year``, ``utm_zone``
(``10N``), ``utm_west/south/east/north`` and ``wgs84_west/south/east/north``; the file's
location is the ``path`` column (not in the README; as aef-loader and rasteret read it: an
``s3://``/``gs://`` URL). A relative ``path`` is taken relative to the index.

The official dequantisation (same README, "De-quantization") is the signed square
``((v / 127.5) ** 2) * sign(v)``, the default here; ``linear`` (``v / 127.5``) stays as an
alternative. Official vectors have unit length, so each build checks the norms of the vectors
it produced and rejects a formula that does not give unit vectors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import array_bounds
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from tilepipe.core.errors import InputError, context
from tilepipe.embeddings.mosaic import (
    TargetGrid,
    fill_nan_from,
    fill_windows,
    label,
    mosaic_writer,
    target_grid,
)
from tilepipe.embeddings.remote import is_url, join, local_copy

AEF_NODATA = -128
AEF_BANDS = 64
INDEX = "aef_index.parquet"
INDEX_COLUMNS = ("path", "year", "crs", "wgs84_west", "wgs84_south", "wgs84_east", "wgs84_north")
DEFAULT_CACHE = Path("cache/embeddings")  # the index of a remote source, relative to the cwd
VSI = {"http://": "/vsicurl/http://", "https://": "/vsicurl/https://", "s3://": "/vsis3/"}
VSI["gs://"] = "/vsigs/"

#: Dequantisation formulas by name: int8 (as float64) -> float embedding value.
DEQUANTISE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "signed_square": lambda v: np.square(v / 127.5) * np.sign(v),
    "linear": lambda v: v / 127.5,
}


def dequantise_aef(raw: np.ndarray, formula: str = "signed_square") -> np.ndarray:
    """Return float32 (C, h, w) embeddings from int8 (C, h, w); pixels holding −128 are NaN."""
    if formula not in DEQUANTISE:
        raise InputError(f"unknown AEF dequantisation {formula!r} (known: {sorted(DEQUANTISE)})")
    raw = np.asarray(raw)
    if raw.dtype != np.int8:
        raise InputError(f"AEF embeddings must be int8, got {raw.dtype}")
    out = DEQUANTISE[formula](raw.astype(np.float64)).astype(np.float32)
    out[:, np.any(raw == AEF_NODATA, axis=0)] = np.nan
    return out


def norm_stats(values: np.ndarray, tolerance: float) -> tuple[int, int, float]:
    """(valid vectors, vectors with |norm − 1| <= tolerance, sum of norms) of (C, h, w) values."""
    flat = values.reshape(values.shape[0], -1)
    ok = np.isfinite(flat).all(axis=0)
    norms = np.linalg.norm(flat[:, ok].astype(np.float64), axis=0)
    return int(ok.sum()), int(np.sum(np.abs(norms - 1.0) <= tolerance)), float(norms.sum())


@dataclass
class AefFile:
    """One AEF COG's header: where it lies and how it is stored (``path`` as GDAL opens it)."""

    path: str
    crs: CRS
    transform: Affine
    width: int
    height: int
    count: int


def read_index(path: str | os.PathLike) -> dict[str, list]:
    """The columns of ``aef_index.parquet`` tilepipe uses, InputError naming it if unusable."""
    try:
        names = pq.read_schema(path).names
        missing = sorted(set(INDEX_COLUMNS) - set(names))
        if missing:
            raise InputError(f"{context(path=path)}AEF index lacks columns {missing}")
        return pq.read_table(path, columns=list(INDEX_COLUMNS)).to_pydict()
    except (OSError, ValueError) as exc:
        raise InputError(f"{context(path=path)}AEF index unreadable: {exc}") from exc


def gdal_path(path: str, source: str | os.PathLike) -> str:
    """The GDAL name of an index ``path``: URLs through /vsicurl/, /vsis3/ or /vsigs/; a
    relative path under ``source`` (a directory or URL)."""
    for scheme, prefix in VSI.items():
        if path.startswith(scheme):
            return prefix + path[len(scheme) :]
    if Path(path).is_absolute():
        return path
    return gdal_path(join(source, path), source) if is_url(source) else join(source, path)


def indexed_files(
    index: dict[str, list], year: int, lonlat: Sequence[float]
) -> list[tuple[str, str]]:
    """(path, crs) of the index rows of ``year`` whose WGS84 bounds meet ``lonlat``, by path."""
    west, south, east, north = lonlat
    rows = zip(
        index["path"],
        index["year"],
        index["crs"],
        index["wgs84_west"],
        index["wgs84_south"],
        index["wgs84_east"],
        index["wgs84_north"],
        strict=True,
    )
    return sorted(
        (p, c)
        for p, y, c, w, s, e, n in rows
        if int(y) == year and w <= east and e >= west and s <= north and n >= south
    )


def read_header(path: str) -> AefFile:
    """Open one AEF COG's header; InputError unless it is int8, nodata −128, with a CRS."""
    try:
        with rasterio.open(path) as src:
            header = AefFile(path, src.crs, src.transform, src.width, src.height, src.count)
            dtype, nodata = src.dtypes[0], src.nodata
    except rasterio.RasterioIOError as exc:
        raise InputError(f"{context(path=path)}AEF file unreadable: {exc}") from exc
    if dtype != "int8" or header.crs is None:
        raise InputError(f"{context(path=path)}AEF files are int8 with a CRS, got {dtype}")
    if nodata is not None and nodata != AEF_NODATA:
        raise InputError(f"{context(path=path)}AEF nodata must be {AEF_NODATA}, got {nodata}")
    if header.transform.b or header.transform.d:
        raise InputError(f"{context(path=path)}rotated AEF rasters are not supported")
    return header


def find_aef(
    source: str | os.PathLike, year: int, grid: TargetGrid, cache: str | os.PathLike | None
) -> tuple[str, list[AefFile]]:
    """(index location, headers of the COGs its rows list for ``year`` over ``grid``)."""
    cache = Path(cache) if cache is not None else DEFAULT_CACHE
    if is_url(source):
        cache = cache / "aef" / str(source).split("://", 1)[1].replace("/", "_")
    index = read_index(
        local_copy(source, INDEX, cache, what=f"{context(path=join(source, INDEX))}AEF {INDEX}")
    )
    lonlat = transform_bounds(grid.crs, "EPSG:4326", *grid.bounds(), densify_pts=21)
    rows = indexed_files(index, year, lonlat)
    return join(source, INDEX), [read_header(gdal_path(p, source)) for p, _ in rows]


def pixel_window(bounds: Sequence[float], transform: Affine, width: int, height: int):
    """Integer pixel window (clipped to the raster) covering ``bounds`` in the raster's CRS.

    Works for north-up and bottom-up transforms alike: the bounds' corners go through the
    inverse transform and the window spans the rows and columns they touch. None if outside.
    """
    left, bottom, right, top = bounds
    inverse = ~transform
    cols, rows = zip(*(inverse * (x, y) for x in (left, right) for y in (bottom, top)), strict=True)
    c0, c1 = max(0, math.floor(min(cols)) - 1), min(width, math.ceil(max(cols)) + 1)
    r0, r1 = max(0, math.floor(min(rows)) - 1), min(height, math.ceil(max(rows)) + 1)
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def read_north_up(src: rasterio.DatasetReader, win: Window) -> tuple[np.ndarray, Affine]:
    """Read ``win`` by pixel index and return it north-up with its north-up transform."""
    data = src.read(window=win)
    transform = window_transform(win, src.transform)
    if transform.e > 0:  # bottom-up: row 0 is the south edge
        data = data[:, ::-1, :]
        transform = transform * Affine.translation(0, win.height) * Affine.scale(1, -1)
    return np.ascontiguousarray(data), transform


def _files_on_grid(
    files: list[AefFile], grid: TargetGrid, index: str, year: int, tile: str | None
) -> tuple[list[AefFile], int]:
    """The AEF files whose pixels meet the grid, and their band count (all must agree)."""
    used = []
    for f in files:
        bounds = transform_bounds(grid.crs, f.crs, *grid.bounds())
        if pixel_window(bounds, f.transform, f.width, f.height) is not None:
            used.append(f)
    if not used:
        raise InputError(
            f"{context(tile)}year {year}: no AEF file listed in {index} covers "
            f"the target grid ({len(files)} rows meet its lon/lat bounds)"
        )
    counts = {f.count for f in used}
    if len(counts) > 1:
        raise InputError(f"{context(tile)}year {year}: AEF files disagree on bands {counts}")
    return used, counts.pop()


@dataclass
class _FileFill:
    """Fills output windows from the AEF files in order; sums the norms of what it filled."""

    files: list[AefFile]
    crs: CRS
    formula: str
    tolerance: float
    valid: int = 0  # vectors with every band finite
    unit: int = 0  # of those, vectors within ``tolerance`` of unit length
    norm_sum: float = 0.0

    def __call__(self, out: np.ndarray, win: Window, win_transform: Affine) -> None:
        for f in self.files:
            _fill_from(out, f, self.crs, win_transform, self.formula)
        n, n_unit, s = norm_stats(out, self.tolerance)
        self.valid, self.unit, self.norm_sum = self.valid + n, self.unit + n_unit, self.norm_sum + s


def _check_norms(fill: _FileFill, min_unit_fraction: float, path: str, year: int, tile) -> None:
    """Refuse an all-nodata result, or one whose vectors are not unit length (wrong formula)."""
    if fill.valid == 0:
        raise InputError(f"{context(tile)}year {year}: the AEF embeddings are all nodata")
    if fill.unit / fill.valid < min_unit_fraction:
        other = next(name for name in DEQUANTISE if name != fill.formula)
        raise InputError(
            f"{context(tile, path=path)}year {year}: dequantisation {fill.formula!r} "
            f"gives unit-length vectors for only {fill.unit / fill.valid:.1%} of pixels (mean "
            f"norm {fill.norm_sum / fill.valid:.3f}); AEF vectors are unit length: try {other!r}"
        )


def build_tile_embeddings_aef(
    source: str | os.PathLike,
    year: int,
    dst: str | os.PathLike,
    *,
    crs,
    transform: Affine,
    width: int,
    height: int,
    formula: str = "signed_square",
    tolerance: float = 0.05,
    min_unit_fraction: float = 0.9,
    tile: str | None = None,
    cache: str | os.PathLike | None = None,
) -> dict:
    """Mosaic AEF COGs onto a target grid as float32 (NaN nodata), checking unit-length vectors.

    ``source`` holds ``aef_index.parquet`` (a directory or URL; a remote index is fetched into
    ``cache``); the index rows of ``year`` meeting the grid name the COGs, read in place
    (HTTP range reads for URLs). Where files overlap the first (by path) wins. The build fails
    with InputError, leaving no output, when no file covers the grid, when the result is all
    nodata, or when fewer than ``min_unit_fraction`` of the vectors have a norm within
    ``tolerance`` of 1 (wrong formula).
    """
    grid = target_grid(crs, transform, width, height, tile)
    if formula not in DEQUANTISE:
        raise InputError(f"unknown AEF dequantisation {formula!r} (known: {sorted(DEQUANTISE)})")
    index, files = find_aef(source, year, grid, cache)
    used, count = _files_on_grid(files, grid, index, year, tile)
    fill = _FileFill(used, grid.crs, formula, tolerance)
    with mosaic_writer(dst, grid, count) as out_ds:
        fill_windows(out_ds, grid, fill)
        label(
            out_ds,
            "aef",
            tile,
            year,
            EMBEDDINGS_SOURCE="aef",
            AEF_DEQUANTISE=formula,
            EMBEDDINGS_FILES=",".join(f.path.rsplit("/", 1)[-1] for f in used),
        )
        _check_norms(fill, min_unit_fraction, used[0].path, year, tile)
    return {
        "path": str(dst),
        "files": [f.path for f in used],
        "bands": count,
        "valid_fraction": fill.valid / (width * height),
        "unit_fraction": fill.unit / fill.valid,
        "mean_norm": fill.norm_sum / fill.valid,
    }


def _fill_from(out: np.ndarray, f: AefFile, crs: CRS, dst_transform: Affine, formula: str):
    """Fill NaN pixels of ``out`` (C, h, w) from one AEF file, read by pixel index."""
    _, h, w = out.shape
    bounds = transform_bounds(crs, f.crs, *array_bounds(h, w, dst_transform))
    win = pixel_window(bounds, f.transform, f.width, f.height)
    if win is None:
        return
    with rasterio.open(f.path) as src:
        raw, src_transform = read_north_up(src, win)
    values = dequantise_aef(raw, formula)
    fill_nan_from(out, values, src_transform, f.crs, dst_transform, crs)
