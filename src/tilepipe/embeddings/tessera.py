"""TESSERA embeddings: verify, dequantise and reproject 0.1° cells onto a tile's 10 m grid.

The source directory follows geotessera's layout::

    {source}/registry.tsv                                   year, name, file, sha256 (tab-separated)
    {source}/global_0.1_degree_representation/{year}/{name}/{name}.npy          int8 (H, W, C)
    {source}/global_0.1_degree_representation/{year}/{name}/{name}_scales.npy   float (H, W[, C])
    {source}/global_0.1_degree_tiff_all/{name}.tiff        landmask: the cell's UTM CRS + transform

where ``name`` is ``grid_{lon:.2f}_{lat:.2f}``, the centre of a 0.1° cell. The output is one
float32 GeoTIFF per (tile, year) with one band per embedding dimension and NaN as nodata; it is
written window by window so a full tile (10980² x 128 floats, 62 GB) never sits in memory.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import WindowError
from rasterio.transform import array_bounds
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform

from tilepipe.core.checksum import sha256_file
from tilepipe.core.errors import InputError, context
from tilepipe.embeddings.mosaic import TargetGrid, fill_nan_from, fill_windows, mosaic_writer

CELL_DEG = 0.1
MAX_SCALE = 10.0  # a dequantisation scale at or above this is a data fault, not an embedding
REPRESENTATION_DIR = "global_0.1_degree_representation"
LANDMASK_DIR = "global_0.1_degree_tiff_all"
REGISTRY = "registry.tsv"


def cell_name(lon: float, lat: float) -> str:
    """Name of the 0.1° cell whose centre is (lon, lat), e.g. ``grid_16.35_48.15``."""
    return f"grid_{lon:.2f}_{lat:.2f}"


def cell_files(name: str, year: int | str) -> dict[str, str]:
    """Paths, relative to the source root, of a cell's embeddings, scales and landmask."""
    rep = f"{REPRESENTATION_DIR}/{year}/{name}"
    return {
        "embeddings": f"{rep}/{name}.npy",
        "scales": f"{rep}/{name}_scales.npy",
        "landmask": f"{LANDMASK_DIR}/{name}.tiff",
    }


def _index_range(lo: float, hi: float) -> range:
    i0 = math.floor(round(lo / CELL_DEG, 9))
    i1 = max(i0, math.ceil(round(hi / CELL_DEG, 9)) - 1)
    return range(i0, i1 + 1)


def cells_for_bounds(lon_min: float, lat_min: float, lon_max: float, lat_max: float) -> list[str]:
    """Names of the 0.1° cells intersecting a lon/lat box, north to south, west to east."""
    if lon_min > lon_max or lat_min > lat_max:
        raise InputError(f"invalid lon/lat bounds {(lon_min, lat_min, lon_max, lat_max)}")
    lat_min, lat_max = max(lat_min, -90.0), min(lat_max, 90.0 - 1e-9)
    return [
        cell_name((i + 0.5) * CELL_DEG, (j + 0.5) * CELL_DEG)
        for j in reversed(_index_range(lat_min, lat_max))
        for i in _index_range(lon_min, lon_max)
    ]


def read_registry(source: str | os.PathLike) -> dict[str, tuple[str, str, str]]:
    """Map each file listed in ``{source}/registry.tsv`` to its (year, name, sha256)."""
    path = Path(source) / REGISTRY
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"{context(path=path)}TESSERA registry unreadable: {exc}") from exc
    header = lines[0].split("\t") if lines else []
    missing = {"year", "name", "file", "sha256"} - set(header)
    if missing:
        raise InputError(f"{context(path=path)}registry header lacks {sorted(missing)}")
    col = {key: header.index(key) for key in ("year", "name", "file", "sha256")}
    registry = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < len(header):
            raise InputError(f"{context(path=path)}line {number} has {len(parts)} columns")
        rel = PurePosixPath(parts[col["file"]])
        if rel.is_absolute() or ".." in rel.parts:
            raise InputError(f"{context(path=path)}line {number}: file {rel} leaves the source")
        registry[str(rel)] = (parts[col["year"]], parts[col["name"]], parts[col["sha256"]].lower())
    return registry


def _check_scales(scales: np.ndarray, path) -> None:
    """Raise InputError unless every scale is finite and within [0, MAX_SCALE)."""
    bad = ~np.isfinite(scales) | (scales < 0) | (scales >= MAX_SCALE)
    if bad.any():
        finite = scales[np.isfinite(scales)]
        span = f"{finite.min():.3g}..{finite.max():.3g}" if finite.size else "none finite"
        raise InputError(
            f"{context(path=path)}absurd scale values: {int(bad.sum())} of {scales.size} are "
            f"non-finite, negative or >= {MAX_SCALE:g} (finite range {span})"
        )


def dequantise(raw: np.ndarray, scales: np.ndarray, *, path=None) -> np.ndarray:
    """Return float32 (H, W, C) embeddings = int8 values x scale; a zero scale marks no data (NaN).

    ``scales`` is (H, W) (one scale per pixel) or (H, W, C) (one per pixel and dimension).
    Wrong dtypes, mismatched shapes and absurd scales raise InputError naming ``path``.
    """
    raw, scales = np.asarray(raw), np.asarray(scales)
    if raw.dtype != np.int8 or raw.ndim != 3:
        raise InputError(
            f"{context(path=path)}embeddings must be int8 (H, W, C), got {raw.dtype} {raw.shape}"
        )
    if not np.issubdtype(scales.dtype, np.floating):
        raise InputError(f"{context(path=path)}scales must be floating point, got {scales.dtype}")
    if scales.shape not in (raw.shape[:2], raw.shape):
        raise InputError(
            f"{context(path=path)}scales shape {scales.shape} fits neither {raw.shape[:2]} "
            f"nor {raw.shape}"
        )
    _check_scales(scales, path)
    factor = scales[..., None] if scales.ndim == 2 else scales
    out = raw.astype(np.float32) * factor.astype(np.float32)
    out[np.broadcast_to(factor == 0, out.shape)] = np.nan
    return out


@dataclass
class _Cell:
    """One verified cell: memory-mapped arrays and where they lie."""

    name: str
    raw: np.ndarray
    scales: np.ndarray
    crs: CRS
    transform: Affine
    paths: dict[str, Path]
    target_window: Window  # the cell's footprint on the target grid


def _load_npy(path: Path, tile, year) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(
            f"{context(tile, path=path)}year {year}: not a readable .npy "
            f"(truncated or corrupt?): {exc}"
        ) from exc


def _open_cell(source: Path, registry: dict, name: str, year, tile) -> _Cell:
    """Verify a cell's files against the registry and memory-map them."""
    paths = {}
    for role, rel in cell_files(name, year).items():
        path = source / rel
        paths[role] = path
        if not path.exists():
            raise InputError(
                f"{context(tile, path=path)}year {year}: {role} file of listed cell {name} "
                f"is missing"
            )
        if rel not in registry:
            if role == "landmask":
                continue  # landmasks are georeference only; verified when listed
            raise InputError(f"{context(tile, path=path)}{role} of {name} not in the registry")
        expected = registry[rel][2]
        actual = sha256_file(path)
        if actual != expected:
            raise InputError(
                f"{context(tile, path=path)}year {year}: sha256 mismatch "
                f"(registry {expected}, file {actual})"
            )
    raw = _load_npy(paths["embeddings"], tile, year)
    scales = _load_npy(paths["scales"], tile, year)
    if raw.dtype != np.int8 or raw.ndim != 3:
        raise InputError(
            f"{context(tile, path=paths['embeddings'])}expected int8 (H, W, C), "
            f"got {raw.dtype} {raw.shape}"
        )
    if scales.shape not in (raw.shape[:2], raw.shape):
        raise InputError(
            f"{context(tile, path=paths['scales'])}scales shape {scales.shape} does not fit "
            f"embeddings {raw.shape}"
        )
    for r0 in range(0, scales.shape[0], 256):  # whole-cell check, a strip at a time
        _check_scales(np.asarray(scales[r0 : r0 + 256]), paths["scales"])
    try:
        with rasterio.open(paths["landmask"]) as mask:
            crs, transform, shape = mask.crs, mask.transform, mask.shape
    except rasterio.RasterioIOError as exc:
        raise InputError(f"{context(tile, path=paths['landmask'])}unreadable: {exc}") from exc
    if crs is None or shape != raw.shape[:2]:
        raise InputError(
            f"{context(tile, path=paths['landmask'])}landmask {shape} crs {crs} does not "
            f"georeference embeddings {raw.shape[:2]}"
        )
    return _Cell(name, raw, scales, crs, transform, paths, Window(0, 0, 0, 0))


def _outward(win: Window, pad: int = 0) -> Window:
    """The smallest integer window holding ``win``, grown by ``pad`` pixels on every side."""
    c0, r0 = math.floor(win.col_off) - pad, math.floor(win.row_off) - pad
    c1 = math.ceil(win.col_off + win.width) + pad
    r1 = math.ceil(win.row_off + win.height) + pad
    return Window(c0, r0, c1 - c0, r1 - r0)


def _footprint(cell: _Cell, crs, transform: Affine, width: int, height: int) -> Window | None:
    """The cell's extent as a pixel window of the target grid, or None when they do not meet."""
    h, w = cell.raw.shape[:2]
    left, top = cell.transform @ (0, 0)
    right, bottom = cell.transform @ (w, h)
    bounds = transform_bounds(
        cell.crs, crs, min(left, right), min(top, bottom), max(left, right), max(top, bottom)
    )
    win = _outward(from_bounds(*bounds, transform=transform))
    try:
        return win.intersection(Window(0, 0, width, height))
    except WindowError:
        return None


def _overlaps(a: Window, b: Window) -> bool:
    return (
        a.col_off < b.col_off + b.width
        and b.col_off < a.col_off + a.width
        and a.row_off < b.row_off + b.height
        and b.row_off < a.row_off + a.height
    )


def _reproject_into(out: np.ndarray, cell: _Cell, crs, dst_transform: Affine) -> bool:
    """Fill NaN pixels of ``out`` (C, h, w) from one cell; return whether any pixel came from it."""
    _, h, w = out.shape
    bounds = array_bounds(h, w, dst_transform)
    src_bounds = transform_bounds(crs, cell.crs, bounds[0], bounds[1], bounds[2], bounds[3])
    ch, cw = cell.raw.shape[:2]
    win = _outward(from_bounds(*src_bounds, transform=cell.transform), pad=2)
    try:
        win = win.intersection(Window(0, 0, cw, ch))
    except WindowError:
        return False
    r0, c0 = int(win.row_off), int(win.col_off)
    r1, c1 = r0 + int(win.height), c0 + int(win.width)
    if r1 <= r0 or c1 <= c0:
        return False
    values = dequantise(
        cell.raw[r0:r1, c0:c1], cell.scales[r0:r1, c0:c1], path=cell.paths["embeddings"]
    )
    source = np.ascontiguousarray(np.moveaxis(values, 2, 0))
    del values
    src_transform = window_transform(win, cell.transform)
    return fill_nan_from(out, source, src_transform, cell.crs, dst_transform, crs)


def _summary(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} cells)" if len(names) > limit else "")


def _listed_cells(
    source: Path, registry: dict, year: int, grid: TargetGrid, tile
) -> tuple[list[str], list[str]]:
    """(cells looked for over the grid's lon/lat footprint, those the registry lists for year)."""
    lonlat = transform_bounds(grid.crs, "EPSG:4326", *grid.bounds(), densify_pts=21)
    looked_for = cells_for_bounds(*lonlat)
    listed = [n for n in looked_for if cell_files(n, year)["embeddings"] in registry]
    if not listed:
        raise InputError(
            f"{context(tile)}year {year}: no TESSERA cell listed in {source / REGISTRY} for the "
            f"target footprint; looked for {_summary(looked_for)}"
        )
    return looked_for, listed


def _cells_on_grid(
    source: Path, registry: dict, listed: list[str], year: int, grid: TargetGrid, tile
) -> tuple[list[_Cell], int]:
    """Open and verify the listed cells; (those meeting the grid, their embedding dimension)."""
    cells = []
    for name in listed:
        cell = _open_cell(source, registry, name, year, tile)
        footprint = _footprint(cell, grid.crs, grid.transform, grid.width, grid.height)
        if footprint is not None and footprint.width > 0 and footprint.height > 0:
            cell.target_window = footprint
            cells.append(cell)
    dims = {c.raw.shape[2] for c in cells}
    if len(dims) > 1:
        raise InputError(f"{context(tile)}year {year}: cells disagree on dimensions {dims}")
    if not cells:
        raise InputError(
            f"{context(tile)}year {year}: none of the listed cells ({_summary(listed)}) "
            f"overlaps the target grid"
        )
    return cells, dims.pop()


@dataclass
class _CellFill:
    """Fills output windows from the cells that meet them; counts what it filled."""

    cells: list[_Cell]
    crs: CRS
    used: list[str] = field(default_factory=list)  # cells that gave pixels, first use first
    valid: int = 0  # output pixels with an embedding

    def __call__(self, out: np.ndarray, win: Window, win_transform: Affine) -> None:
        for cell in self.cells:
            if not _overlaps(win, cell.target_window):
                continue
            if _reproject_into(out, cell, self.crs, win_transform) and cell.name not in self.used:
                self.used.append(cell.name)
        self.valid += int(np.isfinite(out[0]).sum())


def build_tile_embeddings(
    source: str | os.PathLike,
    year: int,
    dst: str | os.PathLike,
    *,
    crs,
    transform: Affine,
    width: int,
    height: int,
    tile: str | None = None,
) -> dict:
    """Mosaic the TESSERA cells covering a target grid into one float32 GeoTIFF (NaN nodata).

    Each listed cell is SHA-256-verified, dequantised and reprojected (nearest) from its own UTM
    grid onto ``crs``/``transform``; where cells overlap the first (northernmost, westernmost)
    wins. Returns ``{"path", "cells", "cells_looked_for", "bands", "valid_fraction"}``.
    """
    source = Path(source)
    grid = TargetGrid(CRS.from_user_input(crs), transform, width, height)
    if width <= 0 or height <= 0:
        raise InputError(f"{context(tile)}empty target grid {width}x{height}")
    registry = read_registry(source)
    looked_for, listed = _listed_cells(source, registry, year, grid, tile)
    cells, count = _cells_on_grid(source, registry, listed, year, grid, tile)
    fill = _CellFill(cells, grid.crs)
    with mosaic_writer(dst, grid, count) as out_ds:
        fill_windows(out_ds, grid, fill)
        out_ds.descriptions = tuple(f"tessera_{i:03d}" for i in range(count))
        out_ds.update_tags(
            TILE=tile or "",
            YEAR=str(year),
            EMBEDDINGS_SOURCE="tessera",
            EMBEDDINGS_CELLS=",".join(fill.used),
        )
        if fill.valid == 0:
            raise InputError(
                f"{context(tile)}year {year}: the embeddings are all NaN on the target grid; "
                f"cells looked for: {_summary(looked_for)}"
            )
    return {
        "path": str(dst),
        "cells": fill.used,
        "cells_looked_for": looked_for,
        "bands": count,
        "valid_fraction": fill.valid / (width * height),
    }
