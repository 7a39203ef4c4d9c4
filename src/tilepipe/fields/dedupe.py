"""One field once across MGRS tile overlaps: a campaign's season field layers as one layer.

Neighbouring Sentinel-2 tiles overlap (about 10 km, more across UTM zone edges), so a field in
an overlap is delineated once per tile, and a field at a tile's edge comes out cut there. This
module matches the copies, keeps one tile's copy of each field and writes one campaign layer.

- A field is **cut** when it lies within ``tol_m`` of its tile extent's boundary where that
  boundary runs inside another tile's extent (a *seam*); the campaign's outer edge is no seam.
- Two fields of two tiles **match** when ``area(a ∩ b) / min(area(a), area(b)) >= min_overlap``
  (over the smaller one: a cut copy is only part of the whole field), compared in the first
  tile's UTM CRS. A **group** is a connected component of the matches (a field split in two in
  one tile and whole in the other is one group).
- **Keep rule**: per group, one tile's members are kept, all of them: a tile whose members are
  not cut before one whose are; then the tile whose MGRS footprint centre is nearest to the
  group's centroid (the centroid of its largest member), by geodesic distance on the WGS 84
  ellipsoid (one measure across UTM zones), to the metre; then tile id order. Fields matched to
  nothing are kept as they are.
- The campaign layer is in one CRS, EPSG:4326 by default: one layer across UTM zones, in the
  CRS every tool reads. ``metrics:area`` and ``metrics:perimeter`` stay the tile's UTM values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely
from pyproj import CRS, Geod, Transformer
from shapely.geometry import Polygon

from tilepipe.core.errors import ConfigError, InputError
from tilepipe.core.geoparquet import write_geoparquet
from tilepipe.core.grid import TILE_SIZE_M, tile_grid
from tilepipe.core.raster import atomic_outputs
from tilepipe.fields.fiboa import REQUIRED, arrow_columns, collection_metadata

#: The campaign layer's CRS unless told otherwise: lon/lat, one layer across UTM zones.
DEFAULT_CRS = "EPSG:4326"
#: Distance (m) from a seam within which a field counts as cut there.
TOL_M = 1.0
#: Share of the smaller field that two copies must have in common to be one field.
MIN_OVERLAP = 0.5
#: Vertex spacing (m) of a tile extent before it is reprojected, so its edges bend as they should.
DENSIFY_M = 1000.0
#: The layer name in the GeoPackages (the tile layers' and the campaign's).
LAYER = "fields"
#: Columns a tile layer must have.
NEEDED = ("id", "tile")
#: GDAL's time-zone flag for UTC (see fields.delineate.GDAL_UTC).
GDAL_UTC = 100
_GEOD = Geod(ellps="WGS84")


@dataclass(frozen=True)
class TileLayer:
    """One tile's season field layer and what the tile processed (``extent``, tile CRS)."""

    tile: str
    path: Path
    extent: Polygon


@dataclass
class TileFields:
    """One tile's fields in its own UTM CRS: geometries, columns (layer order) and extent."""

    tile: str
    extent: Polygon
    geoms: np.ndarray
    columns: dict[str, np.ndarray]
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.geoms)

    @property
    def epsg(self) -> int:
        """The tile's UTM EPSG code."""
        return tile_grid(self.tile).epsg


@dataclass
class CampaignLayer:
    """The campaign's fields in one CRS: geometries and columns (tile layers' order, then
    ``also_in``)."""

    geoms: np.ndarray
    columns: dict[str, np.ndarray]
    crs: str

    def __len__(self) -> int:
        return len(self.geoms)


@dataclass
class PairStats:
    """One pair of overlapping tiles: fields in their overlap, surplus copies before/after."""

    tiles: list[str]
    in_overlap: dict[str, int]
    duplicates_before: int
    duplicates_after: int = 0


@dataclass
class DedupeStats:
    """What the dedupe did, as written to the stats JSON."""

    season: str
    tiles: list[str]
    fields_in: dict[str, int]
    fields_out: int
    pairs: list[PairStats]
    duplicates_before: int
    duplicates_after: int
    cut_before: int
    cut_after: int
    min_overlap: float
    crs: str

    def to_json(self) -> dict:
        """The stats as a JSON-ready dict (the keys of docs/fields.md)."""
        return asdict(self)


@dataclass
class _Pair:
    """Matches between tiles ``i`` and ``j``: rows ``a`` of i match rows ``b`` of j."""

    i: int
    j: int
    a: np.ndarray
    b: np.ndarray
    in_overlap: tuple[int, int]


@dataclass
class _Analysis:
    """The matches, groups and cut flags of a set of tile layers."""

    pairs: list[_Pair]
    offsets: np.ndarray
    group: np.ndarray  # per field (global index): its group's root
    cut: list[np.ndarray] = field(default_factory=list)


# -- geometry helpers --------------------------------------------------------------------------


def tile_extent(tile: str, window: tuple[int, int, int, int] | None = None) -> Polygon:
    """What a tile processed, in its CRS: the 109.8 km footprint, or the pixel ``window``."""
    grid = tile_grid(tile)
    if window is None:
        return shapely.box(grid.ulx, grid.uly - TILE_SIZE_M, grid.ulx + TILE_SIZE_M, grid.uly)
    transform, width, height = grid.window(*window)
    x0, y1 = transform.c, transform.f
    return shapely.box(x0, y1 - height * grid.res, x0 + width * grid.res, y1)


@lru_cache(maxsize=256)
def _transformer(src: str, dst: str) -> Transformer:
    """A cached lon/lat-ordered transformer between two CRSs."""
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def reproject(geoms, src: str, dst: str):
    """Geometries (one or an array) from CRS ``src`` to ``dst``, vertex by vertex."""
    if CRS.from_user_input(src) == CRS.from_user_input(dst):
        return geoms
    t = _transformer(src, dst)

    def move(xy: np.ndarray) -> np.ndarray:
        x, y = t.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, move)


def extent_in(tile: TileFields | TileLayer, crs: str) -> Polygon:
    """A tile's extent in another CRS, densified first so its edges bend as they should."""
    src = tile_grid(tile.tile).crs
    return reproject(shapely.segmentize(tile.extent, DENSIFY_M), src, crs)


def _valid(geoms: np.ndarray) -> np.ndarray:
    """The geometries with invalid ones (a reprojection's rare self-touch) repaired."""
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        geoms = geoms.copy()
        geoms[bad] = shapely.make_valid(geoms[bad])
    return geoms


# -- reading -----------------------------------------------------------------------------------


def where(tile: str | None, season: str, path: object = None) -> str:
    """The prefix of an error message: tile, season and file."""
    parts = [f"tile {tile}"] if tile else []
    parts += [f"season {season}"] + ([f"file {path}"] if path is not None else [])
    return ", ".join(parts) + ": "


def read_tile_fields(layer: TileLayer, season: str) -> TileFields:
    """Read one tile's season layer; InputError unless it is readable, in the tile's UTM CRS and
    holds that tile's fields only."""
    here = where(layer.tile, season, layer.path)
    try:
        meta, _, wkb, data = pyogrio.raw.read(layer.path, layer=LAYER)
    except Exception as exc:  # missing file, not a GeoPackage, no fields layer
        raise InputError(f"{here}season field layer unreadable: {exc}") from exc
    want = tile_grid(layer.tile).crs
    crs = meta.get("crs")
    if not crs or CRS.from_user_input(crs) != CRS.from_user_input(want):
        raise InputError(f"{here}layer CRS is {crs}, not the tile's {want}")
    columns = dict(zip(meta["fields"], data, strict=True))
    missing = [c for c in NEEDED if c not in columns]
    if missing:
        raise InputError(f"{here}layer lacks columns {missing}")
    others = sorted({str(t) for t in columns["tile"]} - {layer.tile})
    if others:
        raise InputError(f"{here}layer holds fields of tile(s) {others}, not only {layer.tile}")
    geoms = shapely.from_wkb(wkb) if wkb is not None else np.zeros(0, dtype=object)
    return TileFields(
        layer.tile, layer.extent, np.asarray(geoms, dtype=object), columns, layer.path
    )


def _check_columns(tiles: Sequence[TileFields], season: str) -> list[str]:
    """The layers' common column names (all the same, same order); InputError otherwise."""
    names = list(tiles[0].columns) if tiles else []
    for t in tiles[1:]:
        if list(t.columns) != names:
            raise InputError(
                f"{where(t.tile, season, t.path)}columns {list(t.columns)} differ from "
                f"{tiles[0].tile}'s {names}: give layers of one kind (all fields.gpkg or all "
                "fields_classified.gpkg)"
            )
    return names


# -- matching ----------------------------------------------------------------------------------


def _overlap(a: TileFields, b: TileFields) -> Polygon | None:
    """The two extents' overlap in ``a``'s CRS; None when they share no area."""
    common = shapely.intersection(a.extent, extent_in(b, tile_grid(a.tile).crs))
    return None if common.is_empty or common.area <= 0 else common


def _match_pair(tiles: Sequence[TileFields], i: int, j: int, min_overlap: float) -> _Pair | None:
    """Matches between tiles i and j's fields in their overlap (STRtree candidates, then the
    overlap share of the smaller field); None when the extents do not overlap."""
    a, b = tiles[i], tiles[j]
    crs_a, crs_b = tile_grid(a.tile).crs, tile_grid(b.tile).crs
    common = _overlap(a, b)
    if common is None:
        return None
    in_a = np.flatnonzero(shapely.intersects(a.geoms, common)) if len(a) else np.zeros(0, int)
    common_b = reproject(shapely.segmentize(common, DENSIFY_M), crs_a, crs_b)
    in_b = np.flatnonzero(shapely.intersects(b.geoms, common_b)) if len(b) else np.zeros(0, int)
    empty = np.zeros(0, dtype=np.int64)
    if not len(in_a) or not len(in_b):
        return _Pair(i, j, empty, empty, (len(in_a), len(in_b)))
    geoms_a = a.geoms[in_a]
    geoms_b = _valid(np.asarray(reproject(b.geoms[in_b], crs_b, crs_a), dtype=object))
    ia, ib = shapely.STRtree(geoms_b).query(geoms_a, predicate="intersects")
    ga, gb = geoms_a[ia], geoms_b[ib]
    smaller = np.minimum(shapely.area(ga), shapely.area(gb))
    shared = shapely.area(shapely.intersection(ga, gb))
    ok = (smaller > 0) & (shared >= min_overlap * np.where(smaller > 0, smaller, 1.0))
    return _Pair(i, j, in_a[ia[ok]], in_b[ib[ok]], (len(in_a), len(in_b)))


def neighbours(tiles: Sequence[TileFields | TileLayer]) -> list[tuple[int, int]]:
    """Index pairs (i < j) of the tiles whose extents' lon/lat boxes meet (STRtree): the only
    pairs that can overlap, so a campaign of many tiles is not compared all against all."""
    boxes = np.array([shapely.envelope(extent_in(t, DEFAULT_CRS)) for t in tiles], dtype=object)
    if len(boxes) < 2:
        return []
    left, right = shapely.STRtree(boxes).query(boxes, predicate="intersects")
    return sorted({(int(i), int(j)) for i, j in zip(left, right, strict=True) if i < j})


def _pairs(tiles: Sequence[TileFields], min_overlap: float) -> list[_Pair]:
    """Matches of every pair of tiles whose extents overlap (tile order within a pair)."""
    found = (_match_pair(tiles, i, j, min_overlap) for i, j in neighbours(tiles))
    return [pair for pair in found if pair is not None]


def _components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components of ``n`` nodes and edges left-right: each node's root (union-find)."""
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in zip(left.tolist(), right.tolist(), strict=True):
        ru, rv = root(u), root(v)
        if ru != rv:
            parent[max(ru, rv)] = min(ru, rv)
    return np.array([root(x) for x in range(n)], dtype=np.int64)


def _edges(pairs: Sequence[_Pair], offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All matches as global field indices (tile offset + row)."""
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    left = np.concatenate([offsets[p.i] + p.a for p in pairs]).astype(np.int64)
    right = np.concatenate([offsets[p.j] + p.b for p in pairs]).astype(np.int64)
    return left, right


def _analyse(tiles: Sequence[TileFields], min_overlap: float, tol_m: float) -> _Analysis:
    """Match every overlapping pair, group the matches and flag the cut fields."""
    pairs = _pairs(tiles, min_overlap)
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in tiles])]).astype(np.int64)
    group = _components(int(offsets[-1]), *_edges(pairs, offsets))
    return _Analysis(pairs, offsets, group, cut_flags(tiles, tol_m))


def _surplus(group: np.ndarray, tile_of: np.ndarray) -> int:
    """Sum over groups of (distinct tiles - 1): the copies beyond one per field."""
    if not len(group):
        return 0
    distinct = np.unique(np.column_stack([group, tile_of]), axis=0)
    return int(len(distinct) - len(np.unique(group)))


def _tile_of(offsets: np.ndarray) -> np.ndarray:
    """Each global field index's tile index."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def _pair_surplus(pair: _Pair) -> int:
    """Surplus copies between the two tiles of a pair: components of its matches alone."""
    if not len(pair.a):
        return 0
    _, a = np.unique(pair.a, return_inverse=True)
    _, b = np.unique(pair.b, return_inverse=True)
    n_a = int(a.max()) + 1
    roots = _components(n_a + int(b.max()) + 1, a, b + n_a)
    return len(np.unique(roots))


# -- cut fields --------------------------------------------------------------------------------


def seams(tiles: Sequence[TileFields | TileLayer]) -> list[shapely.Geometry]:
    """Per tile, the part of its extent's boundary inside another tile's extent (its CRS)."""
    near: dict[int, list[int]] = {i: [] for i in range(len(tiles))}
    for i, j in neighbours(tiles):
        near[i].append(j)
        near[j].append(i)
    out = []
    for i, t in enumerate(tiles):
        crs = tile_grid(t.tile).crs
        parts = []
        for k in near[i]:
            other = extent_in(tiles[k], crs)
            line = shapely.intersection(t.extent.boundary, other)
            # where it runs on the other extent's own boundary it is the campaign's edge there
            line = shapely.difference(line, shapely.buffer(other.boundary, 1e-3))
            parts += [p for p in shapely.get_parts(line) if shapely.get_dimensions(p) == 1]
        out.append(shapely.union_all(parts) if parts else shapely.LineString())
    return out


def cut_flags(tiles: Sequence[TileFields], tol_m: float = TOL_M) -> list[np.ndarray]:
    """Per tile, which of its fields lie within ``tol_m`` of a seam of its extent."""
    flags = []
    for t, seam in zip(tiles, seams(tiles), strict=True):
        hit = np.zeros(len(t), dtype=bool)
        if len(t) and not seam.is_empty:
            rows = shapely.STRtree(t.geoms).query(shapely.buffer(seam, tol_m), "intersects")
            hit[rows] = True
        flags.append(hit)
    return flags


def count_cut(tiles: Sequence[TileFields], tol_m: float = TOL_M) -> int:
    """How many fields are cut at a seam (the campaign's outer edge does not count)."""
    return int(sum(f.sum() for f in cut_flags(tiles, tol_m)))


def count_duplicates(tiles: Sequence[TileFields], min_overlap: float = MIN_OVERLAP) -> int:
    """Surplus copies: for each group of matching fields spanning k >= 2 tiles, k - 1.

    The same measure before (the tile layers) and after (``split_by_tile`` of the campaign
    layer, with the same extents), where it is 0.
    """
    pairs = _pairs(tiles, min_overlap)
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in tiles])]).astype(np.int64)
    group = _components(int(offsets[-1]), *_edges(pairs, offsets))
    return _surplus(group, _tile_of(offsets))


# -- the keep rule -----------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _centre_lonlat(tile: str) -> tuple[float, float]:
    """The tile's MGRS footprint centre (ulx + 54.9 km, uly - 54.9 km) in lon/lat."""
    grid = tile_grid(tile)
    half = TILE_SIZE_M / 2
    x, y = _transformer(grid.crs, DEFAULT_CRS).transform(grid.ulx + half, grid.uly - half)
    return float(x), float(y)


def _distance_m(tile: str, point: tuple[float, float]) -> float:
    """Geodesic distance (m, WGS 84) from the tile's footprint centre to a lon/lat point."""
    lon, lat = _centre_lonlat(tile)
    return float(_GEOD.inv(lon, lat, point[0], point[1])[2])


def _choose(
    members: np.ndarray, tiles: Sequence[TileFields], tile_of: np.ndarray, an: _Analysis
) -> int:
    """The tile index whose members of this group are kept (global field indices ``members``)."""
    rows = members - an.offsets[tile_of[members]]
    areas = np.array(
        [shapely.area(tiles[t].geoms[r]) for t, r in zip(tile_of[members], rows, strict=True)]
    )
    big = int(np.argmax(areas))
    t_big, r_big = int(tile_of[members[big]]), int(rows[big])
    centroid = shapely.centroid(tiles[t_big].geoms[r_big])
    lon, lat = reproject(centroid, tile_grid(tiles[t_big].tile).crs, DEFAULT_CRS).coords[0]
    keys = []
    for t in np.unique(tile_of[members]).tolist():
        cut = bool(an.cut[t][rows[tile_of[members] == t]].any())
        keys.append((cut, round(_distance_m(tiles[t].tile, (lon, lat))), tiles[t].tile, t))
    return min(keys)[3]


def _kept(tiles: Sequence[TileFields], an: _Analysis) -> tuple[np.ndarray, np.ndarray]:
    """Which fields (global index) are kept, and each one's ``also_in`` (dropped tiles' ids)."""
    n = int(an.offsets[-1])
    tile_of = _tile_of(an.offsets)
    keep = np.ones(n, dtype=bool)
    also = np.full(n, "", dtype=object)
    order = np.argsort(an.group, kind="stable")
    _, starts, sizes = np.unique(an.group[order], return_index=True, return_counts=True)
    for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist(), strict=True):
        members = order[start : start + size]
        present = np.unique(tile_of[members])
        if len(present) < 2:
            continue
        chosen = _choose(members, tiles, tile_of, an)
        dropped = ",".join(sorted(tiles[t].tile for t in present.tolist() if t != chosen))
        mine = members[tile_of[members] == chosen]
        keep[members] = False
        keep[mine] = True
        also[mine] = dropped
    return keep, also


def dedupe(
    tiles: Sequence[TileFields],
    *,
    min_overlap: float = MIN_OVERLAP,
    tol_m: float = TOL_M,
    crs: str = DEFAULT_CRS,
    season: str = "",
) -> CampaignLayer:
    """One campaign layer in ``crs``: each group's copies from one tile, unmatched fields as
    they are; columns as the tile layers', then ``also_in``."""
    return _dedupe(tiles, _analyse(tiles, min_overlap, tol_m), crs, season)


def _dedupe(tiles: Sequence[TileFields], an: _Analysis, crs: str, season: str) -> CampaignLayer:
    """The campaign layer from an analysis of the tile layers."""
    names = _check_columns(tiles, season)
    keep, also = _kept(tiles, an)
    geoms, columns = [], {name: [] for name in names}
    for k, t in enumerate(tiles):
        mine = keep[an.offsets[k] : an.offsets[k + 1]]
        geoms.append(np.asarray(reproject(t.geoms[mine], tile_grid(t.tile).crs, crs), object))
        for name in names:
            columns[name].append(np.asarray(t.columns[name])[mine])
    merged = {name: _concat(parts) for name, parts in columns.items()}
    merged["also_in"] = np.asarray(also[keep], dtype=object)
    return CampaignLayer(_concat(geoms, object), merged, CRS.from_user_input(crs).to_string())


def _concat(parts: list[np.ndarray], dtype=None) -> np.ndarray:
    """Concatenate column parts (an empty object array when there are none)."""
    if not parts:
        return np.zeros(0, dtype=dtype or object)
    out = np.concatenate(parts)
    return out.astype(dtype) if dtype is not None else out


def split_by_tile(layer: CampaignLayer, extents: Mapping[str, Polygon]) -> list[TileFields]:
    """The campaign layer back as per-tile fields (by its ``tile`` column, in each tile's CRS),
    every tile of ``extents`` included, so before and after are measured alike."""
    tile_col = np.asarray(layer.columns["tile"], dtype=object)
    out = []
    for tile in sorted(extents):
        mine = tile_col == tile
        geoms = reproject(layer.geoms[mine], layer.crs, tile_grid(tile).crs)
        cols = {k: np.asarray(v)[mine] for k, v in layer.columns.items()}
        out.append(TileFields(tile, extents[tile], np.asarray(geoms, dtype=object), cols))
    return out


# -- the campaign ------------------------------------------------------------------------------


def campaign_fields(
    layers: Sequence[TileLayer],
    season: str,
    *,
    min_overlap: float = MIN_OVERLAP,
    tol_m: float = TOL_M,
    crs: str = DEFAULT_CRS,
) -> tuple[CampaignLayer, DedupeStats]:
    """Read the tiles' season layers, keep one copy of each field; the layer and its stats."""
    check_overlap(min_overlap)
    names = [layer.tile for layer in layers]
    twice = sorted({t for t in names if names.count(t) > 1})
    if twice:
        raise ConfigError(f"season {season}: tile(s) {twice} given more than once")
    tiles = [read_tile_fields(layer, season) for layer in sorted(layers, key=lambda x: x.tile)]
    before = _analyse(tiles, min_overlap, tol_m)
    out = _dedupe(tiles, before, crs, season)
    after_tiles = split_by_tile(out, {t.tile: t.extent for t in tiles})
    after = _analyse(after_tiles, min_overlap, tol_m)
    return out, _stats(season, tiles, out, before, after, min_overlap)


def _stats(
    season: str,
    tiles: Sequence[TileFields],
    out: CampaignLayer,
    before: _Analysis,
    after: _Analysis,
    min_overlap: float,
) -> DedupeStats:
    """The stats of one dedupe from the analyses before and after."""
    names = [t.tile for t in tiles]
    later = {(p.i, p.j): p for p in after.pairs}
    pairs = [
        PairStats(
            tiles=[names[p.i], names[p.j]],
            in_overlap={names[p.i]: p.in_overlap[0], names[p.j]: p.in_overlap[1]},
            duplicates_before=_pair_surplus(p),
            duplicates_after=_pair_surplus(later[(p.i, p.j)]) if (p.i, p.j) in later else 0,
        )
        for p in before.pairs
    ]
    return DedupeStats(
        season=season,
        tiles=names,
        fields_in={t.tile: len(t) for t in tiles},
        fields_out=len(out),
        pairs=pairs,
        duplicates_before=_surplus(before.group, _tile_of(before.offsets)),
        duplicates_after=_surplus(after.group, _tile_of(after.offsets)),
        cut_before=int(sum(f.sum() for f in before.cut)),
        cut_after=int(sum(f.sum() for f in after.cut)),
        min_overlap=float(min_overlap),
        crs=out.crs,
    )


def check_overlap(min_overlap: float) -> None:
    """Refuse a matching share outside (0, 1]."""
    if not 0 < min_overlap <= 1:
        raise ConfigError(f"min_overlap {min_overlap} must lie in (0, 1]")


# -- writing -----------------------------------------------------------------------------------


def write_campaign_layer(
    layer: CampaignLayer,
    out_gpkg: str | os.PathLike,
    out_parquet: str | os.PathLike | None = None,
    stats_path: str | os.PathLike | None = None,
    *,
    stats: DedupeStats | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write the campaign layer (GeoPackage; fiboa GeoParquet and the stats JSON when asked):
    all of them or none."""
    if stats_path is not None and stats is None:
        raise ValueError("stats_path needs stats")
    paths = [Path(out_gpkg)]
    paths += [Path(p) for p in (out_parquet, stats_path) if p is not None]
    with atomic_outputs(*paths) as temps:
        rest = iter(temps[1:])
        if out_parquet is not None:
            _write_parquet(next(rest), layer)
        if stats_path is not None and stats is not None:
            next(rest).write_text(json.dumps(stats.to_json(), indent=2) + "\n")
        _write_gpkg(temps[0], layer, metadata)


def _write_parquet(path: Path, layer: CampaignLayer) -> None:
    """The fiboa GeoParquet 1.1 file: bbox covering, Hilbert order, fiboa column types."""
    cols = dict(layer.columns)
    if "determination:datetime" in cols:
        cols["determination:datetime"] = np.asarray(cols["determination:datetime"], "M8[ms]")
    write_geoparquet(
        path,
        list(layer.geoms),
        arrow_columns(cols),
        layer.crs,
        covering=True,
        spatial_order=True,
        required=REQUIRED,
        metadata={"collection": collection_metadata()},
    )


def _write_gpkg(path: Path, layer: CampaignLayer, metadata: dict[str, str] | None) -> None:
    """The GeoPackage layer ``fields``, datetimes in UTC as the tile layers have them."""
    n = len(layer)
    multi = any(g.geom_type == "MultiPolygon" for g in layer.geoms)
    wkb = shapely.to_wkb(layer.geoms) if n else np.array([], dtype=object)
    utc = {
        k: np.full(n, GDAL_UTC) for k, v in layer.columns.items() if np.asarray(v).dtype.kind == "M"
    }
    pyogrio.raw.write(
        path,
        wkb,
        [np.asarray(v) for v in layer.columns.values()],
        list(layer.columns),
        layer=LAYER,
        driver="GPKG",
        geometry_type="MultiPolygon" if multi else "Polygon",
        promote_to_multi=multi,
        crs=layer.crs,
        layer_metadata=metadata,
        gdal_tz_offsets=utc,
    )
