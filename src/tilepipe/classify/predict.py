"""Prediction with a trained classifier: crop and probability per field, class per pixel."""

from __future__ import annotations

import json
import os

import numpy as np
import rasterio
from rasterio.enums import Resampling

from tilepipe.classify.labels import CLASS_NODATA, SKIPPED, UNKNOWN
from tilepipe.classify.samples import (
    block_windows,
    field_embedding_means,
    open_embeddings,
    read_layer,
)
from tilepipe.core.errors import ModelError, context
from tilepipe.core.raster import atomic_output, gtiff_profile, rewrite_as_cog

_WINDOW = 256  # embedding pixels per side predicted at once (x C bands x float32)


def load_model(model_path, tile=None, date=None):
    """Load a CatBoost ``.cbm`` model; an unreadable one is a ModelError naming tile and file."""
    from catboost import CatBoostClassifier, CatBoostError

    model = CatBoostClassifier()
    try:
        model.load_model(str(model_path), format="cbm")
    except (CatBoostError, OSError) as exc:
        raise ModelError(f"{context(tile, date, model_path)}classifier unreadable: {exc}") from exc
    return model


def _class_profile(src: rasterio.DatasetReader) -> dict:
    """GeoTIFF profile of the class raster: one uint8 band on the embeddings' grid."""
    return gtiff_profile(
        width=src.width,
        height=src.height,
        count=1,
        dtype="uint8",
        crs=src.crs,
        transform=src.transform,
        nodata=CLASS_NODATA,
    )


def _proba(model, x: np.ndarray, where: str, what: str) -> np.ndarray:
    """The classifier's class probabilities for the rows of ``x`` (``what`` they are).

    A non-finite probability is a ModelError: argmax would turn NaN into the first class.
    """
    proba = np.asarray(model.predict_proba(x), dtype=np.float64)
    bad = ~np.isfinite(proba).all(axis=1)
    if bad.any():
        raise ModelError(
            f"{where}classifier returned non-finite probabilities for {int(bad.sum())} of "
            f"{len(proba)} {what}: refusing to turn them into classes"
        )
    return proba


def _predict_block(model, x: np.ndarray, where: str) -> np.ndarray:
    """Class index of every pixel of a (C, h, w) block, flat; non-finite pixels are nodata."""
    flat = x.reshape(x.shape[0], -1).T
    ok = np.isfinite(flat).all(axis=1)
    labels = np.full(flat.shape[0], CLASS_NODATA, dtype=np.uint8)
    if ok.any():
        labels[ok] = _proba(model, flat[ok], where, "pixels").argmax(axis=1)
    return labels


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
    model = load_model(model_path, tile, date)
    classes = [str(c) for c in model.classes_]
    counts = np.zeros(len(classes), dtype=np.int64)
    with open_embeddings(emb_path, tile, date) as src:
        if src.count != len(model.feature_names_):
            raise ModelError(
                f"{context(tile, date, emb_path)}model expects {len(model.feature_names_)} "
                f"features, the embeddings have {src.count} bands"
            )
        with atomic_output(dst) as tmp:
            with rasterio.open(tmp, "w", **_class_profile(src)) as out:
                for win in block_windows(src.width, src.height, _WINDOW):
                    block = src.read(window=win, out_dtype="float32")
                    labels = _predict_block(model, block, context(tile, date, model_path))
                    counts += np.bincount(labels[labels != CLASS_NODATA], minlength=len(classes))
                    out.write(labels.reshape(1, int(win.height), int(win.width)), window=win)
                out.update_tags(1, CLASSES=json.dumps(classes))
                out.update_tags(TILE=tile or "", DATE=date or "")
                out.set_band_description(1, "crop class index (see CLASSES tag)")
            rewrite_as_cog(tmp, Resampling.nearest)  # classes: never averaged
    return {"classes": classes, "pixels": dict(zip(classes, counts.tolist(), strict=True))}


def _predict_fields(
    model, geometry: np.ndarray, crs, emb_path, model_path, tile=None, date=None
) -> tuple[np.ndarray, np.ndarray]:
    """Crop class and its probability per field from the field's mean embedding.

    A field without a valid pixel stays ``unknown`` with probability 0.
    """
    crop = np.full(len(geometry), UNKNOWN, dtype=object)
    prob = np.zeros(len(geometry), dtype=np.float64)
    means, counts = field_embedding_means(geometry, crs, emb_path, tile=tile, date=date)
    n_features = len(model.feature_names_)
    if means.shape[1] != n_features:
        raise ModelError(
            f"{context(tile, date, model_path)}model expects {n_features} "
            f"features, {emb_path} has {means.shape[1]} bands"
        )
    ok = counts > 0
    if ok.any():
        proba = _proba(model, means[ok], context(tile, date, model_path), "fields")
        crop[ok] = np.asarray([str(c) for c in model.classes_], dtype=object)[proba.argmax(axis=1)]
        prob[ok] = proba.max(axis=1)
    return crop, prob


def _write_fields(dst, meta: dict, geometry: np.ndarray, cols: dict, crop, prob) -> None:
    """Write the fields layer with its columns plus (replaced) ``crop`` and ``crop_prob``."""
    import pyogrio.raw

    cols = {k: v for k, v in cols.items() if k not in ("crop", "crop_prob")}
    # datetimes come back from the GeoPackage in UTC (fiboa's determination:datetime): keep it
    utc = {k: np.full(len(v), 100) for k, v in cols.items() if np.asarray(v).dtype.kind == "M"}
    with atomic_output(dst) as tmp:
        pyogrio.raw.write(
            tmp,
            geometry,
            [*cols.values(), crop, prob],
            [*cols, "crop", "crop_prob"],
            layer="fields",
            driver="GPKG",
            geometry_type=meta.get("geometry_type") or "Polygon",
            crs=meta.get("crs"),
            gdal_tz_offsets=utc,
        )


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
    from tilepipe.qc.checks import scene_failed

    meta, geometry, cols = read_layer(fields_path, "fields", (), "fields", tile, date)
    n = len(geometry)
    crop = np.full(n, UNKNOWN, dtype=object)
    prob = np.zeros(n, dtype=np.float64)
    if qc_path is not None and scene_failed(qc_path, tile=tile, date=date):
        crop[:] = SKIPPED
    else:
        model = load_model(model_path, tile, date)  # read even for no fields: a bad model fails
        if n:
            crop, prob = _predict_fields(
                model, geometry, meta.get("crs"), emb_path, model_path, tile, date
            )
    _write_fields(dst, meta, geometry, cols, crop, prob)
    return n
