"""Sliding-window inference engine shared by super-resolution and field delineation.

A source GeoTIFF is read one strip of window rows at a time, cut into full-size patches
(reflect-padded at the image borders, nodata filled with a neutral value), passed to a
``predict`` function in batches, blended with separable cosine (Tukey) weights and written to
the destination strip by strip. Neither the source nor the output raster is ever held whole.

Wide rasters are processed in column panels, each streamed top to bottom, so memory depends on
patch, batch and panel width, never on the raster's size. Every window that reaches into a panel
is computed for it (the few window columns where panels meet are computed twice), which makes
the result identical to one full-width pass. Output is written block row by block row while the
next rows are being predicted.

The geometry (window grid, blend weights, panels, AOI) is in :mod:`tilepipe.engine.windows`, the
pixel work in :mod:`tilepipe.engine.pixels`, the output side (finished rows, block-row writes,
journal, writer thread) in :mod:`tilepipe.engine.writer` and the resume journal in
:mod:`tilepipe.engine.journal`, the guarded call of the model in :mod:`tilepipe.engine.model`;
this module runs them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from tilepipe.core.errors import InputError, TilepipeError, context
from tilepipe.core.raster import atomic_output, gtiff_profile
from tilepipe.engine.journal import SlabJournal, fingerprint
from tilepipe.engine.model import Model, Predict, predict_batch
from tilepipe.engine.overviews import Pyramid, assemble, overview_factors
from tilepipe.engine.pixels import cut_windows, invalid_mask, read_strip
from tilepipe.engine.progress import Progress, RunStats
from tilepipe.engine.windows import (
    Box,
    Grid,
    Panel,
    aoi_mask,
    aoi_window,
    finished_mask,
    make_panels,
    misses_aoi,
    resume_row,
)
from tilepipe.engine.writer import BlockRowWriter, PanelWriter, StripAccumulators, WriterThread

#: GDAL block cache of the engine in MB (GDAL's default is 5 % of the node's RAM).
GDAL_CACHE_MB = 256
#: Output width of one column panel (px): bounds the strip accumulator on wide rasters.
PANEL_PX = 8192
#: Version of the journal's meaning; a journal of another version is not resumed from.
JOURNAL_FORMAT = 2
#: The output being written, inside the resume directory (``<dst>.parts``) when journaling.
PARTIAL = "output.tif"


@dataclass(frozen=True)
class Output:
    """What the output raster holds and how it is finished."""

    bands: int
    dtype: str
    nodata: float | None
    descriptions: list[str] | None = None
    tags: dict[str, object] | None = None
    cog: bool = False
    overviews: bool = False


@dataclass(frozen=True)
class Source:
    """The open source raster, the value it marks nodata with, and the AOI box to compute."""

    ds: rasterio.io.DatasetReader
    nodata: float | None
    box: Box


@dataclass(frozen=True)
class Pass:
    """The fixed parts of one run, and its counts."""

    src: Source
    grid: Grid
    model: Model
    out: Output
    stats: RunStats


@dataclass(frozen=True)
class PanelIO:
    """What panels are streamed through: the output, its block height, journal, two threads."""

    dst: rasterio.io.DatasetWriter
    block_h: int
    journal: SlabJournal | None
    reader: ThreadPoolExecutor
    writer: WriterThread
    pyramid: Pyramid | None = None


def check_tiling(patch: int, overlap: int, batch: int, scale: int) -> None:
    """Refuse tiling parameters that cannot make a window grid."""
    if patch <= 0 or not 0 <= overlap < patch or batch <= 0 or scale <= 0:
        raise TilepipeError(
            f"invalid tiling parameters patch={patch} overlap={overlap} batch={batch} "
            f"scale={scale}: need patch > 0, 0 <= overlap < patch, batch > 0, scale > 0"
        )


def open_source(path: Path) -> rasterio.io.DatasetReader:
    """Open the source raster, or raise an InputError that names it."""
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{context(path=path)}cannot open raster ({exc})") from exc


def output_profile(src: rasterio.io.DatasetReader, scale: int, out: Output) -> dict[str, object]:
    """The output's GeoTIFF profile: the source grid refined ``scale`` times, same CRS."""
    return gtiff_profile(
        width=src.width * scale,
        height=src.height * scale,
        count=out.bands,
        dtype=out.dtype,
        crs=src.crs,
        transform=src.transform @ Affine.scale(1 / scale),
        nodata=out.nodata,
    )


def journal_settings(
    grid: Grid,
    model: Model,
    out: Output,
    panel_px: int,
    src_nodata: float | None,
    aoi: tuple[float, float, float, float] | None,
    aoi_margin: int,
) -> dict[str, object]:
    """Every setting the output depends on, for the journal's fingerprint."""
    engine = [grid.scale, out.bands, out.dtype, grid.patch, grid.overlap, model.batch, out.nodata]
    return {
        "journal": JOURNAL_FORMAT,
        "engine": engine,
        "src_nodata": src_nodata,
        "aoi": [aoi, aoi_margin],
        "panel_px": panel_px,
        "bands": out.descriptions,
        "tags": out.tags,
    }


def label_output(dst: rasterio.io.DatasetWriter, out: Output) -> None:
    """Give the output its band descriptions and tags."""
    if out.descriptions:
        for i, desc in enumerate(out.descriptions[: out.bands], start=1):
            dst.set_band_description(i, desc)
    if out.tags:
        dst.update_tags(**{k: str(v) for k, v in out.tags.items()})


def prefetch(pool: ThreadPoolExecutor, fn: Callable, items: Iterable) -> Iterator:
    """Yield ``fn(item)`` for each item, computing the next one in ``pool`` meanwhile."""
    items = list(items)
    future = pool.submit(fn, items[0]) if items else None
    for k in range(len(items)):
        result = future.result()
        if k + 1 < len(items):
            future = pool.submit(fn, items[k + 1])
        yield result


def read_window_row(src: Source, cols: list[int], patch: int, row0: int) -> np.ndarray | None:
    """Read the strip of the window row at source row ``row0``, or None when it misses the AOI."""
    if misses_aoi(src.box, row0, patch):
        return None
    return read_strip(src.ds, row0, cols, patch)


def predict_window_row(
    run: Pass, panel: Panel, row0: int, strip: np.ndarray | None, accs: StripAccumulators
) -> np.ndarray:
    """Predict a window row's windows into the accumulator; return its bad source pixels."""
    grid, stats = run.grid, run.stats
    # Outside the AOI no window is computed and the output is nodata.
    outside = aoi_mask(run.src.box, row0, panel.c0, grid.patch, panel.src_width)
    if strip is None:
        stats.windows_skipped += len(panel.cols)
        return outside
    bad = invalid_mask(strip, run.src.nodata)
    jobs = cut_windows(strip, bad, outside, panel.cols, grid.patch)
    stats.windows_skipped += len(panel.cols) - len(jobs)
    for k in range(0, len(jobs), run.model.batch):
        chunk = jobs[k : k + run.model.batch]
        cols = [c for c, _ in chunk]
        outs = predict_batch(run.model, [p for _, p in chunk], grid.p_out, row0, cols)
        for (c, _), out in zip(chunk, outs, strict=True):
            accs.add(out, (c - panel.c0) * grid.scale)
        stats.batches += 1
        stats.windows += len(chunk)
    return bad | outside


def run_panel(run: Pass, panel: Panel, io: PanelIO) -> None:
    """Stream one column panel top to bottom: its journaled rows, then window row by row."""
    grid, n_rows = run.grid, len(run.grid.row_origins)
    reducer = io.pyramid.panel(panel.b0) if io.pyramid is not None else None
    blocks = BlockRowWriter(io.dst, panel.b0, panel.b1, io.block_h, grid.out_h, reducer)
    rows = PanelWriter(grid, panel, blocks, io.journal, run.out.dtype, run.out.nodata)
    first = resume_row(*rows.resume(), grid.out_h, n_rows, grid.back)
    run.stats.resumed(first * panel.owned)
    accs = StripAccumulators((run.model.bands, grid.p_out, panel.width), grid.weights)
    origins = grid.row_origins[first:]
    strips = prefetch(io.reader, partial(read_window_row, run.src, panel.cols, grid.patch), origins)
    for ri, (row0, strip) in enumerate(zip(origins, strips, strict=True), start=first):
        bad = predict_window_row(run, panel, row0, strip, accs)
        run.stats.tick(panel.owned)
        # Rows above the next window row's origin are final: the writer thread normalises,
        # journals and writes them while the next window row is predicted.
        last = ri + 1 == n_rows
        n_src = grid.patch if last else grid.stride
        bad_rows = finished_mask(bad, row0, n_src, grid.height, panel.src_own)
        io.writer.submit(
            rows.emit, accs.rows(n_src * grid.scale), bad_rows, row0 * grid.scale, ri + 1
        )
        if not last:
            accs.advance(grid.s_out)  # into the other accumulator, which no job uses any more
    io.writer.wait()
    blocks.check_flushed()


def make_pyramid(
    out: Output, out_path: Path, profile: dict[str, object], panels: list[Panel]
) -> Pyramid | None:
    """The overview levels built while writing, or None without overviews (or none needed)."""
    if not out.overviews:
        return None
    width, height = int(profile["width"]), int(profile["height"])
    factors = overview_factors(width, height, int(profile["blockxsize"]))
    if not factors:
        return None
    return Pyramid(out_path, profile, [p.b0 for p in panels[1:]], factors)


def write_output(
    run: Pass,
    panels: list[Panel],
    profile: dict[str, object],
    dst_path: str | os.PathLike,
    journal: SlabJournal | None,
) -> float:
    """Write every panel into the output, finish it and put it in place; return finish seconds.

    Without a journal the output is written under a temporary name beside ``dst_path``; with
    one, inside the journal's directory, and moved into place once finished.
    """
    with contextlib.ExitStack() as outer:
        if journal is None:
            out_path = outer.enter_context(atomic_output(dst_path))
        else:
            outer.callback(journal.close)  # on failure too: the lock goes, resume state stays
            out_path = journal.dir / PARTIAL
        pyramid = make_pyramid(run.out, Path(out_path), profile, panels)
        if pyramid is not None:
            outer.callback(pyramid.remove)  # level files are rebuilt on resume, never kept
        with contextlib.ExitStack() as stack:
            # Entered before the threads, so closed only once they are done with it.
            dst = stack.enter_context(rasterio.open(out_path, "w", **profile))
            label_output(dst, run.out)
            if pyramid is not None:
                stack.enter_context(pyramid.open())
            reader = stack.enter_context(ThreadPoolExecutor(max_workers=1))
            writer = stack.enter_context(WriterThread())
            io = PanelIO(dst, int(profile["blockysize"]), journal, reader, writer, pyramid)
            for panel in panels:
                run_panel(run, panel, io)
            if pyramid is not None:
                pyramid.finish()
        t_fin = time.perf_counter()
        if run.out.cog or pyramid is not None:
            levels = [] if pyramid is None else [lv.path for lv in pyramid.levels]
            assemble(Path(out_path), profile, levels, cog=run.out.cog)
        if journal is not None:  # still holding the lock, so no second writer can start yet
            with atomic_output(dst_path) as tmp:
                os.replace(out_path, tmp)
            journal.remove()
    return round(time.perf_counter() - t_fin, 3)


def summary(run: Pass, finish_seconds: float, seconds: float) -> dict[str, object]:
    """The run's statistics: window counts, timings, output size and tiling parameters."""
    grid = run.grid
    return {
        **run.stats.counts(),
        "finish_seconds": finish_seconds,
        "seconds": round(seconds, 3),
        "mpx_per_s": round(grid.out_h * grid.out_w / 1e6 / max(seconds, 1e-9), 3),
        "width": grid.out_w,
        "height": grid.out_h,
        "patch": grid.patch,
        "overlap": grid.overlap,
        "batch": run.model.batch,
        "scale": grid.scale,
    }


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
    model_name: str = "predict",
    where: str = "",
) -> dict[str, object]:
    """Run ``predict`` over a GeoTIFF in overlapping windows and write the blended result.

    The output grid is the source grid refined ``scale`` times (same CRS and origin). Source
    pixels that are nodata in every band (``src_nodata``, default the file's own nodata) come
    out as ``nodata_out``; whole patches of nodata are skipped. With ``aoi`` (bounds in the
    raster's CRS) only windows meeting the AOI grown by ``aoi_margin`` source pixels are
    computed, and output outside it is nodata. With ``resume`` finished rows are journaled in
    ``<dst>.parts`` (see :mod:`tilepipe.engine.journal`) and a rerun continues from there; ``cog``
    writes a Cloud-Optimised GeoTIFF, ``overviews`` adds overviews. Column panels are about
    ``panel_px`` output pixels wide (see the module docstring). ``predict`` is guarded (see
    :mod:`tilepipe.engine.model`): its errors, a wrong shape and non-finite output are
    ModelErrors that start with ``where`` (the scene's ``context``) and name ``model_name``.
    Returns run statistics.
    """
    check_tiling(patch, overlap, batch, scale)
    t_start = time.perf_counter()
    model = Model(predict, batch, out_bands, model_name, where)
    out = Output(out_bands, out_dtype, nodata_out, band_descriptions, tags, cog, overviews)
    src_path = Path(src_path)
    src = open_source(src_path)
    # A bounded GDAL block cache: by default GDAL may take 5 % of the node's RAM.
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), src:
        nodata = src.nodata if src_nodata is None else src_nodata
        grid = Grid.build(src.height, src.width, patch, overlap, scale)
        source = Source(src, nodata, aoi_window(src, aoi, aoi_margin))
        profile = output_profile(src, scale, out)
        journal = None
        if resume:
            settings = journal_settings(grid, model, out, panel_px, src_nodata, aoi, aoi_margin)
            journal = SlabJournal(dst_path, fingerprint(src_path, settings), profile)
        panels = make_panels(grid, int(profile["blockxsize"]), panel_px)
        run = Pass(source, grid, model, out, RunStats(grid.total, progress, panels=len(panels)))
        finish_seconds = write_output(run, panels, profile, dst_path, journal)
    return summary(run, finish_seconds, time.perf_counter() - t_start)
