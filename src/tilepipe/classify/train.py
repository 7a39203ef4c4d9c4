"""Training of the CatBoost crop classifier on labelled fields' embedding pixels.

Training samples are embedding pixels inside labelled polygons; the train/test split is grouped
by ``field_id`` so no field feeds both sides. Fields are classified from their mean embedding,
and the held-out field-level score is computed the same way.
"""

from __future__ import annotations

import json
import os

import numpy as np

from tilepipe.classify.labels import SKIPPED, UNKNOWN, Labels, valid_label_geometries
from tilepipe.classify.metrics import classification_report, knn_baseline, macro_f1
from tilepipe.classify.samples import TilePixels, read_layer, sample_tiles
from tilepipe.classify.splits import FieldSplit, split_fields
from tilepipe.core.errors import InputError, context
from tilepipe.core.raster import atomic_outputs


def thread_count() -> int:
    """CPUs this process may use: Slurm's allocation when inside a job, else the affinity mask."""
    env = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def catboost_task_type(requested: str = "auto") -> str:
    """``GPU`` when asked, or when ``auto`` and a CUDA GPU is visible to torch; else ``CPU``.

    CatBoost's GPU mode is CUDA only: a ROCm torch (LUMI) reports ``cuda`` devices but
    ``torch.version.cuda`` is None there, so ``auto`` stays on the CPU.
    """
    if requested in ("CPU", "GPU"):
        return requested
    if requested != "auto":
        raise InputError(f"task_type must be auto, CPU or GPU, got {requested!r}")
    try:
        import torch
    except ImportError:
        return "CPU"
    return "GPU" if torch.cuda.is_available() and torch.version.cuda else "CPU"


def _crop_classes(raw: np.ndarray, field_ids: np.ndarray, path) -> np.ndarray:
    """The crop column as str; blank classes and the reserved ``unknown``/``qc_fail`` raise."""
    blank = np.array([c is None or not str(c).strip() for c in raw])
    if blank.any():
        raise InputError(
            f"{context(path=path)}{int(blank.sum())} labels have no crop class "
            f"(field_id {field_ids[blank][:10].tolist()})"
        )
    crops = raw.astype(str)
    reserved = sorted({c for c in crops if c in (UNKNOWN, SKIPPED)})
    if reserved:
        raise InputError(
            f"{context(path=path)}crop classes {reserved} are reserved for unclassified "
            f"fields; rename them in the labels"
        )
    return crops


def read_labels(labels_path: str | os.PathLike, invalid: str = "repair") -> Labels:
    """Read the ``labels`` layer (field_id, crop, tile); no label or a bad class raises, and
    invalid geometries are repaired or refused as ``invalid`` says (valid_label_geometries)."""
    meta, geometry, cols = read_layer(labels_path, "labels", ("field_id", "crop", "tile"), "labels")
    if len(geometry) == 0:
        raise InputError(f"{context(path=labels_path)}no labelled fields")
    field_ids = np.asarray(cols["field_id"]).astype(np.int64)
    crops = _crop_classes(np.asarray(cols["crop"], dtype=object), field_ids, labels_path)
    geometry, keep = valid_label_geometries(
        geometry, field_ids, invalid=invalid, where=context(path=labels_path)
    )
    return Labels(
        field_ids=field_ids[keep],
        crops=crops[keep],
        tiles=np.asarray(cols["tile"]).astype(str)[keep],
        geometry=geometry,
        crs=meta.get("crs") or "EPSG:4326",
    )


def _training_classes(y: np.ndarray, px: TilePixels, labels_path) -> list[str]:
    """Sorted classes of the sampled pixels; no pixel at all, or a single class, raises."""
    if px.sample_row.size == 0:
        raise InputError(
            f"{context(path=labels_path)}no training samples: no label polygon covers a valid "
            f"embedding pixel (tiles without embeddings: {px.tiles_without_embeddings or 'none'})"
        )
    classes = sorted({str(c) for c in y})
    if len(classes) < 2:
        raise InputError(f"{context(path=labels_path)}need at least two classes, got {classes}")
    return classes


def _require_train_classes(classes: list[str], y_train: np.ndarray, labels_path) -> None:
    """Every class must keep a training field after the split, or the model cannot learn it."""
    missing = sorted(set(classes) - set(y_train))
    if missing:
        raise InputError(
            f"{context(path=labels_path)}classes {missing} have no training field after the "
            f"split; lower test_fraction or spatial_block_m, or add labels"
        )


def _fit(x: np.ndarray, y: np.ndarray, classes: list[str], params: dict):
    """A CatBoost MultiClass model fitted on (x, y) with the recorded training parameters."""
    from catboost import CatBoostClassifier

    model = CatBoostClassifier(
        loss_function="MultiClass",
        iterations=params["iterations"],
        random_seed=params["seed"],
        thread_count=params["thread_count"],
        class_names=classes,
        auto_class_weights=params["class_weights"],
        task_type=params["task_type"],
        verbose=False,
        allow_writing_files=False,
    )
    model.fit(x, y)
    return model


def _per_class_counts(
    classes: list[str], split: FieldSplit, y: np.ndarray, test_px: np.ndarray
) -> dict:
    """Train and test fields and pixels of each class."""
    return {
        c: {
            "train_fields": int(np.sum((split.group_class == c) & ~split.test_group)),
            "test_fields": int(np.sum((split.group_class == c) & split.test_group)),
            "train_pixels": int(np.sum((y == c) & ~test_px)),
            "test_pixels": int(np.sum((y == c) & test_px)),
        }
        for c in classes
    }


def _skipped(labels: Labels, px: TilePixels) -> dict:
    """Labels left out of training: on tiles without embeddings, or without a valid pixel."""
    no_embeddings = px.tiles_without_embeddings
    on_those = np.isin(labels.tiles, no_embeddings)
    return {
        "tiles_without_embeddings": no_embeddings,
        "labels_on_those_tiles": int(on_those.sum()),
        "fields_without_pixels": int(((px.counts == 0) & ~on_those).sum()),
    }


def _split_metrics(
    classes: list[str],
    labels: Labels,
    px: TilePixels,
    split: FieldSplit,
    y: np.ndarray,
    test_px: np.ndarray,
) -> dict:
    """What the model was trained and tested on: classes, field ids, field and pixel counts."""
    test_ids = split.test_ids
    return {
        "classes": classes,
        "n_features": int(px.x.shape[1]),
        "train_field_ids": sorted(
            set(labels.field_ids[(px.counts > 0) & ~split.is_test_row].tolist())
        ),
        "test_field_ids": sorted(test_ids),
        "split": split.info,
        "n_fields": {"train": int(len(split.groups) - len(test_ids)), "test": len(test_ids)},
        "n_pixels": {"train": int((~test_px).sum()), "test": int(test_px.sum())},
        "per_class_counts": _per_class_counts(classes, split, y, test_px),
        "skipped": _skipped(labels, px),
    }


def _no_scores() -> dict:
    """The metrics' score entries before (or without) a held-out field, all empty."""
    return {
        "macro_f1": None,  # headline: field_macro_f1, how classify_fields predicts
        "weighted_f1": None,
        "pixel_macro_f1": None,
        "field_macro_f1": None,
        "per_class_f1": {"pixel": {}, "field": {}},
        "field_report": None,
        "baseline": None,
    }


def _held_out_scores(
    model,
    classes: list[str],
    labels: Labels,
    px: TilePixels,
    split: FieldSplit,
    test_px: np.ndarray,
    baseline_k: int,
) -> dict:
    """Pixel and field scores of the model on the held-out fields, and the kNN baseline's."""
    y_px = labels.crops[px.sample_row][test_px]
    pixel_f1, pixel_per_class = macro_f1(
        y_px, np.asarray(model.predict(px.x[test_px])).ravel().astype(str), classes
    )
    used = px.counts > 0
    test_rows = np.nonzero(split.is_test_row & used)[0]
    train_rows = np.nonzero(~split.is_test_row & used)[0]
    y_field = labels.crops[test_rows]
    pred = np.asarray(classes)[model.predict_proba(px.means[test_rows]).argmax(axis=1)]
    field_f1, field_per_class = macro_f1(y_field, pred, classes)
    report = classification_report(y_field, pred, classes)
    return {
        "macro_f1": field_f1,
        "weighted_f1": report["weighted_f1"],
        "pixel_macro_f1": pixel_f1,
        "field_macro_f1": field_f1,
        "per_class_f1": {"pixel": pixel_per_class, "field": field_per_class},
        "field_report": report,
        "baseline": knn_baseline(
            px.means[train_rows],
            labels.crops[train_rows],
            px.means[test_rows],
            y_field,
            classes,
            baseline_k,
        ),
    }


def _save(model, metrics: dict, model_dst, metrics_dst) -> None:
    """Write the model (.cbm) and its metrics (JSON) together: both appear, or neither."""
    with atomic_outputs(model_dst, metrics_dst) as (model_tmp, metrics_tmp):
        model.save_model(str(model_tmp), format="cbm")
        metrics_tmp.write_text(json.dumps(metrics, indent=2) + "\n")


def train_classifier(
    labels_path: str | os.PathLike,
    embeddings: dict[str, str],
    model_dst: str | os.PathLike,
    metrics_dst: str | os.PathLike,
    *,
    test_fraction: float = 0.25,
    seed: int = 0,
    iterations: int = 300,
    max_pixels_per_field: int = 200,
    class_weights: bool = True,
    spatial_block_m: float | None = None,
    task_type: str = "auto",
    baseline_k: int = 5,
    invalid_labels: str = "repair",
) -> dict:
    """Train a CatBoost MultiClass model on labelled fields' embedding pixels; return metrics.

    ``embeddings`` maps tile id to that tile's embeddings GeoTIFF; each label polygon is sampled
    from the embeddings of its own ``tile``. Labels on tiles without embeddings, and fields
    without a valid pixel, are skipped and counted in the metrics. The test set is whole fields
    (per class), or whole ``spatial_block_m`` blocks when given; classes are weighted inversely
    to their frequency (``class_weights``); a kNN on field means (``baseline_k``) is scored on
    the same split. Invalid label geometries are repaired or refused (``invalid_labels``).
    """
    labels = read_labels(labels_path, invalid_labels)
    px = sample_tiles(
        labels.geometry,
        labels.crs,
        labels.tiles,
        embeddings,
        max_pixels=max_pixels_per_field,
        rng=np.random.default_rng(seed),
    )
    y = labels.crops[px.sample_row]
    classes = _training_classes(y, px, labels_path)
    split = split_fields(
        labels, px.counts > 0, test_fraction=test_fraction, seed=seed, block_m=spatial_block_m
    )
    test_px = split.is_test_row[px.sample_row]
    _require_train_classes(classes, y[~test_px], labels_path)
    params = {
        "test_fraction": test_fraction,
        "seed": seed,
        "iterations": iterations,
        "max_pixels_per_field": max_pixels_per_field,
        "thread_count": thread_count(),
        "class_weights": "Balanced" if class_weights else None,
        "spatial_block_m": spatial_block_m,
        "task_type": catboost_task_type(task_type),
        "baseline_k": baseline_k,
    }
    model = _fit(px.x[~test_px], y[~test_px], classes, params)
    metrics = {**_split_metrics(classes, labels, px, split, y, test_px), "params": params}
    metrics |= _no_scores()
    if test_px.any():
        metrics.update(_held_out_scores(model, classes, labels, px, split, test_px, baseline_k))
    _save(model, metrics, model_dst, metrics_dst)
    return metrics
