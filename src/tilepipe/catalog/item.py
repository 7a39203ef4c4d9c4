"""One STAC item per tile-date, written beside its outputs with relative asset hrefs.

The item describes ``s2.tif``, ``scl.tif``, ``dr.tif``, ``fields.parquet``, ``fields.gpkg`` and
``qc.json`` with roles and media types, the projection extension (``proj:code`` on the item,
``proj:shape`` and ``proj:transform`` per raster asset), the raster extension (``raster:bands``
with data type, nodata, scale and offset), eo band names, and the processing provenance: the
source STAC item, the harmonisation applied and where its offset came from (``s2.tif`` tags and
``manifests/scenes.csv``), and the DR model id and SHA-256 (``dr.tif`` tags). It is a function
of those files only, so it changes when one of its scene's outputs does and never otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import rasterio
from rasterio.warp import transform_geom

from tilepipe import __version__
from tilepipe.catalog.schemas import EXTENSIONS, STAC_VERSION
from tilepipe.core.errors import InputError, context
from tilepipe.core.raster import atomic_output, read_tags

GEOTIFF = "image/tiff; application=geotiff"
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
PARQUET = "application/vnd.apache.parquet"
GEOPACKAGE = "application/geopackage+sqlite3"
JSON = "application/json"
#: Sentinel-2 band -> eo common name and centre wavelength (µm), for odc-stac's band aliases
#: (the eo extension's common names and the centre wavelengths Earth Search's items publish)
S2_BANDS = {
    "B01": ("coastal", 0.443),
    "B02": ("blue", 0.49),
    "B03": ("green", 0.56),
    "B04": ("red", 0.665),
    "B05": ("rededge", 0.704),
    "B06": ("rededge", 0.74),
    "B07": ("rededge", 0.783),
    "B08": ("nir", 0.842),
    "B8A": ("nir08", 0.865),
    "B09": ("nir09", 0.945),
    "B11": ("swir16", 1.61),
    "B12": ("swir22", 2.19),
}
#: the manifest columns an item records as provenance
MANIFEST_KEYS = ("item_id", "collection", "baseline", "boa_offset_dn", "offset_source", "assets")
#: the ``dr.tif`` tags the dr asset records (the model and how it ran)
DR_TAGS = ("DR_METHOD", "DR_MODEL_ID", "DR_MODEL_SHA256", "DR_DEVICE", "DR_PRECISION")


def item_id(tile: str, date: str) -> str:
    """The item id of a tile-date (unique in the campaign)."""
    return f"{tile}_{date}"


def _media_type(src: rasterio.DatasetReader) -> str:
    """COG when GDAL reports the cloud-optimised layout, plain GeoTIFF otherwise."""
    layout = src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "")
    return COG if layout.upper() == "COG" else GEOTIFF


def _raster_bands(src: rasterio.DatasetReader, tags: dict[str, str]) -> list[dict[str, Any]]:
    """``raster:bands`` of a reflectance raster: dtype, nodata, resolution, scale and offset."""
    scale = float(tags.get("REFLECTANCE_SCALE", 1.0))
    bands = []
    for i in range(src.count):
        band: dict[str, Any] = {
            "data_type": src.dtypes[i],
            "spatial_resolution": abs(src.transform.a),
            "scale": scale * src.scales[i],
            "offset": src.offsets[i],
        }
        if src.nodata is not None:
            band["nodata"] = src.nodata
        bands.append(band)
    return bands


def _eo_bands(src: rasterio.DatasetReader) -> list[dict[str, Any]]:
    """``eo:bands`` from the band descriptions (B02 … B08) with common names where known."""
    bands = []
    for i, name in enumerate(src.descriptions):
        name = name or f"band{i + 1}"
        band: dict[str, Any] = {"name": name}
        if name in S2_BANDS:
            band["common_name"], band["center_wavelength"] = S2_BANDS[name]
        bands.append(band)
    return bands


def _raster_asset(path: Path, title: str, roles: list[str], reflectance: bool) -> dict[str, Any]:
    """A raster asset with its grid (projection) and, for reflectance, its bands."""
    with rasterio.open(path) as src:
        tags = src.tags()
        asset: dict[str, Any] = {
            "href": f"./{path.name}",
            "type": _media_type(src),
            "title": title,
            "roles": roles,
            "gsd": abs(src.transform.a),
            "proj:shape": [src.height, src.width],
            "proj:transform": list(src.transform)[:6],
        }
        if reflectance:
            asset["eo:bands"] = _eo_bands(src)
            asset["raster:bands"] = _raster_bands(src, tags)
        else:
            asset["raster:bands"] = [
                {"data_type": src.dtypes[0], "spatial_resolution": abs(src.transform.a)}
                | ({"nodata": src.nodata} if src.nodata is not None else {})
            ]
    return asset


def _footprint(path: Path) -> tuple[dict, list[float], str]:
    """The raster's outline in WGS84, its bbox, and its CRS as ``EPSG:n``."""
    with rasterio.open(path) as src:
        if src.crs is None or src.crs.to_epsg() is None:
            raise InputError(f"{context(path=path)}no EPSG CRS")
        left, bottom, right, top = src.bounds
        code = f"EPSG:{src.crs.to_epsg()}"
        ring = [[left, bottom], [right, bottom], [right, top], [left, top], [left, bottom]]
        geometry = transform_geom(src.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    xs = [x for x, _ in geometry["coordinates"][0]]
    ys = [y for _, y in geometry["coordinates"][0]]
    return geometry, [min(xs), min(ys), max(xs), max(ys)], code


def _provenance(s2_tags: dict[str, str], row: dict[str, str]) -> dict[str, Any]:
    """Where the pixels came from and what was done to them (``tilepipe:`` properties)."""
    assets = row.get("assets") or "{}"
    return {
        "processing:software": {"tilepipe": __version__},
        "processing:lineage": (
            "Sentinel-2 L2A reflectance on the tile's 10 m grid, baseline offset removed "
            "(tilepipe download), super-resolved 10x (tilepipe superres), fields delineated "
            "(tilepipe fields), quality-checked (tilepipe qc)"
        ),
        "tilepipe:source_item": row.get("item_id") or s2_tags.get("SOURCE_ITEM", ""),
        "tilepipe:source_collection": row.get("collection") or s2_tags.get("SOURCE_COLLECTION", ""),
        "tilepipe:source_provider": s2_tags.get("SOURCE_PROVIDER", ""),
        "tilepipe:source_assets": json.loads(assets),
        "tilepipe:processing_baseline": row.get("baseline") or s2_tags.get("PROCESSING_BASELINE"),
        "tilepipe:boa_offset_dn": float(row["boa_offset_dn"]) if row.get("boa_offset_dn") else None,
        "tilepipe:offset_source": row.get("offset_source", ""),
        "tilepipe:harmonisation": s2_tags.get("HARMONISATION", ""),
        "tilepipe:harmonisation_from": s2_tags.get("HARMONISATION_FROM", ""),
        "tilepipe:harmonisation_check": s2_tags.get("HARMONISATION_CHECK", ""),
    }


def _qc_status(path: Path) -> str:
    """The scene's QC verdict (pass / warn / fail) from ``qc.json``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))["status"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{context(path=path)}not a qc.json ({exc})") from exc


def scene_item(
    tile: str,
    date: str,
    scene: dict[str, str | os.PathLike],
    row: dict[str, str],
    collection: dict[str, str],
) -> dict[str, Any]:
    """The STAC item of one tile-date as a dict.

    ``scene`` maps ``s2``, ``scl``, ``dr``, ``fields`` (GeoParquet), ``fields_gpkg`` and ``qc``
    to their files (all in one directory: the item lies beside them), ``row`` is the scene's
    manifest row, ``collection`` the collection's ``id`` and ``href`` relative to the item.
    """
    paths = {key: Path(value) for key, value in scene.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise InputError(f"{context(tile, date)}missing outputs: {', '.join(missing)}")
    geometry, bbox, code = _footprint(paths["s2"])
    s2_tags, dr_tags = read_tags(paths["s2"]), read_tags(paths["dr"])
    dr = _raster_asset(paths["dr"], "10x super-resolved reflectance (1 m)", ["data"], True)
    dr |= {f"tilepipe:{key[3:].lower()}": dr_tags[key] for key in DR_TAGS if key in dr_tags}
    assets = {
        "s2": _raster_asset(paths["s2"], "Sentinel-2 L2A reflectance (10 m)", ["data"], True),
        "scl": _raster_asset(paths["scl"], "Sentinel-2 scene classification", ["data-mask"], False),
        "dr": dr,
        "fields": {"href": f"./{paths['fields'].name}", "type": PARQUET, "roles": ["data"]},
        "fields_gpkg": {"href": f"./{paths['fields_gpkg'].name}", "type": GEOPACKAGE},
        "qc": {"href": f"./{paths['qc'].name}", "type": JSON, "roles": ["metadata"]},
    }
    assets["fields"]["title"] = "field polygons (GeoParquet)"
    assets["fields_gpkg"] |= {"title": "field polygons (GeoPackage)", "roles": ["data"]}
    assets["qc"]["title"] = "quality-control verdicts"
    properties = {
        "datetime": f"{date}T00:00:00Z",
        "start_datetime": f"{date}T00:00:00Z",
        "end_datetime": f"{date}T23:59:59Z",
        "constellation": "sentinel-2",
        "proj:code": code,
        "tilepipe:tile": tile,
        "tilepipe:qc_status": _qc_status(paths["qc"]),
        **_provenance(s2_tags, row),
    }
    link = {"href": collection["href"], "type": JSON}
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(EXTENSIONS),
        "id": item_id(tile, date),
        "geometry": geometry,
        "bbox": bbox,
        "properties": properties,
        "links": [{"rel": rel, **link} for rel in ("collection", "parent", "root")],
        "assets": assets,
        "collection": collection["id"],
    }


def write_item(item: dict[str, Any], path: str | os.PathLike) -> None:
    """Write an item as JSON, atomically, byte-identical for identical content."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(item, indent=1, sort_keys=True) + "\n", encoding="utf-8")
