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
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import date as Date
from pathlib import Path
from typing import Any

import pystac
from pystac.utils import is_absolute_href, make_absolute_href
from pystac_client import Client
from pystac_client.conformance import ConformanceClasses
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from requests.exceptions import RequestException
from urllib3.util.retry import Retry

from tilepipe.acquire.sources import Source, make_source
from tilepipe.acquire.transfer import RETRYABLE_STATUS, RetryPolicy, redact
from tilepipe.core.errors import InputError
from tilepipe.core.raster import atomic_output

log = logging.getLogger(__name__)

BAND_ASSETS = ("B02", "B03", "B04", "B08", "SCL")
#: The asset keys each band is published under, tried in order (the manifest always uses band
#: ids): tilepipe's demo and Planetary Computer ("B02"), Earth Search ("blue"), CDSE
#: ("B02_10m", "SCL_20m") and Planetary Computer's 2021 item format ("SCL-20m").
ASSET_KEYS = {
    "B02": ("B02", "blue", "B02_10m"),
    "B03": ("B03", "green", "B03_10m"),
    "B04": ("B04", "red", "B04_10m"),
    "B08": ("B08", "nir", "B08_10m"),
    "SCL": ("SCL", "scl", "SCL_20m", "SCL-20m"),
    # the other L2A bands, at their native resolution (CDSE also publishes resampled copies,
    # "B05_60m", "B01_20m": never taken): written into s2.tif when a configured model takes them
    "B01": ("B01", "coastal", "B01_60m"),
    "B05": ("B05", "rededge1", "B05_20m"),
    "B06": ("B06", "rededge2", "B06_20m"),
    "B07": ("B07", "rededge3", "B07_20m"),
    "B8A": ("B8A", "nir08", "B8A_20m"),
    "B09": ("B09", "nir09", "B09_60m"),
    "B11": ("B11", "swir16", "B11_20m"),
    "B12": ("B12", "swir22", "B12_20m"),
}
#: The bands a manifest row may also name, when the item has them (ASSET_KEYS beyond the five).
MORE_BANDS = tuple(b for b in ASSET_KEYS if b not in BAND_ASSETS)
#: Earth Search's flag (collection sentinel-2-l2a) that the offset is already out of the COGs.
BOA_APPLIED_FLAG = "earthsearch:boa_offset_applied"
MANIFEST_COLUMNS = (
    "tile",
    "date",
    "item_id",
    "collection",
    "cloud_cover",
    "nodata_pct",
    "baseline",
    "boa_offset_dn",
    "offset_source",
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
    offset_source: str  # see offset_and_origin: flag, raster:offset (asset), raster:bands, ...
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


def band_asset(item: pystac.Item, band: str) -> pystac.Asset | None:
    """The asset holding ``band`` (a band id of BAND_ASSETS) under any provider's key, or None."""
    for key in ASSET_KEYS[band]:
        if key in item.assets:
            return item.assets[key]
    return None


def item_baseline(item: pystac.Item) -> str:
    """The processing baseline ("05.10"): ``s2:processing_baseline``, or CDSE's
    ``processing:version``; "" when the item publishes neither."""
    props = item.properties
    return str(props.get("s2:processing_baseline") or props.get("processing:version") or "")


def boa_offset_dn(item: pystac.Item) -> int:
    """Digital numbers to subtract to harmonise reflectance (1000 from baseline 04.00 on)."""
    return offset_and_origin(item)[0]


def _dn_offset(offset: Any, scale: Any) -> int | None:
    """The DN to subtract for a published (offset, scale) pair, None if either is unusable."""
    try:
        return round(-float(offset) / float(scale))
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _published_offset(asset: pystac.Asset) -> tuple[int, str] | None:
    """(DN, origin) of an asset's own scale/offset: STAC 1.1 fields first, then raster:bands."""
    fields = asset.extra_fields
    if "raster:offset" in fields and "raster:scale" in fields:
        value = _dn_offset(fields["raster:offset"], fields["raster:scale"])
        if value is not None:
            return value, "raster:offset (asset)"
    bands = fields.get("raster:bands") or []
    if bands and "offset" in bands[0] and "scale" in bands[0]:
        value = _dn_offset(bands[0]["offset"], bands[0]["scale"])
        if value is not None:
            return value, "raster:bands"
    return None


def offset_and_origin(item: pystac.Item) -> tuple[int, str]:
    """(offset in DN, where it came from), the first of these that the item publishes.

    1. ``earthsearch:boa_offset_applied: true``: Earth Search removed the offset from the COGs
       (its ``raster:bands`` still state one, so this must win over them): 0.
    2. ``raster:offset``/``raster:scale`` on a reflectance asset (STAC 1.1, CDSE).
    3. ``raster:bands`` offset/scale of a reflectance asset (STAC 1.0, Earth Search, the demo).
    4. The processing baseline (``s2:processing_baseline`` or ``processing:version``): 1000
       from 04.00 on (Planetary Computer publishes no scale or offset).
    Download then checks the choice against the pixels (``check_harmonisation``).
    """
    if item.properties.get(BOA_APPLIED_FLAG) is True:
        return 0, BOA_APPLIED_FLAG
    for band in BAND_ASSETS[:4]:
        asset = band_asset(item, band)
        published = _published_offset(asset) if asset else None
        if published is not None:
            return published
    return (1000 if item_baseline(item) >= "04.00" else 0), "processing baseline"


def nodata_pct(item: pystac.Item) -> float:
    """The item's nodata share (%): ``s2:nodata_pixel_percentage``, or else the percentage of
    its SCL asset's no-data class (CDSE publishes it in ``classification:classes``); 0 unknown."""
    if "s2:nodata_pixel_percentage" in item.properties:
        return float(item.properties["s2:nodata_pixel_percentage"])
    scl = band_asset(item, "SCL")
    for cls in (scl.extra_fields.get("classification:classes") or []) if scl else []:
        if cls.get("value") == 0 and "percentage" in cls:
            return float(cls["percentage"])
    return 0.0


def absolute_href(item: pystac.Item, asset: pystac.Asset) -> str:
    """An asset's href made absolute: against the item's own location (its self link, or the
    file it was read from), or else its ``canonical`` link (an API answer copied from a static
    catalog keeps relative hrefs); InputError when there is nothing to resolve it against."""
    href = asset.get_absolute_href()
    if href:
        return href
    link = item.get_single_link("canonical")
    canonical = link.get_href(transform_href=False) if link is not None else None
    if canonical and is_absolute_href(canonical):
        return make_absolute_href(asset.href, canonical)
    raise InputError(
        f"item {item.id}: asset href {asset.href!r} is relative and the item has neither a self "
        "nor a canonical link to resolve it against"
    )


def asset_hrefs(item: pystac.Item) -> dict[str, str]:
    """Band id -> absolute, unsigned href of each of the five assets, and of each further L2A
    band the item publishes; InputError naming a missing one of the five and the keys that
    were looked for."""
    hrefs = {}
    for band in BAND_ASSETS:
        asset = band_asset(item, band)
        if asset is None:
            keys = ", ".join(ASSET_KEYS[band])
            raise InputError(f"item {item.id}: asset {band} is missing (looked for {keys})")
        hrefs[band] = absolute_href(item, asset)
    for band in MORE_BANDS:
        asset = band_asset(item, band)
        if asset is not None:
            hrefs[band] = absolute_href(item, asset)
    return hrefs


def api_io(policy: RetryPolicy) -> StacApiIO:
    """pystac-client I/O that retries 429/5xx with backoff, honouring Retry-After."""
    retry = Retry(
        total=policy.attempts - 1,
        backoff_factor=policy.base_delay_s,
        backoff_max=policy.max_delay_s,
        backoff_jitter=policy.base_delay_s / 2,
        status_forcelist=sorted(RETRYABLE_STATUS),
        allowed_methods=None,  # item search is a POST: safe to repeat
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    return StacApiIO(max_retries=retry, timeout=policy.timeout_s)


def find_items(
    catalog: str,
    *,
    collection: str | None = None,
    tiles: Iterable[str],
    start: str,
    end: str,
    source: Source | None = None,
    max_cloud: float = 100.0,
    policy: RetryPolicy | None = None,
) -> list[pystac.Item]:
    """Items of ``collection`` (None: the source's default) over ``tiles`` between ``start`` and
    ``end`` (inclusive dates)."""
    tiles = set(tiles)
    source = source or make_source({})
    collection = collection or source.collection
    policy = policy or RetryPolicy()
    with warnings.catch_warnings():
        # a static catalog advertises no conformance classes: walking it is the intended path
        warnings.simplefilter("ignore")
        try:
            return _find_items(
                catalog,
                collection=collection,
                tiles=tiles,
                start=start,
                end=end,
                source=source,
                max_cloud=max_cloud,
                policy=policy,
            )
        except (APIError, RequestException) as exc:
            raise InputError(
                f"catalog {redact(catalog)}: search failed after {policy.attempts} attempt(s): "
                f"{redact(str(exc))[:500]}"
            ) from exc


def _find_items(
    catalog: str,
    *,
    collection: str,
    tiles: set[str],
    start: str,
    end: str,
    source: Source,
    max_cloud: float,
    policy: RetryPolicy,
) -> list[pystac.Item]:
    remote = catalog.startswith(("http://", "https://"))
    client = Client.open(catalog, stac_io=api_io(policy)) if remote else Client.open(catalog)
    if client.conforms_to(ConformanceClasses.ITEM_SEARCH):
        search = client.search(
            collections=[collection],
            datetime=f"{start}T00:00:00Z/{end}T23:59:59Z",
            **source.search_filter(sorted(tiles), max_cloud),
        )
        # built without the client as root: pystac would resolve an answer's relative links
        # (a static copy's "../collection.json") against a self link an answer need not have
        candidates: Iterable[pystac.Item] = map(pystac.Item.from_dict, search.items_as_dicts())
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


def _cloud(item: pystac.Item) -> float:
    """The item's published cloud cover (%); unknown counts as fully cloudy."""
    return float(item.properties.get("eo:cloud_cover", 100.0))


def _tile_rank(item: pystac.Item) -> tuple[float, float]:
    """(cloud %, nodata %) of an item over its whole tile, as its catalog publishes them."""
    return _cloud(item), nodata_pct(item)


def _clearest_per_day(items: Iterable[pystac.Item]) -> dict[str, list[pystac.Item]]:
    """Per tile, the least cloudy item of each day (a tie keeps the first seen)."""
    per_day: dict[tuple[str, str], pystac.Item] = {}
    for item in items:
        key = (item_tile(item), item.datetime.date().isoformat())
        best = per_day.get(key)
        if best is None or _cloud(item) < _cloud(best):
            per_day[key] = item
    by_tile: dict[str, list[pystac.Item]] = {}
    for (tile, _), item in per_day.items():
        by_tile.setdefault(tile, []).append(item)
    return by_tile


def _record(tile: str, item: pystac.Item, cloud: float, nodata: float, reason: str) -> SceneRecord:
    """The manifest row of a chosen item, measured as (cloud, nodata) and chosen for ``reason``."""
    offset, origin = offset_and_origin(item)
    return SceneRecord(
        tile=tile,
        date=item.datetime.date().isoformat(),
        item_id=item.id,
        collection=item.collection_id or "",
        cloud_cover=round(cloud, 2),
        nodata_pct=round(nodata, 2),
        baseline=item_baseline(item),
        boa_offset_dn=offset,
        offset_source=origin,
        assets=json.dumps(asset_hrefs(item), sort_keys=True),
        reason=reason,
    )


def _select_tile(
    tile: str,
    tile_items: list[pystac.Item],
    max_cloud: float,
    max_dates: int | None,
    aoi_stats: Callable[[pystac.Item], tuple[float, float]] | None,
) -> list[SceneRecord]:
    """The N clearest days of one tile under max_cloud, judged over the window when measured."""
    measured = {it.id: aoi_stats(it) for it in tile_items} if aoi_stats else {}

    def rank(it: pystac.Item) -> tuple[float, float]:
        return measured.get(it.id) or _tile_rank(it)

    over = "window " if aoi_stats else ""
    eligible = sorted((it for it in tile_items if rank(it)[0] <= max_cloud), key=rank)
    chosen = eligible[:max_dates] if max_dates else eligible
    records = []
    for position, item in enumerate(chosen, start=1):
        cloud, nodata = rank(item)
        reason = (
            f"{over}cloud {cloud:.1f}% <= {max_cloud:g}%, {over}nodata {nodata:.1f}%"
            + (f" (tile cloud {_tile_rank(item)[0]:.1f}%)" if aoi_stats else "")
            + f"; rank {position} of {len(eligible)} eligible of {len(tile_items)} days"
        )
        records.append(_record(tile, item, cloud, nodata, reason))
    return records


def select_scenes(
    items: Iterable[pystac.Item],
    *,
    max_cloud: float,
    max_dates_per_tile: int | None,
    aoi_stats: Callable[[pystac.Item], tuple[float, float]] | None = None,
) -> list[SceneRecord]:
    """Choose, per tile, the clearest scene of each day and the N clearest days under max_cloud.

    With ``aoi_stats`` (item → cloud %, nodata % over the processed window) days are judged
    over the window, not the whole tile: a clear AOI under a cloudy tile is kept, and the
    other way round.
    """
    records = []
    for tile, tile_items in sorted(_clearest_per_day(items).items()):
        records += _select_tile(tile, tile_items, max_cloud, max_dates_per_tile, aoi_stats)
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
