"""The MGRS/Sentinel-2 tile grid is computed offline and matches the MGRS lettering."""

from __future__ import annotations

import pytest
from pyproj import Transformer

from tilepipe.errors import ConfigError
from tilepipe.grid import _BANDS, tile_grid


@pytest.mark.parametrize(
    ("tile", "epsg", "ulx", "uly"),
    [
        ("33UXP", 32633, 600000.0, 5400000.0),  # Vienna
        ("31TCJ", 32631, 300000.0, 4900000.0),  # Toulouse
        ("18TWL", 32618, 500000.0, 4600000.0),  # New York
        ("55HBU", 32755, 200000.0, 5900000.0),  # Victoria, southern hemisphere
    ],
)
def test_known_tiles_have_their_crs_and_upper_left_corner(tile, epsg, ulx, uly):
    grid = tile_grid(tile)
    assert (grid.epsg, grid.ulx, grid.uly) == (epsg, ulx, uly)
    assert grid.transform.a == 10.0 and grid.transform.e == -10.0
    assert grid.size == 10980


@pytest.mark.parametrize("tile", ["31UFS", "33UXP", "32TNS", "30TYN", "20HNH", "52SDG", "35VLC"])
def test_tile_square_lies_in_its_zone_and_latitude_band(tile):
    grid = tile_grid(tile)
    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    # centre of the MGRS 100 km square (the tile's upper-left 100 km)
    lon, lat = to_ll.transform(grid.ulx + 50_000, grid.uly - 50_000)
    band_south = -80 + 8 * _BANDS.index(tile[2])
    assert band_south - 1 <= lat <= band_south + 8 + 1
    zone = int(tile[:2])
    assert -183 + 6 * zone - 3 - 1 <= lon <= -183 + 6 * zone + 3 + 1


def test_window_is_a_pixel_offset_of_the_tile_grid():
    transform, width, height = tile_grid("33UXP").window(5000, 5000, 160, 160)
    assert (transform.c, transform.f, width, height) == (650000.0, 5350000.0, 160, 160)


@pytest.mark.parametrize("bad", ["33UX", "33IXP", "3UXPP", "33uxp", "61UXP", "33UAP"])
def test_malformed_tile_ids_are_rejected_with_the_id_in_the_message(bad):
    with pytest.raises(ConfigError, match=bad):
        tile_grid(bad)
