"""Quality checks of one scene's classified fields: class distribution and low confidence."""

from __future__ import annotations

import os

import numpy as np

from tilepipe.classify.labels import SKIPPED, UNKNOWN
from tilepipe.core.errors import context
from tilepipe.qc.checks import CLASSIFICATION_CHECKS, RANK, above, check, merge_thresholds, report


def run_classification_qc(
    *, tile: str, date: str, classified_path: str | os.PathLike, thresholds: dict
) -> dict:
    """Check a scene's ``fields_classified.gpkg``: class distribution and low-confidence share.

    Returns a report shaped like qc.json. An unreadable file or an empty field set fails; a scene
    that classification skipped (its qc.json failed) warns.
    """
    import pyogrio.raw

    thr = merge_thresholds(thresholds)
    t_dist, t_low = thr["class_distribution"], thr["low_confidence"]
    try:
        meta, _, _, data = pyogrio.raw.read(classified_path, layer="fields")
        cols = dict(zip(meta["fields"], data, strict=True))
        crop = np.asarray(cols["crop"]).astype(str)
        prob = np.asarray(cols["crop_prob"], dtype=np.float64)
    except Exception as exc:  # missing file or columns, corrupt GeoPackage
        msg = f"{context(tile, date, classified_path)}classified fields unreadable: {exc!r}"
        return report(
            tile,
            date,
            [check(n, "fail", None, thr[n], msg) for n in CLASSIFICATION_CHECKS],
        )
    n = len(crop)
    if n == 0:
        msg = "no fields to classify (empty field set)"
        return report(
            tile, date, [check(n_, "fail", 0, thr[n_], msg) for n_ in CLASSIFICATION_CHECKS]
        )
    if np.all(crop == SKIPPED):
        msg = "scene left out of classification: its qc.json failed"
        return report(
            tile, date, [check(n_, "warn", None, thr[n_], msg) for n_ in CLASSIFICATION_CHECKS]
        )
    classes, counts = np.unique(crop, return_counts=True)
    distribution = dict(zip(classes.tolist(), counts.tolist(), strict=True))
    known = (crop != UNKNOWN) & (crop != SKIPPED)
    unknown_share = float(np.mean(crop == UNKNOWN))
    if known.any():
        _, known_counts = np.unique(crop[known], return_counts=True)
        dominant = float(known_counts.max() / known.sum())
    else:
        dominant = float("nan")
    status = max(
        "fail" if not known.any() else above(dominant, t_dist["warn"], t_dist["fail"]),
        above(unknown_share, t_dist["unknown_warn"], t_dist["unknown_fail"]),
        key=RANK.get,
    )
    checks = [
        check(
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
            check(
                "low_confidence",
                above(low, t_low["warn"], t_low["fail"]),
                low,
                t_low,
                f"{low:.1%} of classified fields have crop_prob < {t_low['prob']:g}",
            )
        )
    else:
        checks.append(check("low_confidence", "fail", None, t_low, "no field was classified"))
    return report(tile, date, checks)
