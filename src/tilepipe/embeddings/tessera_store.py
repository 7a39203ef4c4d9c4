"""TESSERA embeddings from a Zarr store, geotessera ≥ 0.8's format, onto a tile's 10 m grid.

geotessera 0.8 and later publish TESSERA as one Zarr v3 store with a group per UTM zone; the
v1.1 default data exist only in that form. The layout, as ``geotessera/zarr.py`` writes it
(module docstring, ``init_store``, ``_create_zone_group``)::

    {store}/zarr.json                 root attributes ``geoemb:*`` (dimensions, quantisation)
    {store}/utm{zone:02d}/            a zone group, attributes ``proj:code`` (EPSG:326zz, the
                                      northern-hemisphere code for both hemispheres: northings
                                      south of the equator are ``northing - 10,000,000``) and
                                      ``spatial:transform`` (10 m, north-up)
        embeddings   int8     (T, 128, H, W)  chunks (1, 128, 32, 32), shards (1, 128, 4096, 4096)
        scales       float32  (T, H, W)       NaN water, +inf no data yet, finite valid
        time         int32    (T,)            the year of each time step
        x, y         float64                  pixel centres

A pixel's embedding is ``embeddings * scales``; a scale that is not usable
(:func:`tilepipe.embeddings.tessera.valid_scales`) makes the pixel nodata. The store is a
local directory (a mirror fetched on a login node) or an http(s) URL read with range requests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from tilepipe.core.errors import InputError, context
from tilepipe.embeddings.mosaic import (
    fill_nan_from,
    fill_windows,
    label,
    mosaic_writer,
    target_grid,
)
from tilepipe.embeddings.remote import is_url
from tilepipe.embeddings.tessera import valid_scales

SOUTH_OFFSET = 10_000_000.0  # false northing removed from southern zones' northings
ARRAYS = ("embeddings", "scales", "time")


def open_store(location: str | os.PathLike):
    """Open a TESSERA Zarr store (a directory or an http(s) URL) read-only, or InputError."""
    import zarr

    where = str(location).rstrip("/")
    try:
        if is_url(where):
            from obstore.store import HTTPStore
            from zarr.storage import ObjectStore

            http = HTTPStore.from_url(where, client_options={"allow_http": True})
            root = zarr.open_group(ObjectStore(http, read_only=True), mode="r")
        else:
            root = zarr.open_group(where, mode="r")
    except Exception as exc:
        raise InputError(f"{context(path=where)}not a readable Zarr store: {exc}") from exc
    attrs = dict(root.attrs)
    if "geoemb:dimensions" not in attrs and "geoemb:quantization" not in attrs:
        raise InputError(
            f"{context(path=where)}a Zarr store without geoemb: attributes is not a TESSERA store"
        )
    return root


def zone_of(crs: CRS) -> tuple[int, bool]:
    """(UTM zone, southern) of a WGS 84 / UTM CRS; InputError for any other CRS."""
    epsg = crs.to_epsg() or 0
    if 32601 <= epsg <= 32660 or 32701 <= epsg <= 32760:
        return epsg % 100, epsg > 32700
    raise InputError(f"a TESSERA store is read onto WGS 84 / UTM grids only, not {crs}")


@dataclass
class Zone:
    """One ``utm{zone}`` group: its arrays, CRS, transform and time steps."""

    name: str
    crs: CRS
    transform: Affine
    embeddings: object
    scales: object
    years: list[int]

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the zone grid."""
        return tuple(self.scales.shape[1:])


def _zone(root, name: str, where: str) -> Zone:
    group = root[name]
    missing = [a for a in ARRAYS if a not in group]
    if missing:
        raise InputError(f"{context(path=f'{where}/{name}')}missing arrays {missing}")
    attrs = dict(group.attrs)
    emb, scales = group["embeddings"], group["scales"]
    if emb.dtype != np.int8 or emb.ndim != 4 or scales.ndim != 3:
        raise InputError(
            f"{context(path=f'{where}/{name}')}expected int8 (T, B, H, W) embeddings and "
            f"(T, H, W) scales, got {emb.dtype} {emb.shape} and {scales.shape}"
        )
    if emb.shape[0] != scales.shape[0] or emb.shape[2:] != scales.shape[1:]:
        raise InputError(
            f"{context(path=f'{where}/{name}')}embeddings {emb.shape} and scales "
            f"{scales.shape} disagree"
        )
    a, b, c, d, e, f = (float(v) for v in attrs["spatial:transform"])
    return Zone(
        name,
        CRS.from_user_input(attrs["proj:code"]),
        Affine(a, b, c, d, e, f),
        emb,
        scales,
        [int(y) for y in group["time"][:]],
    )


def zones_for(root, zone: int, where: str, tile: str | None = None) -> list[Zone]:
    """The tile's own zone group first, then its neighbours' (for strips across a zone edge)."""
    names = [f"utm{z:02d}" for z in (zone, (zone - 2) % 60 + 1, zone % 60 + 1)]
    present = [n for n in names if n in root]
    if names[0] not in present:
        zones = sorted(k for k in root.group_keys() if k.startswith("utm"))
        raise InputError(
            f"{context(tile, path=where)}the store has no group {names[0]} "
            f"(zones: {zones or 'none'})"
        )
    return [_zone(root, n, where) for n in present]


def _canonical(transform: Affine, south: bool) -> Affine:
    """The tile transform in the store's northern-hemisphere northings."""
    return Affine.translation(0, -SOUTH_OFFSET) * transform if south else transform


def _read(zone: Zone, t: int, bounds: tuple[float, float, float, float]):
    """(C, h, w) dequantised float32 of ``zone`` over ``bounds`` (its CRS), with its transform;
    None where the bounds miss the zone grid."""
    inv = ~zone.transform
    left, bottom, right, top = bounds
    c0, r0 = inv * (left, top)
    c1, r1 = inv * (right, bottom)
    height, width = zone.shape
    r0, c0 = max(0, int(np.floor(r0)) - 1), max(0, int(np.floor(c0)) - 1)
    r1, c1 = min(height, int(np.ceil(r1)) + 1), min(width, int(np.ceil(c1)) + 1)
    if r1 <= r0 or c1 <= c0:
        return None
    raw = np.asarray(zone.embeddings[t, :, r0:r1, c0:c1])
    scales = np.asarray(zone.scales[t, r0:r1, c0:c1], dtype=np.float32)
    ok = valid_scales(scales)
    out = raw.astype(np.float32) * np.where(ok, scales, 0)[None]
    out[:, ~ok] = np.nan
    return out, zone.transform * Affine.translation(c0, r0)


@dataclass
class _StoreFill:
    """Fills output windows from the zone groups in order; counts what it filled."""

    zones: list[Zone]
    crs: CRS
    south: bool
    year: int
    used: list[str] = field(default_factory=list)
    valid: int = 0

    def __call__(self, out: np.ndarray, win: Window, win_transform: Affine) -> None:
        dst_crs = self.crs
        dst_transform = _canonical(win_transform, self.south)
        h, w = out.shape[1:]
        for zone in self.zones:
            if not np.isnan(out[0]).any():
                break
            if self.year not in zone.years:
                continue
            left, top = dst_transform * (0, 0)
            right, bottom = dst_transform * (w, h)
            bounds = (left, bottom, right, top)
            if zone.crs != dst_crs:
                bounds = transform_bounds(dst_crs, zone.crs, *bounds, densify_pts=21)
            got = _read(zone, zone.years.index(self.year), bounds)
            if got is None:
                continue
            if fill_nan_from(out, got[0], got[1], zone.crs, dst_transform, dst_crs):
                self.used.append(zone.name) if zone.name not in self.used else None
        self.valid += int(np.isfinite(out[0]).sum())


def build_tile_embeddings_store(
    store: str | os.PathLike,
    year: int,
    dst: str | os.PathLike,
    *,
    crs,
    transform: Affine,
    width: int,
    height: int,
    tile: str | None = None,
) -> dict:
    """Write a tile-year's TESSERA embeddings from a Zarr store as a float32 GeoTIFF (NaN nodata).

    The tile's own UTM zone group is read first, then its neighbours' for pixels still empty
    (reprojected, nearest). Returns ``{"path", "zones", "bands", "valid_fraction"}``.
    """
    where = str(store).rstrip("/")
    grid = target_grid(crs, transform, width, height, tile)
    zone, south = zone_of(grid.crs)
    root = open_store(where)
    zones = zones_for(root, zone, where, tile)
    if year not in zones[0].years:
        raise InputError(
            f"{context(tile, path=where)}year {year} is not in {zones[0].name} "
            f"(years: {zones[0].years})"
        )
    # the store's northern code: reproject in it, with the tile's northings made canonical
    fill = _StoreFill(zones, zones[0].crs, south, year)
    count = int(zones[0].embeddings.shape[1])
    with mosaic_writer(dst, grid, count) as out_ds:
        try:
            fill_windows(out_ds, grid, fill)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(
                f"{context(tile, path=where)}year {year}: reading the store failed: {exc}"
            ) from exc
        label(out_ds, "tessera", tile, year, EMBEDDINGS_SOURCE="tessera", EMBEDDINGS_STORE=where)
        out_ds.update_tags(EMBEDDINGS_ZONES=",".join(fill.used))
        if fill.valid == 0:
            raise InputError(
                f"{context(tile, path=where)}year {year}: the store holds no valid embedding "
                f"over the target grid (zones read: {[z.name for z in zones]})"
            )
    return {
        "path": str(dst),
        "zones": fill.used,
        "bands": count,
        "valid_fraction": fill.valid / (width * height),
    }
