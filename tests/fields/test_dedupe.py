"""One field once across MGRS tile overlaps (``tilepipe.fields.dedupe``, ``campaign-fields``):
season layers written by the repo's own ``write_fields``, in two tiles of one UTM zone
(33UXP, 33UYP: overlap x 700000-709800) and two across a zone edge (33UXP in EPSG:32633,
34UBU in EPSG:32634)."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
from pyproj import Transformer

from tilepipe.cli import main
from tilepipe.core.errors import InputError
from tilepipe.core.grid import tile_grid
from tilepipe.fields.dedupe import (
    TileLayer,
    campaign_fields,
    count_cut,
    count_duplicates,
    read_tile_fields,
    split_by_tile,
    tile_extent,
    write_campaign_layer,
)
from tilepipe.fields.delineate import write_fields

from ..validators import assert_distributable, fiboa_validate

SEASON = "2022"
Y = 5_345_000.0  # a northing (EPSG:32633) well inside 33UXP, 33UYP and 34UBU
#: 33UYP processed from x = 707000 on (its west edge inside 33UXP, east of the tiles' midway)
YP_WINDOW = (700, 0, 10280, 10980)


def box(x0: float, x1: float, y: float = Y, h: float = 400.0) -> shapely.Polygon:
    """A field (EPSG:32633) from x0 to x1, h metres tall from northing y."""
    return shapely.box(x0, y, x1, y + h)


def seen(tile: str, fields: list, window=None, src: str = "EPSG:32633") -> list:
    """What ``tile`` sees of the true ``fields`` (``src``): in its CRS, cut to its extent."""
    crs = tile_grid(tile).crs
    t = Transformer.from_crs(src, crs, always_xy=True)
    moved = [shapely.transform(f, lambda xy: np.column_stack(t.transform(*xy.T))) for f in fields]
    extent = tile_extent(tile, window)
    parts = [shapely.intersection(f, extent) for f in moved]
    return [p for p in parts if not p.is_empty and p.area > 0]


def layer(tmp_path, tile: str, geoms: list, window=None, crs: str | None = None) -> TileLayer:
    """Write ``geoms`` (the tile's CRS) as the tile's season layer with ``write_fields``."""
    n = len(geoms)
    cols = {
        "field_id": np.arange(1, n + 1),
        "area_m2": np.array([g.area for g in geoms], dtype=float),
        "perimeter_m": np.array([g.length for g in geoms], dtype=float),
        "score": np.full(n, 0.9),
        "boundary_score": np.full(n, 0.8),
        "masked_share": np.zeros(n),
        "dates": np.array(["2022-01-12;2022-06-21"] * n, dtype=object),
        "n_dates": np.full(n, 2),
        "agreement": np.full(n, 0.95),
    }
    path = tmp_path / tile / "season" / SEASON / "fields.gpkg"
    path.parent.mkdir(parents=True, exist_ok=True)
    crs = crs or tile_grid(tile).crs
    write_fields(path, geoms, cols, crs=crs, tile=tile, date=SEASON)
    return TileLayer(tile, path, tile_extent(tile, window))


def campaign(tmp_path, truth: list, tiles=("33UXP", "33UYP"), windows=None, extra=None):
    """Tile layers of the true fields as each tile sees them (plus ``extra`` geoms per tile)."""
    windows, extra = windows or {}, extra or {}
    return [
        layer(
            tmp_path,
            t,
            seen(t, truth, windows.get(t)) + extra.get(t, []),
            windows.get(t),
        )
        for t in tiles
    ]


def kept(out) -> dict[str, str]:
    """The campaign layer's ``id -> also_in``."""
    return dict(zip(out.columns["id"], out.columns["also_in"], strict=True))


def test_a_field_whole_in_both_tiles_is_kept_once_from_the_tile_with_the_nearer_centre(tmp_path):
    layers = campaign(tmp_path, [box(701_000, 701_400)])  # 33UXP's centre is 46 km off, 33UYP's 54
    out, _ = campaign_fields(layers, SEASON)
    assert kept(out) == {"33UXP_2022_1": "33UYP"}


def test_a_field_cut_at_a_seam_is_kept_whole_even_from_the_tile_whose_centre_is_farther(
    tmp_path,
):
    # 33UYP starts at x = 707000 and sees the field cut there; its centre is the nearer
    truth = [box(706_800, 707_400)]
    layers = campaign(tmp_path, truth, windows={"33UYP": YP_WINDOW})
    out, stats = campaign_fields(layers, SEASON)
    assert kept(out) == {"33UXP_2022_1": "33UYP"}
    assert (stats.cut_before, stats.cut_after) == (1, 0)


def test_a_field_split_in_two_in_one_tile_and_whole_in_the_other_is_one_group(tmp_path):
    halves = [box(702_000, 702_300), box(702_300, 702_600)]
    xp = layer(tmp_path, "33UXP", [box(702_000, 702_600)])
    yp = layer(tmp_path, "33UYP", halves)
    tiles = [read_tile_fields(lay, SEASON) for lay in (xp, yp)]
    assert count_duplicates(tiles) == 1
    out, stats = campaign_fields([xp, yp], SEASON)
    assert kept(out) == {"33UXP_2022_1": "33UYP"} and stats.duplicates_after == 0


def test_fields_outside_the_overlap_are_all_kept(tmp_path):
    truth = [box(x, x + 300) for x in (640_000, 650_000, 660_000, 760_000, 780_000)]
    out, stats = campaign_fields(campaign(tmp_path, truth), SEASON)
    assert len(out) == 5 and set(out.columns["also_in"]) == {""}
    assert stats.fields_in == {"33UXP": 3, "33UYP": 2} and stats.duplicates_before == 0


def test_a_field_at_the_campaigns_outer_edge_is_not_cut(tmp_path):
    truth = [box(599_800, 600_300), box(809_500, 810_200)]  # 33UXP's west, 33UYP's east edge
    truth.append(box(703_000, 703_400, y=5_399_800))  # both tiles' north edge, in the overlap
    layers = campaign(tmp_path, truth)
    tiles = [read_tile_fields(lay, SEASON) for lay in layers]
    assert [len(t) for t in tiles] == [2, 2] and count_cut(tiles) == 0
    at_seam = campaign(tmp_path / "seam", [box(709_500, 710_100)], tiles=("33UXP", "33UYP"))
    assert count_cut([read_tile_fields(lay, SEASON) for lay in at_seam]) == 1


def test_count_duplicates_equals_the_planted_copies_before_and_is_0_after(tmp_path):
    truth = [box(x, x + 300) for x in (700_500, 703_000, 706_000, 708_000, 709_200)]
    truth += [box(650_000, 650_300), box(760_000, 760_300)]  # in one tile only
    layers = campaign(tmp_path, truth)
    tiles = [read_tile_fields(lay, SEASON) for lay in layers]
    assert count_duplicates(tiles) == 5
    out, stats = campaign_fields(layers, SEASON)
    after = split_by_tile(out, {t.tile: t.extent for t in tiles})
    assert count_duplicates(after) == 0 and len(out) == 7
    assert (stats.duplicates_before, stats.duplicates_after) == (5, 0)
    assert stats.pairs[0].duplicates_before == 5 and stats.pairs[0].in_overlap["33UYP"] == 5


def test_across_a_zone_edge_each_field_is_kept_once_and_whole(tmp_path):
    near_xp, near_bu = box(665_000, 665_400), box(700_000, 700_400)
    cut_xp = box(709_600, 710_200)  # cut at 33UXP's east edge, whole in 34UBU
    layers = campaign(tmp_path, [near_xp, near_bu, cut_xp], tiles=("33UXP", "34UBU"))
    tiles = [read_tile_fields(lay, SEASON) for lay in layers]
    assert tiles[1].epsg == 32634 and count_duplicates(tiles) == 3
    out, stats = campaign_fields(layers, SEASON)
    assert kept(out) == {"33UXP_2022_1": "34UBU", "34UBU_2022_2": "33UXP", "34UBU_2022_3": "33UXP"}
    assert (stats.duplicates_after, stats.cut_before, stats.cut_after) == (0, 1, 0)


def test_the_campaign_layer_is_in_epsg_4326_with_the_tiles_utm_area(tmp_path):
    layers = campaign(tmp_path, [box(665_000, 665_400), box(700_000, 700_500)], ("33UXP", "34UBU"))
    tiles = {t.tile: t for t in (read_tile_fields(lay, SEASON) for lay in layers)}
    out, stats = campaign_fields(layers, SEASON)
    assert out.crs == "EPSG:4326" == stats.crs
    lon, lat = shapely.get_coordinates(out.geoms).T
    assert ((lon > 14) & (lon < 18) & (lat > 47) & (lat < 49)).all()
    for fid, area in zip(out.columns["id"], out.columns["metrics:area"], strict=True):
        t = tiles[fid[:5]]
        assert area == t.columns["metrics:area"][list(t.columns["id"]).index(fid)]
    assert list(out.columns) == [*tiles["33UXP"].columns, "also_in"]


def test_a_layer_in_another_crs_than_its_tiles_is_an_input_error_naming_the_file(tmp_path):
    good = layer(tmp_path, "33UXP", [box(701_000, 701_400)])
    wrong = layer(tmp_path, "33UYP", [box(701_000, 701_400)], crs="EPSG:32634")
    named = re.escape(f"tile 33UYP, season {SEASON}, file {wrong.path}: layer CRS")
    with pytest.raises(InputError, match=named):
        campaign_fields([good, wrong], SEASON)


def test_a_missing_layer_is_an_input_error_naming_it(tmp_path):
    missing = TileLayer("33UYP", tmp_path / "none.gpkg", tile_extent("33UYP"))
    with pytest.raises(InputError, match=r"tile 33UYP, season 2022, file .*none\.gpkg"):
        campaign_fields([missing], SEASON)


@pytest.fixture
def cli_outputs(tmp_path) -> dict:
    """``tilepipe campaign-fields`` on two tiles (33UYP windowed): its outputs."""
    truth = [box(708_000, 708_400), box(706_800, 707_400), box(650_000, 650_300)]
    layers = campaign(tmp_path, truth, windows={"33UYP": YP_WINDOW})
    out = {k: tmp_path / f"campaign.{k}" for k in ("gpkg", "parquet", "json")}
    argv = [
        "campaign-fields",
        "--season",
        SEASON,
        "--window",
        "33UYP=" + ",".join(map(str, YP_WINDOW)),
    ]
    for lay in layers:
        argv += ["--layer", f"{lay.tile}={lay.path}"]
    argv += [
        "--out",
        str(out["gpkg"]),
        "--parquet",
        str(out["parquet"]),
        "--stats",
        str(out["json"]),
    ]
    assert main(argv) == 0
    return out


def test_the_cli_writes_the_geopackage_geoparquet_and_stats(cli_outputs):
    stats = json.loads(cli_outputs["json"].read_text())
    assert stats["tiles"] == ["33UXP", "33UYP"] and stats["fields_in"] == {"33UXP": 3, "33UYP": 2}
    assert stats["fields_out"] == 3 and stats["crs"] == "EPSG:4326" and stats["min_overlap"] == 0.5
    assert (stats["duplicates_before"], stats["duplicates_after"]) == (2, 0)
    assert (stats["cut_before"], stats["cut_after"]) == (1, 0)
    assert stats["pairs"] == [
        {
            "tiles": ["33UXP", "33UYP"],
            "in_overlap": {"33UXP": 2, "33UYP": 2},
            "duplicates_before": 2,
            "duplicates_after": 0,
        }
    ]
    info = pyogrio.read_info(cli_outputs["gpkg"])
    assert info["features"] == 3 and info["crs"] == "EPSG:4326" and "also_in" in info["fields"]
    assert pq.read_table(cli_outputs["parquet"]).num_rows == 3


def test_the_campaign_parquet_passes_geoparquet_validator(cli_outputs):
    assert_distributable(cli_outputs["parquet"])


def test_the_campaign_parquet_passes_fiboa_validate(cli_outputs):
    assert "VALID" in fiboa_validate(cli_outputs["parquet"])


def test_campaign_fields_without_any_field_writes_an_empty_layer_with_the_full_schema(tmp_path):
    layers = [layer(tmp_path, t, []) for t in ("33UXP", "33UYP")]
    gpkg, parquet = tmp_path / "c.gpkg", tmp_path / "c.parquet"
    argv = ["campaign-fields", "--season", SEASON, "--out", str(gpkg), "--parquet", str(parquet)]
    for lay in layers:
        argv += ["--layer", f"{lay.tile}={lay.path}"]
    assert main(argv) == 0
    assert pyogrio.read_info(gpkg)["features"] == 0
    names = pq.read_schema(parquet).names
    assert "also_in" in names and "agreement" in names and "metrics:area" in names
    assert_distributable(parquet)


def classified(lay: TileLayer, crop: str) -> TileLayer:
    """The tile's fields_classified.gpkg beside its layer, written by the classify step's writer."""
    from tilepipe.classify.predict import _write_fields
    from tilepipe.classify.samples import read_layer

    meta, wkb, cols = read_layer(lay.path, "fields", (), "fields")
    n = len(wkb)
    dst = lay.path.with_name("fields_classified.gpkg")
    _write_fields(dst, meta, wkb, cols, np.full(n, crop, dtype=object), np.full(n, 0.7))
    return TileLayer(lay.tile, dst, lay.extent)


def test_classified_layers_keep_their_crop_columns_declared_in_the_fiboa_metadata(tmp_path):
    layers = campaign(tmp_path, [box(701_000, 701_400), box(760_000, 760_300)])
    layers = [classified(lay, crop) for lay, crop in zip(layers, ("wheat", "maize"), strict=True)]
    out, _ = campaign_fields(layers, SEASON)
    assert sorted(zip(out.columns["id"], out.columns["crop"], strict=True)) == [
        ("33UXP_2022_1", "wheat"),
        ("33UYP_2022_2", "maize"),
    ]
    parquet = tmp_path / "c.parquet"
    write_campaign_layer(out, tmp_path / "c.gpkg", parquet)
    custom = json.loads(pq.read_schema(parquet).metadata[b"collection"])["schemas:custom"]
    extra = {"crop", "crop_prob", "also_in", "dates", "n_dates", "agreement"}
    assert extra <= set(custom["properties"]) and extra <= set(pq.read_schema(parquet).names)
    assert_distributable(parquet)


def test_a_layer_holding_another_tiles_fields_is_an_input_error_naming_both(tmp_path):
    xp = layer(tmp_path, "33UXP", [box(701_000, 701_400)])
    given_as_yp = TileLayer("33UYP", xp.path, tile_extent("33UYP"))  # same CRS, wrong tile
    with pytest.raises(InputError, match=r"tile 33UYP, .*tile\(s\) \['33UXP'\]"):
        campaign_fields([given_as_yp], SEASON)
