"""tilepipe's built-in architectures: a 10x super-resolution net and a field-delineation net."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SRNet(nn.Module):
    """ESPCN-style 10x super-resolution: low-res convs, PixelShuffle, bicubic skip, projection.

    The body sees reflectance times ``gain`` (so activations are O(1)) and predicts a residual
    over bicubic. The final consistency projection adds back the nearest-upsampled difference
    between the input and the output's ``scale``×``scale`` block means, so every block mean
    equals the input exactly.
    """

    def __init__(
        self,
        bands: int = 4,
        scale: int = 10,
        features: int = 32,
        depth: int = 3,
        gain: float = 10.0,
    ):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(bands, features, 5, padding=2, padding_mode="reflect"),
            nn.LeakyReLU(0.1, inplace=True),
        ]
        for _ in range(depth - 1):
            layers += [
                nn.Conv2d(features, features, 3, padding=1, padding_mode="reflect"),
                nn.LeakyReLU(0.1, inplace=True),
            ]
        head = nn.Conv2d(features, bands * scale * scale, 3, padding=1, padding_mode="reflect")
        nn.init.zeros_(head.weight)  # start as bicubic + projection, learn the residual
        nn.init.zeros_(head.bias)
        layers.append(head)
        self.body = nn.Sequential(*layers)
        self.shuffle = nn.PixelShuffle(scale)
        self.scale = scale
        self.gain = gain

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """Map (B, C, h, w) reflectance to (B, C, h*scale, w*scale) with exact block means."""
        s = self.scale
        lr = lr.float()
        base = F.interpolate(lr, scale_factor=s, mode="bicubic", align_corners=False)
        out = base + self.shuffle(self.body(lr * self.gain)).float() / self.gain
        return out + F.interpolate(lr - F.avg_pool2d(out, s), scale_factor=s, mode="nearest")


class FieldNet(nn.Module):
    """Small fully convolutional net of dilated 3x3 convs: ``heads`` logits per pixel.

    One head is a "field extent" logit; the multitask demo model has three (extent, boundary,
    distance to boundary), named in the sidecar's ``bands_out``.
    """

    def __init__(
        self,
        bands: int = 4,
        features: int = 24,
        dilations: Sequence[int] = (1, 2, 4, 8, 1),
        gain: float = 10.0,
        heads: int = 1,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c = bands
        for d in dilations:
            layers += [
                nn.Conv2d(c, features, 3, padding=d, dilation=d, padding_mode="reflect"),
                nn.LeakyReLU(0.1, inplace=True),
            ]
            c = features
        layers.append(nn.Conv2d(c, heads, 1))
        self.body = nn.Sequential(*layers)
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, C, h, w) reflectance to (B, heads, h, w) logits."""
        return self.body(x * self.gain).float()


#: Architecture names used in the sidecar's "architecture" key.
ARCHITECTURES: dict[str, type[nn.Module]] = {"srnet": SRNet, "fieldnet": FieldNet}
