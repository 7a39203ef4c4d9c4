"""Scene search picks the clearest scenes per tile and writes a manifest the DAG is built from."""

from __future__ import annotations

import json

import numpy as np
import pystac
import pytest
import rasterio

from tilepipe.acquire.download import aoi_scene_stats
from tilepipe.acquire.stac import (
    MORE_BANDS,
    boa_offset_dn,
    find_items,
    item_tile,
    read_manifest,
    select_scenes,
    write_manifest,
)


def _items(demo, **kw):
    args = {
        "collection": "sentinel-2-l2a",
        "tiles": demo["tiles"],
        "start": "2022-01-01",
        "end": "2022-12-31",
    }
    return find_items(demo["catalog"], **{**args, **kw})


def test_static_catalog_search_finds_every_tile_date(demo):
    items = _items(demo)
    assert len(items) == len(demo["tiles"]) * len(demo["dates"])


def test_search_filters_by_tile_and_date_window(demo):
    items = _items(demo, tiles=["33UXP"], start="2022-06-01", end="2022-06-30")
    assert [(item_tile(i), i.datetime.date().isoformat()) for i in items] == [
        ("33UXP", "2022-06-21")
    ]


def test_max_dates_keeps_the_clearest_scene_per_tile(demo):
    items = _items(demo)
    records = select_scenes(items, max_cloud=100, max_dates_per_tile=1)
    assert len(records) == len(demo["tiles"])
    for record in records:
        clouds = [i.properties["eo:cloud_cover"] for i in items if item_tile(i) == record.tile]
        assert record.cloud_cover == round(min(clouds), 2)
        assert "rank 1" in record.reason


def test_max_cloud_excludes_cloudier_scenes(demo):
    items = _items(demo)
    threshold = min(i.properties["eo:cloud_cover"] for i in items) + 0.001
    records = select_scenes(items, max_cloud=threshold, max_dates_per_tile=None)
    assert all(r.cloud_cover <= threshold for r in records) and len(records) >= 1


def test_manifest_round_trips_with_unsigned_asset_hrefs(demo, tmp_path):
    records = select_scenes(_items(demo), max_cloud=100, max_dates_per_tile=None)
    write_manifest(records, tmp_path / "scenes.csv")
    rows = read_manifest(tmp_path / "scenes.csv")
    assert [(r["tile"], r["date"]) for r in rows] == [(r.tile, r.date) for r in records]
    for row in rows:
        hrefs = json.loads(row["assets"])
        assert set(hrefs) == {"B02", "B03", "B04", "B08", "SCL", *MORE_BANDS}
        assert not any("?" in h for h in hrefs.values())  # no query string, so no signature


def test_item_tile_reads_every_convention():
    base = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "x",
        "geometry": None,
        "links": [],
        "assets": {},
    }
    for props in (
        {"grid:code": "MGRS-33UXP"},
        {"s2:mgrs_tile": "33UXP"},
        {"mgrs:utm_zone": 33, "mgrs:latitude_band": "U", "mgrs:grid_square": "XP"},
    ):
        item = pystac.Item.from_dict(
            {**base, "properties": {**props, "datetime": "2022-01-01T00:00:00Z"}}
        )
        assert item_tile(item) == "33UXP"


def test_offset_comes_from_raster_bands_or_else_from_the_baseline(demo):
    items = _items(demo)
    for item in items:
        expected = 1000 if item.properties["s2:processing_baseline"] >= "04.00" else 0
        assert boa_offset_dn(item) == expected
        for asset in item.assets.values():
            asset.extra_fields.pop("raster:bands", None)
        assert boa_offset_dn(item) == expected


def test_days_are_ranked_by_cloud_over_the_window_not_over_the_tile(demo):
    items = _items(demo, tiles=["33UXP"])
    by_tile_cloud = sorted(items, key=lambda i: i.properties["eo:cloud_cover"])
    # over the window the tile's cloudiest day is the clear one
    window_stats = {by_tile_cloud[0].id: (80.0, 0.0), by_tile_cloud[-1].id: (1.0, 0.0)}
    (record,) = select_scenes(
        items, max_cloud=50, max_dates_per_tile=1, aoi_stats=lambda i: window_stats[i.id]
    )
    assert record.item_id == by_tile_cloud[-1].id and record.cloud_cover == 1.0
    assert record.reason.startswith("window cloud 1.0% <= 50%") and "tile cloud" in record.reason


def test_window_cloud_and_nodata_come_from_the_scl_band_over_the_window(demo):
    item = next(i for i in _items(demo, tiles=["33UXP"]) if i.datetime.month == 6)
    window = (5000, 5000, 32, 32)  # the demo's top-left quarter (SCL at 20 m: 16 x 16 px)
    cloud, nodata = aoi_scene_stats(item, {"33UXP": window})
    with rasterio.open(item.assets["SCL"].get_absolute_href()) as src:
        scl = src.read(1)[:16, :16]
    valid = scl != 0
    assert nodata == pytest.approx(100 * (1 - valid.mean()))
    assert cloud == pytest.approx(100 * np.isin(scl[valid], (3, 8, 9, 10)).mean())
