"""The demo's crop labels: one polygon per field, in EPSG:4326, written as a GeoPackage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape
from skimage.measure import regionprops

from tilepipe.core.grid import tile_grid
from tilepipe.core.raster import atomic_output
from tilepipe.demo.world import CLASSES, Scene


def label_features(
    tile: str, scene: Scene, transform: Affine, scale: int, id_base: int
) -> list[dict]:
    """One labelled polygon (EPSG:4326) per field, from the field's 1 m rectangle."""
    crs = tile_grid(tile).crs
    feats = []
    for region in regionprops(scene.field_ids_hr):  # one pass over the image, not one per field
        r0, c0, r1, c1 = region.bbox
        x0, x1 = transform.c + c0 * 10 / scale, transform.c + c1 * 10 / scale
        y1, y0 = transform.f - r0 * 10 / scale, transform.f - r1 * 10 / scale
        geom = shape(transform_geom(crs, "EPSG:4326", mapping(box(x0, y0, x1, y1))))
        feats.append(
            {
                "geometry": geom,
                "field_id": id_base + region.label,
                "crop": CLASSES[scene.field_class[region.label]],
                "tile": tile,
            }
        )
    return feats


def write_labels(path: Path, feats: list[dict]) -> None:
    """Write the label polygons (field_id, crop, tile) as layer ``labels`` of a GeoPackage."""
    import pyogrio.raw
    import shapely

    with atomic_output(path) as tmp:
        pyogrio.raw.write(
            tmp,
            shapely.to_wkb(np.array([f["geometry"] for f in feats], dtype=object)),
            [
                np.array([f["field_id"] for f in feats], dtype=np.int64),
                np.array([f["crop"] for f in feats], dtype=object),
                np.array([f["tile"] for f in feats], dtype=object),
            ],
            ["field_id", "crop", "tile"],
            layer="labels",
            driver="GPKG",
            geometry_type="Polygon",
            crs="EPSG:4326",
        )
