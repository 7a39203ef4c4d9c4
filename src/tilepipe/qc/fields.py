"""Checks of a scene's delineated fields: count, area, validity, slivers and coverage."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import shapely

from tilepipe.qc.checks import above, below, check

FIELD_CHECKS = ("field_count", "field_area", "field_invalid", "field_slivers", "field_coverage")


def _read_fields(path: str | os.PathLike | None) -> tuple[np.ndarray, dict]:
    """Field geometries (WKB) and the columns of a ``fields`` layer; a missing file raises."""
    import pyogrio.raw

    if path is None or not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist")
    meta, _, geometry, field_data = pyogrio.raw.read(path, layer="fields")
    columns = dict(zip(meta["fields"], field_data, strict=True))
    return np.zeros(0, dtype=object) if geometry is None else geometry, columns


def _measure(columns: dict, names: tuple[str, ...], geoms: np.ndarray, fallback) -> np.ndarray:
    """The first of ``names`` the layer has, as float64, else ``fallback(geoms)``.

    fiboa's ``metrics:*`` first, then the ``area_m2``/``perimeter_m`` of older fields files.
    """
    for name in names:
        if name in columns:
            return np.asarray(columns[name], dtype=np.float64)
    return fallback(geoms)


def fields_mask(path: str | os.PathLike | None, default_classes) -> tuple[tuple, float | None]:
    """(SCL classes the fields layer was masked with, its fields' masked area in m²); the
    classes default to ``default_classes`` and the area is None for a layer without mask."""
    import pyogrio

    try:
        meta = pyogrio.read_info(path, layer="fields").get("layer_metadata") or {}
        _, columns = _read_fields(path)
    except Exception:  # unreadable: the field checks say so
        return tuple(default_classes), None
    text = meta.get("MASK_CLASSES")
    classes = tuple(int(c) for c in text.split(",") if c) if text is not None else default_classes
    area_key = next((k for k in ("metrics:area", "area_m2") if k in columns), None)
    if "masked_share" not in columns or area_key is None:
        return tuple(classes), None
    share = np.asarray(columns["masked_share"], dtype=np.float64)
    if share.size and np.isnan(share).all():
        return tuple(classes), None
    area = np.asarray(columns[area_key], dtype=np.float64)
    return tuple(classes), float(np.nansum(share * area))


def count_check(n: int, t: dict) -> dict:
    """Number of fields, below ``warn``/``fail`` is bad; none at all always fails (an empty
    delineation is never a valid-looking answer, whatever the thresholds say)."""
    status = "fail" if n == 0 else below(n, t["warn"], t["fail"])
    return check("field_count", status, n, t, f"{n} fields")


def area_check(areas: np.ndarray, raster_area: float, t: dict) -> dict:
    """Median field area within the warn/fail ranges; a field larger than the raster fails."""
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
    return check("field_area", status, value, t, message)


def invalid_check(geoms: np.ndarray, t: dict) -> dict:
    """Fraction of field geometries that are missing, empty or invalid."""
    invalid = shapely.is_missing(geoms) | shapely.is_empty(geoms) | ~shapely.is_valid(geoms)
    frac = float(invalid.mean())
    return check(
        "field_invalid",
        above(frac, t["warn"], t["fail"]),
        frac,
        t,
        f"{int(invalid.sum())} of {len(geoms)} field geometries are empty or invalid",
    )


def sliver_check(areas: np.ndarray, perimeters: np.ndarray, t: dict) -> dict:
    """Fraction of fields whose Polsby-Popper compactness 4πA/P² is below ``compactness``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        compact = 4 * np.pi * areas / np.square(perimeters)
    slivers = ~(compact >= t["compactness"])  # NaN (no perimeter) counts as a sliver
    frac = float(slivers.mean())
    return check(
        "field_slivers",
        above(frac, t["warn"], t["fail"]),
        frac,
        t,
        f"{int(slivers.sum())} of {len(areas)} fields are slivers (4πA/P² < {t['compactness']:g})",
    )


def coverage_check(areas: np.ndarray, valid_area: float, t: dict) -> dict:
    """Fields' total area over the scene's valid area: too little, or overlaps above ``max``."""
    cover = float(areas.sum() / valid_area) if valid_area > 0 else float("nan")
    if not math.isfinite(cover):
        status, message = "fail", "no valid scene area to cover"
    elif cover > t["max"]:
        status, message = "fail", f"fields cover {cover:.1%} of the valid area: they overlap"
    else:
        status = below(cover, t["warn"], t["fail"])
        message = f"fields cover {cover:.1%} of the scene's valid area"
    return check("field_coverage", status, cover, t, message)


def _no_fields(thr: dict) -> list[dict]:
    """The checks after ``field_count`` of an empty field set: nothing to measure, no cover."""
    unmeasured = FIELD_CHECKS[1:-1]
    return [
        *(check(name, "pass", None, thr[name], "no fields to measure") for name in unmeasured),
        check("field_coverage", "fail", 0.0, thr["field_coverage"], "no fields"),
    ]


def field_checks(fields_path, raster_area: float, valid_area: float, thr: dict) -> list[dict]:
    """Count, area distribution, invalid and sliver fractions and coverage of the fields."""
    try:
        wkb, columns = _read_fields(fields_path)
    except Exception as exc:  # missing file, wrong layer, corrupt GeoPackage
        msg = f"fields unreadable: {exc}"
        return [check(name, "fail", None, thr[name], msg) for name in FIELD_CHECKS]
    count = count_check(len(wkb), thr["field_count"])
    if len(wkb) == 0:
        return [count, *_no_fields(thr)]
    geoms = shapely.from_wkb(wkb)
    areas = _measure(columns, ("metrics:area", "area_m2"), geoms, shapely.area)
    perimeters = _measure(columns, ("metrics:perimeter", "perimeter_m"), geoms, shapely.length)
    return [
        count,
        area_check(areas, raster_area, thr["field_area"]),
        invalid_check(geoms, thr["field_invalid"]),
        sliver_check(areas, perimeters, thr["field_slivers"]),
        coverage_check(areas, valid_area, thr["field_coverage"]),
    ]
