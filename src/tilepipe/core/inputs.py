"""The kind of each raster a step reads, checked before any compute: dtype, bands, scale, grid.

Every step calls :func:`check_raster` on each raster it reads, so an input of the wrong kind (a
float 0–1 image given as reflectance, a 3-band file, a raster on another grid) stops the step
with an InputError naming tile, date, file and every mismatch as expected vs found, instead of
running and writing an empty or wrong answer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

import rasterio
from rasterio.errors import RasterioError

from tilepipe.core.errors import ConfigError, InputError, context
from tilepipe.core.grid import tile_grid
from tilepipe.core.raster import is_north_up

#: Sentinel-2 L2A bands, in the order s2.tif stores them after the core four, and their native
#: pixel size (m); L2A has no B10. 20 m and 60 m bands are resampled onto the 10 m grid.
L2A_BANDS: dict[str, int] = {
    "B01": 60,
    "B02": 10,
    "B03": 10,
    "B04": 10,
    "B05": 20,
    "B06": 20,
    "B07": 20,
    "B08": 10,
    "B8A": 20,
    "B09": 60,
    "B11": 20,
    "B12": 20,
}
#: The core bands: every s2.tif starts with them, every dr.tif holds them, in this order.
REFLECTANCE_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08")
#: s2.tif's band indexes (1-based) of the core bands: what QC compares dr.tif with.
CORE_INDEXES: list[int] = list(range(1, len(REFLECTANCE_BANDS) + 1))


def s2_bands(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """s2.tif's bands: the core four, then each further L2A band asked for, in L2A order."""
    wanted = set(extra)
    unknown = sorted(wanted - set(L2A_BANDS))
    if unknown:
        raise ConfigError(f"bands {unknown} are not Sentinel-2 L2A bands {list(L2A_BANDS)}")
    return (*REFLECTANCE_BANDS, *(b for b in L2A_BANDS if b in wanted - set(REFLECTANCE_BANDS)))


def band_names(src: rasterio.DatasetReader) -> tuple[str, ...]:
    """A reflectance raster's bands by name: its descriptions, or the core four when unnamed."""
    names = tuple(d or "" for d in src.descriptions)
    return names if all(names) else REFLECTANCE_BANDS[: src.count]


#: The ``REFLECTANCE_SCALE`` tag of reflectance stored as uint16 x 10⁴.
REFLECTANCE_SCALE = 0.0001


@dataclass(frozen=True)
class RasterKind:
    """What a raster of one kind must be: dtype, bands, pixel size and value scale."""

    name: str
    dtypes: tuple[str, ...]
    bands: tuple[str, ...] | None  # exact band names (when described); None: any count
    pixel_m: float | None  # pixel size on the tile's grid; None: any
    reflectance: bool = False  # uint16 x 10⁴ with the offset removed (scale tags checked)
    more_bands: bool = False  # further L2A bands may follow ``bands`` (s2.tif's extra bands)


S2 = RasterKind(
    "s2.tif (uint16 reflectance x 10^4, 10 m)", ("uint16",), REFLECTANCE_BANDS, 10.0, True, True
)
#: Pixel size of s2.tif (m): a dr.tif of scale k has pixels of S2_PIXEL_M / k.
S2_PIXEL_M = 10.0


def dr_kind(scale: int) -> RasterKind:
    """The dr.tif of a DR model of ``scale``: uint16 reflectance on 10 m / scale pixels."""
    pixel = S2_PIXEL_M / scale
    name = f"dr.tif (uint16 reflectance x 10^4, {pixel:g} m)"
    return RasterKind(name, ("uint16",), REFLECTANCE_BANDS, pixel, True)


#: The dr.tif of the demo's x10 model (1 m).
DR = dr_kind(10)


def dr_scale(src: rasterio.DatasetReader) -> int:
    """A dr.tif's scale, read from the file itself: its ``DR_SCALE`` tag, else its pixel size
    against s2's 10 m (the grid checks then hold the transform to it)."""
    tag = src.tags().get("DR_SCALE", "")
    if tag.isdigit() and int(tag) >= 1:
        return int(tag)
    return max(1, round(S2_PIXEL_M / abs(src.transform.a)))


def dr_kind_of(path: str | os.PathLike) -> RasterKind:
    """The dr.tif kind of the file at ``path`` (its scale read from it); DR when unreadable, so
    check_raster reports why."""
    try:
        with rasterio.open(path) as src:
            return dr_kind(dr_scale(src))
    except (RasterioError, OSError):
        return DR


SCL = RasterKind("scl.tif (uint8 scene classes, 10 m)", ("uint8",), ("SCL",), 10.0)
EMBEDDINGS = RasterKind("embeddings (float32, 10 m)", ("float32",), None, 10.0)


def _dtype_problems(src: rasterio.DatasetReader, kind: RasterKind) -> list[str]:
    """The raster's dtype against the kind's."""
    found = sorted(set(src.dtypes))
    if set(found) <= set(kind.dtypes):
        return []
    return [f"expected dtype {'/'.join(kind.dtypes)}, found {'/'.join(found)}"]


def _band_problems(src: rasterio.DatasetReader, kind: RasterKind) -> list[str]:
    """The band count and names (when the file names its bands) against the kind's."""
    if kind.bands is None:
        return []
    names = tuple(d or "" for d in src.descriptions)
    if kind.more_bands and src.count > len(kind.bands):
        core, more = names[: len(kind.bands)], names[len(kind.bands) :]
        in_order = [b for b in L2A_BANDS if b in more and b not in kind.bands]
        if core != kind.bands or list(more) != in_order:
            return [
                f"expected bands {list(kind.bands)}, then further L2A bands in the order "
                f"{list(L2A_BANDS)}, found {list(names)}"
            ]
        return []
    if src.count != len(kind.bands):
        return [f"expected {len(kind.bands)} bands {list(kind.bands)}, found {src.count}"]
    if any(names) and names != kind.bands:
        return [f"expected bands {list(kind.bands)}, found {list(names)}"]
    return []


def _scale_problems(src: rasterio.DatasetReader, tags: dict[str, str]) -> list[str]:
    """Reflectance scale: tag ``REFLECTANCE_SCALE`` 0.0001 (when present), band scale 1 or
    0.0001 and band offset 0 (the baseline offset is removed by download, never declared)."""
    problems = []
    tag = tags.get("REFLECTANCE_SCALE")
    try:
        tag_ok = tag is None or math.isclose(float(tag), REFLECTANCE_SCALE)
    except ValueError:
        tag_ok = False
    if not tag_ok:
        problems.append(f"expected tag REFLECTANCE_SCALE {REFLECTANCE_SCALE:g}, found {tag!r}")
    scales, offsets = list(src.scales), list(src.offsets)
    if any(not (math.isclose(s, 1.0) or math.isclose(s, REFLECTANCE_SCALE)) for s in scales):
        problems.append(f"expected band scale 1 (DN = reflectance x 10^4), found {scales}")
    if any(o != 0 for o in offsets):
        problems.append(f"expected band offset 0 (offset removed), found {offsets}")
    return problems


def _grid_problems(src: rasterio.DatasetReader, kind: RasterKind, tile: str | None) -> list[str]:
    """North-up, the kind's pixel size, and (with a tile) the tile's CRS and 10 m grid."""
    t = src.transform
    if not is_north_up(t):
        return [f"expected a north-up raster, found transform {tuple(t)[:6]}"]
    problems = []
    if kind.pixel_m is not None and not (
        math.isclose(t.a, kind.pixel_m) and math.isclose(-t.e, kind.pixel_m)
    ):
        problems.append(f"expected {kind.pixel_m:g} m pixels, found {t.a:g} x {-t.e:g} m")
    if not tile:
        return problems
    try:
        grid = tile_grid(tile)
    except ConfigError as exc:
        return [*problems, f"tile {tile!r} has no grid ({exc})"]
    found = src.crs.to_string() if src.crs else None
    if src.crs is None or src.crs.to_epsg() != grid.epsg:
        problems.append(f"expected CRS {grid.crs} of tile {tile}, found {found}")
    elif not (on_grid(t.c - grid.ulx, grid.res) and on_grid(grid.uly - t.f, grid.res)):
        problems.append(
            f"expected the origin on tile {tile}'s {grid.res:g} m grid, found ({t.c}, {t.f})"
        )
    return problems


def on_grid(offset: float, res: float) -> bool:
    """Whether an offset from the grid's anchor is a whole number of pixels (to 1e-6 m)."""
    remainder = math.fmod(offset, res)
    return min(abs(remainder), res - abs(remainder)) < 1e-6


def mismatch(
    src: rasterio.DatasetReader, kind: RasterKind, tile: str | None = None, *, grid: bool = True
) -> str:
    """How an open raster differs from ``kind``, every mismatch as expected vs found; "" when
    it is one. ``grid=False`` leaves the grid out (QC judges the grid as checks of its own)."""
    tags = src.tags()
    problems = _dtype_problems(src, kind) + _band_problems(src, kind)
    if kind.reflectance:
        problems += _scale_problems(src, tags)
    if grid:
        problems += _grid_problems(src, kind, tile or tags.get("TILE") or None)
    return f"not {kind.name}: {'; '.join(problems)}" if problems else ""


def check_raster(
    path: str | os.PathLike,
    kind: RasterKind,
    *,
    tile: str | None = None,
    date: str | None = None,
    grid: bool = True,
) -> dict[str, str]:
    """Raise InputError unless ``path`` is a raster of ``kind``; return its tags.

    The message names tile, date and file, and lists each mismatch as expected vs found. The
    tile is ``tile`` or the raster's ``TILE`` tag; without either the grid check is the pixel
    size and orientation only.
    """
    try:
        with rasterio.open(path) as src:
            wrong, tags = mismatch(src, kind, tile, grid=grid), src.tags()
    except (RasterioError, OSError) as exc:
        where = context(tile, date, path)
        raise InputError(f"{where}cannot open {kind.name.split(' ')[0]} ({exc})") from exc
    if wrong:  # named by the raster's own TILE and DATE tags where the caller gave none
        where = context(tile or tags.get("TILE"), date or tags.get("DATE"), path)
        raise InputError(f"{where}{wrong}")
    return tags


def check_image(
    path: str | os.PathLike, tile: str | None, date: str | None
) -> tuple[RasterKind, dict[str, str]]:
    """Check a raster that may be dr.tif or s2.tif (fields reads either), told apart by the DR
    tag ``DR_SCALE`` or a pixel finer than 10 m; return its kind (a dr.tif's at its own scale)
    and tags."""
    where = context(tile, date, path)
    try:
        with rasterio.open(path) as src:
            pixel, is_dr = abs(src.transform.a), "DR_SCALE" in src.tags()
            scale = dr_scale(src)
    except (RasterioError, OSError) as exc:
        raise InputError(f"{where}cannot open image ({exc})") from exc
    finer = pixel < S2_PIXEL_M and not math.isclose(pixel, S2_PIXEL_M)
    kind = dr_kind(scale) if is_dr or finer else S2
    return kind, check_raster(path, kind, tile=tile, date=date)
