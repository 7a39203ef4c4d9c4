"""The demo world: fields of five crops with distinct spectra and seasons, roads, hedges, clouds.

Everything is derived from a seed, so tests, benchmarks and the demo see the same world. A scene
is rendered at 1 m (the truth super-resolution learns) and observed at 10 m like Sentinel-2.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from pyproj import Transformer
from shapely import Point
from shapely import box as shapely_box
from skimage.filters import gaussian

from tilepipe.core.grid import tile_grid

BANDS = ("B02", "B03", "B04", "B08")
CLASSES = ("wheat", "maize", "rapeseed", "sugarbeet", "grassland")
DEMO_TILES = ("33UXP", "31UFS")
DEMO_DATES = ("2022-01-12", "2022-06-21")
DEMO_OFFSET = 5000  # the demo's window starts at this row and column of each tile's 10 m grid
#: tiles the demo observes over another tile's ground (tile -> the tile whose world it sees):
#: 34UBU (UTM zone 34) overlaps 33UXP's demo window across the zone edge
DEMO_NEIGHBOURS = {"34UBU": "33UXP"}
NEIGHBOUR_SHARE = 0.6  # a neighbour's window side, as a share of its source's

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
ROAD_M, HEDGE_M = 6, 2  # widths on the 1 m grid
MIN_FIELD_M = 20  # a field narrower than this on either side is left as road


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


def tile_seed(tile: str, seed: int) -> int:
    """The seed of one tile's layout: the campaign seed mixed with the tile's name."""
    return int.from_bytes(hashlib.sha256(f"{tile}:{seed}".encode()).digest()[:4], "little")


def demo_window(tile: str, size: int) -> tuple[Affine, int, int]:
    """The demo's pixel window of a tile: ``size`` x ``size`` 10 m pixels at DEMO_OFFSET (a
    neighbour's: the square of its grid that :func:`neighbour_window` places)."""
    return tile_grid(tile).window(*demo_pixel_window(tile, size))


def demo_pixel_window(tile: str, size: int) -> tuple[int, int, int, int]:
    """(col_off, row_off, width, height) of the demo's window of ``tile``."""
    if tile in DEMO_NEIGHBOURS:
        return neighbour_window(tile, DEMO_NEIGHBOURS[tile], size)
    return DEMO_OFFSET, DEMO_OFFSET, size, size


def _to_source(tile: str, source: str) -> Transformer:
    """Coordinates of ``tile``'s CRS -> those of ``source``'s."""
    return Transformer.from_crs(tile_grid(tile).crs, tile_grid(source).crs, always_xy=True)


def neighbour_window(tile: str, source: str, size: int) -> tuple[int, int, int, int]:
    """The square of ``tile``'s 10 m grid inside ``source``'s demo window, against its east edge.

    Its side is NEIGHBOUR_SHARE of ``size``; inside the source's window means every pixel sees
    the source's rendered world, and its west edge cuts through the source's fields (a seam).
    """
    side = max(16, round(size * NEIGHBOUR_SHARE))
    grid, src = tile_grid(tile), tile_grid(source)
    s_left, s_top = src.ulx + DEMO_OFFSET * src.res, src.uly - DEMO_OFFSET * src.res
    inside = shapely_box(s_left + 10, s_top - size * 10 + 10, s_left + size * 10 - 10, s_top - 10)
    back = Transformer.from_crs(src.crs, grid.crs, always_xy=True)
    xs, ys = back.transform(*inside.exterior.xy)
    centre_row = round((grid.uly - (max(ys) + min(ys)) / 2) / grid.res - side / 2)
    to_src = _to_source(tile, source)
    for col in range(int((max(xs) - grid.ulx) // grid.res) - side, 0, -1):
        x0, y0 = grid.ulx + col * grid.res, grid.uly - centre_row * grid.res
        corners = to_src.transform(
            [x0, x0 + side * 10, x0, x0 + side * 10], [y0, y0, y0 - side * 10, y0 - side * 10]
        )
        if all(inside.contains(Point(x, y)) for x, y in zip(*corners, strict=True)):
            return col, centre_row, side, side
    raise ValueError(f"demo: no window of {tile} lies inside {source}'s")  # pragma: no cover


def _cuts(rng: np.random.Generator, length: int, lo: int, hi: int) -> list[int]:
    """Positions that split [0, length) into pieces of lo..hi pixels."""
    cuts, pos = [0], 0
    while length - pos > hi:
        pos += int(rng.integers(lo, hi))
        cuts.append(pos)
    cuts.append(length)
    return cuts


def _split_by_hedge(
    rng: np.random.Generator, y0: int, x0: int, y1: int, x1: int
) -> list[tuple[int, int, int, int]]:
    """The two fields (y0, x0, y1, x1) of a road block split across its longer side by a hedge."""
    half = HEDGE_M // 2
    if (x1 - x0) >= (y1 - y0):
        mid = int(rng.integers(x0 + (x1 - x0) // 3, x1 - (x1 - x0) // 3))
        return [(y0, x0, y1, mid - half), (y0, mid + half, y1, x1)]
    mid = int(rng.integers(y0 + (y1 - y0) // 3, y1 - (y1 - y0) // 3))
    return [(y0, x0, mid - half, x1), (mid + half, x0, y1, x1)]


def field_layout(seed: int, height: int, width: int) -> tuple[np.ndarray, dict[int, int]]:
    """Lay out rectangular fields separated by 6 m roads and 2 m hedges on a 1 m grid."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((height, width), dtype=np.int32)
    classes: dict[int, int] = {}
    half = ROAD_M // 2
    ys, xs = _cuts(rng, height, 220, 420), _cuts(rng, width, 220, 420)
    for y0, y1 in itertools.pairwise(ys):
        for x0, x1 in itertools.pairwise(xs):
            for py0, px0, py1, px1 in _split_by_hedge(
                rng, y0 + half, x0 + half, y1 - half, x1 - half
            ):
                if py1 - py0 < MIN_FIELD_M or px1 - px0 < MIN_FIELD_M:
                    continue
                field = len(classes) + 1
                ids[py0:py1, px0:px1] = field
                classes[field] = int(rng.integers(len(CLASSES)))
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


def _hedge_mask(ids: np.ndarray) -> np.ndarray:
    """Hedges: the narrow gaps inside road blocks (id 0 within 2 px of a field on one axis)."""
    grown = np.zeros(ids.shape, dtype=bool)
    for axis in (0, 1):
        for step in (-2, 2):
            grown |= np.roll(ids > 0, step, axis=axis)
    return (ids == 0) & grown


def _paint_truth(
    ids: np.ndarray, classes: dict[int, int], season: int, rng: np.random.Generator
) -> np.ndarray:
    """The 1 m reflectance (4, H, W): roads, hedges, each field's crop with rows and texture."""
    hh, ww = ids.shape
    hr = np.empty((4, hh, ww), dtype=np.float32)
    hr[:] = ROAD[:, None, None]
    hr[:, _hedge_mask(ids)] = HEDGE[:, None]
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
    return hr


def _observe(
    hr: np.ndarray, scale: int, cover: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 10 m observation of ``hr``: block mean, sensor noise, clouds and their shadows."""
    _, hh, ww = hr.shape
    height, width = hh // scale, ww // scale
    lr = hr.reshape(4, height, scale, width, scale).mean(axis=(2, 4))
    lr += rng.normal(0, 0.002, size=lr.shape).astype(np.float32)
    cloud_lr, shadow_lr = _cloud_masks(rng, height, width, cover)
    _sky(lr, cloud_lr, shadow_lr, rng)
    return lr, cloud_lr, shadow_lr


def _sky(lr: np.ndarray, cloud: np.ndarray, shadow: np.ndarray, rng: np.random.Generator) -> None:
    """Darken ``lr`` under the shadows and whiten it under the clouds, in place."""
    lr[:, shadow] *= 0.55
    lr[:, cloud] = CLOUD[:, None] * rng.normal(1, 0.05, size=(4, int(cloud.sum())))
    np.clip(lr, 0.0001, 1.0, out=lr)


def render_scene(
    seed: int, width: int, height: int, date_index: int, *, scale: int = 10, cloud: bool = True
) -> Scene:
    """Render ``width`` x ``height`` 10 m pixels of the demo world (layout depends on seed only)."""
    ids, classes = field_layout(seed, height * scale, width * scale)
    rng = np.random.default_rng([seed, date_index])
    season = date_index % 2
    hr = _paint_truth(ids, classes, season, rng)
    cover = 0.08 + 0.06 * season if cloud else 0.0
    lr, cloud_lr, shadow_lr = _observe(hr, scale, cover, rng)
    np.clip(hr, 0.0001, 1.0, out=hr)
    return Scene(hr, lr.astype(np.float32), ids, classes, cloud_lr, shadow_lr)


def valid_mask(idx: int, size: int) -> np.ndarray:
    """Valid pixels of the idx-th date: every other date has a nodata corner, as at a swath edge."""
    if idx % 2:
        return np.ones((size, size), dtype=bool)
    rr, cc = np.mgrid[0:size, 0:size]
    return rr + cc > size // 6


def scl_from_scene(scene: Scene) -> np.ndarray:
    """A 10 m scene classification: vegetation, bare (roads), cloud, shadow (Sen2Cor codes)."""
    ndvi = (scene.lr[3] - scene.lr[2]) / (scene.lr[3] + scene.lr[2] + 1e-6)
    scl = np.where(ndvi > 0.3, 4, 5).astype(np.uint8)
    scl[scene.shadow_lr] = 3
    scl[scene.cloud_lr] = 9
    return scl


def pixel_classes(scene: Scene, size: int) -> np.ndarray:
    """(size, size) class of each 10 m pixel: the field at its centre's; roads get len(CLASSES)."""
    scale = scene.field_ids_hr.shape[0] // size
    ids10 = scene.field_ids_hr[scale // 2 :: scale, scale // 2 :: scale]
    lut = np.full(ids10.max() + 1, len(CLASSES), dtype=np.int64)
    for fid, cls in scene.field_class.items():
        lut[fid] = cls
    return lut[ids10]


def _sample(transform: Affine, grid: tuple[int, int], to_src: Transformer, src: Affine):
    """(rows, cols) of ``src``'s pixels under the centres of a (height, width) grid."""
    rr, cc = np.mgrid[0 : grid[0], 0 : grid[1]] + 0.5
    xs, ys = transform * (cc, rr)
    sx, sy = to_src.transform(xs, ys)
    cols, rows = ~src * (sx, sy)
    return np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)


def observe_neighbour(
    source: Scene, tile: str, source_tile: str, size: int, seed: int, date_index: int
) -> tuple[Scene, np.ndarray]:
    """``tile``'s demo scene of ``source``'s world: the same ground, fields, clouds and swath
    edge, warped onto the neighbour's grid (nearest at 1 m), then observed at 10 m.

    Returns the scene and the warped valid-pixel mask of the source date.
    """
    transform, width, height = demo_window(tile, size)
    src_transform, _, _ = demo_window(source_tile, size)
    scale = source.field_ids_hr.shape[0] // source.lr.shape[1]
    to_src = _to_source(tile, source_tile)
    fine = transform * Affine.scale(1 / scale)
    rows, cols = _sample(
        fine, (height * scale, width * scale), to_src, src_transform * Affine.scale(1 / scale)
    )
    hr = source.hr[:, rows, cols]
    ids = source.field_ids_hr[rows, cols]
    r10, c10 = _sample(transform, (height, width), to_src, src_transform)
    cloud, shadow = source.cloud_lr[r10, c10], source.shadow_lr[r10, c10]
    valid = valid_mask(date_index, source.lr.shape[1])[r10, c10]
    rng = np.random.default_rng([seed, date_index])
    lr = hr.reshape(4, height, scale, width, scale).mean(axis=(2, 4))
    lr += rng.normal(0, 0.002, size=lr.shape).astype(np.float32)
    _sky(lr, cloud, shadow, rng)
    classes = {f: c for f, c in source.field_class.items() if f in set(np.unique(ids).tolist())}
    return Scene(hr, lr.astype(np.float32), ids, classes, cloud, shadow), valid


def demo_scene(
    tile: str, size: int, date_index: int, *, seed: int = 0, cloud: bool = True
) -> Scene:
    """The scene the demo renders for ``tile``'s window on a date: its own world, or for a
    neighbour (DEMO_NEIGHBOURS) its source's world seen on its grid."""
    source = DEMO_NEIGHBOURS.get(tile)
    if source is None:
        return render_scene(tile_seed(tile, seed), size, size, date_index, cloud=cloud)
    world = render_scene(tile_seed(source, seed), size, size, date_index, cloud=cloud)
    return observe_neighbour(world, tile, source, size, tile_seed(tile, seed), date_index)[0]
