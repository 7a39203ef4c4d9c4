"""Block-wise field polygons from a probability raster, with bounded memory and global labels.

The probability raster (uint8 bands ``extent``, ``boundary``, optionally ``distance``; value /
PROB_SCALE, PROB_NODATA = nodata) is never read whole. Two passes over blocks:

1. **Seeds.** Each block's seed pixels (:func:`tilepipe.fields.instances.seed_mask`) are labelled
   locally and written to a temporary label raster under provisional ids; ids that touch across a
   block border are merged with a union-find. Each merged seed component gets a global id ranked
   by its first pixel in raster order, so ids do not depend on the block size.
2. **Grow and polygonise.** Each block is read with a ``halo`` of context, its seeds (global ids)
   are grown by watershed over the extent mask, and only the block's core is kept, so every
   pixel is decided exactly once. The core is polygonised (pixel coordinates, exact integer
   edges); pieces of a field from different blocks are unioned when no later block can hold
   more of it (its seed ends more than ``halo`` rows above the next block row). Fields that
   cross block borders therefore come out whole and once.

Memory is one padded block plus the pieces of fields still open, one small polygon per
finished field; GDAL's block cache is off meanwhile (GDAL_CACHE_BYTES).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
import rasterio.features
import shapely
from affine import Affine
from rasterio.windows import Window
from shapely.geometry import MultiPolygon, Polygon, shape
from skimage.measure import label

from tilepipe.core.errors import ConfigError, InputError, context
from tilepipe.core.raster import atomic_output, gtiff_profile
from tilepipe.core.scratch import temp_beside
from tilepipe.core.settings import section_defaults, section_problems
from tilepipe.fields.instances import grow, seed_mask

#: Probabilities are stored as round(p * PROB_SCALE) in uint8; PROB_NODATA marks no data.
PROB_SCALE, PROB_NODATA = 250.0, 255
#: Band descriptions of the probability raster, in this order (distance optional).
PROB_BANDS = ("extent", "boundary", "distance")
#: GDAL block cache while polygonising: none. Blocks are read about once per pass and written
#: whole (tile-aligned), so a cache saves little; GDAL's default (5 % of RAM) grows with the
#: raster up to gigabytes on big nodes, and even a 16-64 MB budget let the RSS creep up with the
#: raster size (benchmarks/bench_polygons.py), while none keeps it flat.
GDAL_CACHE_BYTES = 0
#: The per-field column of the masked share (mean of the mask over the field's pixels).
MASKED = "masked_share"


class Mask(Protocol):
    """Masked pixels of a window of the probability raster's grid (bool, True = masked)."""

    def read(self, win: Window) -> np.ndarray: ...


#: Per-pixel float layers of a window whose per-field means become columns.
Layers = Callable[[Window], dict[str, np.ndarray]]


def _default(key: str):
    """A dataclass default read from the config schema's ``fields`` section (written once)."""
    return field(default_factory=lambda: section_defaults("fields")[key])


@dataclass
class Params:
    """How probabilities become fields (areas in m², lengths in map units = m); each default is
    the config schema's ``fields`` default."""

    threshold: float = _default("threshold")
    seed_threshold: float = _default("seed_threshold")
    min_area_m2: float = _default("min_area_m2")
    max_area_m2: float | None = _default("max_area_m2")
    simplify_m: float = _default("simplify_m")
    fill_holes_m2: float = _default("fill_holes_m2")
    block: int = _default("block")
    halo: int = _default("halo")
    max_masked_share: float = _default("max_masked_share")

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Params:
        """The polygon parameters of a ``fields`` config section (other keys ignored)."""
        return cls(
            **{f.name: settings[f.name] for f in dataclasses.fields(cls) if f.name in settings}
        )


@dataclass
class FieldTable:
    """Finished fields in field_id order: geometries (map CRS) and per-field columns."""

    geoms: list
    columns: dict[str, np.ndarray]
    crs: str | None
    stats: dict[str, int]


def check_params(params: Params) -> None:
    """Refuse parameters that cannot make fields, naming each (ConfigError, one line)."""
    problems = []
    if not 0 < params.threshold < 1:
        problems.append(f"threshold {params.threshold} must be in (0, 1)")
    if not 0 < params.seed_threshold <= 1:
        problems.append(f"seed_threshold {params.seed_threshold} must be in (0, 1]")
    if params.min_area_m2 < 0 or params.simplify_m < 0 or params.fill_holes_m2 < 0:
        problems.append("min_area_m2, simplify_m and fill_holes_m2 must be >= 0")
    areas = {"min_area_m2": params.min_area_m2, "max_area_m2": params.max_area_m2}
    problems += [f"{key.split('.')[-1]} {msg}" for key, msg in section_problems("fields", areas)]
    if params.block < 16 or params.block % 16:
        problems.append(f"block {params.block} must be a multiple of 16 (>= 16)")
    if params.halo < 0:
        problems.append(f"halo {params.halo} must be >= 0")
    if not 0 <= params.max_masked_share <= 1:
        problems.append(f"max_masked_share {params.max_masked_share} must be in [0, 1]")
    if problems:
        raise ConfigError("fields parameters: " + "; ".join(problems))


def encode_prob(p: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] (NaN = nodata) as the raster's uint8 code."""
    code = np.rint(np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0) * PROB_SCALE).astype(np.uint8)
    code[~np.isfinite(p)] = PROB_NODATA
    return code


def decode_prob(code: np.ndarray) -> np.ndarray:
    """The raster's uint8 code back to float32 probabilities, NaN where nodata."""
    p = code.astype(np.float32) / PROB_SCALE
    p[code == PROB_NODATA] = np.nan
    return p


def write_probabilities(path: str | os.PathLike, probs: dict[str, np.ndarray], transform, crs):
    """Write ``{'extent': …, 'boundary': …[, 'distance': …]}`` as a probability raster."""
    names = [b for b in PROB_BANDS if b in probs]
    h, w = probs["extent"].shape
    profile = gtiff_profile(
        width=w, height=h, count=len(names), dtype="uint8", crs=crs, transform=transform
    )
    profile["nodata"] = PROB_NODATA
    with atomic_output(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for i, name in enumerate(names, start=1):
            dst.write(encode_prob(probs[name]), i)
            dst.set_band_description(i, name)


def blocks(height: int, width: int, size: int) -> Iterator[tuple[int, list[tuple[int, int]]]]:
    """Yield (row offset, [(col offset, …)]) of a row-major grid of ``size`` px blocks."""
    for r0 in range(0, height, size):
        yield r0, list(range(0, width, size))


class _UnionFind:
    """Union-find over provisional ids 1..n (path halving), growing as ids are added."""

    def __init__(self) -> None:
        self.parent = [0]

    def add(self, n: int) -> None:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union_pairs(self, a: np.ndarray, b: np.ndarray) -> None:
        both = (a > 0) & (b > 0) & (a != b)
        if not both.any():
            return
        for x, y in np.unique(np.stack([a[both], b[both]], axis=1), axis=0):
            rx, ry = self.find(int(x)), self.find(int(y))
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)


def _read_bands(src, names: list[str], window: Window) -> dict[str, np.ndarray | None]:
    """Read the probability bands of a window (decoded); absent heads are None."""
    out: dict[str, np.ndarray | None] = dict.fromkeys(PROB_BANDS[1:])
    for i, name in enumerate(names, start=1):
        out[name] = decode_prob(src.read(i, window=window))
    return out


def _band_names(src, path: Path) -> list[str]:
    """Band roles from the descriptions (the first band is the extent when undescribed)."""
    desc = [d or "" for d in src.descriptions]
    if src.count == 1 and not desc[0]:
        return ["extent"]
    if not desc or desc[0] != "extent" or any(d not in PROB_BANDS for d in desc):
        raise InputError(
            f"{context(path=path)}probability bands must be described as {list(PROB_BANDS)} "
            f"(extent first), found {desc}"
        )
    return desc


def _label_profile(src, block: int) -> dict:
    """The temporary int32 label raster's profile: tiles that divide the block size."""
    tile_px = math.gcd(block, 256)
    profile = gtiff_profile(
        width=src.width,
        height=src.height,
        count=1,
        dtype="int32",
        crs=src.crs,
        transform=src.transform,
    )
    profile.update(blockxsize=tile_px, blockysize=tile_px, predictor=2)
    return profile


def _local_seeds(src, names, win: Window, params: Params, mask: Mask | None) -> np.ndarray:
    """The window's seed components, labelled 1..n (4-connected) as int32; none on masked
    pixels (a field must be seen clear somewhere)."""
    b = _read_bands(src, names, win)
    seeds = seed_mask(
        b["extent"], b["boundary"], threshold=params.threshold, seed_threshold=params.seed_threshold
    )
    if mask is not None:
        seeds &= ~mask.read(win)
    return label(seeds, connectivity=1).astype(np.int32)


def _extremes(local: np.ndarray, r0: int, c0: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per local label 1..n: (raster-order index of its first pixel, its last row) in the raster."""
    w = local.shape[1]
    flat = local.ravel()
    labs, idx = np.unique(flat, return_index=True)
    rr, cc = np.divmod(idx[labs > 0], w)
    first = (r0 + rr).astype(np.int64) * width + c0 + cc
    _, ridx = np.unique(flat[::-1], return_index=True)
    last = r0 + (flat.size - 1 - ridx[labs > 0]) // w
    return first, last


def _rank_globally(
    uf: _UnionFind, n: int, first: np.ndarray, last: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(lut provisional -> global id, last row of each global seed) of n provisional ids.

    A merged component's global id is its rank by first pixel in raster order, so ids do not
    depend on the block size. ``first`` and ``last`` are indexed by provisional id (0 unused).
    """
    roots = np.array([uf.find(i) for i in range(n + 1)], dtype=np.int64)
    root_first = np.full(n + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(root_first, roots, first)
    root_last = np.full(n + 1, -1, dtype=np.int64)
    np.maximum.at(root_last, roots, last)
    uniq = np.unique(roots[1:])
    order = uniq[np.argsort(root_first[uniq], kind="stable")]
    global_of_root = np.zeros(n + 1, dtype=np.int32)
    global_of_root[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    lut = global_of_root[roots]
    lut[0] = 0
    seed_last = np.full(len(order) + 1, -1, dtype=np.int64)
    seed_last[1:] = root_last[order]
    return lut, seed_last


def _seed_pass(
    src, names, params: Params, prov_path: Path, mask: Mask | None
) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1: provisional seed labels to ``prov_path``; return (lut prov->global, seed max row)."""
    height, width = src.height, src.width
    uf = _UnionFind()
    first: list[np.ndarray] = [np.array([np.iinfo(np.int64).max])]
    last_row: list[np.ndarray] = [np.array([-1])]
    above = np.zeros(width, dtype=np.int32)  # bottom row of the previous block row
    offset = 0
    with rasterio.open(prov_path, "w", **_label_profile(src, params.block)) as dst:
        for r0, cols in blocks(height, width, params.block):
            h = min(params.block, height - r0)
            bottom = np.zeros(width, dtype=np.int32)
            left = np.zeros(h, dtype=np.int32)
            for c0 in cols:
                win = Window(c0, r0, min(params.block, width - c0), h)
                local = _local_seeds(src, names, win, params, mask)
                n = int(local.max())
                prov = np.where(local > 0, local + offset, 0).astype(np.int32)
                if n:
                    block_first, block_last = _extremes(local, r0, c0, width)
                    first.append(block_first)
                    last_row.append(block_last)
                    uf.add(n)
                    offset += n
                if c0 > 0:
                    uf.union_pairs(left, prov[:, 0])
                if r0 > 0:
                    uf.union_pairs(above[c0 : c0 + win.width], prov[0])
                left = prov[:, -1].copy()
                bottom[c0 : c0 + win.width] = prov[-1]
                dst.write(prov, 1, window=win)
            above = bottom
    return _rank_globally(uf, offset, np.concatenate(first), np.concatenate(last_row))


def _to_map(geom, transform: Affine):
    """Pixel-coordinate geometry to map coordinates through ``transform``."""
    a, b, c, d, e, f = transform[:6]

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.stack([a * x + b * y + c, d * x + e * y + f], axis=1)

    return shapely.transform(geom, apply)


def _fill_holes(poly: Polygon, max_hole: float) -> Polygon:
    """Drop interior rings smaller than ``max_hole`` (map units²)."""
    keep = [r for r in poly.interiors if Polygon(r).area >= max_hole]
    return Polygon(poly.exterior, keep) if len(keep) != len(poly.interiors) else poly


def clean_geometry(geom, params: Params):
    """Fill small holes, simplify, repair; return a valid (Multi)Polygon or None if nothing left."""
    polys = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon) and not p.is_empty]
    if params.fill_holes_m2 > 0:
        polys = [_fill_holes(p, params.fill_holes_m2) for p in polys]
    geom = polys[0] if len(polys) == 1 else MultiPolygon(polys)
    if params.simplify_m > 0:
        geom = shapely.simplify(geom, params.simplify_m, preserve_topology=True)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    polys = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon) and p.area > 0]
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def delineate(
    prob_path: str | os.PathLike,
    params: Params,
    *,
    tile: str | None = None,
    date: str | None = None,
    mask: Mask | None = None,
    layers: Layers | None = None,
) -> FieldTable:
    """Fields of a probability raster, block by block (see the module docstring).

    ``mask`` (pixels seen through cloud, shadow, ...): no seed there, and each field's masked
    share is a column (``masked_share``); fields above ``params.max_masked_share`` are dropped.
    ``layers`` gives per-pixel values of a window whose per-field means become columns.
    """
    prob_path = Path(prob_path)
    check_params(params)
    try:
        src = rasterio.open(prob_path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{context(tile, date, prob_path)}cannot open ({exc})") from exc
    # the temporary label raster lives beside the probabilities (same, large filesystem)
    prov_path = temp_beside(prob_path, "seeds", ".tif")
    try:
        with src, rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
            names = _band_names(src, prob_path)
            lut, seed_last = _seed_pass(src, names, params, prov_path, mask)
            extra = _extra_layers(mask, layers)
            with rasterio.open(prov_path) as prov:
                return _grow_pass(src, prov, names, lut, seed_last, params, extra)
    finally:
        with contextlib.suppress(FileNotFoundError):
            prov_path.unlink()


@dataclass
class _OpenFields:
    """Fields under construction: per-seed pixel sums, open pieces, finished geometries."""

    count: np.ndarray  # pixels per global seed id
    sum_ext: np.ndarray  # sum of extent probability per seed
    sum_bnd: np.ndarray  # sum of boundary probability per seed
    stats: dict[str, int]
    sums: dict[str, np.ndarray] = field(default_factory=dict)  # extra layer -> sum per seed
    pieces: dict[int, list] = field(default_factory=dict)  # seed -> polygons in pixel coords
    done: dict[int, object] = field(default_factory=dict)  # seed -> finished map geometry

    @classmethod
    def for_seeds(cls, n_seeds: int) -> _OpenFields:
        """Empty sums for global seed ids 1..n_seeds."""
        stats = {"seeds": n_seeds, "too_small": 0, "too_large": 0, "empty": 0, "masked": 0}
        zeros = [np.zeros(n_seeds + 1, dtype=dt) for dt in (np.int64, np.float64, np.float64)]
        return cls(*zeros, stats)

    def add_core(self, labels, extent, boundary, c0: int, r0: int, extra=None) -> None:
        """Add a block core's labels (and their probabilities) at (c0, r0): sums and pieces."""
        labs, inv = np.unique(labels, return_inverse=True)
        inv = inv.ravel()
        for name, values in (extra or {}).items():
            total = self.sums.setdefault(name, np.zeros(len(self.count), dtype=np.float64))
            vals = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0).ravel()
            total[labs] += np.bincount(inv, weights=vals, minlength=len(labs))
        self.count[labs] += np.bincount(inv, minlength=len(labs))
        ext = np.nan_to_num(extent, nan=0.0).ravel()
        self.sum_ext[labs] += np.bincount(inv, weights=ext, minlength=len(labs))
        if boundary is not None:
            bnd = np.nan_to_num(boundary, nan=0.0).ravel()
            self.sum_bnd[labs] += np.bincount(inv, weights=bnd, minlength=len(labs))
        for geom, value in rasterio.features.shapes(
            labels, mask=labels > 0, connectivity=4, transform=Affine.translation(c0, r0)
        ):
            self.pieces.setdefault(int(value), []).append(shape(geom))

    def finish(self, lab: int, transform: Affine, params: Params, px_range) -> None:
        """Close a field: union its pieces, filter by size (pixels), clean it in map units."""
        parts = self.pieces.pop(lab)
        min_px, max_px = px_range
        if self.count[lab] < min_px:
            self.stats["too_small"] += 1
            return
        if self.count[lab] > max_px:
            self.stats["too_large"] += 1
            return
        if (
            MASKED in self.sums
            and self.sums[MASKED][lab] > params.max_masked_share * self.count[lab]
        ):
            self.stats["masked"] += 1
            return
        geom = parts[0] if len(parts) == 1 else shapely.union_all(parts)
        geom = clean_geometry(_to_map(geom, transform), params)
        if geom is None:
            self.stats["empty"] += 1
            return
        self.done[lab] = geom

    def table(self, has_boundary: bool, crs: str | None) -> FieldTable:
        """The finished fields in seed order, numbered 1..n, with their mean probabilities."""
        order = sorted(self.done)
        geoms = [self.done[k] for k in order]
        idx = np.asarray(order, dtype=np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = self.sum_ext[idx] / self.count[idx] if len(idx) else np.zeros(0)
            boundary = self.sum_bnd[idx] / self.count[idx] if len(idx) else np.zeros(0)
        columns = {
            "field_id": np.arange(1, len(geoms) + 1, dtype=np.int64),
            "area_m2": np.asarray(shapely.area(geoms), dtype=np.float64),
            "perimeter_m": np.asarray(shapely.length(geoms), dtype=np.float64),
            "score": np.clip(score, 0.0, 1.0),
            "boundary_score": np.clip(boundary, 0.0, 1.0),
        }
        if not has_boundary:
            columns["boundary_score"] = np.full(len(geoms), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            for name, total in self.sums.items():
                columns[name] = total[idx] / self.count[idx] if len(idx) else np.zeros(0)
        self.stats["fields"] = len(geoms)
        return FieldTable(geoms, columns, crs, self.stats)


def _grow_block(src, prov, names, lut, params: Params, r0: int, c0: int, extra=None):
    """Grow the seeds of a block padded by ``halo``; (labels, extent, boundary, extra layers)
    of its core."""
    height, width, halo = src.height, src.width, params.halo
    h, w = min(params.block, height - r0), min(params.block, width - c0)
    pr0, pr1 = max(r0 - halo, 0), min(r0 + h + halo, height)
    pc0, pc1 = max(c0 - halo, 0), min(c0 + w + halo, width)
    win = Window(pc0, pr0, pc1 - pc0, pr1 - pr0)
    b = _read_bands(src, names, win)
    markers = lut[prov.read(1, window=win)]
    labels = grow(markers, b["extent"], b["boundary"], b["distance"], threshold=params.threshold)
    core = (slice(r0 - pr0, r0 - pr0 + h), slice(c0 - pc0, c0 - pc0 + w))
    boundary = b["boundary"][core] if b["boundary"] is not None else None
    layers = extra(Window(c0, r0, w, h)) if extra is not None else None
    return np.ascontiguousarray(labels[core]), b["extent"][core], boundary, layers


def _closed(open_ids, seed_last: np.ndarray, band_end: int, height: int, halo: int) -> list[int]:
    """The open fields no later block can add to: their seed ends more than ``halo`` rows above
    the next block row (all of them after the last block row)."""
    return [k for k in open_ids if band_end >= height or seed_last[k] < band_end - halo]


def _extra_layers(mask: Mask | None, layers: Layers | None) -> Layers | None:
    """The per-pixel layers summed per field: ``layers``' plus the mask (``masked_share``)."""
    if mask is None and layers is None:
        return None

    def read(win: Window) -> dict[str, np.ndarray]:
        out = dict(layers(win)) if layers is not None else {}
        if mask is not None:
            out[MASKED] = mask.read(win).astype(np.float32)
        return out

    return read


def _grow_pass(src, prov, names, lut, seed_last, params: Params, extra=None) -> FieldTable:
    """Pass 2: grow seeds per padded block, polygonise cores, finish fields as they close."""
    transform = src.transform
    pixel_area = abs(transform.a * transform.e - transform.b * transform.d)
    px_range = (
        params.min_area_m2 / pixel_area,
        params.max_area_m2 / pixel_area if params.max_area_m2 else math.inf,
    )
    fields = _OpenFields.for_seeds(len(seed_last) - 1)
    for r0, cols in blocks(src.height, src.width, params.block):
        for c0 in cols:
            labels, extent, boundary, layers = _grow_block(
                src, prov, names, lut, params, r0, c0, extra
            )
            if labels.any():
                fields.add_core(labels, extent, boundary, c0, r0, layers)
        band_end = min(r0 + params.block, src.height)
        for lab in _closed(fields.pieces, seed_last, band_end, src.height, params.halo):
            fields.finish(lab, transform, params, px_range)
    crs = src.crs.to_wkt() if src.crs else None
    return fields.table("boundary" in names, crs)
