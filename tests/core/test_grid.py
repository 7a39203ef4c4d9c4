"""The MGRS/Sentinel-2 tile grid is computed offline and matches the MGRS lettering."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
import shapely.geometry
from pyproj import Transformer

from tilepipe.core.errors import ConfigError
from tilepipe.core.grid import _BANDS, aoi_window, load_aoi, tile_grid, tiles_for_aoi


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


def _footprint_ll(tile: str):
    """A tile's 109.8 km footprint as a lon/lat polygon (densified edges)."""
    grid = tile_grid(tile)
    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    ring = shapely.segmentize(
        shapely.box(grid.ulx, grid.uly - 109_800, grid.ulx + 109_800, grid.uly), 1000
    )
    return shapely.transform(ring, to_ll.transform, interleaved=False)


@pytest.mark.parametrize(
    ("bbox", "zones"),
    [
        ((11.8, 48.0, 12.2, 48.3), {32, 33}),  # zone 32/33 boundary at 12°E, Bavaria
        ((-0.2, 51.4, 0.2, 51.6), {30, 31}),  # Greenwich meridian, London
        ((16.9, 48.1, 17.1, 48.2), {33, 34}),  # 1° west of 18°E: zone 34's tiles reach here
        ((144.9, -37.9, 145.1, -37.7), {55}),  # southern hemisphere, Melbourne
    ],
)
def test_aoi_tiles_cover_every_point_of_the_aoi_across_zone_boundaries(bbox, zones):
    aoi = shapely.box(*bbox)
    tiles = tiles_for_aoi(aoi)
    assert {int(t[:2]) for t in tiles} == zones
    footprints = [_footprint_ll(t) for t in tiles]
    assert all(f.intersects(aoi) for f in footprints)  # no tile that misses the AOI
    for lon in np.linspace(bbox[0], bbox[2], 9):
        for lat in np.linspace(bbox[1], bbox[3], 9):
            point = shapely.Point(lon, lat)
            assert any(f.covers(point) for f in footprints), (lon, lat)


def test_aoi_window_covers_the_aoi_plus_its_margin_on_the_tile_grid():
    grid = tile_grid("33UXP")
    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    west, south = to_ll.transform(grid.ulx + 50_000, grid.uly - 51_000)
    east, north = to_ll.transform(grid.ulx + 51_000, grid.uly - 50_000)
    aoi = shapely.box(west, south, east, north)  # about 1 km around pixel (5000, 5000)
    col, row, width, height = aoi_window("33UXP", aoi, 320)
    window = shapely.box(
        grid.ulx + 10 * col,
        grid.uly - 10 * (row + height),
        grid.ulx + 10 * (col + width),
        grid.uly - 10 * row,
    )
    to_utm = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    projected = shapely.transform(
        shapely.segmentize(aoi, 0.001), to_utm.transform, interleaved=False
    )
    needed = shapely.box(*projected.bounds).buffer(320, join_style="mitre")
    assert window.covers(needed)
    assert window.area <= needed.buffer(20, join_style="mitre").area  # at most 2 px to spare


def test_an_aoi_outside_the_tile_has_no_window():
    assert aoi_window("33UXP", shapely.box(2.0, 45.0, 2.1, 45.1), 320) is None


def test_an_aoi_is_read_from_a_bbox_or_a_geojson_file(tmp_path):
    assert load_aoi("16.5,48.1,16.6,48.2").bounds == (16.5, 48.1, 16.6, 48.2)
    path = tmp_path / "aoi.geojson"
    feature = {
        "type": "Feature",
        "properties": {},
        "geometry": shapely.geometry.mapping(shapely.box(16.5, 48.1, 16.6, 48.2)),
    }
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    assert load_aoi(str(path)).bounds == (16.5, 48.1, 16.6, 48.2)
    with pytest.raises(ConfigError, match="neither a bbox"):
        load_aoi(str(tmp_path / "missing.geojson"))


def test_a_multi_part_aoi_gives_each_tile_the_window_of_its_own_part():
    near = shapely.box(17.02, 48.27, 17.04, 48.28)  # in 33UXP
    far = shapely.box(5.13, 50.96, 5.15, 50.98)  # in 31UFS, far west of zone 33
    alone = aoi_window("33UXP", near, 0)
    assert aoi_window("33UXP", shapely.MultiPolygon([near, far]), 0) == alone
    assert alone[2] < 200 and alone[3] < 200
