"""Embedding pixels of field polygons: per-field sums, statistics and uniform pixel samples.

Embeddings are read window by window and only per-field accumulators are kept, so memory is one
window plus n_fields x bands (x the sample size) whatever the raster size. A pixel belongs to a
field when its centre lies inside the polygon.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform

from tilepipe.core.errors import InputError, context
from tilepipe.core.inputs import EMBEDDINGS, mismatch

_WINDOW = 256  # embedding pixels per side read at once (x C bands x float32)


def block_windows(width: int, height: int, size: int) -> Iterator[Window]:
    """Windows of at most ``size`` x ``size`` pixels tiling a raster row by row, edges clipped."""
    for r0 in range(0, height, size):
        for c0 in range(0, width, size):
            yield Window(c0, r0, min(size, width - c0), min(size, height - r0))


def as_geometries(geoms: Sequence) -> np.ndarray:
    """Shapely geometry array from shapely objects or WKB."""
    arr = np.asarray(list(geoms), dtype=object)
    if arr.size and isinstance(arr[0], (bytes, bytearray, memoryview)):
        return shapely.from_wkb(arr)
    return arr


def to_crs(geoms: np.ndarray, src_crs, dst_crs) -> np.ndarray:
    """Reproject geometries into the embeddings' CRS with a pyproj Transformer (x/y order).

    Geometries without a CRS are taken to be in the raster's CRS already; None stays empty.
    """
    if src_crs is None or not len(geoms):
        return geoms
    src, dst = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    if src == dst:
        return geoms
    transformer = Transformer.from_crs(src.to_wkt(), dst.to_wkt(), always_xy=True)

    def move(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))

    out = np.array([shapely.Polygon() if g is None else g for g in geoms], dtype=object)
    return shapely.transform(out, move)


def read_layer(path, layer: str, required: Sequence[str], what: str, tile=None, date=None):
    """Read a GeoPackage layer with pyogrio.raw; return (meta, wkb array, {column: array})."""
    import pyogrio.raw

    try:
        meta, _, geometry, field_data = pyogrio.raw.read(path, layer=layer)
    except Exception as exc:  # missing file, wrong layer, corrupt GeoPackage
        raise InputError(f"{context(tile, date, path)}{what} unreadable: {exc}") from exc
    columns = dict(zip(meta["fields"], field_data, strict=True))
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputError(f"{context(tile, date, path)}{what} lacks columns {missing}")
    if geometry is None:
        geometry = np.zeros(0, dtype=object)
    return meta, geometry, columns


def open_embeddings(emb_path, tile=None, date=None) -> rasterio.DatasetReader:
    """Open an embeddings GeoTIFF; an unreadable one, or one of another kind (not float32 on
    the tile's 10 m grid), is an InputError naming tile, date, file and the mismatch."""
    try:
        src = rasterio.open(emb_path)
    except rasterio.RasterioIOError as exc:
        raise InputError(f"{context(tile, date, emb_path)}embeddings unreadable: {exc}") from exc
    wrong = mismatch(src, EMBEDDINGS, tile)
    if wrong:
        src.close()
        raise InputError(f"{context(tile, date, emb_path)}{wrong}")
    return src


def _field_bounds(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which geometries are non-empty, and their (n, 4) bounds (NaN rows for the empty ones)."""
    valid = np.array([g is not None and not g.is_empty for g in geoms], dtype=bool)
    bounds = np.full((len(geoms), 4), np.nan)
    if valid.any():
        bounds[valid] = shapely.bounds(geoms[valid].astype(object))
    return valid, bounds


def _fields_in(win: Window, transform, valid: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Indices of the fields whose bounding box overlaps the window, so only they are burnt."""
    left, bottom, right, top = window_bounds(win, transform)
    overlaps = (
        (bounds[:, 0] < right)
        & (bounds[:, 2] > left)
        & (bounds[:, 1] < top)
        & (bounds[:, 3] > bottom)
    )
    return np.nonzero(valid & overlaps)[0]


def _field_pixels(
    geoms: np.ndarray, src: rasterio.DatasetReader
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (field index, pixel embeddings (m, C)) per window for finite pixels inside fields."""
    if len(geoms) == 0:
        return
    valid, bounds = _field_bounds(geoms)
    for win in block_windows(src.width, src.height, _WINDOW):
        sel = _fields_in(win, src.transform, valid, bounds)
        if not sel.size:
            continue
        ids = rasterize(
            ((geoms[i], int(i) + 1) for i in sel),
            out_shape=(int(win.height), int(win.width)),
            transform=window_transform(win, src.transform),
            fill=0,
            dtype="int32",
        )
        inside = ids > 0
        if not inside.any():
            continue
        values = src.read(window=win, out_dtype="float32")[:, inside].T  # (m, C)
        finite = np.isfinite(values).all(axis=1)
        yield ids[inside][finite] - 1, values[finite]


class _Sample:
    """Up to k pixels per field chosen uniformly: the k smallest random keys of each field win.

    New pixels wait in a pending list; pruning runs once they outnumber the kept ones, so the
    total work stays linear in the number of pixels seen.
    """

    def __init__(self, bands: int):
        self.idx = np.zeros(0, dtype=np.int64)
        self.key = np.zeros(0, dtype=np.float64)
        self.x = np.zeros((0, bands), dtype=np.float32)
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.n_pending = 0

    def add(self, idx: np.ndarray, key: np.ndarray, x: np.ndarray, k: int) -> None:
        """Queue pixels (field index, random key, embedding); prune once the queue is large."""
        self.pending.append((idx, key, x.astype(np.float32, copy=False)))
        self.n_pending += idx.size
        if self.n_pending > max(self.idx.size, 1 << 20):
            self._prune(k)

    def _prune(self, k: int) -> None:
        """Keep, per field, the k pixels with the smallest keys among kept and pending ones."""
        if not self.pending:
            return
        idx = np.concatenate([self.idx, *(p[0] for p in self.pending)])
        key = np.concatenate([self.key, *(p[1] for p in self.pending)])
        x = np.concatenate([self.x, *(p[2] for p in self.pending)])
        self.pending, self.n_pending = [], 0
        order = np.lexsort((key, idx))
        sorted_idx = idx[order]
        rank = np.arange(order.size) - np.searchsorted(sorted_idx, sorted_idx, side="left")
        order = order[rank < k]
        self.idx, self.key, self.x = idx[order], key[order], x[order]

    def result(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The sample: (field index (m,), embeddings (m, C) float32)."""
        self._prune(k)
        return self.idx, self.x


def _add_sums(
    sums: np.ndarray, squares: np.ndarray | None, idx: np.ndarray, values: np.ndarray
) -> None:
    """Add one window's pixels to the per-field band sums (and sums of squares), in place."""
    n = len(sums)
    for b in range(sums.shape[1]):
        sums[:, b] += np.bincount(idx, weights=values[:, b], minlength=n)
        if squares is not None:
            squares[:, b] += np.bincount(idx, weights=np.square(values[:, b]), minlength=n)


def scan_fields(
    geoms: Sequence,
    geoms_crs,
    emb_path,
    *,
    max_pixels: int = 0,
    rng: np.random.Generator | None = None,
    tile: str | None = None,
    date: str | None = None,
    sum_squares: list | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-field sums and counts over all pixels, plus up to ``max_pixels`` sampled per field.

    Returns (sums (n, C) float64, counts (n,), sample field index (m,), samples (m, C) float32).
    The sample is uniform within each field: every pixel gets a random key and the smallest
    ``max_pixels`` keys per field are kept, so memory stays bounded by n x max_pixels. When
    ``sum_squares`` is a list, the per-field sums of squares (n, C) are appended to it.
    """
    with open_embeddings(emb_path, tile, date) as src:
        geoms = to_crs(as_geometries(geoms), geoms_crs, src.crs)
        n, nb = len(geoms), src.count
        sums = np.zeros((n, nb), dtype=np.float64)
        squares = np.zeros((n, nb), dtype=np.float64) if sum_squares is not None else None
        counts = np.zeros(n, dtype=np.int64)
        kept = _Sample(nb)
        for idx, values in _field_pixels(geoms, src):
            counts += np.bincount(idx, minlength=n)
            _add_sums(sums, squares, idx, values)
            if max_pixels > 0:
                kept.add(idx, rng.random(idx.size), values, max_pixels)
        keep_idx, keep_x = kept.result(max_pixels)
    if sum_squares is not None:
        sum_squares.append(squares)
    return sums, counts, keep_idx, keep_x


def field_embedding_means(
    geoms: Sequence,
    geoms_crs,
    emb_path: str | os.PathLike,
    *,
    tile: str | None = None,
    date: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean embedding of each geometry's pixels (NaN pixels ignored) and its pixel count.

    ``geoms`` are shapely geometries or WKB in ``geoms_crs``; a pixel belongs to a geometry when
    its centre lies inside. Rows of fields without a valid pixel are NaN.
    """
    sums, counts, _, _ = scan_fields(geoms, geoms_crs, emb_path, tile=tile, date=date)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums / counts[:, None]).astype(np.float32)
    return means, counts


#: Per-field statistics ``field_embedding_stats`` can compute (besides the pixel count).
FIELD_STATS = ("mean", "std")


def field_embedding_stats(
    geoms: Sequence, geoms_crs, emb_path: str | os.PathLike, stats: Sequence[str] = ("mean",)
) -> dict[str, np.ndarray]:
    """Per-field statistics of the embedding pixels inside each geometry, in bounded memory.

    Pixels are visited window by window and only per-field sums (and sums of squares for
    ``std``) are kept, so memory is n_fields x bands whatever the raster size. Returns
    ``{"count": (n,), "mean": (n, C), "std": (n, C)}`` for the requested statistics; rows of
    fields without a valid pixel are NaN.
    """
    unknown = set(stats) - set(FIELD_STATS)
    if unknown:
        raise InputError(f"unknown field statistics {sorted(unknown)} (known: {FIELD_STATS})")
    squares: list | None = [] if "std" in stats else None
    sums, counts, _, _ = scan_fields(geoms, geoms_crs, emb_path, sum_squares=squares)
    out: dict[str, np.ndarray] = {"count": counts}
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts[:, None]
        if "mean" in stats:
            out["mean"] = mean.astype(np.float32)
        if squares is not None:
            var = np.maximum(squares[0] / counts[:, None] - np.square(mean), 0.0)
            out["std"] = np.sqrt(var).astype(np.float32)
    return out


@dataclass(frozen=True)
class TilePixels:
    """Embedding pixels of polygons spread over tiles, each read from its own tile's raster."""

    means: np.ndarray  # (n, C) float32 mean embedding per polygon, NaN without a pixel
    counts: np.ndarray  # (n,) valid pixels per polygon
    sample_row: np.ndarray  # (m,) polygon row of each sampled pixel
    x: np.ndarray  # (m, C) float32 sampled pixel embeddings
    tiles_without_embeddings: list[str]  # tiles of the polygons that no raster covers


def _mean_rows(means: np.ndarray, sums: np.ndarray, where: str) -> np.ndarray:
    """The means array, created at the first tile's band count; other counts are an error."""
    if means.shape[1] == 0:
        return np.full((len(means), sums.shape[1]), np.nan, dtype=np.float32)
    if sums.shape[1] != means.shape[1]:
        raise InputError(f"{where}{sums.shape[1]} bands, other tiles have {means.shape[1]}")
    return means


def sample_tiles(
    geometry: np.ndarray,
    crs,
    tiles: np.ndarray,
    embeddings: dict[str, str],
    *,
    max_pixels: int,
    rng: np.random.Generator,
) -> TilePixels:
    """Field means and up to ``max_pixels`` sampled pixels per polygon, tile by tile (sorted).

    Polygons on a tile missing from ``embeddings`` keep a zero count and NaN means.
    """
    means = np.full((len(geometry), 0), np.nan, dtype=np.float32)
    counts = np.zeros(len(geometry), dtype=np.int64)
    sample_rows, sample_x = [], []
    for tile in sorted(set(tiles) & set(embeddings)):
        rows = np.nonzero(tiles == tile)[0]
        sums, n_px, idx, x = scan_fields(
            geometry[rows], crs, embeddings[tile], max_pixels=max_pixels, rng=rng, tile=tile
        )
        means = _mean_rows(means, sums, context(tile, path=embeddings[tile]))
        with np.errstate(invalid="ignore", divide="ignore"):
            means[rows] = sums / n_px[:, None]
        counts[rows] = n_px
        sample_rows.append(rows[idx])
        sample_x.append(x)
    return TilePixels(
        means=means,
        counts=counts,
        sample_row=np.concatenate(sample_rows) if sample_rows else np.zeros(0, dtype=np.int64),
        x=np.concatenate(sample_x) if sample_x else np.zeros((0, means.shape[1]), np.float32),
        tiles_without_embeddings=sorted(set(tiles) - set(embeddings)),
    )
