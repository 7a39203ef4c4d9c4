"""Scene search: STAC items for tiles and dates → the scene manifest the workflow is planned from.

pystac-client opens the catalog whatever it is: a STAC API (searched server-side with the item
search endpoint) or a static catalog such as the demo's (its items are walked and filtered with
the same predicates). Both paths end in the same selection and the same manifest rows.
"""

from __future__ import annotations

import csv
import json
import logging
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date as Date
from pathlib import Path

import pystac
from pystac_client import Client
from pystac_client.conformance import ConformanceClasses

from tilepipe.errors import InputError
from tilepipe.raster import atomic_output

log = logging.getLogger(__name__)

BAND_ASSETS = ("B02", "B03", "B04", "B08", "SCL")
# Earth Search names its assets by colour; the manifest always uses band ids.
ASSET_ALIASES = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "SCL": "scl"}
MANIFEST_COLUMNS = (
    "tile",
    "date",
    "item_id",
    "collection",
    "cloud_cover",
    "nodata_pct",
    "baseline",
    "boa_offset_dn",
    "assets",
    "reason",
)


@dataclass
class SceneRecord:
    """One chosen scene: a row of ``manifests/scenes.csv``."""

    tile: str
    date: str
    item_id: str
    collection: str
    cloud_cover: float
    nodata_pct: float
    baseline: str
    boa_offset_dn: int
    assets: str  # JSON object: band id -> unsigned href
    reason: str


def item_tile(item: pystac.Item) -> str | None:
    """The MGRS tile of an item, from whichever convention its catalog uses."""
    props = item.properties
    if "grid:code" in props and str(props["grid:code"]).startswith("MGRS-"):
        return str(props["grid:code"])[5:]
    if "s2:mgrs_tile" in props:
        return str(props["s2:mgrs_tile"])
    if {"mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square"} <= props.keys():
        zone, band = int(props["mgrs:utm_zone"]), props["mgrs:latitude_band"]
        return f"{zone:02d}{band}{props['mgrs:grid_square']}"
    return None


def boa_offset_dn(item: pystac.Item) -> int:
    """Digital numbers to subtract to harmonise reflectance (1000 from baseline 04.00 on).

    Prefer the ``raster:bands`` offset the item publishes; fall back to the processing baseline.
    """
    for key in BAND_ASSETS[:4]:
        asset = item.assets.get(key) or item.assets.get(ASSET_ALIASES[key])
        bands = (asset.extra_fields.get("raster:bands") if asset else None) or []
        if bands and "offset" in bands[0] and "scale" in bands[0] and bands[0]["scale"]:
            return round(-float(bands[0]["offset"]) / float(bands[0]["scale"]))
    baseline = str(item.properties.get("s2:processing_baseline", "00.00"))
    return 1000 if baseline >= "04.00" else 0


def _asset_hrefs(item: pystac.Item) -> dict[str, str]:
    hrefs = {}
    for key in BAND_ASSETS:
        asset = item.assets.get(key) or item.assets.get(ASSET_ALIASES[key])
        if asset is None:
            raise InputError(f"item {item.id}: asset {key} is missing")
        hrefs[key] = asset.get_absolute_href() or asset.href
    return hrefs


def find_items(
    catalog: str, *, collection: str, tiles: Iterable[str], start: str, end: str
) -> list[pystac.Item]:
    """Items of ``collection`` over ``tiles`` between ``start`` and ``end`` (inclusive dates)."""
    tiles = set(tiles)
    with warnings.catch_warnings():
        # a static catalog advertises no conformance classes: walking it is the intended path
        warnings.simplefilter("ignore")
        return _find_items(catalog, collection=collection, tiles=tiles, start=start, end=end)


def _find_items(
    catalog: str, *, collection: str, tiles: set[str], start: str, end: str
) -> list[pystac.Item]:
    client = Client.open(catalog)
    if client.conforms_to(ConformanceClasses.ITEM_SEARCH):
        search = client.search(
            collections=[collection],
            datetime=f"{start}T00:00:00Z/{end}T23:59:59Z",
            query={"grid:code": {"in": [f"MGRS-{t}" for t in sorted(tiles)]}},
        )
        candidates: Iterable[pystac.Item] = search.items()
    else:
        coll = client.get_collection(collection)
        if coll is None:
            raise InputError(f"catalog {catalog}: collection {collection!r} not found")
        candidates = coll.get_items(recursive=True)
    lo, hi = Date.fromisoformat(start), Date.fromisoformat(end)
    items = []
    for item in candidates:
        day = item.datetime.date() if item.datetime else None
        if item_tile(item) in tiles and day is not None and lo <= day <= hi:
            items.append(item)
    return items


def select_scenes(
    items: Iterable[pystac.Item], *, max_cloud: float, max_dates_per_tile: int | None
) -> list[SceneRecord]:
    """Choose, per tile, the clearest scene of each day and the N clearest days under max_cloud."""
    per_day: dict[tuple[str, str], pystac.Item] = {}
    for item in items:
        key = (item_tile(item), item.datetime.date().isoformat())
        cloud = float(item.properties.get("eo:cloud_cover", 100.0))
        best = per_day.get(key)
        if best is None or cloud < float(best.properties.get("eo:cloud_cover", 100.0)):
            per_day[key] = item
    by_tile: dict[str, list[pystac.Item]] = {}
    for (tile, _), item in per_day.items():
        by_tile.setdefault(tile, []).append(item)

    records = []
    for tile, tile_items in sorted(by_tile.items()):

        def rank(it: pystac.Item) -> tuple[float, float]:
            props = it.properties
            return (
                float(props.get("eo:cloud_cover", 100.0)),
                float(props.get("s2:nodata_pixel_percentage", 0.0)),
            )

        eligible = sorted((it for it in tile_items if rank(it)[0] <= max_cloud), key=rank)
        chosen = eligible[:max_dates_per_tile] if max_dates_per_tile else eligible
        for position, item in enumerate(chosen, start=1):
            cloud, nodata = rank(item)
            records.append(
                SceneRecord(
                    tile=tile,
                    date=item.datetime.date().isoformat(),
                    item_id=item.id,
                    collection=item.collection_id or "",
                    cloud_cover=round(cloud, 2),
                    nodata_pct=round(nodata, 2),
                    baseline=str(item.properties.get("s2:processing_baseline", "")),
                    boa_offset_dn=boa_offset_dn(item),
                    assets=json.dumps(_asset_hrefs(item), sort_keys=True),
                    reason=(
                        f"cloud {cloud:.1f}% <= {max_cloud:g}%, nodata {nodata:.1f}%; "
                        f"rank {position} of {len(eligible)} eligible of {len(tile_items)} days"
                    ),
                )
            )
    records.sort(key=lambda r: (r.tile, r.date))
    return records


def write_manifest(records: list[SceneRecord], path: str | Path) -> None:
    """Write the scene manifest CSV atomically."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for record in records:
            writer.writerow(asdict(record))


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """Read the scene manifest as a list of row dicts."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def manifest_row(path: str | Path, tile: str, date: str) -> dict[str, str]:
    """The manifest row of one tile-date, or InputError if the manifest has none."""
    for row in read_manifest(path):
        if row["tile"] == tile and row["date"] == date:
            return row
    raise InputError(f"tile {tile}, date {date}: not in scene manifest {path}")
