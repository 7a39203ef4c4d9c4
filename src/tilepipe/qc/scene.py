"""Quality checks of one (tile, date): grids, coverage, clouds, reflectance and DR consistency.

Every check yields ``{"name", "status", "value", "threshold", "message"}`` with status
``pass|warn|fail``; the report's status is the worst of them. Rasters are read in row strips so a
full tile (and its 10x larger ``dr.tif``) never has to fit in memory. The checks themselves live
by subject: ``qc.rasters`` (inputs), ``qc.superres`` (dr.tif against s2) and ``qc.fields``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack

import rasterio
from rasterio.windows import Window

from tilepipe.core.errors import InputError, context
from tilepipe.core.inputs import CORE_INDEXES, DR, S2, SCL, dr_kind_of, mismatch
from tilepipe.core.settings import section_defaults
from tilepipe.qc.checks import merge_thresholds, report
from tilepipe.qc.fields import field_checks, fields_mask
from tilepipe.qc.opensr import add_opensr_strip, new_opensr_stats, opensr_check
from tilepipe.qc.rasters import (
    add_s2_strip,
    cloud_check,
    crs_check,
    grid_check,
    masked_check,
    nodata_check,
    north_up_check,
    open_optional,
    reflectance_check,
)
from tilepipe.qc.superres import (
    add_dr_strip,
    coverage_check,
    dr_area,
    dr_check,
    new_dr_stats,
    spatial_check,
    spectral_check,
    strip_inside,
)

_STRIP_ROWS = 32  # s2 rows per strip: dr strips are 32 k rows x k x s2 width (k: DR scale)


def _strips(height: int, rows: int) -> Iterator[tuple[int, int]]:
    """(first row, row count) of each strip of at most ``rows`` rows."""
    for r0 in range(0, height, rows):
        yield r0, min(rows, height - r0)


def _scan(s2, scl, dr, rmin: float, rmax: float, mask_classes=()) -> dict:
    """One pass over s2 (+scl, +dr) in row strips; return the counts every raster check needs.

    dr is compared with s2 only inside the area DR was computed for (``dr_area``).
    """
    stats = {"pixels": 0, "nodata": 0, "cloud": 0, "masked": 0, "values": 0, "out_of_range": 0}
    stats |= new_dr_stats(len(CORE_INDEXES)) | new_opensr_stats()
    width, box = s2.width, dr_area(s2, dr)
    for r0, h in _strips(s2.height, _STRIP_ROWS):
        data = s2.read(CORE_INDEXES, window=Window(0, r0, width, h))  # (4, h, W) uint16
        classes = None if scl is None else scl.read(1, window=Window(0, r0, width, h))
        valid = add_s2_strip(stats, data, classes, rmin, rmax, mask_classes)
        valid &= strip_inside(box, r0, h, width)
        if dr is not None and valid.any():
            add_dr_strip(stats, dr, data, valid, r0)
            add_opensr_strip(stats, dr, data, valid, r0)
    return stats


def _open_s2(stack: ExitStack, s2_path, tile: str, date: str) -> rasterio.DatasetReader:
    """Open s2.tif; without it nothing can be judged, so an unreadable one, or one of another
    kind (dtype, bands, scale), raises InputError (its grid is judged by the checks)."""
    try:
        s2 = stack.enter_context(rasterio.open(s2_path))
    except (rasterio.RasterioIOError, OSError) as exc:
        raise InputError(f"{context(tile, date, s2_path)}s2.tif is unreadable: {exc}") from exc
    wrong = mismatch(s2, S2, grid=False)
    if wrong:
        raise InputError(f"{context(tile, date, s2_path)}{wrong}")
    return s2


def _scan_or_raise(s2, scl, dr, rr: dict, tile: str, date: str, s2_path, mask_classes=()) -> dict:
    """``_scan`` with a read error mid-raster turned into an InputError naming the scene."""
    try:
        return _scan(s2, scl, dr, rr["min"], rr["max"], mask_classes)
    except rasterio.RasterioIOError as exc:
        raise InputError(f"{context(tile, date, s2_path)}reading rasters failed: {exc}") from exc


def _areas(s2, stats: dict) -> tuple[float, float]:
    """The raster's area and its valid (not nodata) area in m², for the field checks."""
    pixel_area = abs(s2.transform.a * s2.transform.e)
    valid_pixels = stats["pixels"] - stats["nodata"]
    return pixel_area * s2.width * s2.height, pixel_area * valid_pixels


def run_qc(
    *,
    tile: str,
    date: str,
    s2_path: str | os.PathLike,
    scl_path: str | os.PathLike | None,
    dr_path: str | os.PathLike | None,
    fields_path: str | os.PathLike | None,
    thresholds: dict,
) -> dict:
    """Run every check on one (tile, date) and return the qc.json report.

    A missing, unreadable or wrong-kind scl/dr/fields file fails the checks that need it; an
    unreadable or wrong-kind ``s2.tif`` raises InputError, since nothing can be judged without
    it.
    """
    thr = merge_thresholds(thresholds)
    with ExitStack() as stack:
        s2 = _open_s2(stack, s2_path, tile, date)
        scl, scl_reason = open_optional(stack, scl_path, SCL)
        dr_kind = dr_kind_of(dr_path) if dr_path is not None else DR
        dr, dr_reason = open_optional(stack, dr_path, dr_kind)
        reasons = {"s2": "", "scl": scl_reason, "dr": dr_reason}
        rasters = {"s2": s2, "scl": scl, "dr": dr}
        grid, scl_ok, dr_ok = grid_check(s2, scl, dr, reasons)
        checks = [crs_check(tile, rasters, reasons), north_up_check(rasters, reasons), grid]
        if scl is not None and not scl_ok:
            reasons["scl"] = "scl grid differs from s2 (see grid_consistent)"
        usable = (scl if scl_ok else None, dr if dr_ok else None)
        classes, fields_m2 = fields_mask(fields_path, section_defaults("fields")["mask_classes"])
        stats = _scan_or_raise(s2, *usable, thr["reflectance_range"], tile, date, s2_path, classes)
        pixel_m2 = abs(s2.transform.a * s2.transform.e)
        masked = {"classes": classes, "fields_m2": fields_m2, "pixel_m2": pixel_m2}
        checks += [
            nodata_check(stats, scl_ok, thr["nodata_fraction"]),
            cloud_check(stats, scl_ok, reasons["scl"], thr["cloud_fraction"]),
            masked_check(stats, scl_ok, reasons["scl"], thr["masked_area"], masked),
            reflectance_check(stats, thr["reflectance_range"]),
            dr_check(s2, dr_ok, reasons, stats, thr["dr_consistency"]),
            coverage_check(dr_ok, reasons, stats, thr["dr_coverage"]),
            spectral_check(dr_ok, stats, thr["sr_spectral"]),
            spatial_check(s2, dr, dr_ok, thr["sr_spatial"]),
            opensr_check(s2, dr, dr_ok, stats, thr["sr_opensr"]),
        ]
        checks += field_checks(fields_path, *_areas(s2, stats), thr)
    return report(tile, date, checks)
