"""Real Sentinel-2 L2A items, exactly as Earth Search, Planetary Computer and CDSE published
them, are found, resolved to their five assets and harmonised right.

The items live beside the repository (tests/conftest.py: REAL_ITEMS) and are read in place with
pystac; without them these tests skip, and the provider-shaped demo items of
tests/acquire/test_provider_shapes.py cover the same structures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pystac
import pytest
from pystac.utils import make_absolute_href

from tilepipe.acquire.sources import make_source
from tilepipe.acquire.stac import (
    MORE_BANDS,
    asset_hrefs,
    find_items,
    item_tile,
    offset_and_origin,
    select_scenes,
)
from tilepipe.core.inputs import L2A_BANDS

from ..loopback import Loopback

BANDS = ("B02", "B03", "B04", "B08", "SCL")
#: (asset key, file name ending) per band, as each layout publishes them
ES = (
    ("blue", "green", "red", "nir", "scl"),
    ("/B02.tif", "/B03.tif", "/B04.tif", "/B08.tif", "/SCL.tif"),
)
PC_FILES = ("_B02_10m.tif", "_B03_10m.tif", "_B04_10m.tif", "_B08_10m.tif", "_SCL_20m.tif")
PC = (("B02", "B03", "B04", "B08", "SCL"), PC_FILES)
PC_2021 = (("B02", "B03", "B04", "B08", "SCL-20m"), PC_FILES)
CDSE = (
    ("B02_10m", "B03_10m", "B04_10m", "B08_10m", "SCL_20m"),
    ("_B02_10m.jp2", "_B03_10m.jp2", "_B04_10m.jp2", "_B08_10m.jp2", "_SCL_20m.jp2"),
)
FLAG, RO, RB, PB = (
    "earthsearch:boa_offset_applied",
    "raster:offset (asset)",
    "raster:bands",
    "processing baseline",
)
L2A, C1 = "sentinel-2-l2a", "sentinel-2-c1-l2a"

#: provider, collection, date (the item's file is named by the three), layout, offset DN, origin
ROWS = [
    ("cdse", L2A, "2020-03-22", CDSE, 1000, RO),
    ("cdse", L2A, "2022-02-17", CDSE, 1000, RO),
    ("cdse", L2A, "2026-05-27", CDSE, 1000, RO),
    ("earth_search", C1, "2024-04-19", ES, 1000, RB),
    ("earth_search", C1, "2025-07-31", ES, 1000, RB),
    ("earth_search", L2A, "2022-04-05", ES, 0, FLAG),
    ("earth_search", L2A, "2023-10-08", ES, 0, FLAG),
    ("earth_search", L2A, "2024-04-19", ES, 0, FLAG),
    ("earth_search", L2A, "2025-07-31", ES, 0, FLAG),
    ("planetary_computer", L2A, "2019-01-01", PC, 0, PB),
    ("planetary_computer", L2A, "2021-06-10", PC_2021, 0, PB),
    ("planetary_computer", L2A, "2022-07-28", PC, 1000, PB),
    ("planetary_computer", L2A, "2024-02-28", PC, 1000, PB),
]
#: name, provider, asset keys, file endings, offset DN, origin
TABLE = [(f"{p}-{c}-{d}", p, keys, files, o, src) for p, c, d, (keys, files), o, src in ROWS]
PROVIDERS = sorted({row[1] for row in TABLE})


def _item(folder: Path, name: str) -> pystac.Item:
    return pystac.Item.from_file(str(folder / f"{name}.json"))


def _five(hrefs: dict[str, str]) -> dict[str, str]:
    """The five assets every scene needs, out of a manifest row's hrefs."""
    return {band: href for band, href in hrefs.items() if band in BANDS}


def _published_href(item: pystac.Item, key: str) -> str:
    """The href the service published for asset ``key``, made absolute against the item file."""
    return item.assets[key].get_absolute_href() or item.assets[key].href


def _api_href(item: pystac.Item, key: str) -> str:
    """The href of asset ``key`` as an API answer resolves it: as published when absolute, else
    against the item's canonical link (the one static copy among the items has relative ones)."""
    href = item.assets[key].href
    if "://" in href:
        return href
    return make_absolute_href(href, item.get_single_link("canonical").get_href(False))


def test_the_table_covers_every_real_item(real_items_dir):
    names = {p.stem for p in real_items_dir.glob("*.json")} - {"PROVENANCE"}
    assert names == {row[0] for row in TABLE}


@pytest.mark.parametrize(("name", "provider", "keys", "files", "offset", "origin"), TABLE)
def test_each_real_item_resolves_its_five_assets_and_its_offset(
    real_items_dir, name, provider, keys, files, offset, origin
):
    item = _item(real_items_dir, name)
    hrefs = _five(asset_hrefs(item))
    published = {band: _published_href(item, key) for band, key in zip(BANDS, keys, strict=True)}
    assert hrefs == published
    assert all(hrefs[band].endswith(tail) for band, tail in zip(BANDS, files, strict=True))
    assert offset_and_origin(item) == (offset, origin)


@pytest.mark.parametrize("name", [row[0] for row in TABLE])
def test_each_real_item_resolves_the_other_l2a_bands_at_their_native_resolution(
    real_items_dir, name
):
    """B01 B05 B06 B07 B8A B09 B11 B12, never CDSE's or Planetary Computer's resampled copies."""
    hrefs = asset_hrefs(_item(real_items_dir, name))
    assert set(hrefs) == {*BANDS, *MORE_BANDS}
    for band in MORE_BANDS:
        tail = f"/{band}.tif" if name.startswith("earth_search") else f"_{band}_{L2A_BANDS[band]}m."
        assert tail in hrefs[band], (band, hrefs[band])


def _static_catalog(folder: Path, root: Path, provider: str) -> Path:
    """A static catalog over the provider's real items, linked where they lie (not copied)."""
    collections: dict[str, list[str]] = {}
    for name in (row[0] for row in TABLE if row[1] == provider):
        cid = json.loads((folder / f"{name}.json").read_text())["collection"]
        collections.setdefault(cid, []).append(name)
    root.mkdir(parents=True, exist_ok=True)
    links = []
    for cid, members in collections.items():
        coll = {
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": cid,
            "description": f"{provider} {cid}",
            "license": "proprietary",
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {"interval": [[None, None]]},
            },
            "links": [
                {"rel": "item", "href": str(folder / f"{m}.json"), "type": "application/json"}
                for m in members
            ],
        }
        (root / f"{cid}.json").write_text(json.dumps(coll))
        links.append({"rel": "child", "href": f"./{cid}.json", "type": "application/json"})
    catalog = {"type": "Catalog", "stac_version": "1.0.0", "id": provider, "description": provider}
    (root / "catalog.json").write_text(json.dumps({**catalog, "links": links}))
    return root / "catalog.json"


def _search(catalog: str, provider: str, names: list[str], folder: Path, **kw):
    """find_items + select_scenes, per collection (Earth Search's two hold the same days), for
    the tiles of ``names``: the chosen rows."""
    items = [_item(folder, n) for n in names]
    records = []
    for collection in sorted({i.collection_id for i in items}):
        found = find_items(
            catalog,
            collection=collection,
            tiles=sorted({item_tile(i) for i in items}),
            start="2015-01-01",
            end="2030-12-31",
            source=make_source({"provider": provider}),
            **kw,
        )
        records += select_scenes(found, max_cloud=100, max_dates_per_tile=None)
    return records


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_static_catalog_of_real_items_is_searched_to_the_right_manifest_rows(
    real_items_dir, tmp_path, provider
):
    rows = [row for row in TABLE if row[1] == provider]
    catalog = _static_catalog(real_items_dir, tmp_path / "static", provider)
    records = _search(str(catalog), provider, [r[0] for r in rows], real_items_dir)
    got = {(r.item_id, r.boa_offset_dn, r.offset_source) for r in records}
    ids = [_item(real_items_dir, r[0]).id for r in rows]
    assert got == {(i, r[4], r[5]) for i, r in zip(ids, rows, strict=True)}


@pytest.fixture(scope="module")
def published_server(real_items_dir):
    """A loopback STAC API answering searches with the real items as they were published."""
    server = Loopback(real_items_dir, published=True)
    yield server
    server.close()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_stac_api_answering_with_real_items_gives_the_right_manifest_rows(
    real_items_dir, published_server, provider
):
    published_server.reset()
    rows = [row for row in TABLE if row[1] == provider]
    records = _search(f"{published_server.url}/", provider, [r[0] for r in rows], real_items_dir)
    expected = {}
    for name, _, keys, _, offset, origin in rows:
        item = _item(real_items_dir, name)
        hrefs = {b: _api_href(item, k) for b, k in zip(BANDS, keys, strict=True)}
        expected[item.id] = (offset, origin, hrefs)
    got = {
        r.item_id: (r.boa_offset_dn, r.offset_source, _five(json.loads(r.assets))) for r in records
    }
    assert got == expected


def test_relative_hrefs_of_an_api_answer_resolve_against_the_canonical_link(real_items_dir):
    data = json.loads((real_items_dir / "earth_search-sentinel-2-l2a-2022-04-05.json").read_text())
    item = pystac.Item.from_dict(data)  # as an API answer: no file, no self link
    assert asset_hrefs(item)["B02"] == (
        "s3://sentinel-cogs/sentinel-s2-l2a-cogs/33/U/WP/2022/4/S2A_33UWP_20220405_0_L2A/B02.tif"
    )


def test_cdse_nodata_share_is_read_from_the_scl_classes(real_items_dir):
    from tilepipe.acquire.stac import nodata_pct

    item = _item(real_items_dir, "cdse-sentinel-2-l2a-2022-02-17")
    assert "s2:nodata_pixel_percentage" not in item.properties
    assert nodata_pct(item) == 0.0 and item.assets["SCL_20m"].extra_fields["classification:classes"]
