"""Quality checks of one scene's classified fields: class distribution and low confidence."""

from __future__ import annotations

import os

import numpy as np

from tilepipe.classify.labels import SKIPPED, UNKNOWN
from tilepipe.core.errors import context
from tilepipe.qc.checks import CLASSIFICATION_CHECKS, RANK, above, check, merge_thresholds, report


def _read_classified(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The ``crop`` (str) and ``crop_prob`` columns of a classified fields layer."""
    import pyogrio.raw

    meta, _, _, data = pyogrio.raw.read(path, layer="fields")
    cols = dict(zip(meta["fields"], data, strict=True))
    return np.asarray(cols["crop"]).astype(str), np.asarray(cols["crop_prob"], dtype=np.float64)


def _same_verdict(status: str, value, thr: dict, message: str) -> list[dict]:
    """Every classification check with one status, for scenes that cannot be measured."""
    return [check(name, status, value, thr[name], message) for name in CLASSIFICATION_CHECKS]


def _known(crop: np.ndarray) -> np.ndarray:
    """Fields that were given a crop class (neither ``unknown`` nor ``qc_fail``)."""
    return (crop != UNKNOWN) & (crop != SKIPPED)


def _distribution_check(crop: np.ndarray, t: dict) -> dict:
    """Dominant class share among classified fields, and share of ``unknown`` fields."""
    classes, counts = np.unique(crop, return_counts=True)
    distribution = dict(zip(classes.tolist(), counts.tolist(), strict=True))
    known = _known(crop)
    unknown_share = float(np.mean(crop == UNKNOWN))
    if known.any():
        _, known_counts = np.unique(crop[known], return_counts=True)
        dominant = float(known_counts.max() / known.sum())
    else:
        dominant = float("nan")
    status = max(
        "fail" if not known.any() else above(dominant, t["warn"], t["fail"]),
        above(unknown_share, t["unknown_warn"], t["unknown_fail"]),
        key=RANK.get,
    )
    return check(
        "class_distribution",
        status,
        {"counts": distribution, "dominant_share": dominant, "unknown_share": unknown_share},
        t,
        f"{len(crop)} fields: "
        + ", ".join(f"{c} {k}" for c, k in distribution.items())
        + f"; unknown {unknown_share:.1%}",
    )


def _low_confidence_check(crop: np.ndarray, prob: np.ndarray, t: dict) -> dict:
    """Share of classified fields whose ``crop_prob`` is below ``t["prob"]``."""
    known = _known(crop)
    if not known.any():
        return check("low_confidence", "fail", None, t, "no field was classified")
    low = float(np.mean(prob[known] < t["prob"]))
    return check(
        "low_confidence",
        above(low, t["warn"], t["fail"]),
        low,
        t,
        f"{low:.1%} of classified fields have crop_prob < {t['prob']:g}",
    )


def run_classification_qc(
    *, tile: str, date: str, classified_path: str | os.PathLike, thresholds: dict
) -> dict:
    """Check a scene's ``fields_classified.gpkg``: class distribution and low-confidence share.

    Returns a report shaped like qc.json. An unreadable file or an empty field set fails; a scene
    that classification skipped (its qc.json failed) warns.
    """
    thr = merge_thresholds(thresholds)
    try:
        crop, prob = _read_classified(classified_path)
    except Exception as exc:  # missing file or columns, corrupt GeoPackage
        msg = f"{context(tile, date, classified_path)}classified fields unreadable: {exc!r}"
        return report(tile, date, _same_verdict("fail", None, thr, msg))
    if len(crop) == 0:
        msg = "no fields to classify (empty field set)"
        return report(tile, date, _same_verdict("fail", 0, thr, msg))
    if np.all(crop == SKIPPED):
        msg = "scene left out of classification: its qc.json failed"
        return report(tile, date, _same_verdict("warn", None, thr, msg))
    checks = [
        _distribution_check(crop, thr["class_distribution"]),
        _low_confidence_check(crop, prob, thr["low_confidence"]),
    ]
    return report(tile, date, checks)
