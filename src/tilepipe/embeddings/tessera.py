"""TESSERA embeddings: verify, dequantise and reproject 0.1° cells onto a tile's 10 m grid.

The source is a directory or a base URL in one of the cell layouts geotessera publishes
(:class:`Layout`): geotessera 0.7's mirror (``geotessera/registry.py``:
``TESSERA_BASE_URL/{version}/registry.parquet``, ``EMBEDDINGS_DIR_NAME``,
``LANDMASKS_DIR_NAME``, ``tile_to_embedding_paths``, ``tile_to_landmask_filename``)::

    {source}/registry.parquet      GeoParquet: year, lon, lat (cell centre), hash (SHA-256 of the
                                   .npy), file_size, scales_hash, scales_size, lon_i, lat_i
    {source}/landmasks.parquet     lon, lat, hash (SHA-256 of the .tiff), file_size
    {source}/global_0.1_degree_representation/{year}/{name}/{name}.npy          int8 (H, W, 128)
    {source}/global_0.1_degree_representation/{year}/{name}/{name}_scales.npy   float32 (H, W)
    {source}/global_0.1_degree_tiff_all/{name}.tiff        landmask: the cell's UTM CRS + transform

or geotessera >= 0.8's tree, ``npy/{dataset}/manifest.parquet`` (sizes only) beside
``landmasks/{version}/``. ``name`` is ``grid_{lon:.2f}_{lat:.2f}`` (``tile_to_grid_name``), the
centre of a 0.1° cell, and rows are looked up by ``round(coord * 100)`` (``coord_to_grid_int``).
Every file is checked against its listed size and SHA-256 (or the server's MD5 ETag) before use.
A Zarr store (:func:`is_store`) is read by :mod:`tilepipe.embeddings.tessera_store`. The output
is one float32 GeoTIFF per (tile, year) with one band per embedding dimension and NaN as
nodata; it is written window by window so a full tile (10980² x 128 floats, 62 GB) never sits
in memory.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import WindowError
from rasterio.transform import array_bounds
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform

from tilepipe.core.errors import InputError, context
from tilepipe.embeddings.mosaic import (
    TargetGrid,
    fill_nan_from,
    fill_windows,
    label,
    mosaic_writer,
    target_grid,
)
from tilepipe.embeddings.remote import is_url, join, local_copy

CELL_DEG = 0.1
REPRESENTATION_DIR = "global_0.1_degree_representation"
LANDMASK_DIR = "global_0.1_degree_tiff_all"
REGISTRY = "registry.parquet"
LANDMASKS = "landmasks.parquet"
MANIFEST = "manifest.parquet"  # geotessera >= 0.8: sizes only, files checked by MD5/ETag
REGISTRY_COLUMNS = ("year", "lon", "lat", "hash", "file_size")  # geotessera's required set
MANIFEST_COLUMNS = ("year", "lon", "lat", "grid_size")  # geotessera 0.11, Registry._load_registry
LANDMASK_COLUMNS = ("lon", "lat", "file_size")
DEFAULT_CACHE = Path("cache/embeddings")  # remote sources only, relative to the working dir


def cell_name(lon: float, lat: float) -> str:
    """Name of the 0.1° cell whose centre is (lon, lat), e.g. ``grid_16.35_48.15``."""
    return f"grid_{lon:.2f}_{lat:.2f}"


@dataclass(frozen=True)
class Layout:
    """Where a TESSERA source keeps its registries and files.

    geotessera 0.7 mirrors (and local directories of either version) keep everything under one
    root: ``registry.parquet`` or ``manifest.parquet``, ``landmasks.parquet``,
    ``global_0.1_degree_representation/`` and ``global_0.1_degree_tiff_all/``. The Source
    Cooperative tree geotessera >= 0.8 reads (``geotessera/registry.py``, "All Tessera data is
    served over plain HTTPS") splits them::

        {root}/npy/{dataset}/manifest.parquet, {root}/npy/{dataset}/{year}/grid_X_Y/grid_X_Y.npy
        {root}/landmasks/{version}/landmasks.parquet, {root}/landmasks/{version}/grid_X_Y.tiff

    with ``dataset`` a version and variant (``v1``, ``v1.1-cam``) and ``version`` its part
    before the first ``-``.
    """

    tiles: str  # base of the tile tree and of its registry
    landmasks: str  # base of the landmask tree and of landmasks.parquet
    registry: str = REGISTRY  # REGISTRY or MANIFEST
    tile_dir: str = REPRESENTATION_DIR
    landmask_dir: str = LANDMASK_DIR


def layout_of(source: str | os.PathLike) -> Layout:
    """The layout of a TESSERA source, decided from its path alone (no request)."""
    text = str(source).rstrip("/")
    head, sep, dataset = text.rpartition("/npy/")
    if sep and dataset and "/" not in dataset:
        version = dataset.split("-", 1)[0]
        return Layout(text, f"{head}/landmasks/{version}", MANIFEST, "", "")
    local = not is_url(text)
    if local and not (Path(text) / REGISTRY).is_file() and (Path(text) / MANIFEST).is_file():
        return Layout(text, text, MANIFEST)
    return Layout(text, text)


def cell_files(name: str, year: int | str, layout: Layout | None = None) -> dict[str, str]:
    """Paths of a cell's embeddings, scales and landmask, relative to the layout's bases."""
    layout = layout or Layout("", "")
    rep = "/".join(p for p in (layout.tile_dir, str(year), name) if p)
    mask = "/".join(p for p in (layout.landmask_dir, f"{name}.tiff") if p)
    return {
        "embeddings": f"{rep}/{name}.npy",
        "scales": f"{rep}/{name}_scales.npy",
        "landmask": mask,
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


def grid_int(coord: float) -> int:
    """A cell-centre coordinate as geotessera's integer key ``round(coord * 100)``."""
    return int(np.round(coord * 100))


def cell_key(name: str) -> tuple[int, int]:
    """(lon_i, lat_i) of a cell name ``grid_{lon}_{lat}``."""
    lon, lat = name.removeprefix("grid_").split("_")
    return grid_int(float(lon)), grid_int(float(lat))


@dataclass(frozen=True)
class Listing:
    """What a registry says about one file: its size in bytes and SHA-256 (None if not given)."""

    size: int | None
    sha256: str | None


def _read_table(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """{column: list} of a Parquet registry, InputError naming it if unreadable or incomplete."""
    try:
        schema = pq.read_schema(path)
        missing = sorted(set(required) - set(schema.names))
        if missing:
            raise InputError(f"{context(path=path)}registry lacks columns {missing}")
        columns = [*required, *(c for c in optional if c in schema.names)]
        return pq.read_table(path, columns=columns).to_pydict()
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"{context(path=path)}TESSERA registry unreadable: {exc}") from exc


def _listing(size, sha256) -> Listing:
    return Listing(None if size is None else int(size), str(sha256).lower() if sha256 else None)


def read_registry(path: str | os.PathLike) -> dict[tuple[int, int, int], dict[str, Listing]]:
    """Map (year, lon_i, lat_i) of each tile in ``registry.parquet`` to its files' listings.

    ``hash``/``file_size`` describe the embeddings ``.npy``; ``scales_hash``/``scales_size``
    (present in geotessera's registries since 0.7) the ``_scales.npy``.
    """
    t = _read_table(Path(path), REGISTRY_COLUMNS, ("scales_hash", "scales_size"))
    n = len(t["year"])
    scales_hash, scales_size = t.get("scales_hash", [None] * n), t.get("scales_size", [None] * n)
    return {
        (int(t["year"][i]), grid_int(t["lon"][i]), grid_int(t["lat"][i])): {
            "embeddings": _listing(t["file_size"][i], t["hash"][i]),
            "scales": _listing(scales_size[i], scales_hash[i]),
        }
        for i in range(n)
    }


def read_manifest(path: str | os.PathLike) -> dict[tuple[int, int, int], dict[str, Listing]]:
    """Map (year, lon_i, lat_i) of each tile in geotessera >= 0.8's ``manifest.parquet``.

    The manifest lists sizes only (``grid_size``, ``scales_size``): the bytes are checked
    against the server's MD5 ETag when fetched (:func:`tilepipe.embeddings.remote.download`).
    """
    t = _read_table(Path(path), MANIFEST_COLUMNS, ("scales_size",))
    n = len(t["year"])
    scales_size = t.get("scales_size", [None] * n)
    return {
        (int(t["year"][i]), grid_int(t["lon"][i]), grid_int(t["lat"][i])): {
            "embeddings": _listing(t["grid_size"][i], None),
            "scales": _listing(scales_size[i], None),
        }
        for i in range(n)
    }


def read_landmasks(path: str | os.PathLike) -> dict[tuple[int, int], Listing]:
    """Map (lon_i, lat_i) of each landmask in ``landmasks.parquet`` to its listing.

    ``hash`` (SHA-256) is in geotessera 0.7's landmask registry and optional since.
    """
    t = _read_table(Path(path), LANDMASK_COLUMNS, ("hash",))
    hashes = t.get("hash", [None] * len(t["lon"]))
    return {
        (grid_int(lon), grid_int(lat)): _listing(size, sha)
        for lon, lat, size, sha in zip(t["lon"], t["lat"], t["file_size"], hashes, strict=True)
    }


@dataclass
class Registry:
    """A TESSERA source with its registries loaded: where files are and what they must be."""

    source: str
    cache: Path
    tiles: dict[tuple[int, int, int], dict[str, Listing]]
    landmasks: dict[tuple[int, int], Listing]
    layout: Layout | None = None

    def registry_file(self) -> str:
        """The tile registry's path or URL."""
        layout = self.layout or Layout(self.source, self.source)
        return join(layout.tiles, layout.registry)

    def base(self, role: str) -> str:
        """Where the ``role`` file (embeddings, scales, landmask) of a cell is found."""
        layout = self.layout or Layout(self.source, self.source)
        return layout.landmasks if role == "landmask" else layout.tiles

    def cache_of(self, base: str) -> Path:
        """The cache folder of a remote base (one per URL, so two bases never collide)."""
        if not is_url(base):
            return self.cache
        return self.cache / "tessera" / base.split("://", 1)[1].replace("/", "_")

    def lists(self, name: str, year: int) -> bool:
        """Whether the registry lists cell ``name`` for ``year``."""
        return (year, *cell_key(name)) in self.tiles

    def listing(self, name: str, year: int, role: str) -> Listing:
        """The listing of a cell's ``embeddings``, ``scales`` or ``landmask`` file."""
        if role == "landmask":
            return self.landmasks.get(cell_key(name), Listing(None, None))
        return self.tiles[(year, *cell_key(name))][role]


def _registry_copy(registry: Registry, base: str, name: str) -> Path:
    """A local copy of the registry file ``name`` under ``base``."""
    what = f"{context(path=join(base, name))}TESSERA {name}"
    return local_copy(base, name, registry.cache_of(base), what=what)


def open_registry(source: str | os.PathLike, cache: str | os.PathLike | None = None) -> Registry:
    """Load the tile registry (``registry.parquet`` or ``manifest.parquet``) and
    ``landmasks.parquet`` of a directory or mirror URL, in the layout :func:`layout_of` finds."""
    layout = layout_of(source)
    registry = Registry(
        str(source).rstrip("/"), Path(cache) if cache is not None else DEFAULT_CACHE, {}, {}, layout
    )
    reader = read_manifest if layout.registry == MANIFEST else read_registry
    registry.tiles.update(reader(_registry_copy(registry, layout.tiles, layout.registry)))
    landmasks = _registry_copy(registry, layout.landmasks, LANDMASKS)
    registry.landmasks.update(read_landmasks(landmasks))
    return registry


def valid_scales(scales: np.ndarray) -> np.ndarray:
    """Pixels whose scale is usable: finite and in (0, 1).

    geotessera marks invalid pixels in the scales, not the codes: NaN is water and +inf land
    without data (``geotessera/zarr.py`` module docstring, "Scale sentinels"), and its store
    builder keeps a scale only when it is finite, positive and below ``MAX_VALID_SCALE = 1.0``
    (geotessera 0.11, ``zarr.py``, ``valid_scale_mask``; real scales run at median 0.064).
    ``scales`` is (H, W) or (H, W, C); a pixel is valid only if all its scales are.
    """
    ok = np.isfinite(scales) & (scales > 0) & (scales < 1)
    return ok.all(axis=2) if ok.ndim == 3 else ok


def dequantise(raw: np.ndarray, scales: np.ndarray, *, path=None) -> np.ndarray:
    """Return float32 (H, W, C) embeddings = int8 values x scale; invalid scales give NaN pixels.

    ``scales`` is (H, W) (one scale per pixel) or (H, W, C) (one per pixel and dimension), as
    in ``geotessera.core.dequantize_embedding``. Wrong dtypes and mismatched shapes raise
    InputError naming ``path``; invalid scales (see :func:`valid_scales`) are nodata.
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
    valid = valid_scales(scales)
    factor = np.where(valid[..., None] if scales.ndim == 3 else valid, scales, 0)
    factor = factor[..., None] if scales.ndim == 2 else factor
    out = raw.astype(np.float32) * factor.astype(np.float32)
    out[~valid] = np.nan
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


def _cell_paths(registry: Registry, name: str, year: int, tile) -> dict[str, Path]:
    """Verified local paths of a listed cell's files (fetched first from a remote source).

    A missing file, a size or SHA-256 mismatch or a failed download raises InputError naming
    the tile, the year and the file.
    """
    paths = {}
    for role, rel in cell_files(name, year, registry.layout).items():
        listing = registry.listing(name, year, role)
        base = registry.base(role)
        what = f"{context(tile, path=join(base, rel))}year {year}: {role} file of "
        what += f"listed cell {name}"
        paths[role] = local_copy(
            base,
            rel,
            registry.cache_of(base),
            size=listing.size,
            sha256=listing.sha256,
            what=what,
        )
    return paths


def _open_cell(registry: Registry, name: str, year: int, tile) -> _Cell:
    """Verify a cell's files against the registry and memory-map them."""
    paths = _cell_paths(registry, name, year, tile)
    raw = _load_npy(paths["embeddings"], tile, year)
    scales = _load_npy(paths["scales"], tile, year)
    if raw.dtype != np.int8 or raw.ndim != 3:
        raise InputError(
            f"{context(tile, path=paths['embeddings'])}expected int8 (H, W, C), "
            f"got {raw.dtype} {raw.shape}"
        )
    if scales.shape not in (raw.shape[:2], raw.shape) or not np.issubdtype(
        scales.dtype, np.floating
    ):
        raise InputError(
            f"{context(tile, path=paths['scales'])}scales {scales.dtype} {scales.shape} do not "
            f"fit embeddings {raw.shape}"
        )
    try:
        with rasterio.open(paths["landmask"]) as mask:
            crs, transform, land = mask.crs, mask.transform, mask.read(1)
    except rasterio.RasterioIOError as exc:
        raise InputError(f"{context(tile, path=paths['landmask'])}unreadable: {exc}") from exc
    if crs is None or land.shape != raw.shape[:2]:
        raise InputError(
            f"{context(tile, path=paths['landmask'])}landmask {land.shape} crs {crs} does not "
            f"georeference embeddings {raw.shape[:2]}"
        )
    if not land.all():  # water: nodata, as geotessera's store builder writes it
        scales = np.where((land != 0)[..., None] if scales.ndim == 3 else land != 0, scales, np.nan)
    return _Cell(name, raw, scales, crs, snap(transform), paths, Window(0, 0, 0, 0))


def snap(transform: Affine, pixel: float = 10.0) -> Affine:
    """The grid a cell's pixels lie on: its landmask's corner snapped outward to ``pixel``.

    A landmask carries the cell's unsnapped corner, while the producer laid the pixels out from
    ``floor(minx / res) * res`` (stackstac's snapped bounds); geotessera places cells in its
    Zarr stores the same way (``geotessera/zarr.py``, ``_tile_pixel_offset``, issue #429).
    Transforms that are not north-up at ``pixel`` metres are returned unchanged.
    """
    if (transform.a, transform.b, transform.d, transform.e) != (pixel, 0.0, 0.0, -pixel):
        return transform
    left = math.floor(round(transform.c / pixel, 9)) * pixel
    top = math.ceil(round(transform.f / pixel, 9)) * pixel
    return Affine(pixel, 0.0, left, 0.0, -pixel, top)


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
    registry: Registry, year: int, grid: TargetGrid, tile
) -> tuple[list[str], list[str]]:
    """(cells looked for over the grid's lon/lat footprint, those the registry lists for year)."""
    lonlat = transform_bounds(grid.crs, "EPSG:4326", *grid.bounds(), densify_pts=21)
    looked_for = cells_for_bounds(*lonlat)
    listed = [n for n in looked_for if registry.lists(n, year)]
    if not listed:
        raise InputError(
            f"{context(tile)}year {year}: no TESSERA cell listed in "
            f"{registry.registry_file()} for the target footprint; "
            f"looked for {_summary(looked_for)}"
        )
    return looked_for, listed


def _cells_on_grid(
    registry: Registry, listed: list[str], year: int, grid: TargetGrid, tile
) -> tuple[list[_Cell], int]:
    """Open and verify the listed cells; (those meeting the grid, their embedding dimension)."""
    cells = []
    for name in listed:
        cell = _open_cell(registry, name, year, tile)
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


def is_store(source: str | os.PathLike) -> bool:
    """Whether ``source`` is a Zarr store (geotessera >= 0.8) rather than a 0.7 mirror.

    A directory is a store when it holds ``zarr.json``; a URL when its path ends in ``.zarr`` or
    runs through a ``/zarr/`` tree (``https://data.source.coop/tessera/tessera/zarr/v1.1-…``),
    so deciding costs no request.
    """
    text = str(source).rstrip("/")
    if is_url(text):
        return text.endswith(".zarr") or "/zarr/" in text
    return (Path(text) / "zarr.json").is_file()


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
    cache: str | os.PathLike | None = None,
) -> dict:
    """Mosaic the TESSERA cells covering a target grid into one float32 GeoTIFF (NaN nodata).

    ``source`` is a directory or a mirror URL (its files fetched into ``cache``, default
    ``cache/embeddings``), or a Zarr store (:func:`is_store`; read by
    :mod:`tilepipe.embeddings.tessera_store`, which returns its own summary). Each listed cell
    is verified (size, and SHA-256 or MD5 ETag), dequantised (invalid scales are nodata) and
    reprojected (nearest) from its snapped grid (:func:`snap`) onto ``crs``/``transform``; where
    cells overlap the first (northernmost, westernmost) wins. Returns
    ``{"path", "cells", "cells_looked_for", "bands", "valid_fraction"}``.
    """
    if is_store(source):
        from tilepipe.embeddings.tessera_store import build_tile_embeddings_store

        where = dict(crs=crs, transform=transform, width=width, height=height, tile=tile)
        return build_tile_embeddings_store(source, year, dst, **where)
    grid = target_grid(crs, transform, width, height, tile)
    registry = open_registry(source, cache)
    looked_for, listed = _listed_cells(registry, year, grid, tile)
    cells, count = _cells_on_grid(registry, listed, year, grid, tile)
    fill = _CellFill(cells, grid.crs)
    with mosaic_writer(dst, grid, count) as out_ds:
        fill_windows(out_ds, grid, fill)
        label(out_ds, "tessera", tile, year, EMBEDDINGS_SOURCE="tessera")
        out_ds.update_tags(EMBEDDINGS_CELLS=",".join(fill.used))
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
