"""A demo AlphaEarth Foundations (AEF) file: 64 int8 bands, nodata −128, stored bottom-up.

Pixels hold unit vectors near a per-class centroid of the demo fields, quantised with the
signed-square formula, in the real per-zone layout ``{out_dir}/{year}/{zone}N/aef_{tile}.tiff``,
listed in an ``aef_index.parquet`` with the columns of the official index (see
:mod:`tilepipe.embeddings.aef`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.warp import transform_geom

from tilepipe.core.geoparquet import write_geoparquet
from tilepipe.core.grid import tile_grid
from tilepipe.demo.cog import write_cog
from tilepipe.demo.world import CLASSES, demo_window, pixel_classes, render_scene, tile_seed
from tilepipe.embeddings.aef import AEF_BANDS, AEF_NODATA, INDEX

AEF_DIM = AEF_BANDS


def aef_quantise(values: np.ndarray) -> np.ndarray:
    """int8 codes whose signed-square dequantisation ``(v/127.5)²·sign(v)`` gives ``values``."""
    codes = np.round(np.sign(values) * np.sqrt(np.abs(values)) * 127.5)
    return codes.clip(-127, 127).astype(np.int8)


def aef_vectors(classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(size, size, AEF_DIM) unit vectors near the centroid of each pixel's class."""
    centroids = rng.normal(0, 1, size=(len(CLASSES) + 1, AEF_DIM))
    vectors = centroids[classes] + rng.normal(0, 0.3, size=(*classes.shape, AEF_DIM))
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    return vectors


def aef_codes(vectors: np.ndarray, margin: int) -> np.ndarray:
    """(AEF_DIM, h, w) north-up int8 codes of (h, w, C) vectors inside ``margin`` px of nodata."""
    size = vectors.shape[0]
    codes = np.full((AEF_DIM, size + 2 * margin, size + 2 * margin), AEF_NODATA, dtype=np.int8)
    inner = slice(margin, -margin or None)
    codes[:, inner, inner] = aef_quantise(np.moveaxis(vectors, 2, 0))
    return codes


def _bottom_up_profile(crs: str, transform: Affine, codes: np.ndarray, margin: int) -> dict:
    """The AEF file's profile: positive y pixel size, origin at the south-west corner."""
    size = codes.shape[1] - 2 * margin
    left = transform.c - 10 * margin
    bottom = transform.f - 10 * (size + margin)
    return {
        "driver": "GTiff",
        "width": codes.shape[2],
        "height": codes.shape[1],
        "count": AEF_DIM,
        "dtype": "int8",
        "crs": crs,
        "transform": Affine(10, 0, left, 0, 10, bottom),
        "nodata": AEF_NODATA,
    }


def write_aef_demo(
    out_dir: str | Path, tile: str, year: int, *, size: int = 64, seed: int = 0, margin: int = 4
) -> dict:
    """Write one AEF-style COG over a tile's demo window, ``margin`` px of nodata around it.

    Returns the path, the window's north-up transform, its size and the float vectors
    (C, size, size) the file encodes.
    """
    grid = tile_grid(tile)
    transform, width, height = demo_window(tile, size)
    clear = render_scene(tile_seed(tile, seed), width, height, 0, cloud=False)
    vectors = aef_vectors(pixel_classes(clear, size), np.random.default_rng([seed, year, 64]))
    codes = aef_codes(vectors, margin)
    path = Path(out_dir) / str(year) / f"{grid.epsg % 100}N" / f"aef_{tile}.tiff"
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = _bottom_up_profile(grid.crs, transform, codes, margin)
    write_cog(path, np.ascontiguousarray(codes[:, ::-1, :]), profile, overview=False)
    return {
        "path": str(path),
        "transform": transform,
        "size": size,
        "vectors": np.moveaxis(vectors, 2, 0).astype(np.float32),
    }


def index_row(root: Path, path: Path) -> tuple[shapely.Polygon, dict]:
    """One index row of a COG: its WGS84 footprint and the official index's columns."""
    with rasterio.open(path) as src:
        crs, bounds, year = src.crs, src.bounds, int(path.relative_to(root).parts[0])
    utm = shapely.box(*bounds).segmentize(bounds.right - bounds.left)  # densified edges
    footprint = shapely.geometry.shape(transform_geom(crs, "EPSG:4326", utm.__geo_interface__))
    west, south, east, north = footprint.bounds
    row = {
        "path": path.relative_to(root).as_posix(),
        "year": year,
        "crs": f"EPSG:{crs.to_epsg()}",
        "utm_zone": path.parent.name,
        "utm_west": bounds.left,
        "utm_south": bounds.bottom,
        "utm_east": bounds.right,
        "utm_north": bounds.top,
        "wgs84_west": west,
        "wgs84_south": south,
        "wgs84_east": east,
        "wgs84_north": north,
    }
    return footprint, row


def write_aef_index(root: str | Path) -> Path:
    """Write ``{root}/aef_index.parquet`` listing every COG under ``{root}/{year}/{zone}/``."""
    root = Path(root)
    rows = [index_row(root, p) for p in sorted(root.glob("[0-9]*/*/*.tif*"))]
    columns = {key: [r[key] for _, r in rows] for key in (rows[0][1] if rows else {})}
    columns = {"fid": list(range(1, len(rows) + 1)), **columns}
    write_geoparquet(root / INDEX, [g for g, _ in rows], columns, "EPSG:4326")
    return root / INDEX
