"""The embedded demo campaign: a synthetic, physically shaped Sentinel-2 world generated offline.

One function renders a scene of fields (crops with distinct spectra and seasons), roads and
hedges between them, and clouds; another writes a whole campaign from it: a static STAC catalog of
L2A-like items with COG assets per band, TESSERA-layout embeddings and labelled field polygons.
Everything is derived from a seed, so tests, benchmarks and the demo see the same world.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pystac
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import Transformer
from rasterio.io import MemoryFile
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape
from skimage.filters import gaussian
from skimage.measure import regionprops

from tilepipe.core.checksum import sha256_file
from tilepipe.core.grid import tile_grid
from tilepipe.core.raster import atomic_output

BANDS = ("B02", "B03", "B04", "B08")
CLASSES = ("wheat", "maize", "rapeseed", "sugarbeet", "grassland")
EMBEDDING_DIM = 128
DEMO_TILES = ("33UXP", "31UFS")
DEMO_DATES = ("2022-01-12", "2022-06-21")
DEMO_OFFSET = 5000  # the demo's window starts at this row and column of each tile's 10 m grid
BASELINE_OFFSET_DATE = Date(2022, 1, 25)  # baseline 04.00: BOA_ADD_OFFSET = -1000 from this day

# Surface reflectance (B02, B03, B04, B08) per class for a winter (0) and a summer (1) date:
# winter cereals and rapeseed are green in January while maize and beet fields are bare soil;
# in June maize and beet have the strongest NIR, ripening wheat the weakest.
SIGNATURES = np.array(
    [
        [[0.040, 0.065, 0.050, 0.260], [0.050, 0.080, 0.075, 0.300]],  # wheat
        [[0.085, 0.105, 0.130, 0.200], [0.030, 0.060, 0.030, 0.460]],  # maize
        [[0.030, 0.060, 0.040, 0.360], [0.060, 0.090, 0.070, 0.280]],  # rapeseed
        [[0.095, 0.115, 0.145, 0.215], [0.025, 0.070, 0.028, 0.520]],  # sugarbeet
        [[0.040, 0.070, 0.050, 0.310], [0.040, 0.085, 0.050, 0.360]],  # grassland
    ],
    dtype=np.float32,
)
ROAD = np.array([0.100, 0.110, 0.120, 0.150], dtype=np.float32)
HEDGE = np.array([0.030, 0.050, 0.030, 0.300], dtype=np.float32)
CLOUD = np.array([0.450, 0.460, 0.480, 0.520], dtype=np.float32)


@dataclass
class Scene:
    """A rendered scene: 1 m truth, the 10 m observation and what is where."""

    hr: np.ndarray  # (4, H*scale, W*scale) float32 reflectance at 1 m, bands B02,B03,B04,B08
    lr: (
        np.ndarray
    )  # (4, H, W) float32 reflectance at 10 m: block mean of hr + sensor noise (+cloud)
    field_ids_hr: np.ndarray  # (H*scale, W*scale) int32; 0 = road/hedge, k > 0 = field k
    field_class: dict[int, int]  # field id -> class index into CLASSES
    cloud_lr: np.ndarray  # (H, W) bool: cloudy 10 m pixels
    shadow_lr: np.ndarray  # (H, W) bool: cloud-shadow 10 m pixels


def _cuts(rng: np.random.Generator, length: int, lo: int, hi: int) -> list[int]:
    """Positions that split [0, length) into pieces of lo..hi pixels."""
    cuts, pos = [0], 0
    while length - pos > hi:
        pos += int(rng.integers(lo, hi))
        cuts.append(pos)
    cuts.append(length)
    return cuts


def field_layout(seed: int, height: int, width: int) -> tuple[np.ndarray, dict[int, int]]:
    """Lay out rectangular fields separated by 6 m roads and 2 m hedges on a 1 m grid."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((height, width), dtype=np.int32)
    classes: dict[int, int] = {}
    next_id = 1
    road, hedge = 6, 2
    ys, xs = _cuts(rng, height, 220, 420), _cuts(rng, width, 220, 420)
    for y0, y1 in itertools.pairwise(ys):
        for x0, x1 in itertools.pairwise(xs):
            by0, bx0 = y0 + road // 2, x0 + road // 2
            by1, bx1 = y1 - road // 2, x1 - road // 2
            # split each road block once more, across its longer side, by a hedge
            if (bx1 - bx0) >= (by1 - by0):
                mid = int(rng.integers(bx0 + (bx1 - bx0) // 3, bx1 - (bx1 - bx0) // 3))
                parts = [(by0, bx0, by1, mid - hedge // 2), (by0, mid + hedge // 2, by1, bx1)]
            else:
                mid = int(rng.integers(by0 + (by1 - by0) // 3, by1 - (by1 - by0) // 3))
                parts = [(by0, bx0, mid - hedge // 2, bx1), (mid + hedge // 2, bx0, by1, bx1)]
            for py0, px0, py1, px1 in parts:
                if py1 - py0 < 20 or px1 - px0 < 20:
                    continue
                ids[py0:py1, px0:px1] = next_id
                classes[next_id] = int(rng.integers(len(CLASSES)))
                next_id += 1
    return ids, classes


def _cloud_masks(rng: np.random.Generator, height: int, width: int, cover: float):
    """Smooth cloud blobs covering about ``cover`` of the scene, and their shadows."""
    if cover <= 0:
        empty = np.zeros((height, width), dtype=bool)
        return empty, empty.copy()
    noise = gaussian(rng.standard_normal((height, width)), sigma=max(height, width) / 12)
    cloud = noise > np.quantile(noise, 1 - cover)
    shift = max(2, height // 25)
    shadow = np.roll(np.roll(cloud, shift, axis=0), shift, axis=1) & ~cloud
    return cloud, shadow


def render_scene(
    seed: int, width: int, height: int, date_index: int, *, scale: int = 10, cloud: bool = True
) -> Scene:
    """Render ``width`` x ``height`` 10 m pixels of the demo world (layout depends on seed only)."""
    hh, ww = height * scale, width * scale
    ids, classes = field_layout(seed, hh, ww)
    rng = np.random.default_rng([seed, date_index])
    season = date_index % 2

    hr = np.empty((4, hh, ww), dtype=np.float32)
    hr[:] = ROAD[:, None, None]
    hedge_mask = ids == 0
    # hedges: the narrow gaps inside road blocks; roads: everything else with id 0
    grown = np.zeros_like(hedge_mask)
    for axis in (0, 1):
        for step in (-2, 2):
            grown |= np.roll(ids > 0, step, axis=axis)
    hedge_mask &= grown
    hr[:, hedge_mask] = HEDGE[:, None]
    lut = np.zeros((len(classes) + 1, 4), dtype=np.float32)
    for fid, cls in classes.items():
        lut[fid] = SIGNATURES[cls, season] * (1 + rng.normal(0, 0.04))
    field_px = ids > 0
    hr[:, field_px] = lut[ids[field_px]].T
    # within-field texture: crop rows (a stripe pattern) and per-pixel variability
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float32)
    rows = 1 + 0.03 * np.sin(xx * (2 * math.pi / 7) + yy * 0.15)
    hr *= np.where(field_px, rows, 1.0)[None]
    hr *= rng.normal(1.0, 0.03, size=hr.shape).astype(np.float32)

    lr = hr.reshape(4, height, scale, width, scale).mean(axis=(2, 4))
    lr += rng.normal(0, 0.002, size=lr.shape).astype(np.float32)
    cloud_lr, shadow_lr = _cloud_masks(rng, height, width, 0.08 + 0.06 * season if cloud else 0.0)
    lr[:, shadow_lr] *= 0.55
    lr[:, cloud_lr] = CLOUD[:, None] * rng.normal(1, 0.05, size=(4, int(cloud_lr.sum())))
    np.clip(lr, 0.0001, 1.0, out=lr)
    np.clip(hr, 0.0001, 1.0, out=hr)
    return Scene(hr, lr.astype(np.float32), ids, classes, cloud_lr, shadow_lr)


def scl_from_scene(scene: Scene) -> np.ndarray:
    """A 10 m scene classification: vegetation, bare (roads), cloud, shadow (Sen2Cor codes)."""
    ndvi = (scene.lr[3] - scene.lr[2]) / (scene.lr[3] + scene.lr[2] + 1e-6)
    scl = np.where(ndvi > 0.3, 4, 5).astype(np.uint8)
    scl[scene.shadow_lr] = 3
    scl[scene.cloud_lr] = 9
    return scl


def baseline_for(day: Date) -> str:
    """The processing baseline a real L2A product of that day carries (04.00 added the offset)."""
    return "05.09" if day >= BASELINE_OFFSET_DATE else "03.01"


def _write_cog(path: Path, data: np.ndarray, profile: dict, overview: bool = True) -> None:
    """Write ``data`` as a Cloud-Optimised GeoTIFF through GDAL's COG driver."""
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


def _tile_seed(tile: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{tile}:{seed}".encode()).digest()[:4], "little")


def demo_window(tile: str, size: int) -> tuple[Affine, int, int]:
    """The demo's pixel window of a tile: ``size`` x ``size`` 10 m pixels at DEMO_OFFSET."""
    return tile_grid(tile).window(DEMO_OFFSET, DEMO_OFFSET, size, size)


def _write_item(
    root: Path, tile: str, day: Date, idx: int, scene: Scene, transform: Affine, size: int
) -> pystac.Item:
    """Write one L2A-like item: a COG per band (uint16 DN, baseline offset) and SCL at 20 m."""
    grid = tile_grid(tile)
    baseline = baseline_for(day)
    offset_dn = 1000 if baseline >= "04.00" else 0
    item_id = f"S2B_{tile}_{day:%Y%m%d}_0_L2A"
    item_dir = root / "sentinel-2-l2a" / item_id
    item_dir.mkdir(parents=True, exist_ok=True)

    valid = np.ones((size, size), dtype=bool)
    if idx % 2 == 0:  # a nodata corner, as at the edge of a swath
        rr, cc = np.mgrid[0:size, 0:size]
        valid = rr + cc > size // 6
    dn = np.round(scene.lr * 10000).astype(np.int64) + offset_dn
    dn = np.clip(dn, 1, 65535).astype(np.uint16)
    dn[:, ~valid] = 0
    scl10 = scl_from_scene(scene)
    scl10[~valid] = 0
    scl20 = scl10[::2, ::2]  # 20 m product: nearest-neighbour aggregate like L2A's SCL

    base_profile = {"driver": "GTiff", "crs": grid.crs, "count": 1, "nodata": 0}
    assets: dict[str, pystac.Asset] = {}
    for b, band in enumerate(BANDS):
        href = item_dir / f"{band}.tif"
        _write_cog(
            href,
            dn[b : b + 1],
            {
                **base_profile,
                "dtype": "uint16",
                "width": size,
                "height": size,
                "transform": transform,
            },
        )
        assets[band] = pystac.Asset(
            href=f"./{band}.tif",
            media_type=pystac.MediaType.COG,
            roles=["data", "reflectance"],
            extra_fields={
                "gsd": 10,
                "eo:bands": [{"name": band}],
                "raster:bands": [
                    {
                        "nodata": 0,
                        "data_type": "uint16",
                        "spatial_resolution": 10,
                        "scale": 0.0001,
                        "offset": -offset_dn / 10000,
                    }
                ],
                "proj:shape": [size, size],
                "proj:transform": list(transform)[:6],
            },
        )
    t20 = transform @ Affine.scale(2)
    _write_cog(
        item_dir / "SCL.tif",
        scl20[None],
        {
            **base_profile,
            "dtype": "uint8",
            "width": size // 2,
            "height": size // 2,
            "transform": t20,
        },
    )
    assets["SCL"] = pystac.Asset(
        href="./SCL.tif",
        media_type=pystac.MediaType.COG,
        roles=["data"],
        extra_fields={
            "gsd": 20,
            "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}],
            "proj:shape": [size // 2, size // 2],
            "proj:transform": list(t20)[:6],
        },
    )
    footprint = box(
        transform.c, transform.f + transform.e * size, transform.c + transform.a * size, transform.f
    )
    geom = shape(transform_geom(grid.crs, "EPSG:4326", mapping(footprint)))
    valid_scl = scl10[valid]
    cloud_pct = float(np.isin(valid_scl, (3, 8, 9, 10)).mean() * 100)
    nodata_pct = float((~valid).mean() * 100)
    item = pystac.Item(
        id=item_id,
        geometry=mapping(geom),
        bbox=list(geom.bounds),
        datetime=datetime(day.year, day.month, day.day, 10, 15, tzinfo=timezone.utc),
        properties={
            "platform": "sentinel-2b",
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": round(cloud_pct, 2),
            "s2:nodata_pixel_percentage": round(nodata_pct, 2),
            "s2:processing_baseline": baseline,
            "s2:mgrs_tile": tile,
            "grid:code": f"MGRS-{tile}",
            "mgrs:utm_zone": int(tile[:2]),
            "mgrs:latitude_band": tile[2],
            "mgrs:grid_square": tile[3:],
            "proj:code": grid.crs,
            "tilepipe:demo": True,
        },
        stac_extensions=[
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
            "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
        ],
    )
    for key, asset in assets.items():
        asset.href = str((item_dir / Path(asset.href).name).resolve())
        item.add_asset(key, asset)
    return item


def _write_tessera(
    root: Path,
    tile: str,
    year: int,
    scene: Scene,
    transform: Affine,
    size: int,
    rng: np.random.Generator,
    centroids: np.ndarray,
) -> list[tuple[str, str, str]]:
    """Write TESSERA-layout embeddings of a tile window; return registry rows (year, name, file)."""
    grid = tile_grid(tile)
    scale = scene.field_ids_hr.shape[0] // size
    # class of each 10 m pixel: the field covering its centre (background -> class "other")
    ids10 = scene.field_ids_hr[scale // 2 :: scale, scale // 2 :: scale]
    lut = np.full(ids10.max() + 1, len(CLASSES), dtype=np.int64)
    for fid, cls in scene.field_class.items():
        lut[fid] = cls
    vectors = centroids[lut[ids10]] + rng.normal(0, 0.35, size=(size, size, EMBEDDING_DIM))
    vectors = vectors.astype(np.float32)

    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    from_ll = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    left, top = transform.c, transform.f
    right, bottom = left + 10 * size, top - 10 * size
    lons, lats = to_ll.transform([left, right, left, right], [top, top, bottom, bottom])
    rows = []
    for lon0 in np.arange(math.floor(min(lons) * 10) / 10, max(lons), 0.1):
        for lat0 in np.arange(math.floor(min(lats) * 10) / 10, max(lats), 0.1):
            name = f"grid_{lon0 + 0.05:.2f}_{lat0 + 0.05:.2f}"
            # the cell's extent on the tile's 10 m grid (cells are in their own UTM zone; the
            # demo's cells share the tile's zone), clipped to the demo window
            xs, ys = from_ll.transform(
                [lon0, lon0 + 0.1, lon0, lon0 + 0.1], [lat0, lat0, lat0 + 0.1, lat0 + 0.1]
            )
            c0 = max(0, math.floor((min(xs) - left) / 10))
            c1 = min(size, math.ceil((max(xs) - left) / 10))
            r0 = max(0, math.floor((top - max(ys)) / 10))
            r1 = min(size, math.ceil((top - min(ys)) / 10))
            if c1 <= c0 or r1 <= r0:
                continue
            block = vectors[r0:r1, c0:c1]
            scales = (np.abs(block).max(axis=2) / 127.0).astype(np.float32)
            raw = np.round(block / scales[..., None]).clip(-127, 127).astype(np.int8)
            rep = root / "global_0.1_degree_representation" / str(year) / name
            rep.mkdir(parents=True, exist_ok=True)
            np.save(rep / f"{name}.npy", raw)
            np.save(rep / f"{name}_scales.npy", scales)
            mask_dir = root / "global_0.1_degree_tiff_all"
            mask_dir.mkdir(parents=True, exist_ok=True)
            cell_transform = transform @ Affine.translation(c0, r0)
            with rasterio.open(
                mask_dir / f"{name}.tiff",
                "w",
                driver="GTiff",
                width=c1 - c0,
                height=r1 - r0,
                count=1,
                dtype="uint8",
                crs=grid.crs,
                transform=cell_transform,
                compress="deflate",
            ) as dst:
                dst.write(np.ones((1, r1 - r0, c1 - c0), dtype=np.uint8))
            for f in (rep / f"{name}.npy", rep / f"{name}_scales.npy", mask_dir / f"{name}.tiff"):
                rows.append((str(year), name, str(f.relative_to(root))))
    return rows


AEF_DIM = 64


def aef_quantise(values: np.ndarray) -> np.ndarray:
    """int8 codes whose signed-square dequantisation ``(v/127.5)²·sign(v)`` gives ``values``."""
    codes = np.round(np.sign(values) * np.sqrt(np.abs(values)) * 127.5)
    return codes.clip(-127, 127).astype(np.int8)


def write_aef_demo(
    out_dir: str | Path, tile: str, year: int, *, size: int = 64, seed: int = 0, margin: int = 4
) -> dict:
    """Write one AEF-style COG (64 int8 bands, nodata −128, bottom-up) over a tile's demo window.

    Pixels hold unit vectors near a per-class centroid (the demo fields' classes) quantised
    with the signed-square formula; a ``margin`` of nodata surrounds the window. The file lies
    at ``{out_dir}/{year}/{zone}/aef_{tile}.tiff`` like the real per-zone layout. Returns the
    path, the window's north-up transform and the float vectors (C, size, size) it encodes.
    """
    grid = tile_grid(tile)
    transform, width, height = demo_window(tile, size)
    clear = render_scene(_tile_seed(tile, seed), width, height, 0, cloud=False)
    scale = clear.field_ids_hr.shape[0] // size
    ids10 = clear.field_ids_hr[scale // 2 :: scale, scale // 2 :: scale]
    lut = np.full(ids10.max() + 1, len(CLASSES), dtype=np.int64)
    for fid, cls in clear.field_class.items():
        lut[fid] = cls
    rng = np.random.default_rng([seed, year, 64])
    centroids = rng.normal(0, 1, size=(len(CLASSES) + 1, AEF_DIM))
    vectors = centroids[lut[ids10]] + rng.normal(0, 0.3, size=(size, size, AEF_DIM))
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    codes = np.full((AEF_DIM, size + 2 * margin, size + 2 * margin), -128, dtype=np.int8)
    codes[:, margin : -margin or None, margin : -margin or None] = aef_quantise(
        np.moveaxis(vectors, 2, 0)
    )
    left = transform.c - 10 * margin
    bottom = transform.f - 10 * (size + margin)
    bottom_up = Affine(10, 0, left, 0, 10, bottom)  # positive y pixel size, like AEF
    path = Path(out_dir) / str(year) / f"{grid.epsg % 100}N" / f"aef_{tile}.tiff"
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": codes.shape[2],
        "height": codes.shape[1],
        "count": AEF_DIM,
        "dtype": "int8",
        "crs": grid.crs,
        "transform": bottom_up,
        "nodata": -128,
    }
    _write_cog(path, np.ascontiguousarray(codes[:, ::-1, :]), profile, overview=False)
    return {
        "path": str(path),
        "transform": transform,
        "size": size,
        "vectors": np.moveaxis(vectors, 2, 0).astype(np.float32),
    }


def _label_features(
    tile: str, scene: Scene, transform: Affine, scale: int, id_base: int
) -> list[dict]:
    """One labelled polygon (EPSG:4326) per field, from the field's 1 m rectangle."""
    grid = tile_grid(tile)
    feats = []
    for region in regionprops(scene.field_ids_hr):  # one pass over the image, not one per field
        r0, c0, r1, c1 = region.bbox
        x0, x1 = transform.c + c0 * 10 / scale, transform.c + c1 * 10 / scale
        y1, y0 = transform.f - r0 * 10 / scale, transform.f - r1 * 10 / scale
        geom = shape(transform_geom(grid.crs, "EPSG:4326", mapping(box(x0, y0, x1, y1))))
        cls = scene.field_class[region.label]
        feats.append(
            {
                "geometry": geom,
                "field_id": id_base + region.label,
                "crop": CLASSES[cls],
                "tile": tile,
            }
        )
    return feats


def generate_campaign(
    out_dir: str | Path,
    *,
    tiles: tuple[str, ...] = DEMO_TILES,
    dates: tuple[str, ...] = DEMO_DATES,
    size: int = 160,
    seed: int = 0,
) -> dict[str, str]:
    """Write the demo campaign under ``out_dir``; return the paths of its entry points.

    ``size`` is the side of each tile's window in 10 m pixels (160 → 1.6 km, 1,600 px at 1 m).
    """
    import pyogrio.raw
    import shapely

    out = Path(out_dir)
    stac_root, tessera_root = out / "stac", out / "tessera"
    catalog = pystac.Catalog(id="tilepipe-demo", description="tilepipe demo campaign (synthetic)")
    collection = pystac.Collection(
        id="sentinel-2-l2a",
        description="Synthetic Sentinel-2 L2A-like items generated by tilepipe.demo.campaign",
        extent=pystac.Extent(
            pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
            pystac.TemporalExtent([[None, None]]),
        ),
        license="CC0-1.0",
    )
    catalog.add_child(collection)
    centroids = np.random.default_rng(seed).normal(0, 1, size=(len(CLASSES) + 1, EMBEDDING_DIM))
    registry: list[tuple[str, str, str]] = []
    labels: list[dict] = []
    years = sorted({Date.fromisoformat(d).year for d in dates})
    for t_index, tile in enumerate(tiles):
        tseed = _tile_seed(tile, seed)
        transform, width, height = demo_window(tile, size)
        for d_index, day in enumerate(dates):
            scene = render_scene(tseed, width, height, d_index)
            item = _write_item(
                stac_root, tile, Date.fromisoformat(day), d_index, scene, transform, width
            )
            collection.add_item(item)
        clear = render_scene(tseed, width, height, 0, cloud=False)
        for year in years:
            rng = np.random.default_rng([tseed, year])
            registry += _write_tessera(
                tessera_root, tile, year, clear, transform, width, rng, centroids
            )
        labels += _label_features(tile, clear, transform, 10, id_base=(t_index + 1) * 1000)

    collection.update_extent_from_items()
    catalog.normalize_hrefs(str(stac_root))
    catalog.make_all_asset_hrefs_relative()  # COGs sit beside their item JSON
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)

    with atomic_output(tessera_root / "registry.tsv") as tmp:
        lines = ["year\tname\tfile\tsha256"]
        lines += [f"{y}\t{n}\t{f}\t{sha256_file(tessera_root / f)}" for y, n, f in registry]
        tmp.write_text("\n".join(lines) + "\n")

    labels_path = out / "labels.gpkg"
    with atomic_output(labels_path) as tmp:
        pyogrio.raw.write(
            tmp,
            shapely.to_wkb(np.array([f["geometry"] for f in labels], dtype=object)),
            [
                np.array([f["field_id"] for f in labels], dtype=np.int64),
                np.array([f["crop"] for f in labels], dtype=object),
                np.array([f["tile"] for f in labels], dtype=object),
            ],
            ["field_id", "crop", "tile"],
            layer="labels",
            driver="GPKG",
            geometry_type="Polygon",
            crs="EPSG:4326",
        )
    manifest = {
        "catalog": str((stac_root / "catalog.json").resolve()),
        "tessera": str(tessera_root.resolve()),
        "labels": str(labels_path.resolve()),
        "tiles": list(tiles),
        "dates": list(dates),
        "size": size,
        "seed": seed,
    }
    with atomic_output(out / "demo.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
