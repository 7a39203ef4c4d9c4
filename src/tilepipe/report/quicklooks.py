"""PNG quicklooks of one scene: true-colour s2 and dr, and the fields drawn over dr."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyogrio.errors
import pyogrio.raw
import rasterio
import shapely
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import rasterize

from tilepipe.core.errors import InputError, context
from tilepipe.core.inputs import S2, check_raster, dr_kind_of
from tilepipe.core.raster import atomic_output, atomic_outputs

RGB_BANDS = (3, 2, 1)  # B04, B03, B02 in the s2/dr band order B02, B03, B04, B08


def _read_rgb(path: str | Path, size: int) -> tuple[np.ndarray, Affine]:
    """Read the RGB bands decimated to at most ``size`` px on the long side (overview-friendly)."""
    with rasterio.open(path) as src:
        factor = max(1.0, max(src.width, src.height) / size)
        shape = (max(1, round(src.height / factor)), max(1, round(src.width / factor)))
        data = src.read(RGB_BANDS, out_shape=(3, *shape), resampling=Resampling.average)
        transform = src.transform @ Affine.scale(src.width / shape[1], src.height / shape[0])
        nodata = src.nodata
    return np.ma.masked_equal(data, nodata) if nodata is not None else np.ma.asarray(
        data
    ), transform


CLOUD_DN = 2000  # mean visible reflectance above 0.2: cloud or snow, left out of the stretch


def stretch(rgb: np.ma.MaskedArray, lo: float = 2, hi: float = 98) -> np.ndarray:
    """Percentile stretch to uint8 over the clear land pixels; clouds saturate, nodata is black."""
    brightness = rgb.mean(axis=0)
    clear = ~np.ma.getmaskarray(brightness) & (brightness.filled(0) < CLOUD_DN)
    valid = rgb.data[:, clear] if clear.any() else rgb.compressed()
    if valid.size == 0:
        return np.zeros(rgb.shape, dtype=np.uint8)
    p_lo, p_hi = np.percentile(valid, [lo, hi])
    scaled = (rgb.filled(p_lo).astype(np.float32) - p_lo) / max(p_hi - p_lo, 1e-6)
    out = (np.clip(scaled, 0, 1) * 255).astype(np.uint8)
    out[:, np.ma.getmaskarray(rgb).any(axis=0)] = 0
    return out


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write a (3, H, W) uint8 array as PNG, atomically."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with (
            atomic_output(path) as tmp,
            rasterio.open(
                tmp,
                "w",
                driver="PNG",
                width=rgb.shape[2],
                height=rgb.shape[1],
                count=3,
                dtype="uint8",
            ) as dst,
        ):
            dst.write(rgb)


def _read_outlines(fields: str | Path) -> np.ndarray | None:
    """The WKB geometries of a fields file; an unreadable one is an InputError naming it."""
    try:
        return pyogrio.raw.read(fields)[2]
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise InputError(f"{context(path=fields)}cannot read the fields ({exc})") from exc


def quicklooks(
    s2: str | Path,
    dr: str | Path,
    fields: str | Path,
    *,
    rgb: str | Path,
    dr_png: str | Path,
    fields_png: str | Path,
    size: int = 800,
) -> None:
    """Write the RGB quicklook of s2, the DR quicklook and the DR with field outlines in yellow.

    The inputs are checked first (s2.tif and dr.tif kinds); the three PNGs appear together.
    """
    check_raster(s2, S2, grid=False)
    check_raster(dr, dr_kind_of(dr), grid=False)
    s2_rgb, _ = _read_rgb(s2, size)
    dr_rgb, transform = _read_rgb(dr, size)
    dr_img = stretch(dr_rgb)
    geoms = _read_outlines(fields)
    overlay = dr_img.copy()
    if geoms is not None and len(geoms):
        outlines = shapely.boundary(shapely.from_wkb(geoms))
        mask = rasterize(
            ((g, 1) for g in outlines if not g.is_empty),
            out_shape=overlay.shape[1:],
            transform=transform,
            all_touched=True,
            dtype="uint8",
        ).astype(bool)
        overlay[:, mask] = np.array([255, 220, 0], dtype=np.uint8)[:, None]
    with atomic_outputs(rgb, dr_png, fields_png) as temps:
        for tmp, image in zip(temps, (stretch(s2_rgb), dr_img, overlay), strict=True):
            write_png(tmp, image)
