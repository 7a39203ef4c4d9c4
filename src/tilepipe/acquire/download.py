"""Download: read a scene's band assets over the tile window, harmonise, write s2.tif and scl.tif.

Reads are windowed (only the tile window is fetched, through GDAL's /vsicurl/ or /vsis3/ for
remote COGs), run a few at a time (the job's share of the source's connections), are retried
and re-signed as tilepipe.acquire.transfer decides, and every band lands on the tile's 10 m grid
with the baseline-04.00 reflectance offset removed, so every scene, old or new, from whichever
source, carries the same bands, grid and reflectance scale. Assets must hold unsigned integers
(digital numbers, scene classes). Each raster is checked (readable, band count, size, not all
nodata) before the two are renamed into place together: s2.tif and scl.tif appear as a pair or
not at all.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window, from_bounds

from tilepipe.acquire.plausibility import DEFAULT_CHECK, PixelCheck, check_harmonisation
from tilepipe.acquire.sources import Source, is_remote, make_source
from tilepipe.acquire.transfer import RetryPolicy, retry_read
from tilepipe.core.errors import ConfigError, InputError, context
from tilepipe.core.grid import TileGrid, tile_grid
from tilepipe.core.inputs import L2A_BANDS, REFLECTANCE_BANDS, s2_bands
from tilepipe.core.raster import atomic_outputs, gtiff_profile, is_north_up, rewrite_as_cog

log = logging.getLogger(__name__)


def harmonise(dn: np.ndarray, offset_dn: int) -> np.ndarray:
    """Remove the BOA_ADD_OFFSET from L2A digital numbers; 0 stays nodata, valid stays ≥ 1."""
    if offset_dn == 0:
        return dn.astype(np.uint16, copy=False)
    out = np.clip(dn.astype(np.int32) - offset_dn, 1, 65535).astype(np.uint16)
    out[dn == 0] = 0
    return out


def read_window(
    path: str,
    transform: Affine,
    width: int,
    height: int,
    crs: str,
    *,
    where: str,
    resampling: Resampling = Resampling.nearest,
) -> np.ndarray:
    """Read band 1 of a raster over a target 10 m window (a coarser band resampled by
    ``resampling``, its nodata left out of the interpolation; 0 outside)."""
    with rasterio.open(path) as src:
        if src.crs is None or src.crs.to_string() != crs:
            raise InputError(f"{where}asset CRS {src.crs} differs from the tile's {crs}")
        if not is_north_up(src.transform):
            raise InputError(f"{where}asset is not north-up (transform {tuple(src.transform)})")
        left, top = transform.c, transform.f
        right, bottom = left + transform.a * width, top + transform.e * height
        want = from_bounds(left, bottom, right, top, src.transform)
        # read only the part inside the asset and place it: a boundless read would open the
        # file a second time (a VRT over it), which doubles the requests for a remote asset
        sx, sy = want.width / width, want.height / height
        c0, r0 = max(want.col_off, 0.0), max(want.row_off, 0.0)
        c1 = min(want.col_off + want.width, float(src.width))
        r1 = min(want.row_off + want.height, float(src.height))
        out = np.zeros((height, width), dtype=src.dtypes[0])
        tc0, tc1 = round((c0 - want.col_off) / sx), round((c1 - want.col_off) / sx)
        tr0, tr1 = round((r0 - want.row_off) / sy), round((r1 - want.row_off) / sy)
        if tc1 <= tc0 or tr1 <= tr0:
            return out
        out[tr0:tr1, tc0:tc1] = src.read(
            1,
            window=Window(c0, r0, c1 - c0, r1 - r0),
            out_shape=(tr1 - tr0, tc1 - tc0),
            resampling=resampling,
        )
        return out


def read_asset(
    href: str,
    transform: Affine,
    width: int,
    height: int,
    crs: str,
    *,
    where: str,
    source: Source | None = None,
    policy: RetryPolicy | None = None,
    resampling: Resampling = Resampling.nearest,
) -> np.ndarray:
    """Read an asset href over a target window, signed, retried and re-signed as needed."""
    source = source or make_source({})
    policy = policy or RetryPolicy()
    if not is_remote(href):
        policy = RetryPolicy(attempts=1, gdal_retries=0)  # a local file does not heal
    try:
        session = source.session(href)  # credentials, checked before the first request
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    return retry_read(
        lambda path: read_window(
            path, transform, width, height, crs, where=where, resampling=resampling
        ),
        lambda resign: source.read_path(href, resign=resign),
        policy=policy,
        where=where,
        can_resign=source.can_resign,
        options=source.gdal_options(),
        session=session,
        auth_hint=source.auth_hint,
    )


def target_window(
    grid: TileGrid, window: tuple[int, int, int, int] | None
) -> tuple[Affine, int, int]:
    """(transform, width, height) of a (col_off, row_off, width, height) window; None = the tile."""
    return grid.window(*window) if window else (grid.transform, grid.size, grid.size)


SCL_CLOUD = (3, 8, 9, 10)  # cloud shadow, cloud medium/high probability, thin cirrus


def aoi_scene_stats(
    item: Any,
    windows: Mapping[str, tuple[int, int, int, int] | None],
    *,
    source: Source | None = None,
    policy: RetryPolicy | None = None,
) -> tuple[float, float]:
    """(cloud %, nodata %) of a STAC item over its tile's window, from its SCL asset.

    Cloud is the share of valid SCL pixels that are cloud, shadow or cirrus; one small
    windowed read of the 20 m SCL per candidate scene.
    """
    from tilepipe.acquire.stac import band_asset, item_tile

    tile = item_tile(item) or ""
    grid = tile_grid(tile)
    transform, width, height = target_window(grid, windows.get(tile))
    asset = band_asset(item, "SCL")
    if asset is None:
        raise InputError(f"{context(tile, None, item.id)}item has no SCL asset")
    href = asset.get_absolute_href() or asset.href
    day = item.datetime.date().isoformat() if item.datetime else None
    scl = read_asset(
        href,
        transform,
        width,
        height,
        grid.crs,
        where=f"{context(tile, day, href)}asset SCL: ",
        source=source,
        policy=policy,
    )
    valid = scl != 0
    nodata = 100.0 * (1.0 - valid.mean())
    cloud = 100.0 * np.isin(scl[valid], SCL_CLOUD).mean() if valid.any() else 100.0
    return float(cloud), float(nodata)


def policy_from(settings: Mapping[str, Any]) -> RetryPolicy:
    """The retry policy of the config's ``source.retry`` mapping (defaults where left out)."""
    return RetryPolicy(**dict(settings.get("retry") or {}))


def check_written(path: Path, *, count: int, width: int, height: int, where: str) -> None:
    """Raise InputError unless ``path`` reads back with ``count`` bands of width x height and
    some valid pixels (run on the temporary file, before it is renamed into place)."""
    try:
        with rasterio.open(path) as src:
            shape = (src.count, src.width, src.height)
            if shape != (count, width, height):
                raise InputError(
                    f"{where}written raster has shape {shape}, expected {count, width, height}"
                )
            if not src.read(1).any():
                raise InputError(f"{where}written raster holds only nodata")
    except RasterioError as exc:
        raise InputError(f"{where}written raster does not read back: {exc}") from exc


def _check_assets(hrefs: Mapping[str, str], bands: tuple[str, ...], tile: str, date: str):
    """Raise InputError unless the manifest row names an asset for every band and the SCL."""
    for band in (*bands, "SCL"):
        if band not in hrefs:
            where = context(tile, date, f"<{band} missing>")
            wanted = (
                "" if band in REFLECTANCE_BANDS or band == "SCL" else ", which the config asks for"
            )
            raise InputError(
                f"{where}band {band} ({L2A_BANDS.get(band, 20)} m{wanted}) has no asset in the "
                f"manifest (the item's bands: {' '.join(sorted(hrefs))})"
            )


def _read_assets(
    hrefs: Mapping[str, str],
    grid: TileGrid,
    window: tuple[Affine, int, int],
    tile: str,
    date: str,
    *,
    source: Source,
    policy: RetryPolicy | None,
    connections: int,
    bands: tuple[str, ...] = REFLECTANCE_BANDS,
    resampling: Resampling = Resampling.bilinear,
) -> dict[str, np.ndarray]:
    """The SCL and reflectance bands over the window, at most ``connections`` read at once;
    the 20 m and 60 m bands resampled onto the 10 m grid by ``resampling``, the SCL by nearest."""
    transform, width, height = window

    def fetch(band: str) -> np.ndarray:
        where = f"{context(tile, date, hrefs[band])}asset {band}: "
        coarse = band != "SCL" and L2A_BANDS[band] > 10
        return read_asset(
            hrefs[band],
            transform,
            width,
            height,
            grid.crs,
            where=where,
            source=source,
            policy=policy,
            resampling=resampling if coarse else Resampling.nearest,
        )

    names = ("SCL", *bands)
    with ThreadPoolExecutor(max_workers=max(1, connections)) as pool:
        return dict(zip(names, pool.map(fetch, names), strict=True))


def _check_asset_dtypes(arrays: Mapping[str, np.ndarray], hrefs: Mapping[str, str], tile, date):
    """Raise InputError unless every asset holds unsigned integers: L2A digital numbers and
    scene classes (a float asset, e.g. reflectance 0–1, would be cast to 0 and 1)."""
    for band, values in arrays.items():
        if not np.issubdtype(values.dtype, np.unsignedinteger):
            raise InputError(
                f"{context(tile, date, hrefs[band])}asset {band}: expected unsigned integer "
                f"{'scene classes' if band == 'SCL' else 'digital numbers'}, found {values.dtype}"
            )


def _reflectance(
    arrays: Mapping[str, np.ndarray], bands: tuple[str, ...], offset: int, tile: str, date: str
):
    """The harmonised DN stack of ``bands``; a pixel missing in any band is nodata (0) in all."""
    dn = np.stack([arrays[band] for band in bands])
    if not dn.any():
        raise InputError(f"{context(tile, date)}all reflectance pixels are nodata in the window")
    s2 = harmonise(dn, offset)
    s2[:, (dn == 0).any(axis=0)] = 0
    return s2


def _provenance(row: Mapping[str, str], offset: int, source: Source, checked: str):
    """(what harmonisation did, the tags both rasters carry: item, baseline, provider, scale,
    where the offset came from and what the pixels said about it)."""
    origin = row.get("offset_source") or "processing baseline"
    if offset:
        applied = f"subtracted BOA_ADD_OFFSET {offset} DN (baseline {row['baseline']}, {origin})"
    elif origin == "processing baseline":
        applied = f"none (baseline {row['baseline']} has no offset)"
    else:
        applied = f"none (no offset in the pixels: {origin}; baseline {row['baseline']})"
    tags = {
        "TILE": row["tile"],
        "DATE": row["date"],
        "SOURCE_ITEM": row["item_id"],
        "SOURCE_COLLECTION": row["collection"],
        "PROCESSING_BASELINE": row["baseline"],
        "HARMONISATION": applied,
        "HARMONISATION_FROM": origin,
        "HARMONISATION_CHECK": checked,
        "SOURCE_PROVIDER": source.name,
        "REFLECTANCE_SCALE": "0.0001",
    }
    return applied, tags


def _write_checked(
    tmp: Path,
    data: np.ndarray,
    profile: dict,
    tags: dict,
    names: tuple[str, ...],
    where,
    resampling: Resampling = Resampling.average,
) -> None:
    """Write ``data`` (C, h, w) with tags and band names into a temporary COG, and check it."""
    with rasterio.open(tmp, "w", **profile) as out:
        out.write(data)
        out.update_tags(**tags)
        for i, name in enumerate(names, start=1):
            out.set_band_description(i, name)
    rewrite_as_cog(tmp, resampling)
    check_written(tmp, count=len(names), width=data.shape[2], height=data.shape[1], where=where)


def _write_scene(
    dsts: tuple[str | Path, str | Path],
    s2: np.ndarray,
    scl: np.ndarray,
    profile: dict,
    tags,
    bands: tuple[str, ...] = REFLECTANCE_BANDS,
) -> None:
    """Write s2.tif and scl.tif together: both checked, then both renamed, or neither is."""
    tile, date = tags["TILE"], tags["DATE"]
    with atomic_outputs(*dsts) as (s2_tmp, scl_tmp):
        _write_checked(s2_tmp, s2, profile, tags, bands, context(tile, date, dsts[0]))
        profile = {**profile, "count": 1, "dtype": "uint8", "predictor": 2}
        where = context(tile, date, dsts[1])
        _write_checked(scl_tmp, scl, profile, tags, ("SCL",), where, Resampling.nearest)


def download_scene(
    row: dict[str, str],
    s2_dst: str | Path,
    scl_dst: str | Path,
    *,
    window: tuple[int, int, int, int] | None = None,
    source: Source | None = None,
    policy: RetryPolicy | None = None,
    connections: int = 2,
    check: PixelCheck = DEFAULT_CHECK,
    bands: Sequence[str] = (),
    resampling: str = "bilinear",
) -> dict[str, object]:
    """Write ``s2.tif`` and ``scl.tif`` for one manifest row; return what was applied.

    ``window`` is (col_off, row_off, width, height) in the tile's 10 m pixels; None = full tile.
    At most ``connections`` assets are read at once. The row's offset must pass ``check``
    against the pixels, or the scene fails (InputError) with nothing written. ``bands`` are
    further L2A bands s2.tif carries after the core four (``s2_bands``), 20 m and 60 m ones
    resampled onto the 10 m grid by ``resampling`` (a GDAL resampling name).
    """
    source = source or make_source({})
    tile, date = row["tile"], row["date"]
    grid = tile_grid(tile)
    transform, width, height = target_window(grid, window)
    hrefs = json.loads(row["assets"])
    offset = int(row["boa_offset_dn"])
    names = s2_bands(bands)
    _check_assets(hrefs, names, tile, date)
    arrays = _read_assets(
        hrefs,
        grid,
        (transform, width, height),
        tile,
        date,
        source=source,
        policy=policy,
        connections=connections,
        bands=names,
        resampling=Resampling[resampling],
    )
    _check_asset_dtypes(arrays, hrefs, tile, date)
    s2 = _reflectance(arrays, names, offset, tile, date)
    origin = row.get("offset_source") or "processing baseline"
    where = context(tile, date, hrefs["B02"])
    checked = check_harmonisation(arrays, offset, origin, where=where, check=check)
    applied, tags = _provenance(row, offset, source, checked)
    profile = gtiff_profile(
        width=width,
        height=height,
        count=len(names),
        dtype="uint16",
        crs=grid.crs,
        transform=transform,
        nodata=0,
    )
    scl = arrays["SCL"].astype(np.uint8)[None]
    _write_scene((s2_dst, scl_dst), s2, scl, profile, tags, names)
    log.info("%s%dx%d px, harmonisation: %s", context(tile, date), width, height, applied)
    return {"width": width, "height": height, "harmonisation": applied, "check": checked}
