"""Cloud-Optimised GeoTIFFs for the demo's assets, written through GDAL's COG driver."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile

from tilepipe.core.raster import atomic_output


def write_cog(path: Path, data: np.ndarray, profile: dict, overview: bool = True) -> None:
    """Write ``data`` as a deflated COG (256 px blocks), atomically, as the real archives do."""
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(data)
        with mem.open() as tmp, atomic_output(path) as out:
            rasterio.shutil.copy(
                tmp,
                out,
                driver="COG",
                compress="deflate",
                blocksize=256,
                overviews="auto" if overview else "none",
                resampling="nearest",
            )
