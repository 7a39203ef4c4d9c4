"""What labels are: the ``crop`` values that are not crops, the class raster's nodata, a record."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
