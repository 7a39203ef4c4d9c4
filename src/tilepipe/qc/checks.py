"""The vocabulary of every QC report: thresholds, checks, statuses and the qc.json document.

Every check yields ``{"name", "status", "value", "threshold", "message"}`` with status
``pass|warn|fail``; a report's status is the worst of them.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import numpy as np

from tilepipe.core.errors import ConfigError, InputError, context
from tilepipe.core.raster import atomic_output
from tilepipe.core.settings import section_defaults

#: Thresholds of every check (the config schema's ``qc`` defaults, written there once);
#: ``run_qc`` merges a caller's dict over these, key by key.
#:
#: - ``nodata_fraction`` {warn, fail}: fraction of s2 pixels that are nodata (all bands 0 or
#:   SCL 0); above ``warn`` warns, above ``fail`` fails.
#: - ``cloud_fraction`` {warn, fail}: fraction of valid pixels with SCL in {3, 8, 9, 10}
#:   (cloud shadow, medium/high cloud, thin cirrus); above ``warn``/``fail``.
#: - ``masked_area`` {warn, fail}: fraction of the scene's pixels under the fields step's SCL
#:   mask (``fields.mask_classes``); above ``warn``/``fail``.
#: - ``reflectance_range`` {min, max, warn, fail}: fraction of valid s2 values (pixel x band)
#:   outside [min, max] (DN = reflectance x 10000); above ``warn``/``fail``.
#: - ``dr_consistency`` {l1_warn, l1_fail, psnr_warn, psnr_fail, compared_warn, compared_fail}:
#:   dr.tif block-averaged to 10 m against s2.tif over valid pixels, per band, in reflectance
#:   units; the worst band's mean absolute error above ``l1_*`` or PSNR (peak 1.0, dB) below
#:   ``psnr_*`` warns/fails, and so does comparing less than ``compared_*`` of s2's valid pixels
#:   (blocks holding dr nodata are skipped).
#: - ``dr_coverage`` {warn, fail}: dr's valid area (pixels valid in every band, in 10 m pixels)
#:   over s2's valid area, inside the area DR was computed for (its AOI); below ``warn``/``fail``.
#: - ``field_count`` {warn, fail}: number of fields; below ``warn``/``fail`` (``fail`` ≥ 1, so
#:   a scene without a field always fails).
#: - ``field_area`` {warn: [min, max], fail: [min, max]}: median ``metrics:area`` in m² outside the
#:   ``warn``/``fail`` range; any single field larger than the raster always fails.
#:
#: - ``sr_spectral`` {warn, fail}: mean spectral angle (degrees) between each 10 m pixel's band
#:   vector in s2 and in dr block-averaged 10 x 10 (opensr-test's spectral consistency).
#: - ``sr_spatial`` {warn, fail, windows, window}: sub-pixel shift (10 m pixels) of dr
#:   block-averaged against s2, by phase correlation (skimage) on up to ``windows`` windows of
#:   ``window`` s2 pixels; the median shift magnitude above ``warn``/``fail``.
#: - ``sr_opensr`` {reflectance_*, spectral_*, spatial_*, windows, window}: the same three
#:   consistencies computed as opensr-test does, on dr degraded by antialiased bilinear
#:   interpolation (:mod:`tilepipe.qc.opensr`): mean L1 (reflectance), mean spectral angle
#:   (degrees) and median shift (10 m pixels); the worst of the three sets the status.
#: - ``field_invalid`` {warn, fail}: fraction of field geometries that are empty or invalid.
#: - ``field_slivers`` {compactness, warn, fail}: fraction of fields whose Polsby-Popper
#:   compactness 4πA/P² (P from ``metrics:perimeter`` when present) is below ``compactness``.
#: - ``field_coverage`` {warn, fail, max}: fields' total area over the scene's valid area (the
#:   cropland the delineation found); below ``warn``/``fail``, or above ``max`` (overlaps), is bad.
#: - ``class_distribution`` {warn, fail, unknown_warn, unknown_fail}: share of the most common
#:   class among classified fields, and share of fields left ``unknown`` (no embedding pixel).
#: - ``low_confidence`` {prob, warn, fail}: fraction of classified fields with ``crop_prob``
#:   below ``prob``.
#:
#: ``crs_matches_tile``, ``north_up`` and ``grid_consistent`` are exact and take no threshold.
DEFAULT_THRESHOLDS: dict = section_defaults("qc")  # the config schema's `qc` defaults


#: Checks of ``run_qc`` (one scene before classification) and of ``run_classification_qc``.
SCENE_CHECKS = (
    "crs_matches_tile",
    "north_up",
    "grid_consistent",
    "nodata_fraction",
    "cloud_fraction",
    "masked_area",
    "reflectance_range",
    "dr_consistency",
    "dr_coverage",
    "sr_spectral",
    "sr_spatial",
    "sr_opensr",
    "field_count",
    "field_area",
    "field_invalid",
    "field_slivers",
    "field_coverage",
)


CLASSIFICATION_CHECKS = ("class_distribution", "low_confidence")


RANK = {"pass": 0, "warn": 1, "fail": 2}


def check(name: str, status: str, value, threshold, message: str) -> dict:
    return {
        "name": name,
        "status": status,
        "value": jsonable(value),
        "threshold": jsonable(threshold),
        "message": message,
    }


def jsonable(value):
    """Plain JSON types only: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def above(value: float, warn: float, fail: float) -> str:
    """Status of a value that must stay at or below its thresholds."""
    return "fail" if value > fail else "warn" if value > warn else "pass"


def below(value: float, warn: float, fail: float) -> str:
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


def report(tile: str, date: str, checks: list[dict]) -> dict:
    """The qc.json document: worst status, the checks and a summary of them."""
    status = max((c["status"] for c in checks), key=RANK.get)
    summary = {
        "n_checks": len(checks),
        **{f"n_{s}": sum(c["status"] == s for c in checks) for s in RANK},
        "failed": [c["name"] for c in checks if c["status"] == "fail"],
        "warned": [c["name"] for c in checks if c["status"] == "warn"],
    }
    return {"tile": tile, "date": date, "status": status, "checks": checks, "summary": summary}


def scene_failed(qc_path: str | os.PathLike, *, tile=None, date=None) -> bool:
    """Whether a finished qc.json says ``fail``; an unreadable one raises InputError."""
    try:
        status = json.loads(Path(qc_path).read_text())["status"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{context(tile, date, qc_path)}qc.json unreadable: {exc!r}") from exc
    if status not in RANK:
        raise InputError(f"{context(tile, date, qc_path)}qc.json has unknown status {status!r}")
    return status == "fail"


def write_qc(report: dict, path: str | os.PathLike) -> None:
    """Write a QC report as indented JSON, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(jsonable(report), indent=2, allow_nan=False) + "\n")
