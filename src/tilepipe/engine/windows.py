"""Geometry of the tiling engine: window origins, blend weights, column panels and the AOI.

Everything here is pure arithmetic on sizes and offsets (source pixels unless said otherwise);
nothing reads or writes a raster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import rasterio
import rasterio.windows

from tilepipe.core.errors import InputError, context

#: Weight floor so that pixels covered by a single window edge still normalise cleanly.
WEIGHT_EPS = 1e-3

#: Source pixel rows and columns (r0, r1, c0, c1) of the area to compute.
Box = tuple[int, int, int, int]


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


def resume_row(rows_done: int, next_row: int, out_h: int, n_rows: int, back: int) -> int:
    """The first window row a panel computes, given what its journal holds.

    A finished panel computes none; otherwise the last ``back`` journaled window rows are
    computed again, since they rebuild the accumulator below the journaled rows exactly.
    """
    if rows_done >= out_h:
        return n_rows
    return max(next_row - back, 0) if next_row else 0


@dataclass(frozen=True)
class Grid:
    """The window grid of one run: origins on both axes and the blend weights over them."""

    height: int
    width: int
    scale: int
    patch: int
    overlap: int
    row_origins: list[int]
    col_origins: list[int]
    #: 1-D blend weights of one output window (``patch * scale``), constant per source pixel.
    weights: np.ndarray
    #: Summed window weights along output rows and columns, from the first window's origin.
    wy: np.ndarray
    wx: np.ndarray

    @classmethod
    def build(cls, height: int, width: int, patch: int, overlap: int, scale: int) -> Grid:
        """The grid of a ``height`` x ``width`` source refined ``scale`` times."""
        rows, cols = window_origins(height, patch, overlap), window_origins(width, patch, overlap)
        # Weights are constant over each source pixel's scale x scale block, so a blend of
        # predictions keeps whatever block means the individual predictions have.
        w1 = np.repeat(blend_weights(patch, overlap), scale)
        wy, wx = axis_weight_sum(rows, w1, scale), axis_weight_sum(cols, w1, scale)
        return cls(height, width, scale, patch, overlap, rows, cols, w1, wy, wx)

    @property
    def stride(self) -> int:
        """Source pixels from one window origin to the next."""
        return self.patch - self.overlap

    @property
    def back(self) -> int:
        """Earlier window rows that reach into a window row's stride."""
        return math.ceil(self.overlap / self.stride)

    @property
    def out_h(self) -> int:
        """Output height (px)."""
        return self.height * self.scale

    @property
    def out_w(self) -> int:
        """Output width (px)."""
        return self.width * self.scale

    @property
    def p_out(self) -> int:
        """Output size of one window (px)."""
        return self.patch * self.scale

    @property
    def s_out(self) -> int:
        """Output stride (px)."""
        return self.stride * self.scale

    @property
    def total(self) -> int:
        """Windows in the grid."""
        return len(self.row_origins) * len(self.col_origins)

    def inv_row_weights(self, lo: int, hi: int) -> np.ndarray:
        """1 / summed weight of output rows [lo, hi)."""
        base = self.row_origins[0] * self.scale
        return 1.0 / self.wy[lo - base : hi - base]

    def inv_col_weights(self, b0: int, b1: int) -> np.ndarray:
        """1 / summed weight of output columns [b0, b1)."""
        base = self.col_origins[0] * self.scale
        return 1.0 / self.wx[b0 - base : b1 - base]


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


def owned_windows(col_origins: list[int], scale: int, b0: int, b1: int) -> int:
    """Window columns a panel accounts for in progress: those starting in it (or before 0)."""
    return sum(1 for c in col_origins if b0 <= max(c * scale, 0) < b1)


@dataclass(frozen=True)
class Panel:
    """One column panel: output columns [b0, b1), the window columns feeding it, those it owns."""

    b0: int
    b1: int
    #: Origins (source columns) of every window whose output reaches into the panel.
    cols: list[int]
    #: Windows per window row that this panel counts in progress (each window in one panel).
    owned: int
    scale: int
    patch: int

    @property
    def c0(self) -> int:
        """Source column of the panel's first window, where its strips and accumulator start."""
        return self.cols[0]

    @property
    def width(self) -> int:
        """Accumulator width (output px): every window of the panel side by side."""
        return (self.cols[-1] - self.c0 + self.patch) * self.scale

    @property
    def src_width(self) -> int:
        """Strip width (source px)."""
        return self.cols[-1] - self.c0 + self.patch

    @property
    def own(self) -> slice:
        """The panel's output columns, in accumulator columns."""
        return slice(self.b0 - self.c0 * self.scale, self.b1 - self.c0 * self.scale)

    @property
    def src_own(self) -> slice:
        """The panel's source columns, in strip columns."""
        return slice(self.b0 // self.scale - self.c0, self.b1 // self.scale - self.c0)


def make_panels(grid: Grid, block_w: int, panel_px: int) -> list[Panel]:
    """The column panels of a grid, about ``panel_px`` wide, never sharing an output block."""
    cols = grid.col_origins
    return [
        Panel(
            b0,
            b1,
            cols[panel_windows(cols, grid.scale, grid.patch, b0, b1)],
            owned_windows(cols, grid.scale, b0, b1),
            grid.scale,
            grid.patch,
        )
        for b0, b1 in column_panels(grid.out_w, math.lcm(block_w, grid.scale), panel_px)
    ]


def aoi_window(
    src: rasterio.io.DatasetReader, aoi: tuple[float, float, float, float] | None, margin: int
) -> Box:
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


def misses_aoi(box: Box, row0: int, patch: int) -> bool:
    """True when the window row starting at source row ``row0`` lies wholly outside the AOI."""
    return row0 + patch <= box[0] or row0 >= box[1]


def aoi_mask(box: Box, row0: int, col0: int, patch: int, n_cols: int) -> np.ndarray:
    """Source pixels of a strip outside the AOI: (patch, n_cols) bool from (row0, col0)."""
    a_r0, a_r1, a_c0, a_c1 = box
    outside = np.ones((patch, n_cols), dtype=bool)
    outside[:, max(a_c0 - col0, 0) : max(a_c1 - col0, 0)] = False
    outside[: max(a_r0 - row0, 0)] = True
    outside[max(a_r1 - row0, 0) :] = True
    return outside


def finished_mask(
    bad_strip: np.ndarray, row0: int, n_src: int, height: int, src_own: slice
) -> np.ndarray:
    """Bad source pixels of the ``n_src`` rows a window row finishes; rows off the image are bad."""
    rows = slice(max(0, -row0), min(n_src, height - row0))
    bad = np.ones((n_src, src_own.stop - src_own.start), dtype=bool)
    bad[rows] = bad_strip[rows, src_own]
    return bad
