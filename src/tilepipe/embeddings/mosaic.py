"""Embedding mosaics: float32 GeoTIFFs (NaN nodata) written window by window onto a target grid.

TESSERA and AEF builds share the pattern: the target grid's footprint, a loop over output
windows each filled from the sources that meet it (nearest reprojection into the pixels still
NaN, so the first source wins), and one atomic write, so a failing build leaves no output and a
full tile (10980² x C floats) never sits in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import DatasetWriter
from rasterio.warp import reproject
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from tilepipe.core.errors import InputError, context
from tilepipe.core.raster import atomic_output, gtiff_profile, rewrite_as_cog

WINDOW = 256  # output pixels per side processed at once (x C bands x float32)

#: Fills a NaN-initialised (C, h, w) window given the window and its transform.
Fill = Callable[[np.ndarray, Window, Affine], None]


@dataclass(frozen=True)
class TargetGrid:
    """The grid a mosaic is written on: CRS, north-up transform and size in pixels."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the grid in its CRS."""
        left, top = self.transform * (0, 0)
        right, bottom = self.transform * (self.width, self.height)
        return min(left, right), min(top, bottom), max(left, right), max(top, bottom)


def target_grid(crs, transform: Affine, width: int, height: int, tile: str | None) -> TargetGrid:
    """The grid a build writes on; InputError naming the tile when it holds no pixel."""
    if width <= 0 or height <= 0:
        raise InputError(f"{context(tile)}empty target grid {width}x{height}")
    return TargetGrid(CRS.from_user_input(crs), transform, width, height)


def label(ds: DatasetWriter, prefix: str, tile: str | None, year: int, **tags: str) -> None:
    """Name the bands ``{prefix}_000…`` and tag the tile, year and source's provenance."""
    width = 3 if ds.count > 99 else 2
    ds.descriptions = tuple(f"{prefix}_{i:0{width}d}" for i in range(ds.count))
    ds.update_tags(TILE=tile or "", YEAR=str(year), **tags)


def windows(width: int, height: int, size: int = WINDOW) -> Iterator[Window]:
    """Row-major ``size`` px windows covering a width x height raster (edge windows smaller)."""
    for r0 in range(0, height, size):
        for c0 in range(0, width, size):
            yield Window(c0, r0, min(size, width - c0), min(size, height - r0))


def fill_nan_from(
    out: np.ndarray,
    source: np.ndarray,
    src_transform: Affine,
    src_crs: CRS,
    dst_transform: Affine,
    dst_crs: CRS,
) -> bool:
    """Fill NaN pixels of ``out`` (C, h, w) with ``source`` warped (nearest) onto its grid.

    Pixels already set stay: the first source to cover a pixel wins. Returns whether any
    pixel came from ``source``.
    """
    warped = np.full(out.shape, np.nan, dtype=np.float32)
    reproject(
        source=source,
        destination=warped,
        src_transform=src_transform,
        src_crs=src_crs,
        src_nodata=np.nan,
        dst_transform=dst_transform,
        dst_crs=dst_crs,
        dst_nodata=np.nan,
        resampling=Resampling.nearest,
    )
    fill = np.isnan(out) & ~np.isnan(warped)
    out[fill] = warped[fill]
    return bool(fill.any())


@contextmanager
def mosaic_writer(dst: str | os.PathLike, grid: TargetGrid, count: int) -> Iterator[DatasetWriter]:
    """Open a float32, NaN-nodata, band-interleaved GeoTIFF on ``grid``, renamed into place only
    if the block succeeds (an exception inside, e.g. a failed check, leaves no output)."""
    profile = gtiff_profile(
        width=grid.width,
        height=grid.height,
        count=count,
        dtype="float32",
        crs=grid.crs,
        transform=grid.transform,
        nodata=float("nan"),
    )
    profile["interleave"] = "band"  # readers take band subsets; writers whole windows
    with atomic_output(dst) as tmp:
        with rasterio.open(tmp, "w", **profile) as ds:
            yield ds
        rewrite_as_cog(tmp)


def fill_windows(ds: DatasetWriter, grid: TargetGrid, fill: Fill) -> None:
    """Write every window of ``ds``: NaN-initialised, then filled by ``fill``."""
    for win in windows(grid.width, grid.height):
        out = np.full((ds.count, win.height, win.width), np.nan, dtype=np.float32)
        fill(out, win, window_transform(win, grid.transform))
        ds.write(out, window=win)
