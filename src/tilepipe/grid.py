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

from tilepipe.errors import ConfigError

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
