"""``tilepipe stac-item``, ``fields-partition`` and ``stac-collection``: the campaign's STAC
catalog and its one fields dataset (config section ``catalog``)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from tilepipe.cli.options import (
    add_manifest_outputs,
    add_settings,
    add_tile_date,
    manifest_outputs,
    step_settings,
)

log = logging.getLogger("tilepipe")

#: the scene outputs an item describes: flag -> help
ITEM_INPUTS = {
    "s2": "s2.tif (10 m reflectance)",
    "scl": "scl.tif (scene classification)",
    "dr": "dr.tif (1 m reflectance)",
    "fields": "fields.parquet (GeoParquet)",
    "fields-gpkg": "fields.gpkg",
    "qc": "qc.json",
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``stac-item``, ``fields-partition`` and ``stac-collection`` subcommands."""
    p = sub.add_parser("stac-item", help="the STAC item of one tile-date, beside its outputs")
    add_tile_date(p)
    for name, text in ITEM_INPUTS.items():
        p.add_argument(f"--{name}", required=True, help=text)
    p.add_argument("--manifest", required=True, help="manifests/scenes.csv (provenance)")
    p.add_argument("--collection", required=True, help="the collection.json the item joins")
    p.add_argument("--out", required=True, help="item.json, in the directory of the outputs")
    add_settings(p, "catalog")
    p.set_defaults(func=run_item)

    p = sub.add_parser("fields-partition", help="one tile-date's fields as a campaign partition")
    add_tile_date(p)
    p.add_argument("--fields", required=True, help="the scene's fields.parquet")
    p.add_argument("--out", required=True, help=".../tile=T/date=D/part.parquet")
    p.set_defaults(func=run_partition)

    p = sub.add_parser("stac-collection", help="the campaign collection linking every item")
    p.add_argument("--items", nargs="*", default=[], help="item.json files to link")
    add_manifest_outputs(p, "item.json")
    p.add_argument("--fields-root", default=None, help="the hive-partitioned fields dataset")
    p.add_argument("--out", required=True, help="collection.json (the catalog's root)")
    add_settings(p, "catalog")
    p.set_defaults(func=run_collection)


def run_item(args: argparse.Namespace) -> None:
    """Write one tile-date's STAC item from its outputs and its manifest row."""
    from tilepipe.acquire.stac import manifest_row
    from tilepipe.catalog.item import scene_item, write_item

    settings = step_settings(args)
    scene = {name.replace("-", "_"): getattr(args, name.replace("-", "_")) for name in ITEM_INPUTS}
    href = Path(os.path.relpath(args.collection, Path(args.out).parent)).as_posix()
    item = scene_item(
        args.tile,
        args.date,
        scene,
        manifest_row(args.manifest, args.tile, args.date),
        {"id": settings["collection_id"], "href": href},
    )
    write_item(item, args.out)
    log.info("stac item %s: %d assets -> %s", item["id"], len(item["assets"]), args.out)


def run_partition(args: argparse.Namespace) -> None:
    """Write one tile-date's fields into the campaign's hive-partitioned dataset."""
    from tilepipe.catalog.fields import write_partition

    n = write_partition(args.fields, args.out, args.tile, args.date)
    log.info("fields partition %s %s: %d fields -> %s", args.tile, args.date, n, args.out)


def run_collection(args: argparse.Namespace) -> None:
    """Write the campaign collection from the items."""
    from tilepipe.catalog.collection import campaign_collection, write_collection

    settings = step_settings(args)
    items = [*args.items, *manifest_outputs(args.manifest, args.results, "item.json")]
    collection = campaign_collection(
        items,
        args.out,
        collection_id=settings["collection_id"],
        description=settings["description"],
        license=settings["license"],
        fields_root=args.fields_root,
    )
    write_collection(collection, args.out)
    log.info("stac collection %s: %d items -> %s", collection["id"], len(items), args.out)
