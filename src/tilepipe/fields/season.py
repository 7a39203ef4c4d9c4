"""One field layer per tile and season, fused from the clear observations of all its dates.

Each date's fields step keeps its probability raster (``fields_prob.tif``: uint8 extent and
boundary on the fields grid). The fusion reads them with each date's SCL mask, block by block:
per pixel, the extent is the mean and the boundary the maximum over the dates that saw it clear
(a hedge lost in one date's super-resolution is kept by another's boundary), each date weighted
down near its mask's edge (``edge_ramp_m``: a cloud's edge reads as a field boundary to the
model), and a pixel that no date saw clear is masked. The fused raster then goes through the
same instance and polygon step as one date (:func:`tilepipe.fields.polygons.delineate`), so
every field comes out once, whole.

Provenance per field: ``dates`` (the dates that saw at least ``min_clear_share`` of it clear),
``n_dates``, and ``agreement``: over those dates, the mean share of the field's clear pixels
that the date alone also calls field (extent >= threshold).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from tilepipe.core.errors import InputError, context
from tilepipe.core.raster import gtiff_profile
from tilepipe.core.scratch import temp_beside
from tilepipe.fields.delineate import write_fields
from tilepipe.fields.mask import SceneMask
from tilepipe.fields.polygons import (
    GDAL_CACHE_BYTES,
    MASKED,
    PROB_NODATA,
    Params,
    blocks,
    check_params,
    decode_prob,
    delineate,
    encode_prob,
)

#: Block side (px) of the fusion pass.
FUSE_BLOCK = 1024


@dataclass
class DateInput:
    """One date of a season: its kept probability raster and its scl.tif (None: no mask)."""

    date: str
    prob: Path
    scl: Path | None = None


class _Dates:
    """The opened dates of a season: probability rasters and SCL masks on one grid."""

    def __init__(
        self, stack: ExitStack, dates: list[DateInput], classes, tile: str, buffer: int = 0
    ) -> None:
        self.dates = dates
        self.srcs = [stack.enter_context(_open(d.prob, tile, d.date)) for d in dates]
        ref = self.srcs[0]
        for d, src in zip(dates, self.srcs, strict=True):
            if src.shape != ref.shape or not src.transform.almost_equals(ref.transform):
                raise InputError(
                    f"{context(tile, d.date, d.prob)}probability grid {src.shape} "
                    f"{tuple(src.transform)[:6]} differs from {dates[0].date}'s"
                )
        self.masks = [
            SceneMask(d.scl, classes, ref.transform, tile=tile, date=d.date, buffer=buffer)
            if d.scl is not None and classes
            else None
            for d in dates
        ]
        for m in self.masks:
            if m is not None:
                stack.callback(m.close)
        self.names = [s or "" for s in ref.descriptions]

    def read(self, win: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(extent, boundary, clear) stacked over dates for a window; masked -> not clear."""
        ext, bnd, clear = [], [], []
        for src, mask in zip(self.srcs, self.masks, strict=True):
            e = decode_prob(src.read(1, window=win))
            b = decode_prob(src.read(2, window=win)) if src.count > 1 else np.zeros_like(e)
            ok = np.isfinite(e)
            if mask is not None:
                ok &= ~mask.read(win)
            ext.append(e)
            bnd.append(b)
            clear.append(ok)
        return np.stack(ext), np.stack(bnd), np.stack(clear)


def _open(path: Path, tile: str, date: str):
    """Open a date's probability raster, or an InputError naming it."""
    try:
        return rasterio.open(path)
    except rasterio.RasterioIOError as exc:
        raise InputError(f"{context(tile, date, path)}cannot open the probabilities") from exc


#: Weight of a clear pixel right at its date's mask edge (the ramp's floor): above 0, so a pixel
#: only that date saw clear keeps that date's values.
EDGE_FLOOR = 0.02


def clear_weights(clear: np.ndarray, ramp_px: float) -> np.ndarray:
    """Per date (axis 0), how much each clear pixel counts: rising from EDGE_FLOOR at the date's
    mask edge to 1 at ``ramp_px`` from it (0: every clear pixel counts 1), 0 where masked.

    Next to a cloud or its shadow a model's output is least trustworthy (haze, and the cloud's
    edge inside the model's context reads as a field boundary), so there the other dates lead.
    """
    if ramp_px <= 0:
        return clear.astype(np.float32)
    from scipy.ndimage import distance_transform_edt

    weights = np.zeros(clear.shape, dtype=np.float32)
    for i, seen in enumerate(clear):
        if seen.all():  # no mask edge in reach: every pixel counts fully
            weights[i] = 1.0
        elif seen.any():
            ramp = distance_transform_edt(seen) / ramp_px
            weights[i] = np.where(seen, np.clip(ramp, EDGE_FLOOR, 1.0), 0.0)
    return weights


def fuse_block(
    ext: np.ndarray, bnd: np.ndarray, clear: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel over dates (axis 0): the weighted mean extent and the weighted max boundary of
    the clear ones (NaN: none); without ``weights`` the plain mean and max."""
    w = clear.astype(np.float32) if weights is None else np.where(clear, weights, 0.0)
    n = clear.sum(axis=0)
    total = w.sum(axis=0)
    e = (w * np.nan_to_num(ext, nan=0.0)).sum(axis=0)
    b = np.where(clear, w * np.nan_to_num(bnd, nan=0.0), -1.0).max(axis=0)
    top = w.max(axis=0)  # a pixel one date saw clear keeps that date's boundary
    with np.errstate(invalid="ignore", divide="ignore"):
        extent = np.where(n > 0, e / np.where(total > 0, total, 1.0), np.nan).astype(np.float32)
        boundary = np.where(n > 0, b / np.where(top > 0, top, 1.0), np.nan).astype(np.float32)
    return extent, boundary


def _write_fused(dates: _Dates, path: Path, block: int, ramp_px: float = 0.0) -> None:
    """The fused extent/boundary raster, block by block, on the dates' grid (each block read
    with a halo of the ramp, so a mask edge just outside it weighs as it should)."""
    ref = dates.srcs[0]
    profile = gtiff_profile(
        width=ref.width,
        height=ref.height,
        count=2,
        dtype="uint8",
        crs=ref.crs,
        transform=ref.transform,
    )
    profile["nodata"] = PROB_NODATA
    with rasterio.open(path, "w", **profile) as dst:
        for r0, cols in blocks(ref.height, ref.width, block):
            for c0 in cols:
                win = Window(c0, r0, min(block, ref.width - c0), min(block, ref.height - r0))
                outer, inner = _with_halo(win, math.ceil(ramp_px) + 1, ref.height, ref.width)
                ext, bnd, clear = dates.read(outer)
                extent, boundary = fuse_block(ext, bnd, clear, clear_weights(clear, ramp_px))
                dst.write(encode_prob(extent[inner]), 1, window=win)
                dst.write(encode_prob(boundary[inner]), 2, window=win)
        dst.set_band_description(1, "extent")
        dst.set_band_description(2, "boundary")


def _with_halo(win: Window, halo: int, height: int, width: int) -> tuple[Window, tuple]:
    """``win`` grown by ``halo`` px (clipped to the raster), and the slices of ``win`` in it."""
    r0, c0 = max(0, win.row_off - halo), max(0, win.col_off - halo)
    r1 = min(height, win.row_off + win.height + halo)
    c1 = min(width, win.col_off + win.width + halo)
    dr, dc = win.row_off - r0, win.col_off - c0
    inner = (slice(dr, dr + win.height), slice(dc, dc + win.width))
    return Window(c0, r0, c1 - c0, r1 - r0), inner


class _NeverClear:
    """The fused mask: pixels no date saw clear."""

    def __init__(self, dates: _Dates) -> None:
        self.dates = dates

    def read(self, win: Window) -> np.ndarray:
        """Bool (h, w): True where every date is masked or nodata."""
        return ~self.dates.read(win)[2].any(axis=0)


def _provenance_layers(dates: _Dates, threshold: float):
    """Per-pixel layers whose per-field means give each date's clear and agreeing shares."""

    def read(win: Window) -> dict[str, np.ndarray]:
        ext, _, clear = dates.read(win)
        out = {}
        for i in range(len(dates.dates)):
            out[f"_clear{i}"] = clear[i].astype(np.float32)
            agree = clear[i] & (np.nan_to_num(ext[i], nan=0.0) >= threshold)
            out[f"_agree{i}"] = agree.astype(np.float32)
        return out

    return read


def provenance(columns: dict, dates: list[str], min_clear_share: float) -> dict[str, np.ndarray]:
    """``dates``, ``n_dates`` and ``agreement`` per field from the per-date shares."""
    clear = np.stack([columns.pop(f"_clear{i}") for i in range(len(dates))], axis=1)
    agree = np.stack([columns.pop(f"_agree{i}") for i in range(len(dates))], axis=1)
    used = clear >= min_clear_share
    share = np.where(used, agree / np.where(clear > 0, clear, 1.0), np.nan)
    n_used = used.sum(axis=1)
    total = np.where(used, share, 0.0).sum(axis=1)
    agreement = np.where(n_used > 0, total / np.maximum(n_used, 1), np.nan)  # none used: NaN
    names = np.array([";".join(d for d, u in zip(dates, row, strict=True) if u) for row in used])
    return {
        "dates": names.astype(object),
        "n_dates": n_used.astype(np.int64),
        "agreement": np.asarray(agreement, dtype=np.float64).reshape(-1),
    }


@contextlib.contextmanager
def _scratch(dst: Path) -> Iterator[Path]:
    """A temporary fused-probability raster beside ``dst``, removed afterwards."""
    path = temp_beside(dst, "fused", ".tif")
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def run_season(
    dates: list[DateInput],
    dst_path: str | os.PathLike,
    *,
    tile: str,
    season: str,
    params: Params | None = None,
    mask_classes: tuple[int, ...] = (),
    mask_buffer: int = 0,
    min_clear_share: float = 0.5,
    parquet_path: str | os.PathLike | None = None,
    block: int = FUSE_BLOCK,
    edge_ramp_m: float = 20.0,
) -> int:
    """Fuse a tile-season's dates into one field layer at ``dst_path``; return how many.

    ``edge_ramp_m``: a date's pixels count less within this distance of its mask's edge (the
    schema's default, ``season.edge_ramp_m``).
    """
    params = params or Params()
    check_params(params)
    if not dates:
        raise InputError(f"{context(tile, season)}a season needs at least one date")
    if not 0 < min_clear_share <= 1 or math.isnan(min_clear_share):
        raise InputError(f"{context(tile, season)}min_clear_share {min_clear_share} not in (0, 1]")
    dates = sorted(dates, key=lambda d: d.date)
    dst_path = Path(dst_path)
    with ExitStack() as stack, rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        opened = _Dates(stack, dates, tuple(mask_classes), tile, mask_buffer)
        fused = stack.enter_context(_scratch(dst_path))
        pixel_m = abs(opened.srcs[0].transform.a)
        _write_fused(opened, fused, block, edge_ramp_m / pixel_m)
        table = delineate(
            fused,
            params,
            tile=tile,
            date=season,
            mask=_NeverClear(opened),
            layers=_provenance_layers(opened, params.threshold),
        )
    columns = dict(table.columns)
    n = len(table.geoms)
    if n == 0:
        columns |= {f"_clear{i}": np.zeros(0) for i in range(len(dates))}
        columns |= {f"_agree{i}": np.zeros(0) for i in range(len(dates))}
        columns[MASKED] = np.zeros(0)
    columns |= provenance(columns, [d.date for d in dates], min_clear_share)
    write_fields(
        dst_path,
        table.geoms,
        columns,
        crs=table.crs,
        tile=tile,
        date=season,
        metadata={
            "SEASON": season,
            "DATES": ",".join(d.date for d in dates),
            "MASK_CLASSES": ",".join(str(c) for c in mask_classes),
            "MASK_BUFFER": str(mask_buffer),
            "MAX_MASKED_SHARE": str(params.max_masked_share),
            "MIN_CLEAR_SHARE": str(min_clear_share),
            "FUSION": "extent mean, boundary max over clear dates, weighted by the distance to "
            f"each date's mask edge (ramp {edge_ramp_m:g} m)",
        },
        parquet_path=parquet_path,
    )
    return n
