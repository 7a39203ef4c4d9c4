"""``tilepipe model check``: a model's sidecar, one synthetic batch, its speed and memory."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from tilepipe.core.errors import ModelError, context
from tilepipe.engine.model import FLOAT_DTYPES, non_finite
from tilepipe.models.loading import LoadedModel, check_patch, load_model


@dataclass(frozen=True)
class CheckResult:
    """What ``model check`` measured: output shape, throughput (output Mpx/s) and peak memory."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    seconds_per_batch: float
    mpx_per_s: float
    peak_mb: float


def synthetic_batch(model: LoadedModel, batch: int, patch: int, seed: int = 0) -> torch.Tensor:
    """A batch of reflectance-like windows in the model's input units (0..0.5 before dividing)."""
    bands = model.spec.channels_in  # bands_in x dates, date after date
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.5, (batch, bands, patch, patch)).astype(np.float32)
    return torch.from_numpy(x * np.float32(model.divide))


def peak_mb(device: torch.device) -> float:
    """Peak memory in MB: the GPU's allocator peak, or this process's peak RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def run_check(model: LoadedModel, batch: int, patch: int, repeats: int = 3) -> CheckResult:
    """Run synthetic batches; refuse output of the wrong shape or with non-finite values."""
    meta, where = model.meta, context(path=model.path)
    check_patch(meta, patch, 0, where)
    scale = int(meta["scale"])
    x = synthetic_batch(model, batch, patch).to(model.device)
    want = (batch, len(meta["bands_out"]), patch * scale, patch * scale)
    timings = []
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first call warms up (allocations, lazy init)
            started = time.perf_counter()
            y = model.module(model.spec.normalise.forward(x))
            if model.device.type == "cuda":
                torch.cuda.synchronize(model.device)
            timings.append(time.perf_counter() - started)
    if y.dtype not in FLOAT_DTYPES:
        raise ModelError(
            f"{where}model {model.model_id} returned dtype {y.dtype}, not floating point"
        )
    if tuple(y.shape) != want:
        raise ModelError(
            f"{where}model {model.model_id} returned shape {tuple(y.shape)} for input "
            f"{tuple(x.shape)}, its sidecar declares {want} (bands_out x scale {scale})"
        )
    if not torch.isfinite(y).all():
        bad = non_finite(y.float().cpu().numpy())
        raise ModelError(f"{where}model {model.model_id} returned non-finite values ({bad})")
    seconds = float(np.median(timings[1:]))
    mpx = batch * (patch * scale) ** 2 / 1e6
    return CheckResult(
        tuple(x.shape), tuple(y.shape), seconds, mpx / seconds, peak_mb(model.device)
    )


def declared(meta: dict) -> list[tuple[str, str]]:
    """The sidecar's declarations as (name, value) lines for a person to read."""
    keys = ("id", "architecture", "bands_in", "dates", "bands_out", "activation", "roles")
    keys += ("scale", "normalise", "patch", "trained_by")
    lines = [(k, str(meta[k])) for k in keys if k in meta]
    lines.append(("deterministic", str(meta.get("deterministic", True)).lower()))
    if meta.get("export_input_shape"):
        lines.append(("traced input", str(meta["export_input_shape"])))
    return lines


def check_model(path: str, device: str = "auto", batch: int = 4, patch: int = 64) -> str:
    """Load ``path``, run synthetic batches on ``device``; return the report to print."""
    model = load_model(path, device=device)
    result = run_check(model, batch, patch)
    lines = [f"model {path}"]
    lines += [f"  {k:<14}{v}" for k, v in declared(model.meta)]
    lines += [
        f"  {'sha256':<14}{model.sha256}",
        f"  {'device':<14}{model.device}",
        f"  {'batch':<14}{result.input_shape} -> {result.output_shape}, finite",
        f"  {'speed':<14}{result.mpx_per_s:.3g} Mpx/s output "
        f"({result.seconds_per_batch * 1000:.1f} ms per batch)",
        f"  {'peak memory':<14}{result.peak_mb:.0f} MB "
        f"({'GPU allocator' if model.device.type == 'cuda' else 'process RSS'})",
    ]
    return "\n".join(lines)
