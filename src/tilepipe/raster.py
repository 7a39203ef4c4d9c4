"""Raster I/O habits shared by every step: atomic outputs, the GeoTIFF profile, orientation."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import rasterio
from affine import Affine

#: Creation options for every GeoTIFF tilepipe writes: tiled, compressed, BigTIFF when needed.
GTIFF_OPTIONS: dict[str, object] = {
    "driver": "GTiff",
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
    "compress": "deflate",
    "bigtiff": "if_safer",
    "num_threads": "all_cpus",
}


def gtiff_profile(
    *, width: int, height: int, count: int, dtype: str, crs, transform: Affine, nodata=None
) -> dict[str, object]:
    """A complete rasterio profile for a tiled, compressed GeoTIFF with a fitting predictor."""
    predictor = 3 if dtype.startswith("float") else 2
    profile = dict(GTIFF_OPTIONS)
    profile.update(
        width=width,
        height=height,
        count=count,
        dtype=dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
        predictor=predictor,
    )
    if width < 256 or height < 256:
        # GDAL requires block sizes that are multiples of 16; small rasters use 128-px blocks.
        profile["blockxsize"] = profile["blockysize"] = 128 if min(width, height) >= 128 else 16
    return profile


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    A killed or failing step therefore never leaves a half-written file where a finished one
    belongs: the temporary (``.name.tmp-XXXX``) is removed on error and is never a declared output.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.tmp-", suffix=dest.suffix, dir=dest.parent)
    os.close(fd)
    os.unlink(tmp)  # writers (GDAL) create the file themselves
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        for leftover in (tmp_path, Path(f"{tmp_path}.aux.xml")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        raise


def is_north_up(transform: Affine) -> bool:
    """True when rows run north to south without rotation (the only layout tilepipe writes)."""
    return transform.b == 0 and transform.d == 0 and transform.a > 0 and transform.e < 0


def read_tags(path: str | os.PathLike) -> dict[str, str]:
    """Return the dataset-level tags of a raster."""
    with rasterio.open(path) as src:
        return src.tags()
