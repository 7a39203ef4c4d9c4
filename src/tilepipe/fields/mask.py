"""The SCL mask of a scene on the grid fields are made on: cloud, shadow, cirrus, snow, no data.

``scl.tif`` lies on the tile's 10 m grid; fields may run on the 1 m DR grid. The two grids share
the tile's 10 m origin (checked by :mod:`tilepipe.core.inputs`), so a window of the fine grid
maps onto whole SCL pixels: the mask is upsampled by nearest neighbour (each SCL pixel repeated
``factor`` x ``factor`` times), read window by window, never whole. Pixels outside ``scl.tif``
count as masked (nothing says they are clear). ``buffer`` grows the mask by that many SCL
pixels: the pixels just outside a cloud or shadow are blurred into it by super-resolution, and
their sharp brightness edge reads as a field boundary.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window
from skimage.morphology import dilation

from tilepipe.core.errors import InputError, context
from tilepipe.core.inputs import SCL, mismatch

#: The value read beyond the SCL raster's edge (no SCL class has it): always masked.
OUTSIDE = 255


class SceneMask:
    """Masked pixels (SCL in ``classes``) of an SCL raster, read on a finer aligned grid."""

    def __init__(
        self,
        scl_path: str | os.PathLike,
        classes: tuple[int, ...],
        fine_transform: Affine,
        *,
        tile: str | None = None,
        date: str | None = None,
        buffer: int = 0,
    ) -> None:
        self.path, self.classes = Path(scl_path), tuple(int(c) for c in classes)
        self.buffer = int(buffer)
        where = context(tile, date, self.path)
        try:
            self.src = rasterio.open(self.path)
        except rasterio.RasterioIOError as exc:
            raise InputError(f"{where}cannot open scl.tif ({exc})") from exc
        wrong = mismatch(self.src, SCL, grid=False)
        if wrong:
            self.src.close()
            raise InputError(f"{where}{wrong}")
        self.factor, self.offset = _alignment(self.src.transform, fine_transform, where)

    def close(self) -> None:
        """Close the SCL raster."""
        self.src.close()

    def read(self, win: Window) -> np.ndarray:
        """Bool (h, w): the fine-grid window's masked pixels (outside the SCL: masked)."""
        f, (orow, ocol) = self.factor, self.offset
        c0, r0 = int(win.col_off), int(win.row_off)
        h, w = int(win.height), int(win.width)
        cr0, cc0 = math.floor((r0 + orow) / f), math.floor((c0 + ocol) / f)
        cr1, cc1 = math.ceil((r0 + orow + h) / f), math.ceil((c0 + ocol + w) / f)
        b = self.buffer
        win_c = Window(cc0 - b, cr0 - b, cc1 - cc0 + 2 * b, cr1 - cr0 + 2 * b)
        coarse = self.src.read(1, window=win_c, boundless=True, fill_value=OUTSIDE)
        masked = np.isin(coarse, self.classes)
        if b:  # the buffer grows the classes' pixels, not the raster's edge
            masked = dilation(masked, np.ones((2 * b + 1,) * 2, dtype=bool))
        masked = (masked | (coarse == OUTSIDE))[b : masked.shape[0] - b, b : masked.shape[1] - b]
        fine = np.repeat(np.repeat(masked, f, axis=0), f, axis=1)
        rr, cc = r0 + orow - cr0 * f, c0 + ocol - cc0 * f
        return fine[rr : rr + h, cc : cc + w]


def _alignment(coarse: Affine, fine: Affine, where: str) -> tuple[int, tuple[int, int]]:
    """(fine pixels per SCL pixel, fine-grid (row, col) of the fine origin in the SCL's grid)."""
    ratio = coarse.a / fine.a
    factor = round(ratio)
    col = (fine.c - coarse.c) / fine.a
    row = (fine.f - coarse.f) / fine.e
    if (
        factor < 1
        or not math.isclose(ratio, factor, rel_tol=1e-6)
        or not math.isclose(-coarse.e / -fine.e, factor, rel_tol=1e-6)
        or not (math.isclose(col, round(col), abs_tol=1e-3))
        or not (math.isclose(row, round(row), abs_tol=1e-3))
    ):
        raise InputError(
            f"{where}scl.tif's grid {tuple(coarse)[:6]} is not aligned with the fields grid "
            f"{tuple(fine)[:6]} (need a whole number of fine pixels per SCL pixel)"
        )
    return factor, (round(row), round(col))


@contextlib.contextmanager
def open_mask(
    scl_path: str | os.PathLike | None,
    classes: tuple[int, ...],
    fine_transform: Affine,
    *,
    tile: str | None = None,
    date: str | None = None,
    buffer: int = 0,
):
    """A :class:`SceneMask` (or None without ``scl_path`` or classes), closed afterwards."""
    if scl_path is None or not classes:
        yield None
        return
    mask = SceneMask(scl_path, classes, fine_transform, tile=tile, date=date, buffer=buffer)
    try:
        yield mask
    finally:
        mask.close()
