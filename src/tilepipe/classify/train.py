"""Crop classification of field polygons from per-pixel embeddings with CatBoost.

Training samples are embedding pixels inside labelled polygons; the train/test split is grouped
by ``field_id`` so no field feeds both sides. Fields are classified from their mean embedding,
and the held-out field-level score is computed the same way.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence

import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform

from tilepipe.classify.labels import CLASS_NODATA, SKIPPED, UNKNOWN
from tilepipe.core.errors import InputError, ModelError, context
from tilepipe.core.raster import atomic_output, gtiff_profile

_WINDOW = 256  # embedding pixels per side read at once (x C bands x float32)


def thread_count() -> int:
    """CPUs this process may use: Slurm's allocation when inside a job, else the affinity mask."""
    env = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _as_geometries(geoms: Sequence) -> np.ndarray:
    """Shapely geometry array from shapely objects or WKB."""
    arr = np.asarray(list(geoms), dtype=object)
    if arr.size and isinstance(arr[0], (bytes, bytearray, memoryview)):
        return shapely.from_wkb(arr)
    return arr


def _to_crs(geoms: np.ndarray, src_crs, dst_crs) -> np.ndarray:
    """Reproject geometries into the embeddings' CRS with a pyproj Transformer (x/y order).

    Geometries without a CRS are taken to be in the raster's CRS already; None stays empty.
    """
    if src_crs is None or not len(geoms):
        return geoms
    src, dst = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    if src == dst:
        return geoms
    transformer = Transformer.from_crs(src.to_wkt(), dst.to_wkt(), always_xy=True)

    def move(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))

    out = np.array([shapely.Polygon() if g is None else g for g in geoms], dtype=object)
    return shapely.transform(out, move)


def _field_pixels(
    geoms: np.ndarray, src: rasterio.DatasetReader
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (field index, pixel embeddings (m, C)) per window for finite pixels inside fields."""
    n = len(geoms)
    if n == 0:
        return
    valid = np.array([g is not None and not g.is_empty for g in geoms])
    bounds = np.full((n, 4), np.nan)
    if valid.any():
        bounds[valid] = shapely.bounds(geoms[valid].astype(object))
    for r0 in range(0, src.height, _WINDOW):
        for c0 in range(0, src.width, _WINDOW):
            win = Window(c0, r0, min(_WINDOW, src.width - c0), min(_WINDOW, src.height - r0))
            left, bottom, right, top = window_bounds(win, src.transform)
            sel = np.nonzero(
                valid
                & (bounds[:, 0] < right)
                & (bounds[:, 2] > left)
                & (bounds[:, 1] < top)
                & (bounds[:, 3] > bottom)
            )[0]
            if not sel.size:
                continue
            ids = rasterize(
                ((geoms[i], int(i) + 1) for i in sel),
                out_shape=(int(win.height), int(win.width)),
                transform=window_transform(win, src.transform),
                fill=0,
                dtype="int32",
            )
            inside = ids > 0
            if not inside.any():
                continue
            values = src.read(window=win, out_dtype="float32")[:, inside].T  # (m, C)
            finite = np.isfinite(values).all(axis=1)
            yield ids[inside][finite] - 1, values[finite]


def _open_embeddings(emb_path, tile=None, date=None) -> rasterio.DatasetReader:
    try:
        return rasterio.open(emb_path)
    except rasterio.RasterioIOError as exc:
        raise InputError(f"{context(tile, date, emb_path)}embeddings unreadable: {exc}") from exc


class _Sample:
    """Up to k pixels per field chosen uniformly: the k smallest random keys of each field win.

    New pixels wait in a pending list; pruning runs once they outnumber the kept ones, so the
    total work stays linear in the number of pixels seen.
    """

    def __init__(self, bands: int):
        self.idx = np.zeros(0, dtype=np.int64)
        self.key = np.zeros(0, dtype=np.float64)
        self.x = np.zeros((0, bands), dtype=np.float32)
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.n_pending = 0

    def add(self, idx: np.ndarray, key: np.ndarray, x: np.ndarray, k: int) -> None:
        self.pending.append((idx, key, x.astype(np.float32, copy=False)))
        self.n_pending += idx.size
        if self.n_pending > max(self.idx.size, 1 << 20):
            self._prune(k)

    def _prune(self, k: int) -> None:
        if not self.pending:
            return
        idx = np.concatenate([self.idx, *(p[0] for p in self.pending)])
        key = np.concatenate([self.key, *(p[1] for p in self.pending)])
        x = np.concatenate([self.x, *(p[2] for p in self.pending)])
        self.pending, self.n_pending = [], 0
        order = np.lexsort((key, idx))
        sorted_idx = idx[order]
        rank = np.arange(order.size) - np.searchsorted(sorted_idx, sorted_idx, side="left")
        order = order[rank < k]
        self.idx, self.key, self.x = idx[order], key[order], x[order]

    def result(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._prune(k)
        return self.idx, self.x


def _scan(
    geoms: Sequence,
    geoms_crs,
    emb_path,
    *,
    max_pixels: int = 0,
    rng: np.random.Generator | None = None,
    tile: str | None = None,
    date: str | None = None,
    sum_squares: list | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-field sums and counts over all pixels, plus up to ``max_pixels`` sampled per field.

    Returns (sums (n, C) float64, counts (n,), sample field index (m,), samples (m, C) float32).
    The sample is uniform within each field: every pixel gets a random key and the smallest
    ``max_pixels`` keys per field are kept, so memory stays bounded by n x max_pixels. When
    ``sum_squares`` is a list, the per-field sums of squares (n, C) are appended to it.
    """
    with _open_embeddings(emb_path, tile, date) as src:
        geoms = _to_crs(_as_geometries(geoms), geoms_crs, src.crs)
        n, nb = len(geoms), src.count
        sums = np.zeros((n, nb), dtype=np.float64)
        squares = np.zeros((n, nb), dtype=np.float64) if sum_squares is not None else None
        counts = np.zeros(n, dtype=np.int64)
        kept = _Sample(nb)
        for idx, values in _field_pixels(geoms, src):
            counts += np.bincount(idx, minlength=n)
            for b in range(nb):
                sums[:, b] += np.bincount(idx, weights=values[:, b], minlength=n)
                if squares is not None:
                    squares[:, b] += np.bincount(idx, weights=np.square(values[:, b]), minlength=n)
            if max_pixels > 0:
                kept.add(idx, rng.random(idx.size), values, max_pixels)
        keep_idx, keep_x = kept.result(max_pixels)
    if sum_squares is not None:
        sum_squares.append(squares)
    return sums, counts, keep_idx, keep_x


def field_embedding_means(
    geoms: Sequence,
    geoms_crs,
    emb_path: str | os.PathLike,
    *,
    tile: str | None = None,
    date: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean embedding of each geometry's pixels (NaN pixels ignored) and its pixel count.

    ``geoms`` are shapely geometries or WKB in ``geoms_crs``; a pixel belongs to a geometry when
    its centre lies inside. Rows of fields without a valid pixel are NaN.
    """
    sums, counts, _, _ = _scan(geoms, geoms_crs, emb_path, tile=tile, date=date)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums / counts[:, None]).astype(np.float32)
    return means, counts


#: Per-field statistics ``field_embedding_stats`` can compute (besides the pixel count).
FIELD_STATS = ("mean", "std")


def field_embedding_stats(
    geoms: Sequence, geoms_crs, emb_path: str | os.PathLike, stats: Sequence[str] = ("mean",)
) -> dict[str, np.ndarray]:
    """Per-field statistics of the embedding pixels inside each geometry, in bounded memory.

    Pixels are visited window by window and only per-field sums (and sums of squares for
    ``std``) are kept, so memory is n_fields x bands whatever the raster size. Returns
    ``{"count": (n,), "mean": (n, C), "std": (n, C)}`` for the requested statistics; rows of
    fields without a valid pixel are NaN.
    """
    unknown = set(stats) - set(FIELD_STATS)
    if unknown:
        raise InputError(f"unknown field statistics {sorted(unknown)} (known: {FIELD_STATS})")
    squares: list | None = [] if "std" in stats else None
    sums, counts, _, _ = _scan(geoms, geoms_crs, emb_path, sum_squares=squares)
    out: dict[str, np.ndarray] = {"count": counts}
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts[:, None]
        if "mean" in stats:
            out["mean"] = mean.astype(np.float32)
        if squares is not None:
            var = np.maximum(squares[0] / counts[:, None] - np.square(mean), 0.0)
            out["std"] = np.sqrt(var).astype(np.float32)
    return out


def _read_layer(path, layer: str, required: Sequence[str], what: str, tile=None, date=None):
    """Read a GeoPackage layer with pyogrio.raw; return (meta, wkb array, {column: array})."""
    import pyogrio.raw

    try:
        meta, _, geometry, field_data = pyogrio.raw.read(path, layer=layer)
    except Exception as exc:  # missing file, wrong layer, corrupt GeoPackage
        raise InputError(f"{context(tile, date, path)}{what} unreadable: {exc}") from exc
    columns = dict(zip(meta["fields"], field_data, strict=True))
    missing = [c for c in required if c not in columns]
    if missing:
        raise InputError(f"{context(tile, date, path)}{what} lacks columns {missing}")
    if geometry is None:
        geometry = np.zeros(0, dtype=object)
    return meta, geometry, columns


def macro_f1(y_true: Sequence, y_pred: Sequence, classes: Sequence) -> tuple[float, dict]:
    """Macro-averaged F1 over the classes present in truth or prediction, plus F1 per class."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    per_class = {}
    for cls in classes:
        tp = int(np.sum((y_true == cls) & (y_pred == cls)))
        fp = int(np.sum((y_true != cls) & (y_pred == cls)))
        fn = int(np.sum((y_true == cls) & (y_pred != cls)))
        if tp + fp + fn:
            per_class[str(cls)] = 2 * tp / (2 * tp + fp + fn)
    score = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return score, per_class


def classification_report(y_true: Sequence, y_pred: Sequence, classes: Sequence) -> dict:
    """Macro and support-weighted F1, per-class precision/recall/F1/support, confusion matrix.

    ``confusion[i][j]`` counts items of true class ``classes[i]`` predicted as ``classes[j]``;
    predictions outside ``classes`` count as misses only.
    """
    y_true, y_pred = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
    names = [str(c) for c in classes]
    per_class, f1s, supports = {}, [], []
    for cls in names:
        tp = int(np.sum((y_true == cls) & (y_pred == cls)))
        fp = int(np.sum((y_true != cls) & (y_pred == cls)))
        fn = int(np.sum((y_true == cls) & (y_pred != cls)))
        support = tp + fn
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
        per_class[cls] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        if tp + fp + fn:
            f1s.append(f1)
            supports.append(support)
    total = sum(supports)
    index = {c: i for i, c in enumerate(names)}
    confusion = np.zeros((len(names), len(names)), dtype=np.int64)
    for t, p_ in zip(y_true, y_pred, strict=True):
        if t in index and p_ in index:
            confusion[index[t], index[p_]] += 1
    return {
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "weighted_f1": float(np.dot(f1s, supports) / total) if total else None,
        "per_class": per_class,
        "confusion": {"classes": names, "matrix": confusion.tolist()},
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


def _spatial_split(blocks: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean test mask over fields: whole spatial blocks, shuffled, until the share is met."""
    rng = np.random.default_rng(seed)
    unique = rng.permutation(np.unique(blocks))
    test = np.zeros(len(blocks), dtype=bool)
    target = test_fraction * len(blocks)
    for block in unique[:-1]:  # at least one block always trains
        if test.sum() >= target:
            break
        test |= blocks == block
    return test


def _block_ids(geoms: np.ndarray, crs, tiles: np.ndarray, block_m: float) -> np.ndarray:
    """Spatial block of each field: its centroid, in its tile's UTM CRS, on a ``block_m`` grid."""
    from tilepipe.core.grid import tile_grid

    out = np.empty(len(geoms), dtype=object)
    for tile in np.unique(tiles):
        rows = np.nonzero(tiles == tile)[0]
        moved = _to_crs(geoms[rows], crs, tile_grid(str(tile)).crs)
        cx, cy = shapely.get_x(shapely.centroid(moved)), shapely.get_y(shapely.centroid(moved))
        for i, x, y in zip(rows, cx, cy, strict=True):
            out[i] = f"{tile}:{math.floor(x / block_m)}:{math.floor(y / block_m)}"
    return out.astype(str)


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


def _grouped_split(
    groups: np.ndarray, group_class: np.ndarray, test_fraction: float, seed: int
) -> np.ndarray:
    """Boolean test mask over ``groups``: per class, a shuffled share of its fields, never all."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(groups), dtype=bool)
    for cls in np.unique(group_class):
        members = rng.permutation(np.nonzero(group_class == cls)[0])
        if members.size < 2 or test_fraction <= 0:
            continue  # a class with one field stays in train
        n_test = min(max(1, round(test_fraction * members.size)), members.size - 1)
        test[members[:n_test]] = True
    return test


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
) -> dict:
    """Train a CatBoost MultiClass model on labelled fields' embedding pixels; return metrics.

    ``embeddings`` maps tile id to that tile's embeddings GeoTIFF; each label polygon is sampled
    from the embeddings of its own ``tile``. Labels on tiles without embeddings, and fields
    without a valid pixel, are skipped and counted in the metrics. The test set is whole fields
    (per class), or whole ``spatial_block_m`` blocks when given; classes are weighted inversely
    to their frequency (``class_weights``); a kNN on field means (``baseline_k``) is scored on
    the same split.
    """
    from catboost import CatBoostClassifier

    meta, geometry, cols = _read_layer(
        labels_path, "labels", ("field_id", "crop", "tile"), "labels"
    )
    if len(geometry) == 0:
        raise InputError(f"{context(path=labels_path)}no labelled fields")
    field_ids = np.asarray(cols["field_id"]).astype(np.int64)
    raw_crops = np.asarray(cols["crop"], dtype=object)
    blank = np.array([c is None or not str(c).strip() for c in raw_crops])
    if blank.any():
        raise InputError(
            f"{context(path=labels_path)}{int(blank.sum())} labels have no crop class "
            f"(field_id {field_ids[blank][:10].tolist()})"
        )
    crops = raw_crops.astype(str)
    reserved = sorted({c for c in crops if c in (UNKNOWN, SKIPPED)})
    if reserved:
        raise InputError(
            f"{context(path=labels_path)}crop classes {reserved} are reserved for unclassified "
            f"fields; rename them in the labels"
        )
    tiles = np.asarray(cols["tile"]).astype(str)
    labels_crs = meta.get("crs") or "EPSG:4326"
    rng = np.random.default_rng(seed)

    means = np.full((len(geometry), 0), np.nan, dtype=np.float32)
    counts = np.zeros(len(geometry), dtype=np.int64)
    sample_rows, sample_x = [], []
    no_embeddings = sorted(set(tiles) - set(embeddings))
    for tile in sorted(set(tiles) & set(embeddings)):
        rows = np.nonzero(tiles == tile)[0]
        sums, n_px, idx, x = _scan(
            geometry[rows],
            labels_crs,
            embeddings[tile],
            max_pixels=max_pixels_per_field,
            rng=rng,
            tile=tile,
        )
        if means.shape[1] == 0:
            means = np.full((len(geometry), sums.shape[1]), np.nan, dtype=np.float32)
        elif sums.shape[1] != means.shape[1]:
            raise InputError(
                f"{context(tile, path=embeddings[tile])}{sums.shape[1]} bands, other tiles "
                f"have {means.shape[1]}"
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            means[rows] = sums / n_px[:, None]
        counts[rows] = n_px
        sample_rows.append(rows[idx])
        sample_x.append(x)

    sample_row = np.concatenate(sample_rows) if sample_rows else np.zeros(0, dtype=np.int64)
    if sample_row.size == 0:
        raise InputError(
            f"{context(path=labels_path)}no training samples: no label polygon covers a valid "
            f"embedding pixel (tiles without embeddings: {no_embeddings or 'none'})"
        )
    x_all = np.concatenate(sample_x)
    y_all = crops[sample_row]
    classes = sorted({str(c) for c in y_all})
    if len(classes) < 2:
        raise InputError(f"{context(path=labels_path)}need at least two classes, got {classes}")

    used = counts > 0
    groups, first = np.unique(field_ids[used], return_index=True)
    group_class = crops[used][first]
    if spatial_block_m:
        used_rows = np.nonzero(used)[0][first]
        blocks = _block_ids(
            _as_geometries(geometry[used_rows]), labels_crs, tiles[used_rows], spatial_block_m
        )
        test_group = _spatial_split(blocks, test_fraction, seed)
        split = {
            "kind": "spatial",
            "block_m": spatial_block_m,
            "blocks": len(set(blocks)),
            "test_blocks": len(set(blocks[test_group])),
        }
    else:
        test_group = _grouped_split(groups, group_class, test_fraction, seed)
        split = {"kind": "field"}
    test_groups = set(groups[test_group].tolist())
    is_test_row = np.isin(field_ids, list(test_groups))
    test_px = is_test_row[sample_row]
    missing = sorted(set(classes) - set(y_all[~test_px]))
    if missing:
        raise InputError(
            f"{context(path=labels_path)}classes {missing} have no training field after the "
            f"split; lower test_fraction or spatial_block_m, or add labels"
        )
    task = catboost_task_type(task_type)

    model = CatBoostClassifier(
        loss_function="MultiClass",
        iterations=iterations,
        random_seed=seed,
        thread_count=thread_count(),
        class_names=classes,
        auto_class_weights="Balanced" if class_weights else None,
        task_type=task,
        verbose=False,
        allow_writing_files=False,
    )
    model.fit(x_all[~test_px], y_all[~test_px])

    metrics: dict = {
        "classes": classes,
        "n_features": int(x_all.shape[1]),
        "train_field_ids": sorted(set(field_ids[used & ~is_test_row].tolist())),
        "test_field_ids": sorted(test_groups),
        "split": split,
        "n_fields": {"train": int(len(groups) - len(test_groups)), "test": len(test_groups)},
        "n_pixels": {"train": int((~test_px).sum()), "test": int(test_px.sum())},
        "per_class_counts": {
            c: {
                "train_fields": int(np.sum((group_class == c) & ~test_group)),
                "test_fields": int(np.sum((group_class == c) & test_group)),
                "train_pixels": int(np.sum((y_all == c) & ~test_px)),
                "test_pixels": int(np.sum((y_all == c) & test_px)),
            }
            for c in classes
        },
        "skipped": {
            "tiles_without_embeddings": no_embeddings,
            "labels_on_those_tiles": int(np.isin(tiles, no_embeddings).sum()),
            "fields_without_pixels": int((~used & ~np.isin(tiles, no_embeddings)).sum()),
        },
        "params": {
            "test_fraction": test_fraction,
            "seed": seed,
            "iterations": iterations,
            "max_pixels_per_field": max_pixels_per_field,
            "thread_count": thread_count(),
            "class_weights": "Balanced" if class_weights else None,
            "spatial_block_m": spatial_block_m,
            "task_type": task,
            "baseline_k": baseline_k,
        },
        "macro_f1": None,  # headline: field_macro_f1, how classify_fields predicts
        "weighted_f1": None,
        "pixel_macro_f1": None,
        "field_macro_f1": None,
        "per_class_f1": {"pixel": {}, "field": {}},
        "field_report": None,
        "baseline": None,
    }
    if test_px.any():
        pred = np.asarray(model.predict(x_all[test_px])).ravel().astype(str)
        score, per_class = macro_f1(y_all[test_px], pred, classes)
        metrics["pixel_macro_f1"], metrics["per_class_f1"]["pixel"] = score, per_class
        rows = np.nonzero(is_test_row & used)[0]
        proba = model.predict_proba(means[rows])
        pred = np.asarray(classes)[proba.argmax(axis=1)]
        score, per_class = macro_f1(crops[rows], pred, classes)
        metrics["field_macro_f1"], metrics["per_class_f1"]["field"] = score, per_class
        metrics["macro_f1"] = score
        report = classification_report(crops[rows], pred, classes)
        metrics["field_report"] = report
        metrics["weighted_f1"] = report["weighted_f1"]
        train_rows = np.nonzero(~is_test_row & used)[0]
        knn = knn_predict(means[train_rows], crops[train_rows], means[rows], k=baseline_k)
        base = classification_report(crops[rows], knn, classes)
        metrics["baseline"] = {
            "name": f"kNN (k={baseline_k}) on field mean embeddings",
            "macro_f1": base["macro_f1"],
            "weighted_f1": base["weighted_f1"],
            "report": base,
        }

    with atomic_output(model_dst) as tmp:
        model.save_model(str(tmp), format="cbm")
    with atomic_output(metrics_dst) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _load_model(model_path, tile=None, date=None):
    from catboost import CatBoostClassifier, CatBoostError

    model = CatBoostClassifier()
    try:
        model.load_model(str(model_path), format="cbm")
    except (CatBoostError, OSError) as exc:
        raise ModelError(f"{context(tile, date, model_path)}classifier unreadable: {exc}") from exc
    return model


def write_class_raster(
    emb_path: str | os.PathLike,
    model_path: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    tile: str | None = None,
    date: str | None = None,
) -> dict:
    """Per-pixel crop class (uint8 index into the model's classes, 255 nodata), block by block.

    Each embeddings window is predicted and written before the next is read, so memory is one
    window whatever the tile size; class names are in the band's ``CLASSES`` tag.
    """
    model = _load_model(model_path, tile, date)
    classes = [str(c) for c in model.classes_]
    counts = np.zeros(len(classes), dtype=np.int64)
    with _open_embeddings(emb_path, tile, date) as src:
        if src.count != len(model.feature_names_):
            raise ModelError(
                f"{context(tile, date, emb_path)}model expects {len(model.feature_names_)} "
                f"features, the embeddings have {src.count} bands"
            )
        profile = gtiff_profile(
            width=src.width,
            height=src.height,
            count=1,
            dtype="uint8",
            crs=src.crs,
            transform=src.transform,
            nodata=CLASS_NODATA,
        )
        with atomic_output(dst) as tmp, rasterio.open(tmp, "w", **profile) as out:
            for r0 in range(0, src.height, _WINDOW):
                for c0 in range(0, src.width, _WINDOW):
                    win = Window(
                        c0, r0, min(_WINDOW, src.width - c0), min(_WINDOW, src.height - r0)
                    )
                    x = src.read(window=win, out_dtype="float32")  # (C, h, w)
                    flat = x.reshape(x.shape[0], -1).T
                    ok = np.isfinite(flat).all(axis=1)
                    labels = np.full(flat.shape[0], CLASS_NODATA, dtype=np.uint8)
                    if ok.any():
                        labels[ok] = model.predict_proba(flat[ok]).argmax(axis=1)
                        counts += np.bincount(labels[ok], minlength=len(classes))
                    out.write(labels.reshape(1, int(win.height), int(win.width)), window=win)
            out.update_tags(1, CLASSES=json.dumps(classes))
            out.update_tags(TILE=tile or "", DATE=date or "")
            out.set_band_description(1, "crop class index (see CLASSES tag)")
    return {"classes": classes, "pixels": dict(zip(classes, counts.tolist(), strict=True))}


def classify_fields(
    fields_path: str | os.PathLike,
    emb_path: str | os.PathLike,
    model_path: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    tile: str | None = None,
    date: str | None = None,
    qc_path: str | os.PathLike | None = None,
) -> int:
    """Write ``fields.gpkg`` plus ``crop`` and ``crop_prob`` to ``dst``; return the field count.

    Each field is classified from its mean embedding; a field without a valid embedding pixel
    gets ``crop="unknown"`` and ``crop_prob=0.0``. When ``qc_path`` is given and that qc.json
    failed, the scene is kept out of classification: every field gets ``crop="qc_fail"`` and
    no embeddings or model are read.
    """
    import pyogrio.raw

    from tilepipe.qc.checks import scene_failed

    meta, geometry, cols = _read_layer(fields_path, "fields", (), "fields", tile, date)
    n = len(geometry)
    crop = np.full(n, UNKNOWN, dtype=object)
    prob = np.zeros(n, dtype=np.float64)
    skipped = qc_path is not None and scene_failed(qc_path, tile=tile, date=date)
    if skipped:
        crop[:] = SKIPPED
    model = None if skipped else _load_model(model_path, tile, date)
    if n and model is not None:
        classes = [str(c) for c in model.classes_]
        means, counts = field_embedding_means(
            geometry, meta.get("crs"), emb_path, tile=tile, date=date
        )
        n_features = len(model.feature_names_)
        if means.shape[1] != n_features:
            raise ModelError(
                f"{context(tile, date, model_path)}model expects {n_features} "
                f"features, {emb_path} has {means.shape[1]} bands"
            )
        ok = counts > 0
        if ok.any():
            proba = model.predict_proba(means[ok])
            crop[ok] = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
            prob[ok] = proba.max(axis=1)
    for name in ("crop", "crop_prob"):
        cols.pop(name, None)
    names = [*cols, "crop", "crop_prob"]
    data = [*cols.values(), crop, prob]
    with atomic_output(dst) as tmp:
        pyogrio.raw.write(
            tmp,
            geometry,
            data,
            names,
            layer="fields",
            driver="GPKG",
            geometry_type=meta.get("geometry_type") or "Polygon",
            crs=meta.get("crs"),
        )
    return n
