"""Field instances from per-pixel extent/boundary(/distance) probabilities.

Touching fields share extent but are split by the boundary head: seeds are the pixels where
``extent - boundary`` is high (field interiors), 4-connected seed components are the fields, and
a watershed on the boundary probability (lowered where the distance head says "deep inside")
grows each seed over the rest of the extent mask. These functions work on arrays of any size;
:mod:`tilepipe.fields.polygons` runs them block by block with global labels.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label
from skimage.segmentation import watershed


def extent_mask(extent: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels that belong to some field: finite extent probability at or above ``threshold``."""
    return np.isfinite(extent) & (np.nan_to_num(extent, nan=0.0) >= threshold)


def seed_mask(
    extent: np.ndarray, boundary: np.ndarray | None, *, threshold: float, seed_threshold: float
) -> np.ndarray:
    """Field interiors: in the extent mask and ``extent - boundary >= seed_threshold``.

    Without a boundary head (a single-head model) every extent pixel is a seed, so fields are
    the extent's 4-connected components.
    """
    mask = extent_mask(extent, threshold)
    if boundary is None:
        return mask
    interior = np.nan_to_num(extent, nan=0.0) - np.nan_to_num(boundary, nan=1.0)
    return mask & (interior >= seed_threshold)


def elevation(boundary: np.ndarray | None, distance: np.ndarray | None, shape) -> np.ndarray:
    """Watershed relief: high on boundaries, low deep inside fields (with a distance head)."""
    if boundary is None:
        return np.zeros(shape, dtype=np.float32)
    relief = np.nan_to_num(boundary, nan=1.0).astype(np.float32)
    if distance is not None:
        relief = 0.5 * (relief + 1.0 - np.nan_to_num(distance, nan=0.0).astype(np.float32))
    return relief


def grow(
    markers: np.ndarray,
    extent: np.ndarray,
    boundary: np.ndarray | None,
    distance: np.ndarray | None,
    *,
    threshold: float,
) -> np.ndarray:
    """Grow labelled seeds (``markers``, 0 = none) over the extent mask by watershed."""
    mask = extent_mask(extent, threshold)
    markers = np.where(mask, markers, 0)
    if not markers.any():
        return np.zeros(markers.shape, dtype=np.int32)
    relief = elevation(boundary, distance, markers.shape)
    return watershed(relief, markers, mask=mask, connectivity=1).astype(np.int32)


def instance_labels(
    extent: np.ndarray,
    boundary: np.ndarray | None = None,
    distance: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    seed_threshold: float = 0.5,
) -> np.ndarray:
    """Label field instances of a whole array at once (int32, 0 = no field)."""
    seeds = seed_mask(extent, boundary, threshold=threshold, seed_threshold=seed_threshold)
    markers = label(seeds, connectivity=1).astype(np.int32)
    return grow(markers, extent, boundary, distance, threshold=threshold)
