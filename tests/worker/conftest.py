"""Scenes for the warm worker and GPU batches: small demo scenes as s2.tif, the demo DR model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from tilepipe.core.raster import gtiff_profile
from tilepipe.demo.world import BANDS, render_scene

from ..conftest import REPO

MODEL = str(REPO / "models" / "dr_demo.pt")
TILEPIPE = str(Path(sys.executable).parent / "tilepipe")


def write_scene(path: Path, side: int, seed: int = 7) -> str:
    """A demo scene of ``side``² 10 m pixels as s2.tif (the tags a download writes)."""
    scene = render_scene(seed, side, side, 1, cloud=False)
    dn = np.clip(np.rint(scene.lr * 10000), 1, 65535).astype(np.uint16)
    profile = gtiff_profile(
        width=side,
        height=side,
        count=4,
        dtype="uint16",
        crs="EPSG:32633",
        transform=Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5300000.0),
        nodata=0,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn)
        dst.descriptions = BANDS
        dst.update_tags(TILE="33UXP", DATE="2022-06-21", SOURCE_ITEM="S2B_33UXP_20220621_0_L2A")
    return str(path)


def superres_argv(s2: str, out: str) -> list[str]:
    """The superres command line of one scene with the demo model on the CPU."""
    return [
        "superres", "--tile", "33UXP", "--date", "2022-06-21", "--s2", s2, "--out", out,
        "--model", MODEL, "--device", "cpu",
    ]  # fmt: skip


def env_without_worker(**extra: str) -> dict[str, str]:
    """This process's environment without a worker, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILEPIPE_WORKER")}
    return {**env, **extra}


@pytest.fixture
def scene(tmp_path) -> str:
    """A 40² px demo scene."""
    return write_scene(tmp_path / "s2.tif", 40)
