"""Quality checks of one (tile, date): grids, coverage, clouds, reflectance and DR consistency.

Every check yields ``{"name", "status", "value", "threshold", "message"}`` with status
``pass|warn|fail``; the report's status is the worst of them. Rasters are read in row strips so a
full tile (and its 10x larger ``dr.tif``) never has to fit in memory.
"""

from __future__ import annotations

import copy
import json
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

from tilepipe.errors import ConfigError, InputError, context
from tilepipe.raster import atomic_output, is_north_up

#: Thresholds of every check; ``run_qc`` merges a caller's dict over these, key by key.
#:
#: - ``nodata_fraction`` {warn, fail}: fraction of s2 pixels that are nodata (all bands 0 or
#:   SCL 0); above ``warn`` warns, above ``fail`` fails.
#: - ``cloud_fraction`` {warn, fail}: fraction of valid pixels with SCL in {3, 8, 9, 10}
#:   (cloud shadow, medium/high cloud, thin cirrus); above ``warn``/``fail``.
#: - ``reflectance_range`` {min, max, warn, fail}: fraction of valid s2 values (pixel x band)
#:   outside [min, max] (DN = reflectance x 10000); above ``warn``/``fail``.
#: - ``dr_consistency`` {l1_warn, l1_fail, psnr_warn, psnr_fail}: dr.tif block-averaged to 10 m
#:   against s2.tif over valid pixels, per band, in reflectance units; the worst band's mean
#:   absolute error above ``l1_*`` or PSNR (peak 1.0, dB) below ``psnr_*`` warns/fails.
#: - ``field_count`` {warn, fail}: number of fields; below ``warn``/``fail``.
#: - ``field_area`` {warn: [min, max], fail: [min, max]}: median ``area_m2`` in m² outside the
#:   ``warn``/``fail`` range; any single field larger than the raster always fails.
#:
#: - ``sr_spectral`` {warn, fail}: mean spectral angle (degrees) between each 10 m pixel's band
#:   vector in s2 and in dr block-averaged 10 x 10 (opensr-test's spectral consistency).
#: - ``sr_spatial`` {warn, fail, windows, window}: sub-pixel shift (10 m pixels) of dr
#:   block-averaged against s2, by phase correlation (skimage) on up to ``windows`` windows of
#:   ``window`` s2 pixels; the median shift magnitude above ``warn``/``fail``.
#: - ``field_invalid`` {warn, fail}: fraction of field geometries that are empty or invalid.
#: - ``field_slivers`` {compactness, warn, fail}: fraction of fields whose Polsby-Popper
#:   compactness 4πA/P² (P from ``perimeter_m`` when present) is below ``compactness``.
#: - ``field_coverage`` {warn, fail, max}: fields' total area over the scene's valid area (the
#:   cropland the delineation found); below ``warn``/``fail``, or above ``max`` (overlaps), is bad.
#: - ``class_distribution`` {warn, fail, unknown_warn, unknown_fail}: share of the most common
#:   class among classified fields, and share of fields left ``unknown`` (no embedding pixel).
#: - ``low_confidence`` {prob, warn, fail}: fraction of classified fields with ``crop_prob``
#:   below ``prob``.
#:
#: ``crs_matches_tile``, ``north_up`` and ``grid_consistent`` are exact and take no threshold.
DEFAULT_THRESHOLDS: dict = {
    "nodata_fraction": {"warn": 0.5, "fail": 0.95},
    "cloud_fraction": {"warn": 0.3, "fail": 0.7},
    "reflectance_range": {"min": 1, "max": 12000, "warn": 0.01, "fail": 0.05},
    "dr_consistency": {"l1_warn": 0.02, "l1_fail": 0.05, "psnr_warn": 30.0, "psnr_fail": 25.0},
    "field_count": {"warn": 1, "fail": 0},
    "field_area": {"warn": [2000.0, 2000000.0], "fail": [200.0, 20000000.0]},
    "sr_spectral": {"warn": 3.0, "fail": 6.0},
    "sr_spatial": {"warn": 0.25, "fail": 0.5, "windows": 9, "window": 128},
    "field_invalid": {"warn": 0.0, "fail": 0.05},
    "field_slivers": {"compactness": 0.1, "warn": 0.1, "fail": 0.3},
    "field_coverage": {"warn": 0.05, "fail": 0.01, "max": 1.0},
    "class_distribution": {"warn": 0.95, "fail": 1.0, "unknown_warn": 0.1, "unknown_fail": 0.5},
    "low_confidence": {"prob": 0.5, "warn": 0.3, "fail": 0.6},
}

#: Checks of ``run_qc`` (one scene before classification) and of ``run_classification_qc``.
SCENE_CHECKS = (
    "crs_matches_tile",
    "north_up",
    "grid_consistent",
    "nodata_fraction",
    "cloud_fraction",
    "reflectance_range",
    "dr_consistency",
    "sr_spectral",
    "sr_spatial",
    "field_count",
    "field_area",
    "field_invalid",
    "field_slivers",
    "field_coverage",
)
CLASSIFICATION_CHECKS = ("class_distribution", "low_confidence")

CLOUD_CLASSES = (3, 8, 9, 10)
_RANK = {"pass": 0, "warn": 1, "fail": 2}
PSNR_CAP = 100.0  # dB reported for an exact match (JSON has no infinity)
_STRIP_ROWS = 32  # s2 rows per strip: dr strips are 320 rows x 10 x s2 width


def _check(name: str, status: str, value, threshold, message: str) -> dict:
    return {
        "name": name,
        "status": status,
        "value": _jsonable(value),
        "threshold": _jsonable(threshold),
        "message": message,
    }


def _jsonable(value):
    """Plain JSON types only: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _above(value: float, warn: float, fail: float) -> str:
    """Status of a value that must stay at or below its thresholds."""
    return "fail" if value > fail else "warn" if value > warn else "pass"


def _below(value: float, warn: float, fail: float) -> str:
    """Status of a value that must stay at or above its thresholds."""
    return "fail" if value < fail else "warn" if value < warn else "pass"


def merge_thresholds(thresholds: dict | None) -> dict:
    """Return DEFAULT_THRESHOLDS with the given per-check overrides applied; reject unknown keys."""
    merged = copy.deepcopy(DEFAULT_THRESHOLDS)
    for key, value in (thresholds or {}).items():
        if key not in merged:
            raise ConfigError(f"unknown QC threshold {key!r} (known: {', '.join(merged)})")
        if not isinstance(value, dict):
            raise ConfigError(f"QC threshold {key!r} must be a mapping, got {value!r}")
        unknown = set(value) - set(merged[key])
        if unknown:
            raise ConfigError(f"QC threshold {key!r}: unknown keys {sorted(unknown)}")
        merged[key].update(value)
    return merged


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
    from tilepipe.grid import tile_grid

    try:
        grid = tile_grid(tile)
    except Exception as exc:  # an unknown tile id is a failed check, not a crash
        return _check("crs_matches_tile", "fail", None, None, f"tile grid unknown: {exc}")
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
    return _check("crs_matches_tile", status, value, expected, message)


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
    return _check("north_up", status, value, True, "; ".join(problems) or "all rasters north-up")


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
    return _check("grid_consistent", status, value, None, message), scl_ok, dr_ok


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
        return _check(name, "fail", None, thr, f"not compared: {why}")
    n = stats["dr_n"]
    if not n.any():
        return _check(name, "fail", None, thr, "no valid pixel shared by s2 and dr")
    with np.errstate(divide="ignore", invalid="ignore"):
        l1 = stats["dr_abs"] / n
        mse = stats["dr_sq"] / n
        psnr = np.minimum(10 * np.log10(1.0 / mse), PSNR_CAP)
    bands = [s2.descriptions[b] or f"band{b + 1}" for b in range(s2.count)]
    worst_l1, worst_psnr = float(np.nanmax(l1)), float(np.nanmin(psnr))
    status = max(
        _above(worst_l1, thr["l1_warn"], thr["l1_fail"]),
        _below(worst_psnr, thr["psnr_warn"], thr["psnr_fail"]),
        key=_RANK.get,
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
    return _check(name, status, value, thr, message)


def _spectral_check(dr_ok: bool, stats: dict, thr: dict) -> dict:
    name = "sr_spectral"
    if not dr_ok:
        return _check(name, "fail", None, thr, "not compared: dr unusable (see grid_consistent)")
    if stats["angle_n"] == 0:
        return _check(name, "fail", None, thr, "no valid pixel shared by s2 and dr")
    angle = stats["angle_sum"] / stats["angle_n"]
    return _check(
        name,
        _above(angle, thr["warn"], thr["fail"]),
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
        return _check(name, "fail", None, thr, "not compared: dr unusable (see grid_consistent)")
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
        return _check(name, "warn", None, thr, "no window with enough valid structure to register")
    arr = np.asarray(shifts)
    magnitude = float(np.median(np.hypot(arr[:, 0], arr[:, 1])))
    value = {
        "shift_px": magnitude,
        "median_dy_px": float(np.median(arr[:, 0])),
        "median_dx_px": float(np.median(arr[:, 1])),
        "windows": len(shifts),
    }
    return _check(
        name,
        _above(magnitude, thr["warn"], thr["fail"]),
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
        return [_check(name, "fail", None, thr[name], msg) for name in _FIELD_CHECKS]
    names = list(meta["fields"])
    n = len(geometry) if geometry is not None else 0
    t = thr["field_count"]
    checks = [_check("field_count", _below(n, t["warn"], t["fail"]), n, t, f"{n} fields")]
    if n == 0:
        return (
            checks
            + [
                _check(name, "pass", None, thr[name], "no fields to measure")
                for name in _FIELD_CHECKS[1:-1]
            ]
            + [_check("field_coverage", "fail", 0.0, thr["field_coverage"], "no fields")]
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
    checks.append(_check("field_area", status, value, t, message))

    t = thr["field_invalid"]
    invalid = shapely.is_missing(geoms) | shapely.is_empty(geoms) | ~shapely.is_valid(geoms)
    frac = float(invalid.mean())
    checks.append(
        _check(
            "field_invalid",
            _above(frac, t["warn"], t["fail"]),
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
        _check(
            "field_slivers",
            _above(frac, t["warn"], t["fail"]),
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
        status = _below(cover, t["warn"], t["fail"])
        message = f"fields cover {cover:.1%} of the scene's valid area"
    checks.append(_check("field_coverage", status, cover, t, message))
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
            _check(
                "nodata_fraction",
                _above(frac, t["warn"], t["fail"]),
                frac,
                t,
                f"{frac:.1%} of s2 pixels are nodata"
                + ("" if scl_ok else " (s2 only: scl not usable)"),
            )
        )

        t = thr["cloud_fraction"]
        valid = stats["pixels"] - stats["nodata"]
        if not scl_ok:
            checks.append(_check("cloud_fraction", "fail", None, t, f"scl: {reasons['scl']}"))
        elif valid == 0:
            checks.append(_check("cloud_fraction", "fail", None, t, "no valid pixels"))
        else:
            frac = stats["cloud"] / valid
            checks.append(
                _check(
                    "cloud_fraction",
                    _above(frac, t["warn"], t["fail"]),
                    frac,
                    t,
                    f"{frac:.1%} of valid pixels are cloud, cirrus or shadow",
                )
            )

        if stats["values"] == 0:
            checks.append(_check("reflectance_range", "fail", None, rr, "no valid pixels"))
        else:
            frac = stats["out_of_range"] / stats["values"]
            checks.append(
                _check(
                    "reflectance_range",
                    _above(frac, rr["warn"], rr["fail"]),
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

    return _report(tile, date, checks)


def _report(tile: str, date: str, checks: list[dict]) -> dict:
    """The qc.json document: worst status, the checks and a summary of them."""
    status = max((c["status"] for c in checks), key=_RANK.get)
    summary = {
        "n_checks": len(checks),
        **{f"n_{s}": sum(c["status"] == s for c in checks) for s in _RANK},
        "failed": [c["name"] for c in checks if c["status"] == "fail"],
        "warned": [c["name"] for c in checks if c["status"] == "warn"],
    }
    return {"tile": tile, "date": date, "status": status, "checks": checks, "summary": summary}


def run_classification_qc(
    *, tile: str, date: str, classified_path: str | os.PathLike, thresholds: dict
) -> dict:
    """Check a scene's ``fields_classified.gpkg``: class distribution and low-confidence share.

    Returns a report shaped like qc.json. An unreadable file or an empty field set fails; a scene
    that classification skipped (its qc.json failed) warns.
    """
    import pyogrio.raw

    from tilepipe.classify import SKIPPED as SKIPPED_CLASS
    from tilepipe.classify import UNKNOWN as UNKNOWN_CLASS

    thr = merge_thresholds(thresholds)
    t_dist, t_low = thr["class_distribution"], thr["low_confidence"]
    try:
        meta, _, _, data = pyogrio.raw.read(classified_path, layer="fields")
        cols = dict(zip(meta["fields"], data, strict=True))
        crop = np.asarray(cols["crop"]).astype(str)
        prob = np.asarray(cols["crop_prob"], dtype=np.float64)
    except Exception as exc:  # missing file or columns, corrupt GeoPackage
        msg = f"{context(tile, date, classified_path)}classified fields unreadable: {exc!r}"
        return _report(
            tile,
            date,
            [_check(n, "fail", None, thr[n], msg) for n in CLASSIFICATION_CHECKS],
        )
    n = len(crop)
    if n == 0:
        msg = "no fields to classify (empty field set)"
        return _report(
            tile, date, [_check(n_, "fail", 0, thr[n_], msg) for n_ in CLASSIFICATION_CHECKS]
        )
    if np.all(crop == SKIPPED_CLASS):
        msg = "scene left out of classification: its qc.json failed"
        return _report(
            tile, date, [_check(n_, "warn", None, thr[n_], msg) for n_ in CLASSIFICATION_CHECKS]
        )
    classes, counts = np.unique(crop, return_counts=True)
    distribution = dict(zip(classes.tolist(), counts.tolist(), strict=True))
    known = (crop != UNKNOWN_CLASS) & (crop != SKIPPED_CLASS)
    unknown_share = float(np.mean(crop == UNKNOWN_CLASS))
    if known.any():
        _, known_counts = np.unique(crop[known], return_counts=True)
        dominant = float(known_counts.max() / known.sum())
    else:
        dominant = float("nan")
    status = max(
        "fail" if not known.any() else _above(dominant, t_dist["warn"], t_dist["fail"]),
        _above(unknown_share, t_dist["unknown_warn"], t_dist["unknown_fail"]),
        key=_RANK.get,
    )
    checks = [
        _check(
            "class_distribution",
            status,
            {"counts": distribution, "dominant_share": dominant, "unknown_share": unknown_share},
            t_dist,
            f"{n} fields: "
            + ", ".join(f"{c} {k}" for c, k in distribution.items())
            + f"; unknown {unknown_share:.1%}",
        )
    ]
    if known.any():
        low = float(np.mean(prob[known] < t_low["prob"]))
        checks.append(
            _check(
                "low_confidence",
                _above(low, t_low["warn"], t_low["fail"]),
                low,
                t_low,
                f"{low:.1%} of classified fields have crop_prob < {t_low['prob']:g}",
            )
        )
    else:
        checks.append(_check("low_confidence", "fail", None, t_low, "no field was classified"))
    return _report(tile, date, checks)


def scene_failed(qc_path: str | os.PathLike, *, tile=None, date=None) -> bool:
    """Whether a finished qc.json says ``fail``; an unreadable one raises InputError."""
    try:
        status = json.loads(Path(qc_path).read_text())["status"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{context(tile, date, qc_path)}qc.json unreadable: {exc!r}") from exc
    if status not in _RANK:
        raise InputError(f"{context(tile, date, qc_path)}qc.json has unknown status {status!r}")
    return status == "fail"


def write_qc(report: dict, path: str | os.PathLike) -> None:
    """Write a QC report as indented JSON, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n")
