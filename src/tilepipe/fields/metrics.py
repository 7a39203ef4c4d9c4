"""Instance accuracy of delineated fields against known field truth, on one label grid.

Both inputs are label rasters (0 = no field, k > 0 = field k) on the same grid. For every true
field the predicted field that overlaps it most is its partner; the figures follow the usual
object-based measures (Persello & Bruzzone 2010; FTW reports the same kind):

- ``matched``: true fields whose partner has IoU >= ``iou_min`` (0.5 makes matches one-to-one);
- ``mean_iou``: mean IoU of the matched pairs;
- ``over_segmentation``: mean over true fields of 1 - |t ∩ p| / |t| (t split or missed);
- ``under_segmentation``: mean over overlapped true fields of 1 - |t ∩ p| / |p| (p spills
  over or merges several);
- ``split_rate``: share of true fields that two or more predictions each cover >= ``part``;
- ``merge_rate``: share of predictions covering >= ``part`` of two or more true fields each.
"""

from __future__ import annotations

import numpy as np


def instance_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    *,
    iou_min: float = 0.5,
    part: float = 0.2,
    min_truth_px: int = 0,
) -> dict[str, float]:
    """Object-based scores of ``pred`` against ``truth``; true fields < ``min_truth_px`` ignored."""
    pred = np.asarray(pred, dtype=np.int64).ravel()
    truth = np.asarray(truth, dtype=np.int64).ravel()
    t_ids, t_area = np.unique(truth[truth > 0], return_counts=True)
    keep = t_area >= min_truth_px
    t_ids, t_area = t_ids[keep], t_area[keep]
    p_ids, p_area = np.unique(pred[pred > 0], return_counts=True)
    both = (truth > 0) & (pred > 0) & np.isin(truth, t_ids)
    pairs, inter = np.unique(np.stack([truth[both], pred[both]]), axis=1, return_counts=True)
    t_of = {t: i for i, t in enumerate(t_ids)}
    p_size = dict(zip(p_ids.tolist(), p_area.tolist(), strict=True))

    best_inter = np.zeros(len(t_ids))
    best_iou = np.zeros(len(t_ids))
    best_p_area = np.ones(len(t_ids))
    covers = np.zeros(len(t_ids), dtype=np.int64)  # predictions covering >= part of t
    merges: dict[int, int] = {}  # prediction -> true fields it covers >= part of
    for (t, p), n in zip(pairs.T.tolist(), inter.tolist(), strict=True):
        i = t_of[t]
        iou = n / (t_area[i] + p_size[p] - n)
        if n > best_inter[i]:
            best_inter[i], best_iou[i], best_p_area[i] = n, iou, p_size[p]
        if n >= part * t_area[i]:
            covers[i] += 1
            merges[p] = merges.get(p, 0) + 1
    matched = best_iou >= iou_min
    has = best_inter > 0
    n_true, n_pred = len(t_ids), len(p_ids)
    return {
        "n_true": n_true,
        "n_pred": n_pred,
        "matched": int(matched.sum()),
        "recall": float(matched.sum() / n_true) if n_true else float("nan"),
        "precision": float(matched.sum() / n_pred) if n_pred else float("nan"),
        "mean_iou": float(best_iou[matched].mean()) if matched.any() else 0.0,
        "over_segmentation": float(np.mean(1 - best_inter / t_area)) if n_true else float("nan"),
        "under_segmentation": float(np.mean(1 - (best_inter / best_p_area)[has]))
        if has.any()
        else float("nan"),
        "split_rate": float(np.mean(covers >= 2)) if n_true else float("nan"),
        "merge_rate": float(sum(v >= 2 for v in merges.values()) / n_pred) if n_pred else 0.0,
    }


def field_ious(pred: np.ndarray, truth: np.ndarray, *, min_truth_px: int = 0) -> dict[int, float]:
    """Each true field's IoU with the predicted field that overlaps it most (0: none).

    Comparing two layers on the true fields both match (:func:`paired_iou`) is fairer than
    their mean matched IoUs: a layer that matches more fields also matches harder ones.
    """
    pred = np.asarray(pred, dtype=np.int64).ravel()
    truth = np.asarray(truth, dtype=np.int64).ravel()
    t_ids, t_area = np.unique(truth[truth > 0], return_counts=True)
    p_ids, p_area = np.unique(pred[pred > 0], return_counts=True)
    p_size = dict(zip(p_ids.tolist(), p_area.tolist(), strict=True))
    t_size = dict(zip(t_ids.tolist(), t_area.tolist(), strict=True))
    out = {t: 0.0 for t, n in t_size.items() if n >= min_truth_px}
    best: dict[int, int] = {}
    both = (truth > 0) & (pred > 0)
    pairs, inter = np.unique(np.stack([truth[both], pred[both]]), axis=1, return_counts=True)
    for (t, p), n in zip(pairs.T.tolist(), inter.tolist(), strict=True):
        if t in out and n > best.get(t, 0):
            best[t] = n
            out[t] = n / (t_size[t] + p_size[p] - n)
    return out


def paired_iou(
    a: dict[int, float], b: dict[int, float], *, iou_min: float = 0.5
) -> tuple[int, float, float]:
    """(n, mean IoU of ``a``, of ``b``) over the true fields both match (IoU >= ``iou_min``)."""
    common = [t for t in a if a[t] >= iou_min and b.get(t, 0.0) >= iou_min]
    if not common:
        return 0, float("nan"), float("nan")
    return (
        len(common),
        float(np.mean([a[t] for t in common])),
        float(np.mean([b[t] for t in common])),
    )
