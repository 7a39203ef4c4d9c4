"""Pixel work of the tiling engine: reading strips, nodata masks and fill, output dtypes."""

from __future__ import annotations

import numpy as np
import rasterio
import rasterio.errors
from rasterio.windows import Window

from tilepipe.core.errors import context


def read_strip(
    src: rasterio.io.DatasetReader, row0: int, col_origins: list[int], patch: int
) -> np.ndarray:
    """Read source rows [row0, row0 + patch) across the given windows as float32.

    Only the columns of those windows are read; beyond the image borders they are reflect-padded.
    """
    height, width = src.height, src.width
    r0, r1 = max(row0, 0), min(row0 + patch, height)
    c_lo, c_hi = col_origins[0], col_origins[-1] + patch
    c0, c1 = max(c_lo, 0), min(c_hi, width)
    try:
        data = src.read(window=Window(c0, r0, c1 - c0, r1 - r0), out_dtype="float32")
    except rasterio.errors.RasterioIOError as exc:  # a truncated or damaged file: name it
        # still an OSError, so the CLI puts the tile and date before it as for any I/O error
        raise rasterio.errors.RasterioIOError(
            f"{context(path=src.name)}source rows {r0}-{r1 - 1} unreadable (truncated or "
            f"corrupt?): {exc}"
        ) from exc
    pad = ((0, 0), (r0 - row0, row0 + patch - r1), (c0 - c_lo, c_hi - c1))
    return np.pad(data, pad, mode="reflect") if any(p != (0, 0) for p in pad) else data


def invalid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """Pixels where every band equals nodata, or any band is not finite: (h, w) bool."""
    bad = ~np.isfinite(data).all(axis=0)
    if nodata is not None:
        is_nd = np.isnan(data) if np.isnan(nodata) else data == nodata
        bad |= is_nd.all(axis=0)
    return bad


def fill_invalid(patch: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Replace invalid pixels with the per-band mean of the valid ones (a neutral value)."""
    out = patch.copy()
    good = ~bad
    means = out[:, good].mean(axis=1) if good.any() else np.zeros(out.shape[0], np.float32)
    out[:, bad] = means[:, None]
    return out


def cut_windows(
    strip: np.ndarray, bad: np.ndarray, outside: np.ndarray, cols: list[int], patch: int
) -> list[tuple[int, np.ndarray]]:
    """The windows of a strip worth computing, as (column origin, nodata-filled patch).

    A window that is wholly invalid (``bad``) or wholly outside the AOI (``outside``) is left
    out: its output is nodata anyway.
    """
    jobs = []
    for c in cols:
        cs = slice(c - cols[0], c - cols[0] + patch)
        if bad[:, cs].all() or outside[:, cs].all():
            continue
        jobs.append((c, fill_invalid(strip[:, :, cs], bad[:, cs])))
    return jobs


def upsample_mask(mask: np.ndarray, scale: int) -> np.ndarray:
    """A source-pixel mask on the output grid: each pixel repeated ``scale`` x ``scale`` times."""
    return np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)


def to_dtype(values: np.ndarray, dtype: str, nodata: float | None) -> np.ndarray:
    """Convert blended float output to ``dtype``: round and clip integers, keep nodata distinct.

    A non-finite value is refused: cast to an integer, NaN would read back as some arbitrary
    integer (often nodata) and Inf as the valid maximum. The engine refuses non-finite model
    output by name before blending (:mod:`tilepipe.engine.model`), so one here is a bug.
    ``values`` (float32) is used as scratch space and may be overwritten.
    """
    dt = np.dtype(dtype)
    if not np.issubdtype(dt, np.integer):
        return values.astype(dt)
    if not np.isfinite(values).all():
        raise ValueError(f"non-finite values cannot be cast to {dt.name}")
    info = np.iinfo(dt)
    lo, hi = float(info.min), float(info.max)
    if nodata is not None and nodata == lo:
        lo += 1  # a valid pixel must never read back as nodata
    elif nodata is not None and nodata == hi:
        hi -= 1
    np.rint(values, out=values)
    return np.clip(values, lo, hi, out=values).astype(dt)
