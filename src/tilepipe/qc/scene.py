"""Quality checks of one (tile, date): grids, coverage, clouds, reflectance and DR consistency.

Every check yields ``{"name", "status", "value", "threshold", "message"}`` with status
``pass|warn|fail``; the report's status is the worst of them. Rasters are read in row strips so a
full tile (and its 10x larger ``dr.tif``) never has to fit in memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from tilepipe.core.errors import InputError, context
from tilepipe.core.raster import is_north_up
from tilepipe.qc.checks import RANK, above, below, check, merge_thresholds, report

CLOUD_CLASSES = (3, 8, 9, 10)
PSNR_CAP = 100.0  # dB reported for an exact match (JSON has no infinity)
_STRIP_ROWS = 32  # s2 rows per strip: dr strips are 320 rows x 10 x s2 width


def _open(stack: ExitStack, path) -> tuple[rasterio.DatasetReader | None, str]:
    """Open a raster or return (None, reason) when it is missing or unreadable."""
    if path is None:
        return None, "no path given"
    if not Path(path).exists():
        return None, f"{path} does not exist"
    try:
        return stack.enter_context(rasterio.open(path)), ""
    except (rasterio.RasterioIOError, OSError) as exc:
        return None, f"{path} is unreadable ({exc})"


def _same_crs(crs, epsg: int) -> bool:
    return crs is not None and CRS.from_user_input(crs) == CRS.from_epsg(epsg)


def _on_grid(offset: float, res: float) -> bool:
    remainder = math.fmod(offset, res)
    return min(abs(remainder), res - abs(remainder)) < 1e-6


def _crs_check(tile: str, rasters: dict, reasons: dict) -> dict:
    from tilepipe.core.grid import tile_grid

    try:
        grid = tile_grid(tile)
    except Exception as exc:  # an unknown tile id is a failed check, not a crash
        return check("crs_matches_tile", "fail", None, None, f"tile grid unknown: {exc}")
    expected = f"EPSG:{grid.epsg}"
    value, problems = {}, []
    for name, src in rasters.items():
        if src is None:
            value[name] = None
            problems.append(f"{name}: {reasons[name]}")
            continue
        value[name] = src.crs.to_string() if src.crs else None
        if not _same_crs(src.crs, grid.epsg):
            problems.append(f"{name} CRS {value[name]} is not the tile's {expected}")
    s2 = rasters["s2"]
    x0, y0 = s2.transform.c, s2.transform.f
    if not (_on_grid(x0 - grid.ulx, grid.res) and _on_grid(grid.uly - y0, grid.res)):
        problems.append(
            f"s2 origin ({x0}, {y0}) is off the tile's {grid.res:g} m grid "
            f"anchored at ({grid.ulx}, {grid.uly})"
        )
    value["s2_origin"] = [x0, y0]
    status = "fail" if problems else "pass"
    message = "; ".join(problems) or f"all rasters in {expected}, on the tile grid"
    return check("crs_matches_tile", status, value, expected, message)


def _north_up_check(rasters: dict, reasons: dict) -> dict:
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


def _grid_check(s2, scl, dr, reasons: dict) -> tuple[dict, bool, bool]:
    """Return the check plus whether scl and dr may be compared pixel-wise with s2."""
    problems = []
    scl_ok = dr_ok = False
    if scl is None:
        problems.append(f"scl: {reasons['scl']}")
    elif scl.shape != s2.shape or not scl.transform.almost_equals(s2.transform, precision=1e-6):
        problems.append(f"scl grid {scl.shape} {tuple(scl.transform)[:6]} differs from s2's")
    else:
        scl_ok = True
    if dr is None:
        problems.append(f"dr: {reasons['dr']}")
    else:
        expected = s2.transform @ Affine.scale(0.1)
        shape = (s2.height * 10, s2.width * 10)
        if dr.shape != shape or not dr.transform.almost_equals(expected, precision=1e-6):
            problems.append(
                f"dr grid {dr.shape} {tuple(dr.transform)[:6]} is not s2's at 1/10 pixel "
                f"{shape} {tuple(expected)[:6]}"
            )
        elif dr.count != s2.count:
            problems.append(f"dr has {dr.count} bands, s2 has {s2.count}")
        else:
            dr_ok = True
    status = "fail" if problems else "pass"
    value = {"s2": list(s2.shape), "scl": scl_ok, "dr": dr_ok}
    message = "; ".join(problems) or "scl on the s2 grid, dr on it at 1/10 pixel"
    return check("grid_consistent", status, value, None, message), scl_ok, dr_ok


def _strips(height: int, rows: int) -> Iterator[tuple[int, int]]:
    for r0 in range(0, height, rows):
        yield r0, min(rows, height - r0)


def _scan(s2, scl, dr, rmin: float, rmax: float) -> dict:
    """One pass over s2 (+scl, +dr) in row strips; return the counts every raster check needs."""
    nb = s2.count
    stats = {
        "pixels": 0,
        "nodata": 0,
        "cloud": 0,
        "values": 0,
        "out_of_range": 0,
        "dr_n": np.zeros(nb, np.int64),
        "dr_abs": np.zeros(nb, np.float64),
        "dr_sq": np.zeros(nb, np.float64),
        "angle_n": 0,
        "angle_sum": 0.0,
    }
    width = s2.width
    for r0, h in _strips(s2.height, _STRIP_ROWS):
        data = s2.read(window=Window(0, r0, width, h))  # (B, h, W) uint16
        valid = np.any(data != 0, axis=0)
        if scl is not None:
            classes = scl.read(1, window=Window(0, r0, width, h))
            valid &= classes != 0
            stats["cloud"] += int(np.isin(classes[valid], CLOUD_CLASSES).sum())
        stats["pixels"] += valid.size
        stats["nodata"] += int(valid.size - valid.sum())
        values = data[:, valid]
        stats["values"] += values.size
        stats["out_of_range"] += int(((values < rmin) | (values > rmax)).sum())
        if dr is None or not valid.any():
            continue
        means = np.empty((nb, h, width), dtype=np.float64)
        complete = np.ones((h, width), dtype=bool)
        for b in range(nb):
            hr = dr.read(b + 1, window=Window(0, r0 * 10, width * 10, h * 10))
            blocks = hr.reshape(h, 10, width, 10)
            means[b] = blocks.sum(axis=(1, 3), dtype=np.float64) / 100.0
            complete_b = ~np.any(blocks == 0, axis=(1, 3))  # dr nodata inside the block
            complete &= complete_b
            both = valid & complete_b
            diff = (means[b][both] - data[b][both].astype(np.float64)) / 10000.0
            stats["dr_n"][b] += diff.size
            stats["dr_abs"][b] += np.abs(diff).sum()
            stats["dr_sq"][b] += np.square(diff).sum()
        both = valid & complete
        angles = spectral_angle(means[:, both], data[:, both].astype(np.float64))
        stats["angle_n"] += int(np.isfinite(angles).sum())
        stats["angle_sum"] += float(np.nansum(angles))
    return stats


def spectral_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between band vectors a[:, i] and b[:, i]; NaN where one is all zero."""
    dot = np.sum(a * b, axis=0)
    norm = np.sqrt(np.sum(a * a, axis=0) * np.sum(b * b, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norm > 0, dot / norm, np.nan)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _dr_check(s2, dr_ok: bool, reasons: dict, stats: dict, thr: dict) -> dict:
    name = "dr_consistency"
    if not dr_ok:
        why = reasons.get("dr") or "dr grid is inconsistent with s2 (see grid_consistent)"
        return check(name, "fail", None, thr, f"not compared: {why}")
    n = stats["dr_n"]
    if not n.any():
        return check(name, "fail", None, thr, "no valid pixel shared by s2 and dr")
    with np.errstate(divide="ignore", invalid="ignore"):
        l1 = stats["dr_abs"] / n
        mse = stats["dr_sq"] / n
        psnr = np.minimum(10 * np.log10(1.0 / mse), PSNR_CAP)
    bands = [s2.descriptions[b] or f"band{b + 1}" for b in range(s2.count)]
    worst_l1, worst_psnr = float(np.nanmax(l1)), float(np.nanmin(psnr))
    status = max(
        above(worst_l1, thr["l1_warn"], thr["l1_fail"]),
        below(worst_psnr, thr["psnr_warn"], thr["psnr_fail"]),
        key=RANK.get,
    )
    value = {
        "bands": bands,
        "l1": l1.tolist(),
        "psnr": psnr.tolist(),
        "worst_l1": worst_l1,
        "worst_psnr": worst_psnr,
        "pixels": int(n.max()),
    }
    message = (
        f"dr block means vs s2: worst band L1 {worst_l1:.4f}, worst PSNR {worst_psnr:.1f} dB "
        f"over {int(n.max())} pixels"
    )
    return check(name, status, value, thr, message)


def _spectral_check(dr_ok: bool, stats: dict, thr: dict) -> dict:
    name = "sr_spectral"
    if not dr_ok:
        return check(name, "fail", None, thr, "not compared: dr unusable (see grid_consistent)")
    if stats["angle_n"] == 0:
        return check(name, "fail", None, thr, "no valid pixel shared by s2 and dr")
    angle = stats["angle_sum"] / stats["angle_n"]
    return check(
        name,
        above(angle, thr["warn"], thr["fail"]),
        angle,
        thr,
        f"mean spectral angle of dr block means vs s2 {angle:.2f}° over {stats['angle_n']} pixels",
    )


def _spatial_windows(height: int, width: int, size: int, limit: int) -> list[Window]:
    """Up to ``limit`` windows of ``size`` pixels spread evenly over the raster."""
    size_r, size_c = min(size, height), min(size, width)
    grid = [
        Window(c0, r0, size_c, size_r)
        for r0 in range(0, height - size_r + 1, size_r)
        for c0 in range(0, width - size_c + 1, size_c)
    ]
    if len(grid) <= limit:
        return grid
    picks = np.linspace(0, len(grid) - 1, limit).round().astype(int)
    return [grid[i] for i in sorted(set(picks.tolist()))]


def _spatial_check(s2, dr, dr_ok: bool, thr: dict) -> dict:
    """Sub-pixel shift of dr (block-averaged to 10 m) against s2 by phase correlation."""
    from skimage.registration import phase_cross_correlation

    name = "sr_spatial"
    if not dr_ok:
        return check(name, "fail", None, thr, "not compared: dr unusable (see grid_consistent)")
    shifts = []
    for win in _spatial_windows(s2.height, s2.width, int(thr["window"]), int(thr["windows"])):
        lr = s2.read(window=win).astype(np.float64)  # (B, h, w)
        h, w = lr.shape[1:]
        hr = dr.read(window=Window(win.col_off * 10, win.row_off * 10, w * 10, h * 10))
        blocks = hr.reshape(hr.shape[0], h, 10, w, 10)
        back = blocks.mean(axis=(2, 4))
        valid = np.any(lr != 0, axis=0) & ~np.any(blocks == 0, axis=(0, 2, 4))
        if valid.mean() < 0.9 or min(h, w) < 8:
            continue  # too much nodata (or too small) for a meaningful correlation
        ref, mov = lr.mean(axis=0), back.mean(axis=0)
        ref[~valid], mov[~valid] = ref[valid].mean(), mov[valid].mean()
        if ref.std() == 0 or mov.std() == 0:
            continue  # flat window: no structure to register
        shift, _, _ = phase_cross_correlation(ref, mov, upsample_factor=20)
        shifts.append(shift)
    if not shifts:
        return check(name, "warn", None, thr, "no window with enough valid structure to register")
    arr = np.asarray(shifts)
    magnitude = float(np.median(np.hypot(arr[:, 0], arr[:, 1])))
    value = {
        "shift_px": magnitude,
        "median_dy_px": float(np.median(arr[:, 0])),
        "median_dx_px": float(np.median(arr[:, 1])),
        "windows": len(shifts),
    }
    return check(
        name,
        above(magnitude, thr["warn"], thr["fail"]),
        value,
        thr,
        f"dr is shifted {magnitude:.2f} px (10 m pixels) from s2, median of {len(shifts)} "
        f"phase-correlation windows",
    )


_FIELD_CHECKS = ("field_count", "field_area", "field_invalid", "field_slivers", "field_coverage")


def _field_checks(fields_path, raster_area: float, valid_area: float, thr: dict) -> list[dict]:
    """Count, area distribution, invalid and sliver fractions and coverage of the fields."""
    import pyogrio.raw
    import shapely

    try:
        if fields_path is None or not Path(fields_path).exists():
            raise FileNotFoundError(f"{fields_path} does not exist")
        meta, _, geometry, field_data = pyogrio.raw.read(fields_path, layer="fields")
    except Exception as exc:  # missing file, wrong layer, corrupt GeoPackage
        msg = f"fields unreadable: {exc}"
        return [check(name, "fail", None, thr[name], msg) for name in _FIELD_CHECKS]
    names = list(meta["fields"])
    n = len(geometry) if geometry is not None else 0
    t = thr["field_count"]
    checks = [check("field_count", below(n, t["warn"], t["fail"]), n, t, f"{n} fields")]
    if n == 0:
        return (
            checks
            + [
                check(name, "pass", None, thr[name], "no fields to measure")
                for name in _FIELD_CHECKS[1:-1]
            ]
            + [check("field_coverage", "fail", 0.0, thr["field_coverage"], "no fields")]
        )
    geoms = shapely.from_wkb(geometry)
    if "area_m2" in names:
        areas = np.asarray(field_data[names.index("area_m2")], dtype=np.float64)
    else:
        areas = shapely.area(geoms)
    if "perimeter_m" in names:
        perimeters = np.asarray(field_data[names.index("perimeter_m")], dtype=np.float64)
    else:
        perimeters = shapely.length(geoms)

    t = thr["field_area"]
    median, largest = float(np.median(areas)), float(np.max(areas))
    (wlo, whi), (flo, fhi) = t["warn"], t["fail"]
    if largest > raster_area:
        status = "fail"
        message = f"largest field {largest:.0f} m² exceeds the raster's {raster_area:.0f} m²"
    else:
        status = (
            "fail" if not flo <= median <= fhi else "warn" if not wlo <= median <= whi else "pass"
        )
        p10, p90 = np.percentile(areas, [10, 90])
        message = (
            f"field area m²: median {median:.0f}, 10-90 % {p10:.0f}-{p90:.0f}, "
            f"largest {largest:.0f}"
        )
    value = {
        "median_m2": median,
        "max_m2": largest,
        "min_m2": float(np.min(areas)),
        "p10_m2": float(np.percentile(areas, 10)),
        "p90_m2": float(np.percentile(areas, 90)),
        "raster_m2": raster_area,
    }
    checks.append(check("field_area", status, value, t, message))

    t = thr["field_invalid"]
    invalid = shapely.is_missing(geoms) | shapely.is_empty(geoms) | ~shapely.is_valid(geoms)
    frac = float(invalid.mean())
    checks.append(
        check(
            "field_invalid",
            above(frac, t["warn"], t["fail"]),
            frac,
            t,
            f"{int(invalid.sum())} of {n} field geometries are empty or invalid",
        )
    )

    t = thr["field_slivers"]
    with np.errstate(invalid="ignore", divide="ignore"):
        compact = 4 * np.pi * areas / np.square(perimeters)
    slivers = ~(compact >= t["compactness"])  # NaN (no perimeter) counts as a sliver
    frac = float(slivers.mean())
    checks.append(
        check(
            "field_slivers",
            above(frac, t["warn"], t["fail"]),
            frac,
            t,
            f"{int(slivers.sum())} of {n} fields are slivers (4πA/P² < {t['compactness']:g})",
        )
    )

    t = thr["field_coverage"]
    cover = float(areas.sum() / valid_area) if valid_area > 0 else float("nan")
    if not math.isfinite(cover):
        status, message = "fail", "no valid scene area to cover"
    elif cover > t["max"]:
        status, message = "fail", f"fields cover {cover:.1%} of the valid area: they overlap"
    else:
        status = below(cover, t["warn"], t["fail"])
        message = f"fields cover {cover:.1%} of the scene's valid area"
    checks.append(check("field_coverage", status, cover, t, message))
    return checks


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

    A missing or unreadable scl/dr/fields file fails the checks that need it; an unreadable
    ``s2.tif`` raises InputError, since nothing can be judged without it.
    """
    thr = merge_thresholds(thresholds)
    with ExitStack() as stack:
        try:
            s2 = stack.enter_context(rasterio.open(s2_path))
        except (rasterio.RasterioIOError, OSError) as exc:
            raise InputError(f"{context(tile, date, s2_path)}s2.tif is unreadable: {exc}") from exc
        scl, scl_reason = _open(stack, scl_path)
        dr, dr_reason = _open(stack, dr_path)
        reasons = {"s2": "", "scl": scl_reason, "dr": dr_reason}
        rasters = {"s2": s2, "scl": scl, "dr": dr}

        checks = [_crs_check(tile, rasters, reasons), _north_up_check(rasters, reasons)]
        grid, scl_ok, dr_ok = _grid_check(s2, scl, dr, reasons)
        checks.append(grid)
        if scl is not None and not scl_ok:
            reasons["scl"] = "scl grid differs from s2 (see grid_consistent)"

        rr = thr["reflectance_range"]
        try:
            stats = _scan(s2, scl if scl_ok else None, dr if dr_ok else None, rr["min"], rr["max"])
        except rasterio.RasterioIOError as exc:
            raise InputError(
                f"{context(tile, date, s2_path)}reading rasters failed: {exc}"
            ) from exc

        t = thr["nodata_fraction"]
        frac = stats["nodata"] / max(stats["pixels"], 1)
        checks.append(
            check(
                "nodata_fraction",
                above(frac, t["warn"], t["fail"]),
                frac,
                t,
                f"{frac:.1%} of s2 pixels are nodata"
                + ("" if scl_ok else " (s2 only: scl not usable)"),
            )
        )

        t = thr["cloud_fraction"]
        valid = stats["pixels"] - stats["nodata"]
        if not scl_ok:
            checks.append(check("cloud_fraction", "fail", None, t, f"scl: {reasons['scl']}"))
        elif valid == 0:
            checks.append(check("cloud_fraction", "fail", None, t, "no valid pixels"))
        else:
            frac = stats["cloud"] / valid
            checks.append(
                check(
                    "cloud_fraction",
                    above(frac, t["warn"], t["fail"]),
                    frac,
                    t,
                    f"{frac:.1%} of valid pixels are cloud, cirrus or shadow",
                )
            )

        if stats["values"] == 0:
            checks.append(check("reflectance_range", "fail", None, rr, "no valid pixels"))
        else:
            frac = stats["out_of_range"] / stats["values"]
            checks.append(
                check(
                    "reflectance_range",
                    above(frac, rr["warn"], rr["fail"]),
                    frac,
                    rr,
                    f"{frac:.2%} of valid values outside [{rr['min']}, {rr['max']}]",
                )
            )

        checks.append(_dr_check(s2, dr_ok, reasons, stats, thr["dr_consistency"]))
        checks.append(_spectral_check(dr_ok, stats, thr["sr_spectral"]))
        checks.append(_spatial_check(s2, dr, dr_ok, thr["sr_spatial"]))
        pixel_area = abs(s2.transform.a * s2.transform.e)
        raster_area = pixel_area * s2.width * s2.height
        valid_area = pixel_area * (stats["pixels"] - stats["nodata"])
        checks += _field_checks(fields_path, raster_area, valid_area, thr)

    return report(tile, date, checks)
