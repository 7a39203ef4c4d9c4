"""Train/test splits of labelled fields: whole fields per class, or whole spatial blocks.

A field (``field_id``) never feeds both sides, so the held-out score measures fields the model
has not seen; the spatial split also keeps neighbouring fields together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

from tilepipe.classify.labels import Labels
from tilepipe.classify.samples import as_geometries, to_crs


def grouped_split(
    groups: np.ndarray, group_class: np.ndarray, test_fraction: float, seed: int
) -> np.ndarray:
    """Boolean test mask over ``groups``: per class, a shuffled share of its fields, never all."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(groups), dtype=bool)
    for cls in np.unique(group_class):
        members = rng.permutation(np.nonzero(group_class == cls)[0])
        if members.size < 2 or test_fraction <= 0:
            continue  # a class with one field stays in train
        n_test = min(max(1, round(test_fraction * members.size)), members.size - 1)
        test[members[:n_test]] = True
    return test


def spatial_split(blocks: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean test mask over fields: whole spatial blocks, shuffled, until the share is met."""
    rng = np.random.default_rng(seed)
    unique = rng.permutation(np.unique(blocks))
    test = np.zeros(len(blocks), dtype=bool)
    target = test_fraction * len(blocks)
    for block in unique[:-1]:  # at least one block always trains
        if test.sum() >= target:
            break
        test |= blocks == block
    return test


def block_ids(geoms: np.ndarray, crs, tiles: np.ndarray, block_m: float) -> np.ndarray:
    """Spatial block of each field: its centroid, in its tile's UTM CRS, on a ``block_m`` grid."""
    from tilepipe.core.grid import tile_grid

    out = np.empty(len(geoms), dtype=object)
    for tile in np.unique(tiles):
        rows = np.nonzero(tiles == tile)[0]
        moved = to_crs(geoms[rows], crs, tile_grid(str(tile)).crs)
        cx, cy = shapely.get_x(shapely.centroid(moved)), shapely.get_y(shapely.centroid(moved))
        for i, x, y in zip(rows, cx, cy, strict=True):
            out[i] = f"{tile}:{math.floor(x / block_m)}:{math.floor(y / block_m)}"
    return out.astype(str)


@dataclass(frozen=True)
class FieldSplit:
    """Which labelled fields are held out, and how the split was made."""

    groups: np.ndarray  # field ids with at least one pixel, sorted
    group_class: np.ndarray  # crop class of each group
    test_group: np.ndarray  # boolean test mask over groups
    is_test_row: np.ndarray  # boolean test mask over every label row
    info: dict  # the metrics' "split" entry

    @property
    def test_ids(self) -> set[int]:
        """Field ids of the held-out fields."""
        return set(self.groups[self.test_group].tolist())


def split_fields(
    labels: Labels,
    used: np.ndarray,
    *,
    test_fraction: float,
    seed: int,
    block_m: float | None = None,
) -> FieldSplit:
    """Split the ``used`` label rows (fields with pixels): by field, or by ``block_m`` blocks."""
    groups, first = np.unique(labels.field_ids[used], return_index=True)
    group_class = labels.crops[used][first]
    if block_m:
        rows = np.nonzero(used)[0][first]
        geoms = as_geometries(labels.geometry[rows])
        blocks = block_ids(geoms, labels.crs, labels.tiles[rows], block_m)
        test_group = spatial_split(blocks, test_fraction, seed)
        info = {
            "kind": "spatial",
            "block_m": block_m,
            "blocks": len(set(blocks)),
            "test_blocks": len(set(blocks[test_group])),
        }
    else:
        test_group = grouped_split(groups, group_class, test_fraction, seed)
        info = {"kind": "field"}
    is_test_row = np.isin(labels.field_ids, list(set(groups[test_group].tolist())))
    return FieldSplit(groups, group_class, test_group, is_test_row, info)
