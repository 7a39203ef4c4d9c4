"""The campaign's STAC collection: links to every tile-date item and the campaign fields dataset.

The cheap campaign step: it reads the items (small JSON files) and writes only
``collection.json``, the root of the catalog, with the spatial and temporal extent of the items,
a relative ``item`` link to each and the hive-partitioned fields dataset as a collection asset.
The items never point back to anything this step writes except the collection's path, so a
rerun after one scene changed rewrites that scene's item and this file, nothing else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tilepipe.catalog.item import JSON, PARQUET
from tilepipe.catalog.schemas import STAC_VERSION
from tilepipe.core.errors import InputError, context
from tilepipe.core.raster import atomic_output


def _read_item(path: Path) -> dict[str, Any]:
    """An item written by ``tilepipe stac-item``."""
    try:
        item = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{context(path=path)}not a STAC item ({exc})") from exc
    if item.get("type") != "Feature" or "id" not in item:
        raise InputError(f"{context(path=path)}not a STAC item (no Feature with an id)")
    return item


def _rel(target: str | os.PathLike, start: Path) -> str:
    """``target`` relative to the directory ``start``, in POSIX form, starting ``./`` or ``../``."""
    rel = Path(os.path.relpath(target, start)).as_posix()
    return rel if rel.startswith("../") else f"./{rel}"


def _extent(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The union of the items' bboxes and the span of their dates."""
    boxes = [item["bbox"] for item in items]
    starts = [
        item["properties"].get("start_datetime") or item["properties"]["datetime"] for item in items
    ]
    ends = [
        item["properties"].get("end_datetime") or item["properties"]["datetime"] for item in items
    ]
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes)]
    bbox += [max(b[2] for b in boxes), max(b[3] for b in boxes)]
    return {
        "spatial": {"bbox": [bbox]},
        "temporal": {"interval": [[min(starts), max(ends)]]},
    }


def campaign_collection(
    item_paths: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    collection_id: str,
    description: str,
    license: str,
    fields_root: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The collection document for ``out`` linking every item (hrefs relative to ``out``)."""
    if not item_paths:
        raise InputError("no STAC items to collect: the campaign has no finished scene")
    base = Path(out).parent
    paths = sorted(Path(p) for p in item_paths)
    items = [_read_item(p) for p in paths]
    wrong = [
        f"{p} ({i.get('collection')})"
        for p, i in zip(paths, items, strict=True)
        if i.get("collection") != collection_id
    ]
    if wrong:
        raise InputError(f"items of another collection than {collection_id}: {', '.join(wrong)}")
    links = [{"rel": "root", "href": f"./{Path(out).name}", "type": JSON}]
    links += [
        {"rel": "item", "href": _rel(p, base), "type": "application/geo+json", "title": i["id"]}
        for p, i in zip(paths, items, strict=True)
    ]
    collection: dict[str, Any] = {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "id": collection_id,
        "title": f"tilepipe campaign {collection_id}",
        "description": description,
        "license": license,
        "extent": _extent(items),
        "links": links,
    }
    if fields_root is not None:
        collection["assets"] = {
            "fields": {
                "href": _rel(fields_root, base) + "/",
                "type": PARQUET,
                "title": "the campaign's fields: hive-partitioned GeoParquet (tile=…/date=…)",
                "roles": ["data"],
            }
        }
    return collection


def write_collection(collection: dict[str, Any], path: str | os.PathLike) -> None:
    """Write the collection as JSON, atomically."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        text = json.dumps(collection, indent=1, sort_keys=True) + "\n"
        Path(tmp).write_text(text, encoding="utf-8")
