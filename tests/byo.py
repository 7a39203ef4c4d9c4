"""Small randomly initialised user models, written by the existing routes with their sidecars.

The DR model is x4 on B04 B03 B02 B08 (SEN2SR's order), divided by 10000, saved as a
``torch.export`` program; the field model takes the same bands and gives three softmax classes
(background, field, boundary), as FTW's do. Both are real files a user could register.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from tilepipe.core.checksum import sha256_file
from tilepipe.models.loading import EXPORT, TORCHSCRIPT
from tilepipe.models.nets import SRNet

#: SEN2SR's band order: red, green, blue, near infrared.
RGBN = ["B04", "B03", "B02", "B08"]


def write_sidecar(path: Path, **meta) -> Path:
    """Write the sidecar of ``path`` with the weights' SHA-256; return the weights path."""
    meta = {"normalise": {"divide": 10000.0}, **meta, "sha256": sha256_file(path)}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def x4_net(seed: int = 0) -> SRNet:
    """A x4 SRNet with a random residual head (its block means still equal its input)."""
    torch.manual_seed(seed)
    net = SRNet(scale=4, features=8, depth=2)
    nn.init.normal_(net.body[-1].weight, std=0.01)
    return net.eval()


def export_x4(path: Path, **over) -> Path:
    """A x4 DR model on B04 B03 B02 B08 as a torch.export program with a dynamic batch."""
    program = torch.export.export(
        x4_net(),
        (torch.rand(2, 4, 16, 16),),
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},),
    )
    torch.export.save(program, str(path))
    meta = {
        "id": "sr-x4",
        "architecture": EXPORT,
        "bands_in": RGBN,
        "bands_out": RGBN,
        "scale": 4,
        "patch": {"exact": 16},
    }
    return write_sidecar(path, **{**meta, **over})


class ThreeClass(nn.Module):
    """Background / field / boundary logits, a stand-in FTW model set by hand: a pixel is field
    where input ``nir`` (B08, the 4th; window B's B08, the 8th, of a two-date model) is above
    ``cut`` in reflectance, background below it."""

    def __init__(
        self, cut: float = 0.175, gain: float = 100.0, channels: int = 4, nir: int = 3
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 3, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, nir] = -gain
            self.conv.weight[1, nir] = gain
            self.conv.bias.copy_(torch.tensor([gain * cut, -gain * cut, -20.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def script_two_date(path: Path, **over) -> Path:
    """The two-date softmax field model as TorchScript (sidecar ``dates: 2``): field where
    window B's B08 is bright, whatever window A shows."""
    torch.jit.save(torch.jit.script(ThreeClass(channels=8, nir=7).eval()), str(path))
    meta = {
        "id": "ftw-two-date",
        "architecture": TORCHSCRIPT,
        "bands_in": RGBN,
        "dates": 2,
        "bands_out": ["background", "field", "boundary"],
        "scale": 1,
        "activation": "softmax",
        "roles": {"extent": "field", "boundary": "boundary"},
        "normalise": {"divide": 10000.0},
    }
    return write_sidecar(path, **{**meta, **over})


def script_three_class(path: Path, **over) -> Path:
    """The three-class softmax field model as TorchScript, roles named in its sidecar."""
    torch.jit.save(torch.jit.script(ThreeClass().eval()), str(path))
    meta = {
        "id": "ftw-like",
        "architecture": TORCHSCRIPT,
        "bands_in": RGBN,
        "bands_out": ["background", "field", "boundary"],
        "scale": 1,
        "activation": "softmax",
        "roles": {"extent": "field", "boundary": "boundary"},
    }
    return write_sidecar(path, **{**meta, **over})
