"""Demo TESSERA embeddings in geotessera 0.7's layout: int8 0.1° cells, scales, landmasks and
the two GeoParquet registries (``registry.parquet``, ``landmasks.parquet``) with the columns
``geotessera-registry`` writes (``geotessera/registry_cli.py``).

Each 10 m pixel holds a noisy copy of its class's centroid (road pixels a class of their own),
so a classifier trained on the demo labels can learn the crops from the embeddings.
"""

from __future__ import annotations

import math
import warnings
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
    valid_scales,
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


# -- the Zarr store of geotessera >= 0.8 --------------------------------------------------------

SHARD = 4096  # zone grids are whole shards (geotessera/zarr.py, SHARD_SIZE)
INNER = 32  # inner chunk side
SOURCE_COOP = "tessera-sc"  # the tree geotessera >= 0.8 reads, as on Source Cooperative
DATASET = "v1"  # its npy/, landmasks/ and zarr/ directory of the demo's one dataset
STORE_DIR = f"{SOURCE_COOP}/zarr/{DATASET}"
_BLOSC = {"cname": "zstd", "clevel": 3}


def _store_root_attrs(dimensions: int) -> dict:
    """The root's ``geoemb:`` attributes, as ``geotessera.zarr.init_store`` writes them."""
    return {
        "geoemb:type": "pixel",
        "geoemb:dimensions": dimensions,
        "geoemb:model": "https://geotessera.org/model/1.0",
        "geoemb:data_type": "int8",
        "geoemb:gsd": 10.0,
        "geoemb:spatial_layout": "utm_zones",
        "geoemb:build_version": "tilepipe-demo",
        "geoemb:quantization": {
            "method": "per_pixel_scale",
            "original_dtype": "float32",
            "quantized_dtype": "int8",
            "scale": {"type": "array", "array_name": "scales", "nodata": "+inf"},
        },
    }


def _cell_footprint(name: str, epsg: int) -> tuple[float, float, float, float]:
    """(min x, min y, max x, max y) of a whole 0.1° cell in the zone's northern UTM CRS."""
    lon, lat = _centre(name)
    proj = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
    half = CELL_DEG / 2
    xs, ys = proj.transform(
        [lon - half, lon + half, lon - half, lon + half],
        [lat + half, lat + half, lat - half, lat - half],
    )
    return min(xs), min(ys), max(xs), max(ys)


def zone_grid(names: list[str], epsg: int) -> tuple[Affine, int, int]:
    """(transform, height, width) of a zone grid: the cells' union, 10 m-snapped, whole shards."""
    boxes = [_cell_footprint(n, epsg) for n in names]
    left = math.floor(min(b[0] for b in boxes) / 10) * 10
    top = math.ceil(max(b[3] for b in boxes) / 10) * 10
    right = math.ceil(max(b[2] for b in boxes) / 10) * 10
    bottom = math.floor(min(b[1] for b in boxes) / 10) * 10
    height = math.ceil(round((top - bottom) / 10) / SHARD) * SHARD
    width = math.ceil(round((right - left) / 10) / SHARD) * SHARD
    return Affine(10.0, 0.0, left, 0.0, -10.0, top), height, width


def _create_zone(root, zone: int, years: list[int], transform: Affine, height: int, width: int):
    """A ``utm{zone}`` group with empty arrays, shaped and chunked as geotessera's."""
    from zarr.codecs import BloscCodec

    group = root.create_group(f"utm{zone:02d}")
    t = len(years)
    blosc = BloscCodec(**_BLOSC)
    group.create_array(
        "embeddings",
        shape=(t, EMBEDDING_DIM, height, width),
        chunks=(1, EMBEDDING_DIM, INNER, INNER),
        shards=(1, EMBEDDING_DIM, SHARD, SHARD),
        dtype=np.int8,
        fill_value=np.int8(0),
        compressors=blosc,
        dimension_names=["time", "band", "y", "x"],
    )
    group.create_array(
        "scales",
        shape=(t, height, width),
        chunks=(1, INNER, INNER),
        shards=(1, SHARD, SHARD),
        dtype=np.float32,
        fill_value=np.float32("inf"),
        compressors=blosc,
        dimension_names=["time", "y", "x"],
    )
    coords = {
        "x": transform.c + (np.arange(width) + 0.5) * 10.0,
        "y": transform.f - (np.arange(height) + 0.5) * 10.0,
        "time": np.array(years, dtype=np.int32),
        "band": np.arange(EMBEDDING_DIM, dtype=np.int32),
    }
    for name, values in coords.items():
        arr = group.create_array(
            name,
            shape=values.shape,
            dtype=values.dtype,
            fill_value=0,
            compressors=blosc,
            dimension_names=[name],
        )
        arr[:] = values
    group.attrs.update(
        {
            "spatial:dimensions": ["y", "x"],
            "spatial:transform_type": "affine",
            "spatial:transform": list(transform)[:6],
            "spatial:shape": [height, width],
            "spatial:registration": "pixel",
            "proj:code": f"EPSG:{32600 + zone}",
        }
    )
    return group


def write_store(root: Path, cells: list[tuple[int, str]], store: Path) -> None:
    """Build ``store`` from the cells under ``root``, as ``geotessera-registry zarr-fill`` does.

    A cell's pixels land at ``floor`` of its landmask origin's offset in its zone grid; water
    (landmask 0) and unusable scales are written as NaN scales, unwritten pixels stay +inf.
    """
    import zarr

    by_zone: dict[int, list[tuple[int, str]]] = {}
    for year, name in cells:
        by_zone.setdefault(_cell_zone(name), []).append((year, name))
    years = sorted({int(y) for y, _ in cells})
    top = zarr.open_group(store, mode="w", zarr_format=3)
    top.attrs.update(_store_root_attrs(EMBEDDING_DIM))
    for zone, zcells in sorted(by_zone.items()):
        transform, height, width = zone_grid(sorted({n for _, n in zcells}), 32600 + zone)
        group = _create_zone(top, zone, years, transform, height, width)
        for year, name in zcells:
            _fill_cell(group, root, int(year), name, years.index(int(year)), transform)
    with warnings.catch_warnings():  # "not part of the v3 spec": geotessera consolidates too
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        zarr.consolidate_metadata(store)


def _cell_zone(name: str) -> int:
    """UTM zone of a cell, by its centre's longitude (geotessera's ``tile_zone``)."""
    lon, _ = _centre(name)
    return max(1, min(60, math.floor((lon + 180) / 6) + 1))


def _fill_cell(group, root: Path, year: int, name: str, t: int, transform: Affine) -> None:
    """Copy one cell's codes and scales into its place in the zone group."""
    files = cell_files(name, year)
    raw = np.load(root / files["embeddings"])
    scales = np.load(root / files["scales"]).astype(np.float32)
    with rasterio.open(root / files["landmask"]) as lm:
        land, cell_t, epsg = lm.read(1), lm.transform, lm.crs.to_epsg()
    north = cell_t.f - (10_000_000.0 if epsg > 32700 else 0.0)
    row = math.floor((transform.f - north) / 10)
    col = math.floor((cell_t.c - transform.c) / 10)
    scales[land == 0] = np.nan
    scales[~valid_scales(scales)] = np.nan
    h, w = scales.shape
    group["embeddings"][t, :, row : row + h, col : col + w] = raw.transpose(2, 0, 1)
    group["scales"][t, row : row + h, col : col + w] = scales


def write_source_coop(root: Path, cells: list[tuple[int, str]], out: Path) -> Path:
    """Lay the cells under ``root`` out as geotessera >= 0.8 reads them; return the npy dataset dir.

    ``{out}/npy/v1/`` holds ``manifest.parquet`` (the columns of ``geotessera-registry
    file-scan``: year, lon, lat, grid_size, scales_size, lon_i, lat_i; sizes only) and the
    ``{year}/grid_X_Y/`` tiles, ``{out}/landmasks/v1/`` the landmasks and their registry.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    npy, masks = out / "npy" / DATASET, out / "landmasks" / DATASET
    rows: dict[str, list] = {k: [] for k in ("year", "lon", "lat", "grid_size", "scales_size")}
    rows.update(lon_i=[], lat_i=[])
    for year, name in sorted(cells):
        src, dst = cell_files(name, year), f"{year}/{name}"
        (npy / dst).mkdir(parents=True, exist_ok=True)
        for role, suffix in (("embeddings", ".npy"), ("scales", "_scales.npy")):
            (npy / dst / f"{name}{suffix}").write_bytes((root / src[role]).read_bytes())
        lon, lat = _centre(name)
        rows["year"].append(int(year)), rows["lon"].append(lon), rows["lat"].append(lat)
        rows["grid_size"].append((npy / dst / f"{name}.npy").stat().st_size)
        rows["scales_size"].append((npy / dst / f"{name}_scales.npy").stat().st_size)
        rows["lon_i"].append(grid_int(lon)), rows["lat_i"].append(grid_int(lat))
    pq.write_table(pa.table(rows), npy / "manifest.parquet")
    masks.mkdir(parents=True, exist_ok=True)
    names = sorted({n for _, n in cells})
    for name in names:
        (masks / f"{name}.tiff").write_bytes((root / cell_files(name, 0)["landmask"]).read_bytes())
    cols = landmask_columns(root, names)
    cols.pop("hash")
    pq.write_table(pa.table(cols), masks / LANDMASKS)
    return npy
