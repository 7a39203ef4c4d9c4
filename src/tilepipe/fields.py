"""Field delineation: FieldNet over ``dr.tif`` through the tiling engine, then polygons.

The network gives a per-pixel "field interior" probability; thresholding, 4-connected
components, a minimum area, polygonisation and simplification turn it into ``fields.gpkg``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pyogrio.raw
import rasterio
import rasterio.features
import shapely
import torch
from shapely.geometry import shape
from skimage.measure import label

from tilepipe.errors import InputError, context
from tilepipe.models import BANDS, load_model, make_predict, resolve_device
from tilepipe.raster import atomic_output, is_north_up
from tilepipe.tiling import progress_logger, run_tiled

log = logging.getLogger(__name__)

LAYER = "fields"
COLUMNS = ("field_id", "area_m2", "score", "tile", "date")


def check_dr(path: Path, tile: str | None, date: str | None) -> dict[str, str]:
    """Check a dr.tif (4 bands in BANDS order, north-up) and return its tags."""
    where = context(tile=tile, date=date, path=path)
    try:
        with rasterio.open(path) as src:
            count, desc, transform, tags = src.count, src.descriptions, src.transform, src.tags()
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{where}cannot open dr raster ({exc})") from exc
    if count != len(BANDS) or (any(desc) and tuple(desc) != BANDS):
        raise InputError(f"{where}expected bands {list(BANDS)}, found {count} {list(desc)}")
    if not is_north_up(transform):
        raise InputError(f"{where}raster is not north-up")
    return tags


def polygonise(
    prob: np.ndarray,
    transform,
    *,
    threshold: float,
    min_area_m2: float,
    simplify_m: float,
) -> tuple[list, np.ndarray, np.ndarray]:
    """Turn a probability raster into (polygons, area_m2, score), one per kept component.

    Components are 4-connected so fields touching only at a corner stay apart; the score is the
    mean probability over the component's pixels.
    """
    valid = np.isfinite(prob)
    mask = valid & (np.where(valid, prob, 0.0) >= threshold)
    labels = label(mask, connectivity=1).astype(np.int32)
    n = int(labels.max())
    if n == 0:
        return [], np.zeros(0), np.zeros(0)
    pixel_area = abs(transform.a * transform.e - transform.b * transform.d)
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    sums = np.bincount(labels.ravel(), weights=np.where(valid, prob, 0.0).ravel(), minlength=n + 1)
    keep = counts * pixel_area >= min_area_m2
    keep[0] = False
    labels[~keep[labels]] = 0

    parts: dict[int, list] = {}
    for geom, value in rasterio.features.shapes(
        labels, mask=labels > 0, connectivity=4, transform=transform
    ):
        parts.setdefault(int(value), []).append(shape(geom))
    geoms, areas, scores = [], [], []
    for lab in sorted(parts):
        geom = parts[lab][0] if len(parts[lab]) == 1 else shapely.union_all(parts[lab])
        if simplify_m > 0:
            simple = shapely.simplify(geom, simplify_m, preserve_topology=True)
            if not simple.is_empty and simple.is_valid:
                geom = simple
        geoms.append(geom)
        areas.append(geom.area)
        scores.append(sums[lab] / counts[lab])
    return geoms, np.asarray(areas, dtype=np.float64), np.asarray(scores, dtype=np.float64)


def write_fields(
    path: str | os.PathLike,
    geoms: list,
    areas: np.ndarray,
    scores: np.ndarray,
    *,
    crs: str,
    tile: str,
    date: str,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write the fields layer (contract columns) atomically; an empty list gives an empty layer."""
    n = len(geoms)
    multi = any(g.geom_type == "MultiPolygon" for g in geoms)
    wkb = shapely.to_wkb(np.array(geoms, dtype=object)) if n else np.array([], dtype=object)
    data = [
        np.arange(1, n + 1, dtype=np.int64),
        np.asarray(areas, dtype=np.float64),
        np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0),
        np.array([tile] * n, dtype=object),
        np.array([date] * n, dtype=object),
    ]
    with atomic_output(path) as tmp:
        pyogrio.raw.write(
            tmp,
            wkb,
            data,
            list(COLUMNS),
            layer=LAYER,
            driver="GPKG",
            geometry_type="MultiPolygon" if multi else "Polygon",
            promote_to_multi=multi,
            crs=crs,
            layer_metadata=metadata,
        )


def run_fields(
    dr_path: str | os.PathLike,
    dst_path: str | os.PathLike,
    *,
    model_path: str | os.PathLike,
    threshold: float = 0.5,
    min_area_m2: float = 2000.0,
    patch: int = 256,
    overlap: int = 32,
    batch: int = 4,
    device: str = "auto",
    tile: str | None = None,
    date: str | None = None,
    simplify_m: float = 1.0,
) -> int:
    """Delineate fields on ``dr_path`` into ``dst_path`` (fields.gpkg); return how many."""
    dr_path, dst_path = Path(dr_path), Path(dst_path)
    tags = check_dr(dr_path, tile, date)
    tile = tile or tags.get("TILE") or ""
    date = date or tags.get("DATE") or ""
    dev = resolve_device(device)
    model = load_model(model_path, expect_bands=BANDS, expect_scale=1, device=dev)
    divide, net = model.divide, model.module

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(net(x / divide).float())

    dst_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{dst_path.name}.prob-", suffix=".tif", dir=dst_path.parent
    )
    os.close(fd)
    prob_path = Path(tmp_name)
    try:
        stats = run_tiled(
            dr_path,
            prob_path,
            make_predict(forward, dev),
            scale=1,
            out_bands=1,
            out_dtype="float32",
            patch=patch,
            overlap=overlap,
            batch=batch,
            nodata_out=float("nan"),
            src_nodata=0,
            progress=progress_logger(log, f"fields {tile} {date}"),
        )
        log.info("fields %s %s: probability in %.1f s", tile, date, stats["seconds"])
        with rasterio.open(prob_path) as src:
            prob, transform, crs = src.read(1), src.transform, src.crs
    finally:
        with contextlib.suppress(FileNotFoundError):
            prob_path.unlink()

    geoms, areas, scores = polygonise(
        prob, transform, threshold=threshold, min_area_m2=min_area_m2, simplify_m=simplify_m
    )
    meta = {
        "FIELDS_MODEL_ID": model.model_id,
        "FIELDS_MODEL_SHA256": model.sha256,
        "THRESHOLD": str(threshold),
        "MIN_AREA_M2": str(min_area_m2),
        "SOURCE": dr_path.name,
    }
    write_fields(
        dst_path,
        geoms,
        areas,
        scores,
        crs=crs.to_wkt() if crs else None,
        tile=tile,
        date=date,
        metadata=meta,
    )
    log.info("fields %s %s: %d polygons", tile, date, len(geoms))
    return len(geoms)
