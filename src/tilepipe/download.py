"""Download: read a scene's band assets over the tile window, harmonise, write s2.tif and scl.tif.

Reads are windowed (only the tile window is fetched, through GDAL's /vsicurl/ for remote COGs),
every band lands on the tile's 10 m grid, and the baseline-04.00 reflectance offset is removed so
that every scene, old or new, carries the same reflectance scale.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import from_bounds

from tilepipe.errors import InputError, context
from tilepipe.grid import tile_grid
from tilepipe.raster import atomic_output, gtiff_profile, is_north_up

log = logging.getLogger(__name__)

REFLECTANCE_BANDS = ("B02", "B03", "B04", "B08")


def harmonise(dn: np.ndarray, offset_dn: int) -> np.ndarray:
    """Remove the BOA_ADD_OFFSET from L2A digital numbers; 0 stays nodata, valid stays ≥ 1."""
    if offset_dn == 0:
        return dn.astype(np.uint16, copy=False)
    out = np.clip(dn.astype(np.int32) - offset_dn, 1, 65535).astype(np.uint16)
    out[dn == 0] = 0
    return out


def read_asset(
    href: str, transform: Affine, width: int, height: int, crs: str, *, where: str
) -> np.ndarray:
    """Read band 1 of an asset over a target 10 m window (nearest resampling, 0 outside)."""
    try:
        with rasterio.open(href) as src:
            if src.crs is None or src.crs.to_string() != crs:
                raise InputError(f"{where}asset CRS {src.crs} differs from the tile's {crs}")
            if not is_north_up(src.transform):
                raise InputError(f"{where}asset is not north-up (transform {tuple(src.transform)})")
            left, top = transform.c, transform.f
            right, bottom = left + transform.a * width, top + transform.e * height
            window = from_bounds(left, bottom, right, top, src.transform)
            return src.read(
                1,
                window=window,
                out_shape=(height, width),
                resampling=Resampling.nearest,
                boundless=True,
                fill_value=0,
            )
    except RasterioError as exc:
        raise InputError(f"{where}cannot read asset: {exc}") from exc


def download_scene(
    row: dict[str, str],
    s2_dst: str | Path,
    scl_dst: str | Path,
    *,
    window: tuple[int, int, int, int] | None = None,
) -> dict[str, object]:
    """Write ``s2.tif`` and ``scl.tif`` for one manifest row; return what was applied.

    ``window`` is (col_off, row_off, width, height) in the tile's 10 m pixels; None = full tile.
    """
    tile, date = row["tile"], row["date"]
    grid = tile_grid(tile)
    transform, width, height = (
        grid.window(*window) if window else (grid.transform, grid.size, grid.size)
    )
    hrefs = json.loads(row["assets"])
    offset = int(row["boa_offset_dn"])

    bands = []
    for band in REFLECTANCE_BANDS:
        where = context(tile, date, hrefs.get(band, f"<{band} missing>"))
        if band not in hrefs:
            raise InputError(f"{where}band {band} has no asset in the manifest")
        bands.append(read_asset(hrefs[band], transform, width, height, grid.crs, where=where))
    dn = np.stack(bands)
    if not dn.any():
        raise InputError(f"{context(tile, date)}all reflectance pixels are nodata in the window")
    s2 = harmonise(dn, offset)
    s2[:, (dn == 0).any(axis=0)] = 0  # a pixel missing in any band is nodata in all
    scl = read_asset(
        hrefs["SCL"], transform, width, height, grid.crs, where=context(tile, date, hrefs["SCL"])
    ).astype(np.uint8)

    applied = (
        f"subtracted BOA_ADD_OFFSET {offset} DN (baseline {row['baseline']})"
        if offset
        else f"none (baseline {row['baseline']} has no offset)"
    )
    tags = {
        "TILE": tile,
        "DATE": date,
        "SOURCE_ITEM": row["item_id"],
        "SOURCE_COLLECTION": row["collection"],
        "PROCESSING_BASELINE": row["baseline"],
        "HARMONISATION": applied,
        "REFLECTANCE_SCALE": "0.0001",
    }
    profile = gtiff_profile(
        width=width,
        height=height,
        count=4,
        dtype="uint16",
        crs=grid.crs,
        transform=transform,
        nodata=0,
    )
    with atomic_output(s2_dst) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(s2)
        dst.update_tags(**tags)
        for i, band in enumerate(REFLECTANCE_BANDS, start=1):
            dst.set_band_description(i, band)
    profile.update(count=1, dtype="uint8", predictor=2)
    with atomic_output(scl_dst) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(scl[None])
        dst.update_tags(**tags)
        dst.set_band_description(1, "SCL")
    log.info("%s%dx%d px, harmonisation: %s", context(tile, date), width, height, applied)
    return {"width": width, "height": height, "harmonisation": applied}
