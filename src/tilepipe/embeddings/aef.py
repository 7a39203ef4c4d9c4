"""AlphaEarth Foundations (AEF) embeddings: bottom-up int8 COGs onto a tile's 10 m grid.

AEF annual embeddings come as COGs of 64 int8 bands per UTM zone and year, with nodata −128
and a *positive* y pixel size: row 0 is the southern edge. GDAL's ``from_bounds`` and windowed
reads by bounds assume north-up rasters, so every read here is by pixel index, computed with the
inverse of the file's own transform, and the rows are flipped to north-up afterwards.

The dequantisation formula is disputed (signed square ``(v/127.5)²·sign(v)`` or linear
``v/127.5``); official vectors have unit length, so each build checks the norms of the vectors
it produced and rejects a formula that does not give unit vectors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import array_bounds
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from tilepipe.core.errors import InputError, context
from tilepipe.core.raster import atomic_output, gtiff_profile

AEF_NODATA = -128
AEF_BANDS = 64
_WINDOW = 256  # output pixels per side processed at once (x 64 bands x float32)

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
    """One AEF COG's header: where it lies and how it is stored."""

    path: Path
    crs: CRS
    transform: Affine
    width: int
    height: int
    count: int


def scan_aef(source: str | os.PathLike, year: int) -> list[AefFile]:
    """Headers of the AEF COGs under ``{source}/{year}/`` (any depth), sorted by path."""
    root = Path(source) / str(year)
    if not root.is_dir():
        raise InputError(f"{context(path=root)}no AEF directory for year {year}")
    files = []
    for path in sorted([*root.rglob("*.tif"), *root.rglob("*.tiff")]):
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
        files.append(header)
    return files


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
) -> dict:
    """Mosaic AEF COGs onto a target grid as float32 (NaN nodata), checking unit-length vectors.

    Where files overlap the first (by path) wins. The build fails with InputError, leaving no
    output, when no file covers the grid, when the result is all nodata, or when fewer than
    ``min_unit_fraction`` of the vectors have a norm within ``tolerance`` of 1 (wrong formula).
    """
    crs = CRS.from_user_input(crs)
    if formula not in DEQUANTISE:
        raise InputError(f"unknown AEF dequantisation {formula!r} (known: {sorted(DEQUANTISE)})")
    files = scan_aef(source, year)
    left, top = transform * (0, 0)
    right, bottom = transform * (width, height)
    target_bounds = (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    used = []
    for f in files:
        fb = transform_bounds(crs, f.crs, *target_bounds)
        if pixel_window(fb, f.transform, f.width, f.height) is not None:
            used.append(f)
    if not used:
        raise InputError(
            f"{context(tile)}year {year}: no AEF file under {Path(source) / str(year)} covers "
            f"the target grid ({len(files)} files scanned)"
        )
    counts = {f.count for f in used}
    if len(counts) > 1:
        raise InputError(f"{context(tile)}year {year}: AEF files disagree on bands {counts}")
    count = counts.pop()

    profile = gtiff_profile(
        width=width,
        height=height,
        count=count,
        dtype="float32",
        crs=crs,
        transform=transform,
        nodata=float("nan"),
    )
    profile["interleave"] = "band"
    valid = unit = 0
    norm_sum = 0.0
    with atomic_output(dst) as tmp:
        with rasterio.open(tmp, "w", **profile) as out_ds:
            for r0 in range(0, height, _WINDOW):
                for c0 in range(0, width, _WINDOW):
                    win = Window(c0, r0, min(_WINDOW, width - c0), min(_WINDOW, height - r0))
                    out = np.full((count, win.height, win.width), np.nan, dtype=np.float32)
                    win_transform = window_transform(win, transform)
                    for f in used:
                        _fill_from(out, f, crs, win_transform, formula)
                    n, n_unit, s = norm_stats(out, tolerance)
                    valid, unit, norm_sum = valid + n, unit + n_unit, norm_sum + s
                    out_ds.write(out, window=win)
            out_ds.descriptions = tuple(f"aef_{i:02d}" for i in range(count))
            out_ds.update_tags(
                TILE=tile or "",
                YEAR=str(year),
                EMBEDDINGS_SOURCE="aef",
                AEF_DEQUANTISE=formula,
                EMBEDDINGS_FILES=",".join(f.path.name for f in used),
            )
        if valid == 0:
            raise InputError(f"{context(tile)}year {year}: the AEF embeddings are all nodata")
        if unit / valid < min_unit_fraction:
            other = next(name for name in DEQUANTISE if name != formula)
            raise InputError(
                f"{context(tile, path=used[0].path)}year {year}: dequantisation {formula!r} "
                f"gives unit-length vectors for only {unit / valid:.1%} of pixels (mean norm "
                f"{norm_sum / valid:.3f}); AEF vectors are unit length: try {other!r}"
            )
    return {
        "path": str(dst),
        "files": [str(f.path) for f in used],
        "bands": count,
        "valid_fraction": valid / (width * height),
        "unit_fraction": unit / valid,
        "mean_norm": norm_sum / valid,
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
    warped = np.full(out.shape, np.nan, dtype=np.float32)
    reproject(
        source=values,
        destination=warped,
        src_transform=src_transform,
        src_crs=f.crs,
        src_nodata=np.nan,
        dst_transform=dst_transform,
        dst_crs=crs,
        dst_nodata=np.nan,
        resampling=Resampling.nearest,
    )
    fill = np.isnan(out) & ~np.isnan(warped)
    out[fill] = warped[fill]
