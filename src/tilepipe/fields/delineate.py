"""Field delineation: a multitask FieldNet through the tiling engine, then block-wise polygons.

The network runs on ``dr.tif`` (1 m) or ``s2.tif`` (10 m), whichever the model was trained for,
and gives per-pixel field extent, boundary and (optionally) distance-to-boundary probabilities,
stored as a temporary uint8 raster. :func:`tilepipe.fields.polygons.delineate` turns it into field
instances (watershed seeded from extent minus boundary, so touching fields stay apart) and
polygons, block by block with bounded memory. Output: ``fields.gpkg`` and optionally GeoParquet,
published together. The image is checked first (dtype, bands, scale, grid), so a raster of
another kind stops the step instead of giving an empty field set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyogrio.raw
import rasterio
import shapely
import torch

from tilepipe.core.errors import ConfigError, InputError, ModelError, context
from tilepipe.core.geoparquet import write_geoparquet
from tilepipe.core.inputs import band_names, check_image
from tilepipe.core.raster import atomic_outputs, stack_vrt
from tilepipe.core.scratch import temp_beside
from tilepipe.engine.model import first_batch, probe_window
from tilepipe.engine.progress import progress_logger
from tilepipe.engine.tiling import Predict, run_tiled
from tilepipe.fields.fiboa import COLUMNS as COLUMNS  # re-exported: the layer's columns
from tilepipe.fields.fiboa import REQUIRED, arrow_columns, collection_metadata, field_columns
from tilepipe.fields.mask import open_mask
from tilepipe.fields.polygons import PROB_NODATA, PROB_SCALE, Params, check_params, delineate
from tilepipe.models.loading import (
    BANDS,
    LoadedModel,
    forward_raw,
    load_model,
    make_predict,
    resolve_device,
)
from tilepipe.models.sidecar import (
    NAMED_ROLES,
    Normalise,
    SidecarError,
    check_source_bands,
    field_roles,
)

log = logging.getLogger(__name__)

LAYER = "fields"
#: GDAL's time-zone flag for UTC (RFC 56: 100 + offset in quarter hours), so the GeoPackage
#: stores ``determination:datetime`` with its ``Z``.
GDAL_UTC = 100
#: Model output names (sidecar ``bands_out``) -> probability band, without a ``roles`` key.
HEADS = NAMED_ROLES
#: Relative difference between the input's pixel size and the model's ``gsd_m`` that is refused.
GSD_TOLERANCE = 0.25


def check_input(path: Path, tile: str | None, date: str | None) -> tuple[dict[str, str], float]:
    """Check the image is a dr.tif or s2.tif (dtype, bands, scale, grid); return its tags and
    pixel size (m)."""
    kind, tags = check_image(path, tile, date)
    return tags, float(kind.pixel_m or 0.0)


def model_heads(model: LoadedModel, where: str) -> tuple[list[str], list[int]]:
    """The probability bands (extent first, then boundary, distance) and the model output
    channel of each, from the sidecar's ``roles`` or tilepipe's output names."""
    roles = field_roles(model.spec, where)
    return list(roles), list(roles.values())


def check_gsd(meta: dict, pixel_m: float, where: str) -> None:
    """Refuse an image whose pixel size is not the one the model was trained on (``gsd_m``)."""
    gsd = meta.get("gsd_m")
    if gsd and abs(pixel_m / float(gsd) - 1.0) > GSD_TOLERANCE:
        raise ModelError(
            f"{where}model was trained on {gsd:g} m pixels but the image has {pixel_m:g} m "
            "pixels: set fields.input to the matching image (dr = 1 m, s2 = 10 m) or give a "
            "model trained for it"
        )


def write_fields(
    path: str | os.PathLike,
    geoms: list,
    columns: dict[str, np.ndarray],
    *,
    crs: str | None,
    tile: str,
    date: str,
    metadata: dict[str, str] | None = None,
    parquet_path: str | os.PathLike | None = None,
    copies: dict | None = None,
) -> None:
    """Write the fields layer (GeoPackage, and GeoParquet when asked): both or neither.

    Both carry the COLUMNS (fiboa core plus tilepipe's own, then any extra per-field columns
    such as ``masked_share``); the GeoParquet file is fiboa and GeoParquet 1.1 with a bbox
    covering, in Hilbert order. ``copies`` (destination -> source file, such as the kept
    probability raster) are put in place with them. An empty list gives an empty layer with
    the full schema.
    """
    n = len(geoms)
    cols = field_columns(columns, n, tile, date)
    multi = any(g.geom_type == "MultiPolygon" for g in geoms)
    wkb = shapely.to_wkb(np.array(geoms, dtype=object)) if n else np.array([], dtype=object)
    paths = (path,) if parquet_path is None else (path, parquet_path)
    copies = copies or {}
    with atomic_outputs(*paths, *copies) as temps:
        for tmp, src in zip(temps[len(paths) :], copies.values(), strict=True):
            shutil.copyfile(src, tmp)
        if parquet_path is not None:
            write_geoparquet(
                temps[1],
                geoms,
                arrow_columns(cols),
                crs,
                covering=True,
                spatial_order=True,
                required=REQUIRED,
                metadata={"collection": collection_metadata()},
            )
        pyogrio.raw.write(
            temps[0],
            wkb,
            list(cols.values()),
            list(cols),
            layer=LAYER,
            driver="GPKG",
            geometry_type="MultiPolygon" if multi else "Polygon",
            promote_to_multi=multi,
            crs=crs,
            layer_metadata=metadata,
            gdal_tz_offsets={"determination:datetime": np.full(n, GDAL_UTC)},
        )


@dataclass(frozen=True)
class FieldMap:
    """How the image reaches a field model and its outputs the probability raster."""

    normalise: Normalise
    take: tuple[int, ...]  # image band of each model input
    give: tuple[int, ...]  # model output of each probability band (extent, boundary, distance)
    activation: str  # identity, sigmoid or softmax (over all outputs, before picking)

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """Image reflectance x 10^4 -> the model's input (its bands, its units)."""
        if self.take != tuple(range(x.shape[1])):
            x = x[:, list(self.take)]
        return self.normalise.forward(x)

    def probabilities(self, y: torch.Tensor) -> torch.Tensor:
        """Model outputs -> the probability bands in 0..1."""
        y = y.float()
        if self.activation == "sigmoid":
            y = torch.sigmoid(y)
        elif self.activation == "softmax":
            y = torch.softmax(y, dim=1)
        else:
            y = y.clamp(0.0, 1.0)
        return y if self.give == tuple(range(y.shape[1])) else y[:, list(self.give)]


def fields_forward(net: torch.nn.Module, fmap: FieldMap, x: torch.Tensor) -> torch.Tensor:
    """Per-pixel head probabilities, scaled to the probability raster's integers."""
    return fmap.probabilities(net(fmap.model_input(x))) * PROB_SCALE


def field_map(
    model: LoadedModel,
    heads_at: list[int],
    source: str,
    where: str,
    available: tuple[str, ...] = BANDS,
    dates: int = 1,
    unpaired: str = "",
) -> FieldMap:
    """The model's bands against the image's (``available``, per date: the image holds
    ``dates`` dates' bands in turn), its activation; SidecarError for a band the image lacks,
    a DR scale, or a model's dates the image does not hold (``unpaired``: why no partner)."""
    sc = model.spec
    if sc.scale != 1:
        raise SidecarError(
            f"{where}fields model {sc.id}: scale is {sc.scale}, a field model needs 1"
        )
    if sc.dates != dates:
        why = (
            f"the scene has no partner date: {unpaired or 'none was given (fields.pairing)'}"
            if sc.dates == 2 and dates == 1
            else f"the image holds {dates}"
        )
        raise SidecarError(f"{where}fields model {sc.id} takes {sc.dates} dates, but {why}")
    one = check_source_bands(sc, available, where, source)
    take = [i + d * len(available) for d in range(dates) for i in one]
    return FieldMap(sc.normalise, tuple(take), tuple(heads_at), sc.activation or "sigmoid")


def check_fields_first_batch(
    model: LoadedModel, fmap: FieldMap, image: Path, patch: int, where: str
) -> None:
    """The bare model on one real window of the image, held to the sidecar (dtype, outputs,
    window, finite) before anything is computed or written."""

    def bare(x: np.ndarray) -> torch.Tensor:
        return forward_raw(lambda t: model.module(fmap.model_input(t)), x, model.device)

    outs = len(model.spec.bands_out)
    want = (1, outs, patch, patch)
    declared = f"{outs} outputs {list(model.spec.bands_out)} at scale 1"
    first_batch(model.model_id, where, bare, probe_window(image, patch), want, declared)


def load_fields_model(
    model_path: str | os.PathLike,
    device: str,
    pixel_m: float,
    where: str,
    source: str = "image",
    available: tuple[str, ...] = BANDS,
    dates: int = 1,
    unpaired: str = "",
) -> tuple[LoadedModel, list[str], Predict, FieldMap]:
    """Load the fields model, check it suits the image (its bands ``available`` for each of
    its ``dates``); return it, its heads, predict and map."""
    dev = resolve_device(device)
    model = load_model(model_path, device=dev)
    heads, heads_at = model_heads(model, where)
    fmap = field_map(model, heads_at, source, where, available, dates, unpaired)
    check_gsd(model.meta, pixel_m, where)
    predict = make_predict(partial(fields_forward, model.module, fmap), dev)
    return model, heads, predict, fmap


@contextlib.contextmanager
def scratch_raster(dst_path: Path) -> Iterator[Path]:
    """A temporary raster path beside ``dst_path`` (for the probabilities), removed afterwards."""
    path = temp_beside(dst_path, "prob", ".tif")  # owner-named: a killed run's goes next time
    path.touch()
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def fields_metadata(
    model: LoadedModel,
    heads: list[str],
    params: Params,
    image_path: Path,
    mask_classes: tuple[int, ...] = (),
    mask_buffer: int = 0,
) -> dict[str, str]:
    """The fields layer's metadata: model, heads, delineation parameters, the mask and the
    input's name."""
    return {
        "MASK_CLASSES": ",".join(str(c) for c in mask_classes),
        "MASK_BUFFER": str(mask_buffer),
        "MAX_MASKED_SHARE": str(params.max_masked_share),
        "FIELDS_MODEL_ID": model.model_id,
        "FIELDS_MODEL_SHA256": model.sha256,
        "HEADS": ",".join(heads),
        "THRESHOLD": str(params.threshold),
        "SEED_THRESHOLD": str(params.seed_threshold),
        "MIN_AREA_M2": str(params.min_area_m2),
        "MAX_AREA_M2": str(params.max_area_m2),
        "SIMPLIFY_M": str(params.simplify_m),
        "FILL_HOLES_M2": str(params.fill_holes_m2),
        "SOURCE": image_path.name,
    }


def run_fields(
    image_path: str | os.PathLike,
    dst_path: str | os.PathLike,
    *,
    model_path: str | os.PathLike,
    params: Params | None = None,
    patch: int = 256,
    overlap: int = 32,
    batch: int = 4,
    device: str = "auto",
    tile: str | None = None,
    date: str | None = None,
    parquet_path: str | os.PathLike | None = None,
    scl_path: str | os.PathLike | None = None,
    mask_classes: tuple[int, ...] = (),
    mask_buffer: int = 0,
    prob_out: str | os.PathLike | None = None,
    partner: str | os.PathLike | None = None,
    partner_window: str = "b",
    unpaired: str = "",
) -> int:
    """Delineate fields on ``image_path`` (dr.tif or s2.tif) into ``dst_path``; return how many.

    With ``scl_path``, pixels whose SCL class is in ``mask_classes`` (grown by
    ``mask_buffer`` SCL pixels) seed no field and give each field its ``masked_share``.
    ``prob_out`` keeps the probability raster (for the season fusion), published with the
    fields. A two-date model takes ``partner`` (the same kind of image of another date, in
    window ``partner_window``: ``a`` or ``b``) beside the scene; ``unpaired`` says why a scene
    has none.
    """
    params = params or Params()
    check_params(params)
    image_path, dst_path = Path(image_path), Path(dst_path)
    tags, pixel_m = check_input(image_path, tile, date)
    tile = tile or tags.get("TILE") or ""
    date = date or tags.get("DATE") or ""
    where = context(tile=tile, date=date, path=model_path)
    with rasterio.open(image_path) as src:
        available = band_names(src)
    images, dates = [image_path], [date]
    if partner is not None:
        images, dates = pair_images(image_path, Path(partner), partner_window, tile, date)
    model, heads, predict, fmap = load_fields_model(
        model_path, device, pixel_m, where, image_path.name, available, len(images), unpaired
    )
    if len(images) > 1:
        log.info("fields %s %s: window A %s, window B %s", tile, date, *dates)
    with stacked(images) as source:
        check_fields_first_batch(model, fmap, source, patch, where)
        with scratch_raster(dst_path) as prob_path:
            stats = run_tiled(
                source,
                prob_path,
                predict,
                scale=1,
                out_bands=len(heads),
                out_dtype="uint8",
                patch=patch,
                overlap=overlap,
                batch=batch,
                nodata_out=PROB_NODATA,
                src_nodata=0,
                band_descriptions=heads,
                progress=progress_logger(log, f"fields {tile} {date}"),
                model_name=model.model_id,
                where=where,
            )
            log.info("fields %s %s: probabilities in %.1f s", tile, date, stats["seconds"])
            with rasterio.open(prob_path) as prob:
                fine = prob.transform
            classes = tuple(mask_classes) if scl_path is not None else ()
            with open_mask(
                scl_path, classes, fine, tile=tile, date=date, buffer=mask_buffer
            ) as mask:
                table = delineate(prob_path, params, tile=tile, date=date, mask=mask)
            log.info("fields %s %s: %s", tile, date, table.stats)
            write_fields(
                dst_path,
                table.geoms,
                table.columns,
                crs=table.crs,
                tile=tile,
                date=date,
                metadata={
                    **fields_metadata(model, heads, params, image_path, classes, mask_buffer),
                    "FIELDS_DATES": ",".join(dates),
                },
                parquet_path=parquet_path,
                copies={prob_out: prob_path} if prob_out is not None else None,
            )
    log.info("fields %s %s: %d polygons", tile, date, len(table.geoms))
    return len(table.geoms)


def pair_images(
    image: Path, partner: Path, partner_window: str, tile: str, date: str
) -> tuple[list[Path], list[str]]:
    """[window A's image, window B's] of a scene and its partner; InputError unless the partner
    is an image of the same kind on the same grid; and their dates, in the same order."""
    partner_date = check_input(partner, tile, None)[0].get("DATE", "")
    with rasterio.open(image) as a, rasterio.open(partner) as b:
        same = (a.width, a.height, a.transform, a.crs, a.descriptions) == (
            b.width,
            b.height,
            b.transform,
            b.crs,
            b.descriptions,
        )
    if not same:
        raise InputError(
            f"{context(tile, date, partner)}the partner image is not on the scene's grid with "
            f"its bands ({image.name}): a two-date model needs both dates alike"
        )
    if partner_window not in ("a", "b"):
        raise ConfigError(f"partner window must be 'a' or 'b', not {partner_window!r}")
    if partner_window == "b":
        return [image, partner], [date, partner_date]
    return [partner, image], [partner_date, date]


@contextlib.contextmanager
def stacked(images: list[Path]) -> Iterator[Path]:
    """The image itself, or two dates' images as one temporary VRT (window A's bands, then
    window B's) for as long as the block runs."""
    if len(images) == 1:
        yield images[0]
        return
    with tempfile.TemporaryDirectory(prefix="tilepipe-pair-") as tmp:
        yield stack_vrt(images, Path(tmp) / "pair.vrt")
