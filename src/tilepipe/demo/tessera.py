"""Demo TESSERA embeddings in geotessera 0.7's layout: int8 0.1° cells, scales, landmasks and
the two GeoParquet registries (``registry.parquet``, ``landmasks.parquet``) with the columns
``geotessera-registry`` writes (``geotessera/registry_cli.py``).

Each 10 m pixel holds a noisy copy of its class's centroid (road pixels a class of their own),
so a classifier trained on the demo labels can learn the crops from the embeddings.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer

from tilepipe.core.checksum import sha256_file
from tilepipe.core.geoparquet import write_geoparquet
from tilepipe.demo.world import CLASSES, Scene, pixel_classes
from tilepipe.embeddings.tessera import (
    CELL_DEG,
    LANDMASKS,
    REGISTRY,
    cell_files,
    cell_name,
    grid_int,
)

EMBEDDING_DIM = 128


def class_centroids(seed: int) -> np.ndarray:
    """(classes + 1, EMBEDDING_DIM) centroids, the last one for roads and hedges."""
    return np.random.default_rng(seed).normal(0, 1, size=(len(CLASSES) + 1, EMBEDDING_DIM))


def pixel_vectors(
    scene: Scene, size: int, centroids: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(size, size, EMBEDDING_DIM) float32 embeddings: each pixel's class centroid plus noise."""
    noise = rng.normal(0, 0.35, size=(size, size, EMBEDDING_DIM))
    return (centroids[pixel_classes(scene, size)] + noise).astype(np.float32)


def _cell_window(
    lon0: float, lat0: float, from_ll: Transformer, transform: Affine, size: int
) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1) of a 0.1° cell on the window's 10 m grid, clipped to the window.

    Real cells are in their own UTM zone; the demo's cells share the tile's zone.
    """
    left, top = transform.c, transform.f
    xs, ys = from_ll.transform(
        [lon0, lon0 + CELL_DEG, lon0, lon0 + CELL_DEG],
        [lat0, lat0, lat0 + CELL_DEG, lat0 + CELL_DEG],
    )
    c0 = max(0, math.floor((min(xs) - left) / 10))
    c1 = min(size, math.ceil((max(xs) - left) / 10))
    r0 = max(0, math.floor((top - max(ys)) / 10))
    r1 = min(size, math.ceil((top - min(ys)) / 10))
    return r0, r1, c0, c1


def cells_over(
    crs: str, transform: Affine, size: int
) -> Iterator[tuple[str, tuple[int, int, int, int]]]:
    """(name, (r0, r1, c0, c1)) of each 0.1° cell meeting the window, west to east."""
    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    from_ll = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    left, top = transform.c, transform.f
    right, bottom = left + 10 * size, top - 10 * size
    lons, lats = to_ll.transform([left, right, left, right], [top, top, bottom, bottom])
    for lon0 in np.arange(math.floor(min(lons) * 10) / 10, max(lons), CELL_DEG):
        for lat0 in np.arange(math.floor(min(lats) * 10) / 10, max(lats), CELL_DEG):
            r0, r1, c0, c1 = _cell_window(lon0, lat0, from_ll, transform, size)
            if c1 > c0 and r1 > r0:
                yield cell_name(lon0 + CELL_DEG / 2, lat0 + CELL_DEG / 2), (r0, r1, c0, c1)


def quantise(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes and float32 per-pixel scales whose product is ``block`` (H, W, C)."""
    scales = (np.abs(block).max(axis=2) / 127.0).astype(np.float32)
    raw = np.round(block / scales[..., None]).clip(-127, 127).astype(np.int8)
    return raw, scales


def write_landmask(path: Path, crs: str, transform: Affine, height: int, width: int) -> None:
    """An all-land mask: the georeference of a cell's arrays."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="uint8",
        crs=crs,
        transform=transform,
        compress="deflate",
    ) as dst:
        dst.write(np.ones((1, height, width), dtype=np.uint8))


def write_cell(
    root: Path, year: int, name: str, block: np.ndarray, crs: str, transform: Affine
) -> list[str]:
    """Write one cell's embeddings, scales and landmask where the reader looks for them.

    Returns their paths relative to ``root``, in that order. The landmask is shared by every
    year (as geotessera's are); the last year written defines it.
    """
    raw, scales = quantise(block)
    files = cell_files(name, year)
    for rel in files.values():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    np.save(root / files["embeddings"], raw)
    np.save(root / files["scales"], scales)
    write_landmask(root / files["landmask"], crs, transform, *block.shape[:2])
    return [files["embeddings"], files["scales"], files["landmask"]]


def write_tessera(
    root: Path, crs: str, year: int, vectors: np.ndarray, transform: Affine
) -> list[tuple[int, str]]:
    """Write the cells of a window's embeddings; return their (year, name)."""
    cells = []
    for name, (r0, r1, c0, c1) in cells_over(crs, transform, vectors.shape[0]):
        cell_transform = transform @ Affine.translation(c0, r0)
        write_cell(root, year, name, vectors[r0:r1, c0:c1], crs, cell_transform)
        cells.append((year, name))
    return cells


def _centre(name: str) -> tuple[float, float]:
    lon, lat = name.removeprefix("grid_").split("_")
    return float(lon), float(lat)


def _points(lons: list[float], lats: list[float]) -> list:
    return [shapely.Point(lon, lat) for lon, lat in zip(lons, lats, strict=True)]


def registry_columns(root: Path, cells: list[tuple[int, str]]) -> dict[str, list]:
    """``registry.parquet`` columns of ``cells``: centre, year, SHA-256 and size of both files."""
    cols: dict[str, list] = {k: [] for k in ("lat", "lon", "year", "hash", "scales_hash")}
    cols.update(file_size=[], scales_size=[], lon_i=[], lat_i=[])
    for year, name in sorted(cells):
        lon, lat = _centre(name)
        files = cell_files(name, year)
        emb, scales = root / files["embeddings"], root / files["scales"]
        cols["lat"].append(lat), cols["lon"].append(lon), cols["year"].append(int(year))
        cols["hash"].append(sha256_file(emb)), cols["scales_hash"].append(sha256_file(scales))
        cols["file_size"].append(emb.stat().st_size)
        cols["scales_size"].append(scales.stat().st_size)
        cols["lon_i"].append(grid_int(lon)), cols["lat_i"].append(grid_int(lat))
    return cols


def landmask_columns(root: Path, names: list[str]) -> dict[str, list]:
    """``landmasks.parquet`` columns: centre, SHA-256 and size of each landmask GeoTIFF."""
    cols: dict[str, list] = {k: [] for k in ("lat", "lon", "hash", "file_size", "lon_i", "lat_i")}
    for name in sorted(set(names)):
        lon, lat = _centre(name)
        path = root / cell_files(name, 0)["landmask"]
        cols["lat"].append(lat), cols["lon"].append(lon), cols["hash"].append(sha256_file(path))
        cols["file_size"].append(path.stat().st_size)
        cols["lon_i"].append(grid_int(lon)), cols["lat_i"].append(grid_int(lat))
    return cols


def write_registry(root: Path, cells: list[tuple[int, str]]) -> None:
    """Write ``registry.parquet`` and ``landmasks.parquet`` (GeoParquet, points in EPSG:4326)."""
    tiles = registry_columns(root, cells)
    write_geoparquet(root / REGISTRY, _points(tiles["lon"], tiles["lat"]), tiles, "EPSG:4326")
    masks = landmask_columns(root, [name for _, name in cells])
    write_geoparquet(root / LANDMASKS, _points(masks["lon"], masks["lat"]), masks, "EPSG:4326")
