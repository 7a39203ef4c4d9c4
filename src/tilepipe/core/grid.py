"""The Sentinel-2 tile grid: MGRS tile id → UTM CRS, upper-left corner and 10 m pixel grid.

Computed offline from the MGRS lettering rules, so planning never needs the network. The
upper-left corner is that of the tile's 100 km MGRS square; a Sentinel-2 tile extends 109.8 km
east and south of it (10980 pixels at 10 m). ESA's published grid shifts a few rows of tiles by
20–40 m from this corner; tilepipe's grid is the MGRS one and every step uses the same module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from affine import Affine
from pyproj import CRS, Transformer

from tilepipe.core.errors import ConfigError

TILE_PATTERN = r"\d{2}[C-HJ-NP-X][A-HJ-NP-Z]{2}"
_TILE_RE = re.compile(rf"^{TILE_PATTERN}$")
_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_COLUMN_SETS = ("STUVWXYZ", "ABCDEFGH", "JKLMNPQR")  # indexed by zone % 3
_ROWS = "ABCDEFGHJKLMNPQRSTUV"
TILE_SIZE_M = 109_800.0


@dataclass(frozen=True)
class TileGrid:
    """One Sentinel-2 tile's CRS and pixel grid at ``res`` metres."""

    tile: str
    epsg: int
    ulx: float
    uly: float
    res: float = 10.0

    @property
    def crs(self) -> str:
        return f"EPSG:{self.epsg}"

    @property
    def size(self) -> int:
        return round(TILE_SIZE_M / self.res)

    @property
    def transform(self) -> Affine:
        return Affine(self.res, 0.0, self.ulx, 0.0, -self.res, self.uly)

    def window(
        self, col_off: int, row_off: int, width: int, height: int
    ) -> tuple[Affine, int, int]:
        """Return (transform, width, height) of a pixel window of this tile, clipped to the tile."""
        col_off, row_off = max(0, col_off), max(0, row_off)
        width = min(width, self.size - col_off)
        height = min(height, self.size - row_off)
        if width <= 0 or height <= 0:
            raise ConfigError(f"tile {self.tile}: window lies outside the tile")
        return self.transform @ Affine.translation(col_off, row_off), width, height


def validate_tile(tile: str) -> str:
    """Return ``tile`` if it is a well-formed MGRS tile id, else raise ConfigError."""
    if not _TILE_RE.match(tile):
        raise ConfigError(
            f"tile {tile!r} is not an MGRS tile id like '33UXP' "
            f"(two-digit zone, latitude band C–X without I/O, two square letters)"
        )
    zone = int(tile[:2])
    if not 1 <= zone <= 60:
        raise ConfigError(f"tile {tile!r}: UTM zone {zone} is outside 01–60")
    if tile[3] not in _COLUMN_SETS[zone % 3]:
        raise ConfigError(
            f"tile {tile!r}: column letter {tile[3]!r} does not occur in zone {zone} "
            f"(allowed: {', '.join(_COLUMN_SETS[zone % 3])})"
        )
    return tile


@lru_cache(maxsize=4096)
def tile_grid(tile: str) -> TileGrid:
    """Return the grid of an MGRS tile id (e.g. ``33UXP`` → EPSG:32633, UL (600000, 5400000))."""
    validate_tile(tile)
    zone, band, col, row = int(tile[:2]), tile[2], tile[3], tile[4]
    south = band < "N"
    epsg = (32700 if south else 32600) + zone
    easting = (_COLUMN_SETS[zone % 3].index(col) + 1) * 100_000.0
    row_offset = 0 if zone % 2 else 5
    northing = ((_ROWS.index(row) - row_offset) % 20) * 100_000.0

    band_south_lat = -80.0 + 8.0 * _BANDS.index(band)
    central_lon = -183.0 + 6.0 * zone
    to_utm = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_epsg(epsg), always_xy=True)
    _, band_min_northing = to_utm.transform(central_lon, band_south_lat)
    while northing + 100_000.0 <= band_min_northing:
        northing += 2_000_000.0
    return TileGrid(tile=tile, epsg=epsg, ulx=easting, uly=northing + 100_000.0)


# -- AOI → tiles ------------------------------------------------------------------------------

_ZONE_PAD_DEG = 1.5  # a Sentinel-2 tile reaches up to ~1.4° of longitude past its zone's edge


def tile_id(zone: int, band: str, easting: float, northing_ul: float) -> str:
    """The MGRS id of the 100 km square of ``zone`` whose upper-left corner is given."""
    column = _COLUMN_SETS[zone % 3][round(easting / 100_000.0) - 1]
    row_offset = 0 if zone % 2 else 5
    row = _ROWS[(round((northing_ul - 100_000.0) / 100_000.0) + row_offset) % 20]
    return f"{zone:02d}{band}{column}{row}"


def _square_band(zone: int, easting: float, northing_ul: float, south: bool) -> str | None:
    """The latitude band of a square's centre (the band of its S2 tile), None outside C–X."""
    epsg = (32700 if south else 32600) + zone
    to_ll = Transformer.from_crs(CRS.from_epsg(epsg), CRS.from_epsg(4326), always_xy=True)
    _, lat = to_ll.transform(easting + 50_000.0, northing_ul - 50_000.0)
    index = int((lat + 80.0) // 8.0)
    if lat >= 84.0 or lat < -80.0:
        return None
    return _BANDS[min(index, len(_BANDS) - 1)]


def tiles_for_aoi(aoi) -> list[str]:
    """Sentinel-2 tiles whose 109.8 km footprint intersects ``aoi`` (a shapely geometry in
    lon/lat), computed offline: every UTM zone the AOI reaches (with the overlap past zone
    edges), every 100 km square there whose footprint meets the AOI and whose centre lies in its
    zone. The Norway/Svalbard zone exceptions (32V, 31X–37X) are not modelled."""
    from shapely import box as shapely_box

    west, south_lat, east, north_lat = aoi.bounds
    zones = {
        int((lon + 180.0) // 6.0) % 60 + 1
        for lon in _steps(west - _ZONE_PAD_DEG, east + _ZONE_PAD_DEG, 1.0)
    }
    hemispheres = {lat < 0 for lat in (south_lat, north_lat)}
    tiles = set()
    for zone in sorted(zones):
        for south in sorted(hemispheres):
            epsg = (32700 if south else 32600) + zone
            to_utm = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_epsg(epsg), always_xy=True)
            projected = _project(aoi, to_utm)
            x0, y0, x1, y1 = projected.bounds
            for e in range(1, 9):
                easting = e * 100_000.0
                if easting > x1 or easting + TILE_SIZE_M < x0:
                    continue
                first = int(y0 // 100_000.0) * 100_000.0
                for northing_ul in _steps(first, y1 + TILE_SIZE_M, 100_000.0):
                    footprint = shapely_box(
                        easting, northing_ul - TILE_SIZE_M, easting + TILE_SIZE_M, northing_ul
                    )
                    if not footprint.intersects(projected):
                        continue
                    if not _centre_in_zone(zone, easting, northing_ul, south):
                        continue
                    band = _square_band(zone, easting, northing_ul, south)
                    if band is None:
                        continue
                    tile = tile_id(zone, band, easting, northing_ul)
                    grid = tile_grid(tile)
                    if (grid.ulx, grid.uly) == (easting, northing_ul):
                        tiles.add(tile)
    return sorted(tiles)


def _project(aoi, transformer: Transformer):
    """``aoi`` (lon/lat) in another CRS, its edges densified so they bend as they should."""
    import shapely

    dense = shapely.segmentize(aoi, 0.001)
    return shapely.transform(dense, lambda x, y: transformer.transform(x, y), interleaved=False)


def _steps(start: float, stop: float, step: float) -> list[float]:
    out, value = [], start
    while value <= stop:
        out.append(value)
        value += step
    return [*out, stop]


def _centre_in_zone(zone: int, easting: float, northing_ul: float, south: bool) -> bool:
    """True when some part of the 100 km square lies inside the zone's 6° of longitude."""
    epsg = (32700 if south else 32600) + zone
    to_ll = Transformer.from_crs(CRS.from_epsg(epsg), CRS.from_epsg(4326), always_xy=True)
    lo = -180.0 + 6.0 * (zone - 1)
    for dx in (0.0, 50_000.0, 100_000.0):
        for dy in (0.0, 50_000.0, 100_000.0):
            lon, _ = to_ll.transform(easting + dx, northing_ul - dy)
            if lo - 1e-9 <= lon <= lo + 6.0 + 1e-9:
                return True
    return False


def aoi_window(tile: str, aoi, margin_m: float = 0.0) -> tuple[int, int, int, int] | None:
    """(col_off, row_off, width, height) of the tile's 10 m pixels covering ``aoi`` (lon/lat)
    plus ``margin_m`` on every side, clipped to the tile; None when they do not meet."""
    from shapely import box as shapely_box

    grid = tile_grid(tile)
    to_utm = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_epsg(grid.epsg), always_xy=True)
    footprint = shapely_box(
        grid.ulx - margin_m,
        grid.uly - TILE_SIZE_M - margin_m,
        grid.ulx + TILE_SIZE_M + margin_m,
        grid.uly + margin_m,
    )
    # the AOI's part in this tile only: the parts of a multi-part AOI elsewhere do not widen it
    inside = _project(aoi, to_utm).intersection(footprint)
    if inside.is_empty:
        return None
    x0, y0, x1, y1 = inside.bounds
    col0 = int((x0 - margin_m - grid.ulx) // grid.res)
    col1 = -int(-(x1 + margin_m - grid.ulx) // grid.res)
    row0 = int((grid.uly - y1 - margin_m) // grid.res)
    row1 = -int(-(grid.uly - y0 + margin_m) // grid.res)
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1, grid.size), min(row1, grid.size)
    if col1 <= col0 or row1 <= row0:
        return None
    return col0, row0, col1 - col0, row1 - row0


def load_aoi(spec: str):
    """An AOI in lon/lat from ``west,south,east,north`` or a GeoJSON file (its union)."""
    import json
    from pathlib import Path

    from shapely import box as shapely_box
    from shapely import union_all
    from shapely.geometry import shape

    parts = spec.split(",")
    if len(parts) == 4:
        try:
            west, south, east, north = (float(p) for p in parts)
        except ValueError:
            pass
        else:
            if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
                raise ConfigError(f"AOI bbox {spec!r}: need west < east, south < north, lon/lat")
            return shapely_box(west, south, east, north)
    path = Path(spec)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"AOI {spec!r}: neither a bbox 'w,s,e,n' nor a GeoJSON file: {exc}"
        ) from exc
    if doc.get("type") == "FeatureCollection":
        features = doc.get("features") or []
    else:
        features = [doc if doc.get("type") == "Feature" else {"geometry": doc}]
    try:
        geoms = [shape(f["geometry"]) for f in features if f.get("geometry")]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"AOI {spec}: not a GeoJSON geometry or feature collection: {exc}"
        ) from exc
    if not geoms:
        raise ConfigError(f"AOI {spec}: holds no geometry")
    return union_all(geoms)
