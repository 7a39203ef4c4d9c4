"""The DR step: super-resolution of ``s2.tif`` (10 m) into ``dr.tif`` at the model's scale.

The model's sidecar says what it needs (:mod:`tilepipe.models.sidecar`): its bands are picked
from ``s2.tif`` in the model's order, normalised as declared, and its outputs mapped back to
reflectance and to the dr.tif's band order; ``dr.tif``'s pixel is 10 m / scale (1 m for the
demo's x10 model). Bicubic, the baseline, is x10.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F

from tilepipe.core.errors import ConfigError, context
from tilepipe.core.inputs import S2, band_names, check_raster
from tilepipe.engine.model import first_batch, probe_window
from tilepipe.engine.progress import progress_logger
from tilepipe.engine.tiling import run_tiled
from tilepipe.models.loading import (
    BANDS,
    LoadedModel,
    check_patch,
    forward_raw,
    load_model,
    make_predict,
    maybe_compile,
    resolve_device,
    resolve_precision,
)
from tilepipe.models.sidecar import Normalise, SidecarError, check_source_bands, check_sr_outputs

log = logging.getLogger(__name__)

#: The scale of bicubic DR (a model's scale is its sidecar's).
SCALE = 10
#: Reflectance is stored as uint16 x 10000; 0 is nodata, so the engine clips valid output to >= 1.
REFLECTANCE_DIVIDE = 10000.0
METHODS = ("model", "bicubic")


def s2_band_names(path: Path) -> tuple[str, ...]:
    """s2.tif's bands by name: the core four, then any further L2A bands download added."""
    with rasterio.open(path) as src:
        return band_names(src)


def check_s2(path: Path, tile: str | None, date: str | None) -> dict[str, str]:
    """Check an s2.tif against its contract (dtype, bands, scale, grid) and return its tags."""
    return check_raster(path, S2, tile=tile, date=date)


@dataclass(frozen=True)
class BandMap:
    """How s2.tif's bands reach the model and its outputs the dr.tif: channel picks and units.

    ``take``: the s2.tif band of each model input; ``give``: the model output of each dr.tif
    band; ``stats``: the input band whose mean/std each model output is denormalised with.
    """

    normalise: Normalise
    take: tuple[int, ...]
    give: tuple[int, ...]
    stats: tuple[int, ...]

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """s2.tif reflectance x 10^4 -> the model's input (its bands, its units)."""
        if self.take != tuple(range(x.shape[1])):
            x = x[:, list(self.take)]
        return self.normalise.forward(x)

    def dr_output(self, y: torch.Tensor) -> torch.Tensor:
        """The model's output -> dr.tif reflectance x 10^4 in the dr.tif's band order."""
        y = self.normalise.inverse(y, self.stats)
        return y if self.give == tuple(range(y.shape[1])) else y[:, list(self.give)]


def model_forward(net: torch.nn.Module, mapping: BandMap, x: torch.Tensor) -> torch.Tensor:
    """DR by the model: the sidecar's bands and units in, reflectance x 10000 out.

    Not clipped here: the engine refuses non-finite output (a clamp would turn +Inf into a
    valid 65535) and clips the rest to valid uint16 (1..65535) when it casts.
    """
    return mapping.dr_output(net(mapping.model_input(x)))


def band_mapping(model: LoadedModel, where: str, available: tuple[str, ...] = BANDS) -> BandMap:
    """The model's bands against s2.tif's (``available``) and dr.tif's; SidecarError for a band
    s2.tif lacks, outputs that are not the dr.tif's bands, or a two-date model."""
    sc = model.spec
    if sc.dates != 1:
        raise SidecarError(
            f"{where}model {sc.id}: a DR model takes one date, its sidecar says {sc.dates}"
        )
    take = check_source_bands(sc, available, where, "s2.tif")
    give = check_sr_outputs(sc, BANDS, where)
    dropped = [b for b in sc.bands_out if b not in BANDS]
    if dropped:
        log.info(
            "%smodel %s: outputs %s are not written (dr.tif holds %s)",
            where,
            sc.id,
            " ".join(dropped),
            " ".join(BANDS),
        )
    stats = tuple(sc.bands_in.index(b) for b in sc.bands_out)
    return BandMap(sc.normalise, tuple(take), tuple(give), stats)


def bicubic_forward(x: torch.Tensor) -> torch.Tensor:
    """DR of s2.tif's core bands (its first four) by bicubic interpolation, the baseline; the
    engine clips it to valid uint16."""
    core = x[:, : len(BANDS)]
    return F.interpolate(core, scale_factor=SCALE, mode="bicubic", align_corners=False).float()


@dataclass(frozen=True)
class Dr:
    """How DR is computed: the method, its function and model, the device and precision.

    ``path`` is the model file (None for bicubic), named by the engine's errors.
    """

    method: str
    forward: Callable[[torch.Tensor], torch.Tensor]
    model_id: str
    sha256: str
    device: torch.device
    precision: str
    compiled: bool
    path: str | os.PathLike | None = None
    scale: int = SCALE
    deterministic: bool = True
    probe: Callable[[torch.Tensor], torch.Tensor] | None = None  # the bare model, for the check
    mapping: BandMap | None = None

    def stats(self) -> dict[str, object]:
        """What run_superres adds to the engine's statistics."""
        return {
            "method": self.method,
            "model_id": self.model_id,
            "model_sha256": self.sha256,
            "device": str(self.device),
            "precision": self.precision,
        }


def load_dr(
    method: str,
    model_path: str | os.PathLike | None,
    device: str,
    precision: str,
    compile: bool,
    patch: int,
    overlap: int,
    tile: str | None,
    date: str | None,
    available: tuple[str, ...] = BANDS,
) -> Dr:
    """The DR of ``method`` on ``device``: its model loaded and checked against the window and
    s2.tif's bands (``available``)."""
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    if method == "bicubic":
        return Dr(method, bicubic_forward, "bicubic", "", dev, prec, compile)
    if model_path is None:
        raise ConfigError(f"{context(tile=tile, date=date)}method 'model' needs a model_path")
    where = context(tile=tile, date=date, path=model_path)
    model = load_model(model_path, device=dev)
    mapping = band_mapping(model, where, available)
    check_patch(model.meta, patch, overlap, where)
    net = maybe_compile(model.module, compile)
    forward = partial(model_forward, net, mapping)
    sc = model.spec
    return Dr(
        method,
        forward,
        model.model_id,
        model.sha256,
        dev,
        prec,
        compile,
        model_path,
        scale=sc.scale,
        deterministic=sc.deterministic,
        probe=model.module,
        mapping=mapping,
    )


def check_dr_first_batch(dr: Dr, s2_path: Path, patch: int, where: str) -> None:
    """Run the bare model on one real window of ``s2_path`` and hold its output to the sidecar
    (dtype, outputs, scale, finite) before anything is computed or written."""
    if dr.probe is None or dr.mapping is None:
        return
    net, mapping = dr.probe, dr.mapping

    def bare(x: np.ndarray) -> torch.Tensor:
        return forward_raw(lambda t: net(mapping.model_input(t)), x, dr.device, dr.precision)

    outs = len(mapping.stats)  # one per model output (dr.tif keeps the core four of them)
    want = (1, outs, patch * dr.scale, patch * dr.scale)
    declared = f"{outs} bands out at scale {dr.scale}"
    first_batch(dr.model_id, where, bare, probe_window(s2_path, patch), want, declared)


def dr_tags(
    src_tags: dict[str, str],
    tile: str | None,
    date: str | None,
    dr: Dr,
    patch: int,
    overlap: int,
    aoi: tuple[float, float, float, float] | None,
    aoi_margin: int,
) -> dict[str, object]:
    """The dr.tif tags: the source's, then how it was made (method, model, window, device, AOI)."""
    tags = {
        **src_tags,
        "TILE": tile or "",
        "DATE": date or "",
        "DR_METHOD": dr.method,
        "DR_MODEL_ID": dr.model_id,
        "DR_MODEL_SHA256": dr.sha256,
        "DR_SCALE": dr.scale,
        "DR_DETERMINISTIC": int(dr.deterministic),
        "DR_PATCH": patch,
        "DR_OVERLAP": overlap,
        "DR_DEVICE": dr.device.type,
        "DR_PRECISION": dr.precision,
        "DR_COMPILE": int(dr.compiled),
    }
    if aoi is not None:
        tags["DR_AOI"] = ",".join(str(v) for v in aoi)
        tags["DR_AOI_MARGIN"] = aoi_margin
    return tags


def log_start(tile: str | None, date: str | None, dr: Dr) -> None:
    """Log how a DR run is about to be computed."""
    what = (dr.method, dr.model_id, dr.scale, dr.device)
    log.info("superres %s %s: method=%s model=%s scale=%d device=%s", tile, date, *what)
    if not dr.deterministic:
        log.warning(
            "superres %s %s: model %s is stochastic (sidecar deterministic: false): "
            "byte-identical resume is off, a rerun recomputes every row",
            tile,
            date,
            dr.model_id,
        )


def log_done(tile: str | None, date: str | None, stats: dict[str, object]) -> None:
    """Log a finished DR run: windows, seconds and throughput."""
    windows, seconds, mpx = stats["windows"], stats["seconds"], stats["mpx_per_s"]
    log.info("superres %s %s: %d windows in %.1f s (%.2f Mpx/s)", tile, date, windows, seconds, mpx)


def run_superres(
    s2_path: str | os.PathLike,
    dst_path: str | os.PathLike,
    *,
    method: str = "model",
    model_path: str | os.PathLike | None = None,
    patch: int = 64,
    overlap: int = 16,
    batch: int = 8,
    device: str = "auto",
    tile: str | None = None,
    date: str | None = None,
    precision: str = "auto",
    compile: bool = False,
    resume: bool = True,
    cog: bool = True,
    overviews: bool = True,
    aoi: tuple[float, float, float, float] | None = None,
    aoi_margin: int = 0,
) -> dict[str, object]:
    """Super-resolve ``s2_path`` at the model's scale into ``dst_path`` (dr.tif contract);
    return run stats.

    With ``resume`` (the default) finished rows are journaled in ``<dst>.parts`` so that a
    killed or preempted run continues where it stopped (see :mod:`tilepipe.engine.journal`); a
    stochastic model (sidecar ``deterministic: false``) turns resume off, since its rows would
    not join byte-identically.
    """
    s2_path = Path(s2_path)
    if method not in METHODS:
        raise ConfigError(f"unknown superres method {method!r}: use one of {', '.join(METHODS)}")
    src_tags = check_s2(s2_path, tile, date)
    tile, date = tile or src_tags.get("TILE"), date or src_tags.get("DATE")
    available = s2_band_names(s2_path)
    dr = load_dr(
        method, model_path, device, precision, compile, patch, overlap, tile, date, available
    )
    where = context(tile=tile, date=date, path=dr.path)
    check_dr_first_batch(dr, s2_path, patch, where)
    tags = dr_tags(src_tags, tile, date, dr, patch, overlap, aoi, aoi_margin)
    log_start(tile, date, dr)
    resume = resume and dr.deterministic
    stats = run_tiled(
        s2_path,
        dst_path,
        make_predict(dr.forward, dr.device, dr.precision),
        scale=dr.scale,
        out_bands=len(BANDS),
        out_dtype="uint16",
        patch=patch,
        overlap=overlap,
        batch=batch,
        nodata_out=0,
        src_nodata=0,
        band_descriptions=list(BANDS),
        tags=tags,
        progress=progress_logger(log, f"superres {tile} {date}"),
        resume=resume,
        cog=cog,
        overviews=overviews,
        aoi=aoi,
        aoi_margin=aoi_margin,
        model_name=dr.model_id,
        where=where,
    )
    stats.update(dr.stats())
    log_done(tile, date, stats)
    return stats
