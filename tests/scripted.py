"""Misbehaving TorchScript models with their sidecars, as a user could register them.

Each is a real ``torch.jit.script`` file (sidecar ``"architecture": "torchscript"``) that loads
and passes every check before compute, then goes wrong in its forward pass: non-finite output,
float64 weights, the wrong channel count, an error raised inside, the wrong output shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tilepipe.core.checksum import sha256_file
from tilepipe.models.loading import BANDS


class Poisoned(nn.Module):
    """Nearest upsampling of the first ``bands`` bands by ``scale``, with ``value`` (NaN, ±Inf)
    written into the first ``rows`` output rows of every window."""

    def __init__(self, scale: int, bands: int, value: float, rows: int) -> None:
        super().__init__()
        self.scale, self.bands, self.value, self.rows = float(scale), bands, value, rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(x[:, : self.bands], scale_factor=self.scale, mode="nearest")
        y[:, :, : self.rows] = self.value
        return y


class Raising(nn.Module):
    """A forward pass that raises, as user code with a bug does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > 0:
            raise ValueError("layer norm statistics were never loaded")
        return x


def conv_net(scale: int, bands_in: int, bands_out: int) -> nn.Module:
    """A 1x1 convolution from ``bands_in`` bands, pixel-shuffled ``scale`` times."""
    return nn.Sequential(nn.Conv2d(bands_in, bands_out * scale * scale, 1), nn.PixelShuffle(scale))


def broken_forwards(scale: int, bands_out: int) -> list:
    """Models that fail inside their forward pass, each with the words its error names."""
    return [
        pytest.param(conv_net(scale, 4, bands_out).double(), "double", id="float64-weights"),
        pytest.param(conv_net(scale, 3, bands_out), "3 channels", id="wrong-channel-count"),
        pytest.param(Raising(), "statistics were never loaded", id="raises-inside-forward"),
    ]


def sr_meta(model_id: str) -> dict:
    """The sidecar of a 10x DR model on tilepipe's bands."""
    bands = list(BANDS)
    return {"id": model_id, "bands_in": bands, "bands_out": bands, "scale": 10}


def fields_meta(model_id: str) -> dict:
    """The sidecar of a one-head fields model on tilepipe's bands."""
    return {"id": model_id, "bands_in": list(BANDS), "bands_out": ["extent_logit"], "scale": 1}


def save_scripted(module: nn.Module, path: Path, meta: dict) -> str:
    """Script ``module`` into ``path`` with its sidecar (TorchScript, sha256); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    sidecar = {**meta, "architecture": "torchscript", "sha256": sha256_file(path)}
    sidecar.setdefault("normalise", {"divide": 10000.0})
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    return str(path)
