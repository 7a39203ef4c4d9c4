"""What labels are: the ``crop`` values that are not crops, the class raster's nodata, a record,
and which label geometries can train a classifier (invalid ones repaired or refused)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import shapely

from tilepipe.core.errors import InputError

log = logging.getLogger(__name__)

UNKNOWN = "unknown"


SKIPPED = "qc_fail"  # crop of fields of a scene kept out of classification by its QC


CLASS_NODATA = 255  # class raster value outside embeddings coverage


@dataclass(frozen=True)
class Labels:
    """Labelled field polygons: one row per label, geometry as WKB in ``crs``."""

    field_ids: np.ndarray  # int64
    crops: np.ndarray  # str
    tiles: np.ndarray  # str
    geometry: np.ndarray  # WKB
    crs: str


def _polygonal(geom) -> shapely.Geometry | None:
    """The polygonal part of a geometry (a repaired bowtie is two triangles), None if none."""
    polygons, todo = [], [geom]
    while todo:
        part = todo.pop()
        if part.geom_type == "Polygon" and not part.is_empty:
            polygons.append(part)
        elif part.geom_type in ("MultiPolygon", "GeometryCollection"):
            todo.extend(shapely.get_parts(part))
    merged = shapely.union_all(polygons) if polygons else None
    return merged if merged is not None and merged.area > 0 else None


def _label_geometry(wkb, mode: str) -> tuple[str, shapely.Geometry | None]:
    """(verdict, geometry) of one label's WKB: 'ok', 'repaired' (closed ring, make_valid) or
    'dropped' (empty, unreadable, a non-finite coordinate, no area left)."""
    if wkb is None:
        return "dropped", None
    geom = shapely.from_wkb(wkb, on_invalid="ignore")
    reread = geom is None  # e.g. a ring that is not closed: GEOS closes it on request
    geom = shapely.from_wkb(wkb, on_invalid="fix") if reread else geom
    if geom is None or geom.is_empty or not np.isfinite(shapely.get_coordinates(geom)).all():
        return "dropped", None
    if not reread and geom.is_valid and geom.geom_type in ("Polygon", "MultiPolygon"):
        return "ok", geom
    fixed = _polygonal(shapely.make_valid(geom)) if mode == "repair" else None
    return ("repaired", fixed) if fixed is not None else ("dropped", None)


def valid_label_geometries(
    wkb: np.ndarray, field_ids: np.ndarray, *, invalid: str = "repair", where: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """(WKB of the labels kept, mask of the rows kept). ``invalid``: ``repair`` mends invalid
    polygons (shapely.make_valid, polygonal parts kept) and drops what cannot be mended, with the
    counts logged; ``refuse`` raises naming them. No valid geometry left raises too."""
    with np.errstate(invalid="ignore"):  # a NaN coordinate is judged below, not warned about
        verdicts = [_label_geometry(w, invalid) for w in wkb]
    kinds = np.array([v for v, _ in verdicts], dtype=object)
    bad = kinds != "ok"
    if invalid == "refuse" and bad.any():
        raise InputError(
            f"{where}{int(bad.sum())} invalid label geometries (field_id "
            f"{field_ids[bad][:10].tolist()}); mend them, or set classify.invalid_labels: repair"
        )
    repaired, dropped = int((kinds == "repaired").sum()), int((kinds == "dropped").sum())
    if bad.any():
        log.warning(
            "%srepaired %d invalid label geometries, dropped %d (field_id %s)",
            where,
            repaired,
            dropped,
            field_ids[bad][:10].tolist(),
        )
    keep = kinds != "dropped"
    if not keep.any():
        raise InputError(f"{where}no valid label geometry: all {len(kinds)} dropped as invalid")
    geoms = np.array([g for (_, g), k in zip(verdicts, keep, strict=True) if k], dtype=object)
    return shapely.to_wkb(geoms), keep
