"""Items shaped as each provider publishes them (written by the demo generator, no real items
needed) are found, resolved and harmonised to the same reflectance as the demo's own."""

from __future__ import annotations

import json

import numpy as np
import pystac
import pytest
import rasterio

from tilepipe.acquire.download import download_scene
from tilepipe.acquire.stac import MORE_BANDS, find_items, nodata_pct, read_manifest, select_scenes
from tilepipe.demo.stac import FLAVOURS, flavour_collection

#: flavour -> (offset DN, origin) of its baseline-05.09 scene, and of its baseline-03.01 one
EXPECTED = {
    "earth_search": ((1000, "raster:bands"), (0, "raster:bands")),
    "earth_search_l2a": ((0, "earthsearch:boa_offset_applied"), (0, "raster:bands")),
    "planetary_computer": ((1000, "processing baseline"), (0, "processing baseline")),
    "planetary_computer_2021": ((1000, "processing baseline"), (0, "processing baseline")),
    "cdse": ((1000, "raster:offset (asset)"), (0, "raster:offset (asset)")),
}


def _records(campaign: dict, provider: str):
    items = find_items(
        campaign["catalog"],
        collection=flavour_collection(provider),
        tiles=campaign["tiles"],
        start="2022-01-01",
        end="2022-12-31",
    )
    return select_scenes(items, max_cloud=100, max_dates_per_tile=None)


def test_every_flavour_but_the_demo_is_covered():
    assert set(EXPECTED) == set(FLAVOURS) - {"demo"}


@pytest.mark.parametrize("provider", sorted(EXPECTED))
def test_each_provider_shape_gives_the_offset_and_origin_it_publishes(provider_demo, provider):
    records = _records(provider_demo(provider), provider)
    assert len(records) == 4
    for record in records:
        new, old = EXPECTED[provider]
        expected = new if record.baseline >= "04.00" else old
        assert (record.boa_offset_dn, record.offset_source) == expected
        assert set(json.loads(record.assets)) == {"B02", "B03", "B04", "B08", "SCL", *MORE_BANDS}


@pytest.mark.parametrize("provider", sorted(EXPECTED))
def test_each_provider_shape_harmonises_to_the_demo_reflectance(
    provider_demo, demo, provider, tmp_path
):
    campaign = provider_demo(provider)
    ours = {(r["tile"], r["date"]): r for r in read_manifest(demo["manifest"])}
    for record in _records(campaign, provider):
        row = {k: str(v) for k, v in vars(record).items()}
        theirs, reference = tmp_path / f"{record.date}-p.tif", tmp_path / f"{record.date}-d.tif"
        download_scene(row, theirs, tmp_path / "scl.tif", window=demo["window"])
        ref_row = ours[record.tile, record.date]
        download_scene(ref_row, reference, tmp_path / "scl-d.tif", window=demo["window"])
        with rasterio.open(theirs) as a, rasterio.open(reference) as b:
            assert np.array_equal(a.read(), b.read())
            assert a.tags()["HARMONISATION_FROM"] == record.offset_source


def test_cdse_shaped_items_publish_their_nodata_share_with_the_scl_classes(provider_demo, demo):
    cdse = pystac.Catalog.from_file(provider_demo("cdse")["catalog"])
    ours = {i.id: i for i in pystac.Catalog.from_file(demo["catalog"]).get_items(recursive=True)}
    for item in cdse.get_items(recursive=True):
        assert "s2:nodata_pixel_percentage" not in item.properties
        demo_props = ours[item.id].properties
        assert item.properties["processing:version"] == demo_props["s2:processing_baseline"]
        assert nodata_pct(item) == demo_props["s2:nodata_pixel_percentage"]
