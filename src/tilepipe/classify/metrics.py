"""Scores of a crop classification: macro F1, the per-class report, and the kNN baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _hits(y_true: np.ndarray, y_pred: np.ndarray, cls) -> tuple[int, int, int]:
    """True positives, false positives and false negatives of one class."""
    tp = int(np.sum((y_true == cls) & (y_pred == cls)))
    fp = int(np.sum((y_true != cls) & (y_pred == cls)))
    fn = int(np.sum((y_true == cls) & (y_pred != cls)))
    return tp, fp, fn


def macro_f1(y_true: Sequence, y_pred: Sequence, classes: Sequence) -> tuple[float, dict]:
    """Macro-averaged F1 over the classes present in truth or prediction, plus F1 per class."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    per_class = {}
    for cls in classes:
        tp, fp, fn = _hits(y_true, y_pred, cls)
        if tp + fp + fn:
            per_class[str(cls)] = 2 * tp / (2 * tp + fp + fn)
    score = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return score, per_class


def _class_scores(y_true: np.ndarray, y_pred: np.ndarray, cls: str) -> dict:
    """Precision, recall, F1 (NaN for a class absent from truth and prediction) and support."""
    tp, fp, fn = _hits(y_true, y_pred, cls)
    support = tp + fn
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / support if support else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
        "support": support,
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> np.ndarray:
    """``[i][j]`` counts items of true ``names[i]`` predicted ``names[j]``; others are ignored."""
    index = {c: i for i, c in enumerate(names)}
    confusion = np.zeros((len(names), len(names)), dtype=np.int64)
    for t, p_ in zip(y_true, y_pred, strict=True):
        if t in index and p_ in index:
            confusion[index[t], index[p_]] += 1
    return confusion


def classification_report(y_true: Sequence, y_pred: Sequence, classes: Sequence) -> dict:
    """Macro and support-weighted F1, per-class precision/recall/F1/support, confusion matrix.

    ``confusion[i][j]`` counts items of true class ``classes[i]`` predicted as ``classes[j]``;
    predictions outside ``classes`` count as misses only.
    """
    y_true, y_pred = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
    names = [str(c) for c in classes]
    per_class = {cls: _class_scores(y_true, y_pred, cls) for cls in names}
    present = [s for s in per_class.values() if not np.isnan(s["f1"])]
    f1s = [s["f1"] for s in present]
    supports = [s["support"] for s in present]
    total = sum(supports)
    return {
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "weighted_f1": float(np.dot(f1s, supports) / total) if total else None,
        "per_class": per_class,
        "confusion": {"classes": names, "matrix": confusion_matrix(y_true, y_pred, names).tolist()},
        "n": int(y_true.size),
    }


def knn_predict(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, k: int = 5, chunk: int = 1024
) -> np.ndarray:
    """k-nearest-neighbour majority vote (Euclidean, ties to the nearer), ``chunk`` rows a time."""
    train_x = np.asarray(train_x, dtype=np.float64)
    train_y = np.asarray(train_y).astype(str)
    k = max(1, min(k, len(train_x)))
    labels, codes = np.unique(train_y, return_inverse=True)
    norms = np.sum(train_x**2, axis=1)
    out = np.empty(len(test_x), dtype=object)
    for c0 in range(0, len(test_x), chunk):
        x = np.asarray(test_x[c0 : c0 + chunk], dtype=np.float64)
        dist = norms[None, :] - 2 * x @ train_x.T  # + |x|² (constant per row)
        near = np.argsort(dist, axis=1, kind="stable")[:, :k]
        votes = np.zeros((len(x), len(labels)))
        for rank in range(k):  # nearer neighbours break ties: weight 1 + tiny bonus
            np.add.at(votes, (np.arange(len(x)), codes[near[:, rank]]), 1 + 1e-6 * (k - rank))
        out[c0 : c0 + chunk] = labels[votes.argmax(axis=1)]
    return out.astype(str)


def knn_baseline(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    classes: Sequence,
    k: int,
) -> dict:
    """The kNN baseline scored like the classifier, so the two can be compared on one split."""
    report = classification_report(test_y, knn_predict(train_x, train_y, test_x, k=k), classes)
    return {
        "name": f"kNN (k={k}) on field mean embeddings",
        "macro_f1": report["macro_f1"],
        "weighted_f1": report["weighted_f1"],
        "report": report,
    }
