"""Checks of a scene's input rasters: CRS and grid, orientation, nodata, clouds, reflectance."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from tilepipe.core.inputs import CORE_INDEXES, RasterKind, dr_scale, mismatch, on_grid
from tilepipe.core.raster import is_north_up
from tilepipe.qc.checks import above, check

CLOUD_CLASSES = (3, 8, 9, 10)


def open_optional(
    stack: ExitStack, path, kind: RasterKind
) -> tuple[rasterio.DatasetReader | None, str]:
    """Open a raster or return (None, reason) when it is missing, unreadable or not of ``kind``
    (dtype, bands, scale; the grid is judged by the grid checks)."""
    if path is None:
        return None, "no path given"
    if not Path(path).exists():
        return None, f"{path} does not exist"
    try:
        src = stack.enter_context(rasterio.open(path))
    except (rasterio.RasterioIOError, OSError) as exc:
        return None, f"{path} is unreadable ({exc})"
    wrong = mismatch(src, kind, grid=False)
    return (None, f"{path} is {wrong}") if wrong else (src, "")


def _same_crs(crs, epsg: int) -> bool:
    """Whether a raster's CRS is the given EPSG code (a missing CRS never is)."""
    return crs is not None and CRS.from_user_input(crs) == CRS.from_epsg(epsg)


def _crs_problems(rasters: dict, reasons: dict, epsg: int, expected: str) -> tuple[dict, list]:
    """Each raster's CRS, and a problem for every raster missing or not in ``epsg``."""
    value, problems = {}, []
    for name, src in rasters.items():
        if src is None:
            value[name] = None
            problems.append(f"{name}: {reasons[name]}")
            continue
        value[name] = src.crs.to_string() if src.crs else None
        if not _same_crs(src.crs, epsg):
            problems.append(f"{name} CRS {value[name]} is not the tile's {expected}")
    return value, problems


def crs_check(tile: str, rasters: dict, reasons: dict) -> dict:
    """Every raster in the tile's UTM CRS, and s2's origin on the tile's pixel grid."""
    from tilepipe.core.grid import tile_grid

    try:
        grid = tile_grid(tile)
    except Exception as exc:  # an unknown tile id is a failed check, not a crash
        return check("crs_matches_tile", "fail", None, None, f"tile grid unknown: {exc}")
    expected = f"EPSG:{grid.epsg}"
    value, problems = _crs_problems(rasters, reasons, grid.epsg, expected)
    s2 = rasters["s2"]
    x0, y0 = s2.transform.c, s2.transform.f
    if not (on_grid(x0 - grid.ulx, grid.res) and on_grid(grid.uly - y0, grid.res)):
        problems.append(
            f"s2 origin ({x0}, {y0}) is off the tile's {grid.res:g} m grid "
            f"anchored at ({grid.ulx}, {grid.uly})"
        )
    value["s2_origin"] = [x0, y0]
    status = "fail" if problems else "pass"
    message = "; ".join(problems) or f"all rasters in {expected}, on the tile grid"
    return check("crs_matches_tile", status, value, expected, message)


def north_up_check(rasters: dict, reasons: dict) -> dict:
    """Every raster north-up (no rotation, rows from north to south)."""
    value, problems = {}, []
    for name, src in rasters.items():
        if src is None:
            value[name] = None
            problems.append(f"{name}: {reasons[name]}")
            continue
        value[name] = is_north_up(src.transform)
        if not value[name]:
            problems.append(f"{name} transform {tuple(src.transform)[:6]} is not north-up")
    status = "fail" if problems else "pass"
    return check("north_up", status, value, True, "; ".join(problems) or "all rasters north-up")


def _dr_grid_problem(s2, dr) -> str:
    """Why dr is not s2's grid at 1/k pixel with s2's bands, or "" when it is; the scale k is
    the dr.tif's own (its ``DR_SCALE`` tag, else its pixel size)."""
    k = dr_scale(dr)
    expected = s2.transform @ Affine.scale(1 / k)
    shape = (s2.height * k, s2.width * k)
    if dr.shape != shape or not dr.transform.almost_equals(expected, precision=1e-6):
        return (
            f"dr grid {dr.shape} {tuple(dr.transform)[:6]} is not s2's at 1/{k} pixel "
            f"{shape} {tuple(expected)[:6]} (DR scale {k})"
        )
    if dr.count != len(CORE_INDEXES):
        return f"dr has {dr.count} bands, s2 has {len(CORE_INDEXES)} core bands"
    return ""


def grid_check(s2, scl, dr, reasons: dict) -> tuple[dict, bool, bool]:
    """Return the check plus whether scl and dr may be compared pixel-wise with s2."""
    problems = []
    if scl is None:
        problems.append(f"scl: {reasons['scl']}")
    elif scl.shape != s2.shape or not scl.transform.almost_equals(s2.transform, precision=1e-6):
        problems.append(f"scl grid {scl.shape} {tuple(scl.transform)[:6]} differs from s2's")
    scl_ok = scl is not None and not problems
    dr_problem = f"dr: {reasons['dr']}" if dr is None else _dr_grid_problem(s2, dr)
    if dr_problem:
        problems.append(dr_problem)
    dr_ok = dr is not None and not dr_problem
    status = "fail" if problems else "pass"
    value = {"s2": list(s2.shape), "scl": scl_ok, "dr": dr_ok}
    k = dr_scale(dr) if dr_ok else None
    message = "; ".join(problems) or f"scl on the s2 grid, dr on it at 1/{k} pixel"
    return check("grid_consistent", status, value, None, message), scl_ok, dr_ok


def add_s2_strip(
    stats: dict, data: np.ndarray, classes, rmin: float, rmax: float, mask_classes=()
) -> np.ndarray:
    """Count one strip's pixels, nodata, clouds, masked and out-of-range values; return valid
    pixels.

    ``data`` is s2 (B, h, W); ``classes`` the scl strip (h, W) or None when scl is unusable;
    ``mask_classes`` the SCL classes the fields step masks (counted over every pixel).
    """
    valid = np.any(data != 0, axis=0)
    if classes is not None:
        stats["masked"] = stats.get("masked", 0) + int(np.isin(classes, mask_classes).sum())
        valid &= classes != 0
        stats["cloud"] += int(np.isin(classes[valid], CLOUD_CLASSES).sum())
    stats["pixels"] += valid.size
    stats["nodata"] += int(valid.size - valid.sum())
    values = data[:, valid]
    stats["values"] += values.size
    stats["out_of_range"] += int(((values < rmin) | (values > rmax)).sum())
    return valid


def nodata_check(stats: dict, scl_ok: bool, t: dict) -> dict:
    """Fraction of s2 pixels that are nodata (all bands 0, or SCL 0 when scl is usable)."""
    frac = stats["nodata"] / max(stats["pixels"], 1)
    return check(
        "nodata_fraction",
        above(frac, t["warn"], t["fail"]),
        frac,
        t,
        f"{frac:.1%} of s2 pixels are nodata" + ("" if scl_ok else " (s2 only: scl not usable)"),
    )


def cloud_check(stats: dict, scl_ok: bool, scl_reason: str, t: dict) -> dict:
    """Fraction of valid pixels that SCL calls cloud, cirrus or cloud shadow."""
    valid = stats["pixels"] - stats["nodata"]
    if not scl_ok:
        return check("cloud_fraction", "fail", None, t, f"scl: {scl_reason}")
    if valid == 0:
        return check("cloud_fraction", "fail", None, t, "no valid pixels")
    frac = stats["cloud"] / valid
    return check(
        "cloud_fraction",
        above(frac, t["warn"], t["fail"]),
        frac,
        t,
        f"{frac:.1%} of valid pixels are cloud, cirrus or shadow",
    )


def masked_check(stats: dict, scl_ok: bool, scl_reason: str, t: dict, masked: dict) -> dict:
    """Share (and area) of the scene under the fields step's SCL mask, and the fields' masked
    area; ``masked`` holds ``classes``, ``pixel_m2`` and ``fields_m2`` (None: unknown)."""
    if not scl_ok:
        return check("masked_area", "fail", None, t, f"scl: {scl_reason}")
    pixels = max(stats["pixels"], 1)
    frac = stats.get("masked", 0) / pixels
    area = stats.get("masked", 0) * masked["pixel_m2"]
    classes = ",".join(str(c) for c in masked["classes"]) or "none"
    fields_m2 = masked["fields_m2"]
    in_fields = (
        "fields' masked area unknown"
        if fields_m2 is None
        else f"{fields_m2:.0f} m² of the fields lie under it"
    )
    return check(
        "masked_area",
        above(frac, t["warn"], t["fail"]),
        frac,
        t,
        f"{frac:.1%} of the scene ({area:.0f} m²) masked for fields (SCL {classes}); {in_fields}",
    )


def reflectance_check(stats: dict, t: dict) -> dict:
    """Fraction of valid s2 values (pixel x band) outside ``[t["min"], t["max"]]``."""
    if stats["values"] == 0:
        return check("reflectance_range", "fail", None, t, "no valid pixels")
    frac = stats["out_of_range"] / stats["values"]
    return check(
        "reflectance_range",
        above(frac, t["warn"], t["fail"]),
        frac,
        t,
        f"{frac:.2%} of valid values outside [{t['min']}, {t['max']}]",
    )
