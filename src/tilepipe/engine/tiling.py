"""Sliding-window inference engine shared by super-resolution and field delineation.

A source GeoTIFF is read one strip of window rows at a time, cut into full-size patches
(reflect-padded at the image borders, nodata filled with a neutral value), passed to a
``predict`` function in batches, blended with separable cosine (Tukey) weights and written to
the destination strip by strip. Neither the source nor the output raster is ever held whole.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
import rasterio.windows
import torch
from affine import Affine
from rasterio.windows import Window

from tilepipe.core.errors import InputError, TilepipeError, context
from tilepipe.core.raster import atomic_output, gtiff_profile
from tilepipe.engine.journal import SlabJournal, fingerprint, finish_in_place

#: predict(patches (B, C, p, p) float32) -> (B, out_bands, p*scale, p*scale) float32
Predict = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[int, int], None]

#: Weight floor so that pixels covered by a single window edge still normalise cleanly.
WEIGHT_EPS = 1e-3
#: GDAL block cache of the engine in MB (GDAL's default is 5 % of the node's RAM).
GDAL_CACHE_MB = 256
#: Output width of one column panel (px): bounds the strip accumulator on wide rasters.
PANEL_PX = 8192
#: Version of the journal's meaning; a journal of another version is not resumed from.
JOURNAL_FORMAT = 2
#: The output being written, inside the resume directory (``<dst>.parts``) when journaling.
PARTIAL = "output.tif"


def window_origins(size: int, patch: int, overlap: int) -> list[int]:
    """Start offsets of windows along one axis: half an overlap before the image, then by stride.

    Starting ``overlap // 2`` pixels before the image keeps image-border pixels away from the
    patch edge (where a CNN only sees padding), and the last window reaches at least as far past
    the image end.
    """
    stride = patch - overlap
    margin = overlap // 2
    span = size + 2 * margin
    n = 1 if span <= patch else math.ceil((span - patch) / stride) + 1
    return [-margin + i * stride for i in range(n)]


def blend_weights(length: int, ramp: int) -> np.ndarray:
    """1-D Tukey window: cosine ramps over ``ramp`` px at each end, flat 1 inside, floored at eps.

    Neighbouring windows overlap by exactly ``ramp`` px, where sin² + cos² = 1, so the blend is a
    partition of unity (before the floor) and seams vanish for translation-invariant models.
    """
    w = np.ones(length, dtype=np.float64)
    if ramp > 0:
        t = (np.arange(ramp) + 0.5) / ramp
        rise = np.sin(0.5 * np.pi * t) ** 2
        w[:ramp] = rise
        w[length - ramp :] = rise[::-1]
    return np.maximum(w, WEIGHT_EPS).astype(np.float32)


def axis_weight_sum(origins: list[int], weights: np.ndarray, scale: int) -> np.ndarray:
    """Sum of window weights along one output axis, indexed from the first window's origin."""
    n = len(weights)
    start = origins[0] * scale
    total = np.zeros(origins[-1] * scale + n - start, dtype=np.float64)
    for o in origins:
        total[o * scale - start : o * scale - start + n] += weights
    return total.astype(np.float32)


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
    data = src.read(window=Window(c0, r0, c1 - c0, r1 - r0), out_dtype="float32")
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


def to_dtype(values: np.ndarray, dtype: str, nodata: float | None) -> np.ndarray:
    """Convert blended float output to ``dtype``: round and clip integers, keep nodata distinct.

    ``values`` (float32) is used as scratch space and may be overwritten.
    """
    dt = np.dtype(dtype)
    if not np.issubdtype(dt, np.integer):
        return values.astype(dt)
    info = np.iinfo(dt)
    lo, hi = float(info.min), float(info.max)
    if nodata is not None and nodata == lo:
        lo += 1  # a valid pixel must never read back as nodata
    elif nodata is not None and nodata == hi:
        hi -= 1
    np.rint(values, out=values)
    return np.clip(values, lo, hi, out=values).astype(dt)


def progress_logger(logger: logging.Logger, label: str) -> Progress:
    """Return a progress callback that logs about every 10 % of windows (for long tiles)."""
    state = {"next": 0.1}

    def report(done: int, total: int) -> None:
        frac = done / max(total, 1)
        if frac >= state["next"] or done == total:
            logger.info("%s: %d/%d windows (%.0f%%)", label, done, total, 100 * frac)
            state["next"] = frac + 0.1

    return report


def aoi_window(
    src: rasterio.io.DatasetReader, aoi: tuple[float, float, float, float] | None, margin: int
) -> tuple[int, int, int, int]:
    """Source pixel rows/cols (r0, r1, c0, c1) of the AOI bounds (raster CRS) plus a margin."""
    if aoi is None:
        return 0, src.height, 0, src.width
    win = rasterio.windows.from_bounds(*aoi, transform=src.transform)
    r0 = max(math.floor(win.row_off) - margin, 0)
    c0 = max(math.floor(win.col_off) - margin, 0)
    r1 = min(math.ceil(win.row_off + win.height) + margin, src.height)
    c1 = min(math.ceil(win.col_off + win.width) + margin, src.width)
    if r1 <= r0 or c1 <= c0:
        raise InputError(f"{context(path=src.name)}AOI {aoi} does not intersect the raster")
    return r0, r1, c0, c1


def column_panels(out_w: int, unit: int, panel_px: int) -> list[tuple[int, int]]:
    """Output column ranges [(b0, b1), ...] of about ``panel_px``, cut at multiples of ``unit``.

    ``unit`` is a multiple of the output block width and of the scale, so that no output block
    and no source pixel is shared by two panels.
    """
    step = max(unit, panel_px // unit * unit)
    return [(b, min(b + step, out_w)) for b in range(0, out_w, step)]


def panel_windows(col_origins: list[int], scale: int, patch: int, b0: int, b1: int) -> slice:
    """The window columns whose output reaches into output columns [b0, b1)."""
    js = [j for j, c in enumerate(col_origins) if c * scale < b1 and (c + patch) * scale > b0]
    return slice(js[0], js[-1] + 1)


def run_tiled(
    src_path: str | os.PathLike,
    dst_path: str | os.PathLike,
    predict: Predict,
    *,
    scale: int,
    out_bands: int,
    out_dtype: str,
    patch: int,
    overlap: int,
    batch: int,
    nodata_out: float | None,
    src_nodata: float | None = None,
    band_descriptions: list[str] | None = None,
    tags: dict[str, object] | None = None,
    progress: Progress | None = None,
    resume: bool = False,
    cog: bool = False,
    overviews: bool = False,
    aoi: tuple[float, float, float, float] | None = None,
    aoi_margin: int = 0,
    panel_px: int = PANEL_PX,
) -> dict[str, object]:
    """Run ``predict`` over a GeoTIFF in overlapping windows and write the blended result.

    The output grid is the source grid refined ``scale`` times (same CRS and origin). Source
    pixels that are nodata in every band (``src_nodata``, default the file's own nodata) come
    out as ``nodata_out``; whole patches of nodata are skipped. With ``aoi`` (bounds in the
    raster's CRS) only windows meeting the AOI grown by ``aoi_margin`` source pixels are
    computed, and output outside it is nodata. With ``resume`` finished rows are journaled in
    ``<dst>.parts`` (see :mod:`tilepipe.engine.journal`) and a rerun continues from there; ``cog``
    writes a Cloud-Optimised GeoTIFF, ``overviews`` adds overviews.

    Wide rasters are processed in column panels of about ``panel_px`` output pixels, each
    streamed top to bottom, so memory depends on patch, batch and panel width, never on the
    raster's size. Every window that reaches into a panel is computed for it (the few window
    columns where panels meet are computed twice), which makes the result identical to one
    full-width pass. Output is written block row by block row while the next rows are being
    predicted. Returns run statistics.
    """
    if patch <= 0 or not 0 <= overlap < patch or batch <= 0 or scale <= 0:
        raise TilepipeError(
            f"invalid tiling parameters patch={patch} overlap={overlap} batch={batch} "
            f"scale={scale}: need patch > 0, 0 <= overlap < patch, batch > 0, scale > 0"
        )
    t_start = time.perf_counter()
    src_path = Path(src_path)
    try:
        src = rasterio.open(src_path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{context(path=src_path)}cannot open raster ({exc})") from exc

    # A bounded GDAL block cache: by default GDAL may take 5 % of the node's RAM.
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), src:
        nodata = src.nodata if src_nodata is None else src_nodata
        height, width = src.height, src.width
        out_h, out_w = height * scale, width * scale
        row_origins = window_origins(height, patch, overlap)
        col_origins = window_origins(width, patch, overlap)
        a_r0, a_r1, a_c0, a_c1 = aoi_window(src, aoi, aoi_margin)
        stride = patch - overlap
        back = math.ceil(overlap / stride)  # earlier window rows that reach into a row's stride
        p_out, s_out = patch * scale, stride * scale
        # Weights are constant over each source pixel's scale x scale block, so a blend of
        # predictions keeps whatever block means the individual predictions have.
        w1 = np.repeat(blend_weights(patch, overlap), scale)
        w2d = torch.from_numpy(np.outer(w1, w1))
        wy, wx = axis_weight_sum(row_origins, w1, scale), axis_weight_sum(col_origins, w1, scale)
        y_base, x_base = row_origins[0] * scale, col_origins[0] * scale
        total = len(row_origins) * len(col_origins)

        profile = gtiff_profile(
            width=out_w,
            height=out_h,
            count=out_bands,
            dtype=out_dtype,
            crs=src.crs,
            transform=src.transform @ Affine.scale(1 / scale),
            nodata=nodata_out,
        )
        block_w, block_h = int(profile["blockxsize"]), int(profile["blockysize"])
        panels = column_panels(out_w, math.lcm(block_w, scale), panel_px)
        stats = {"windows": 0, "windows_skipped": 0, "windows_resumed": 0, "batches": 0}
        stats["panels"] = len(panels)
        journal = None
        if resume:
            settings = {
                "journal": JOURNAL_FORMAT,
                "engine": [scale, out_bands, out_dtype, patch, overlap, batch, nodata_out],
                "src_nodata": src_nodata,
                "aoi": [aoi, aoi_margin],
                "panel_px": panel_px,
                "bands": band_descriptions,
                "tags": tags,
            }
            journal = SlabJournal(dst_path, fingerprint(src_path, settings), profile)
        counted = {"done": 0}  # windows of the grid accounted for (computed, skipped, resumed)

        def tick(n: int) -> None:
            """Account for ``n`` more windows of the grid and report progress."""
            counted["done"] += n
            if progress is not None:
                progress(min(counted["done"], total), total)

        with contextlib.ExitStack() as outer:
            if journal is None:
                out_path = outer.enter_context(atomic_output(dst_path))
            else:
                out_path = journal.dir / PARTIAL
            with contextlib.ExitStack() as stack:
                # Entered before the threads, so closed only once they are done with it.
                dst = stack.enter_context(rasterio.open(out_path, "w", **profile))
                if band_descriptions:
                    for i, desc in enumerate(band_descriptions[:out_bands], start=1):
                        dst.set_band_description(i, desc)
                if tags:
                    dst.update_tags(**{k: str(v) for k, v in tags.items()})
                reader = stack.enter_context(ThreadPoolExecutor(max_workers=1))
                writer = stack.enter_context(ThreadPoolExecutor(max_workers=1))

                for b0, b1 in panels:
                    cols = col_origins[panel_windows(col_origins, scale, patch, b0, b1)]
                    c0 = cols[0]
                    # Windows this panel accounts for in progress (each window in one panel).
                    owned = sum(1 for c in col_origins if b0 <= max(c * scale, 0) < b1)
                    own = slice(b0 - c0 * scale, b1 - c0 * scale)  # in accumulator columns
                    inv_x = 1.0 / wx[b0 - x_base : b1 - x_base]
                    src_own = slice(b0 // scale - c0, b1 // scale - c0)  # in strip columns
                    # Strip accumulator: one window row of output across the panel.
                    shape = (out_bands, p_out, (cols[-1] - c0) * scale + p_out)
                    # Two accumulators in turn: the writer reads one while the other fills.
                    accs = [torch.zeros(shape, dtype=torch.float32) for _ in range(2)]
                    acc = accs[0]
                    # Writer-thread state: rows finished (journaled or not), rows in the output,
                    # finished rows waiting for a whole block row.
                    state: dict[str, object] = {"done": 0, "written": 0, "pending": []}

                    def put(vals: np.ndarray, state=state, b0=b0, b1=b1) -> None:
                        """Queue finished rows; write every whole block row (and the last rows)."""
                        pending: list[np.ndarray] = state["pending"]  # type: ignore[assignment]
                        pending.append(vals)
                        queued = sum(p.shape[1] for p in pending)
                        written = int(state["written"])
                        end = written + queued == out_h
                        if queued < block_h and not end:
                            return
                        rows = np.concatenate(pending, axis=1) if len(pending) > 1 else vals
                        n = queued if end else queued // block_h * block_h
                        # One write per block row, so the calls are the same however rows arrive.
                        for r in range(0, n, block_h):
                            h = min(block_h, n - r)
                            win = Window(b0, written + r, b1 - b0, h)
                            dst.write(rows[:, r : r + h], window=win)
                        state["written"] = written + n
                        pending[:] = [rows[:, n:]] if n < queued else []

                    first_row = 0
                    if journal is not None:
                        for _, rows in journal.read_rows(b0):
                            put(rows)  # rows journaled by an earlier run go into the output
                        state["done"] = journal.rows_done(b0)
                        if state["done"] >= out_h:
                            first_row = len(row_origins)
                        elif journal.next_row(b0):
                            # The last ``back`` journaled window rows are computed again: they
                            # rebuild the accumulator below the journaled rows exactly.
                            first_row = max(journal.next_row(b0) - back, 0)
                    stats["windows_resumed"] += first_row * owned
                    tick(first_row * owned)
                    outside = np.ones((patch, shape[2] // scale), dtype=bool)  # AOI columns
                    outside[:, max(a_c0 - c0, 0) : max(a_c1 - c0, 0)] = False

                    def emit(
                        rows: np.ndarray,
                        bad_src: np.ndarray,
                        row0: int,
                        next_row: int,
                        state=state,
                        own=own,
                        inv_x=inv_x,
                        b0=b0,
                        put=put,
                    ) -> None:
                        """Normalise the finished rows from output row ``row0`` on, journal them
                        (window row ``next_row`` continues after them) and write them."""
                        lo = max(row0, 0, int(state["done"]))
                        hi = max(min(row0 + rows.shape[1], out_h), lo)
                        inv = np.outer(1.0 / wy[lo - y_base : hi - y_base], inv_x)
                        vals = to_dtype(
                            rows[:, lo - row0 : hi - row0, own] * inv, out_dtype, nodata_out
                        )
                        if nodata_out is not None and bad_src.any():
                            bad = np.repeat(np.repeat(bad_src, scale, axis=0), scale, axis=1)
                            vals[:, bad[lo - row0 : hi - row0]] = nodata_out
                        if journal is not None and (hi > lo or next_row > journal.next_row(b0)):
                            journal.add(vals, lo, b0, next_row=next_row)
                        state["done"] = hi
                        if hi > lo:
                            put(vals)

                    def read(ri: int, cols=cols) -> np.ndarray | None:
                        """Read window row ``ri`` of the panel, or None when it misses the AOI."""
                        r = row_origins[ri]
                        if r + patch <= a_r0 or r >= a_r1:
                            return None
                        return read_strip(src, r, cols, patch)

                    write_job = None
                    n_rows = len(row_origins)
                    future = reader.submit(read, first_row) if first_row < n_rows else None
                    for ri in range(first_row, n_rows):
                        r_orig = row_origins[ri]
                        strip = future.result()
                        if ri + 1 < n_rows:
                            future = reader.submit(read, ri + 1)
                        jobs: list[tuple[int, np.ndarray]] = []
                        # Outside the AOI no window is computed and the output is nodata.
                        aoi_bad = outside.copy()
                        aoi_bad[: max(a_r0 - r_orig, 0)] = True
                        aoi_bad[max(a_r1 - r_orig, 0) :] = True
                        bad_strip = aoi_bad if strip is None else invalid_mask(strip, nodata)
                        for c_orig in cols:
                            cs = slice(c_orig - c0, c_orig - c0 + patch)
                            bad = bad_strip[:, cs]
                            if strip is None or bad.all() or aoi_bad[:, cs].all():
                                stats["windows_skipped"] += 1
                                continue
                            jobs.append((c_orig, fill_invalid(strip[:, :, cs], bad)))
                        bad_strip = bad_strip | aoi_bad
                        for k in range(0, len(jobs), batch):
                            chunk = jobs[k : k + batch]
                            x = np.ascontiguousarray(np.stack([p for _, p in chunk]), np.float32)
                            y = np.asarray(predict(x), dtype=np.float32)
                            want = (len(chunk), out_bands, p_out, p_out)
                            if y.shape != want:
                                raise TilepipeError(
                                    f"predict returned shape {y.shape}, expected {want}"
                                )
                            # Weighting and summing in one pass, on torch's threads.
                            for (c_orig, _), out in zip(chunk, torch.from_numpy(y), strict=True):
                                xs = (c_orig - c0) * scale
                                acc[:, :, xs : xs + p_out].addcmul_(out, w2d)
                            stats["batches"] += 1
                            stats["windows"] += len(chunk)
                        tick(owned)

                        # Rows above the next window row's origin are final: write them, shift.
                        last = ri + 1 == n_rows
                        n_src = patch if last else stride
                        src_rows = slice(max(0, -r_orig), min(n_src, height - r_orig))
                        bad_rows = np.ones((n_src, (b1 - b0) // scale), dtype=bool)
                        bad_rows[src_rows] = bad_strip[src_rows, src_own]
                        # Normalising, converting, journaling and compressing run in the writer
                        # thread while the next window row is predicted; at most one strip waits.
                        if write_job is not None:
                            write_job.result()
                        # The writer reads ``acc`` until its job is done; the next window row
                        # fills the other accumulator, which that job no longer uses.
                        write_job = writer.submit(
                            emit, acc[:, : n_src * scale].numpy(), bad_rows, r_orig * scale, ri + 1
                        )
                        if not last:
                            nxt = accs[1] if acc is accs[0] else accs[0]
                            nxt[:, : p_out - s_out] = acc[:, s_out:]
                            nxt[:, p_out - s_out :] = 0.0
                            acc = nxt
                    if write_job is not None:
                        write_job.result()
                    if state["pending"]:
                        raise AssertionError(f"panel at column {b0} ended with rows unwritten")
            t_fin = time.perf_counter()
            finish_in_place(out_path, profile, cog=cog, overviews=overviews)
        if journal is not None:
            with atomic_output(dst_path) as tmp:
                os.replace(out_path, tmp)
            journal.remove()
        stats["finish_seconds"] = round(time.perf_counter() - t_fin, 3)

    seconds = time.perf_counter() - t_start
    stats.update(
        seconds=round(seconds, 3),
        mpx_per_s=round(out_h * out_w / 1e6 / max(seconds, 1e-9), 3),
        width=out_w,
        height=out_h,
        patch=patch,
        overlap=overlap,
        batch=batch,
        scale=scale,
    )
    return stats
