"""The campaign's STAC catalog and fields dataset, built by the CLI from real demo outputs.

Two tile-dates of the demo campaign go through download, model DR, fields and QC; then
``stac-item``, ``fields-partition`` and ``stac-collection`` make the campaign products, which
stac-validator (with the published schemas, offline), pystac, odc-stac and pyarrow read.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio

from tilepipe.acquire.stac import MORE_BANDS
from tilepipe.catalog.collection import campaign_collection
from tilepipe.catalog.fields import partition_path, read_campaign_fields, write_partition
from tilepipe.catalog.item import COG, GEOTIFF, scene_item
from tilepipe.catalog.schemas import EXTENSIONS, schema_config
from tilepipe.cli import main
from tilepipe.core.errors import InputError

from ..conftest import REPO

TILE = "33UXP"
DATES = ("2022-01-12", "2022-06-21")
OUTPUTS = ("s2.tif", "scl.tif", "dr.tif", "fields.gpkg", "fields.parquet", "qc.json")


def _scene_outputs(demo: dict, results: Path, date: str) -> Path:
    """One tile-date through the steps, by the CLI, into ``results/TILE/date``."""
    out = results / TILE / date
    out.mkdir(parents=True)
    p = {name: str(out / name) for name in OUTPUTS}
    common = ["--tile", TILE, "--date", date]
    window = ",".join(map(str, demo["window"]))
    steps = [
        ["download", "--manifest", demo["manifest"], "--window", window, "--s2", p["s2.tif"]],
        ["superres", "--s2", p["s2.tif"], "--out", p["dr.tif"]],
        ["fields", "--dr", p["dr.tif"], "--out", p["fields.gpkg"], "--parquet"],
        ["qc", "--s2", p["s2.tif"], "--scl", p["scl.tif"], "--dr", p["dr.tif"]],
    ]
    steps[0] += ["--scl", p["scl.tif"]]
    steps[1] += ["--model", str(REPO / "models/dr_demo.pt")]
    steps[2] += [p["fields.parquet"], "--model", str(REPO / "models/fields_demo.pt")]
    steps[3] += ["--fields", p["fields.gpkg"], "--out", p["qc.json"]]
    for step in steps:
        assert main([step[0], *common, *step[1:]]) == 0, step[0]
    return out


def _item_args(out: Path, date: str, manifest: str, collection: Path) -> list[str]:
    return [
        "stac-item",
        *("--tile", TILE, "--date", date, "--manifest", manifest),
        *("--s2", str(out / "s2.tif"), "--scl", str(out / "scl.tif"), "--dr", str(out / "dr.tif")),
        *("--fields", str(out / "fields.parquet"), "--fields-gpkg", str(out / "fields.gpkg")),
        *("--qc", str(out / "qc.json"), "--collection", str(collection)),
        *("--out", str(out / "item.json")),
    ]


@pytest.fixture(scope="module")
def campaign(demo, tmp_path_factory) -> dict:
    """Two tile-dates' outputs, their items and partitions, and the campaign collection."""
    results = tmp_path_factory.mktemp("catalog") / "results"
    collection = results / "campaign" / "collection.json"
    fields_root = results / "campaign" / "fields"
    scenes = {date: _scene_outputs(demo, results, date) for date in DATES}
    for date, out in scenes.items():
        assert main(_item_args(out, date, demo["manifest"], collection)) == 0
        part = partition_path(fields_root, TILE, date)
        args = ["fields-partition", "--tile", TILE, "--date", date]
        assert main([*args, "--fields", str(out / "fields.parquet"), "--out", str(part)]) == 0
    items = [str(out / "item.json") for out in scenes.values()]
    args = ["stac-collection", "--items", *items, "--fields-root", str(fields_root)]
    assert main([*args, "--out", str(collection)]) == 0
    return {
        "scenes": scenes,
        "collection": collection,
        "fields_root": fields_root,
        "manifest": demo["manifest"],
    }


def _item(campaign: dict, date: str = DATES[1]) -> dict:
    return json.loads((campaign["scenes"][date] / "item.json").read_text())


def _stac_validator(path: Path, config: Path, *flags: str) -> subprocess.CompletedProcess:
    """The stac-validator command line on ``path`` with the offline schema map."""
    script = Path(sys.executable).parent / "stac-validator"
    cmd = [str(script), "validate", str(path), "--schema-config", str(config), *flags]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _verdicts(run: subprocess.CompletedProcess) -> list[dict]:
    """The JSON list stac-validator prints (after its banner lines)."""
    text = run.stdout
    return json.loads(text[text.index("[") : text.rindex("]") + 1])


def test_the_catalog_validates_recursively_with_stac_validator(campaign, stac_schema_config):
    run = _stac_validator(campaign["collection"], stac_schema_config, "--recursive")
    assert run.returncode == 0, run.stdout[-3000:]
    verdicts = _verdicts(run)
    assert [v["asset_type"] for v in verdicts] == ["COLLECTION", "ITEM", "ITEM"]
    assert all(v["valid_stac"] for v in verdicts)
    item_schemas = {Path(s).parent.as_posix() for s in verdicts[1]["schema"]}
    for url in EXTENSIONS:  # each extension validated against its published schema's copy
        assert any(p.endswith(url.split("://")[1].rsplit("/", 1)[0]) for p in item_schemas)


def test_an_item_breaking_the_raster_extension_fails_stac_validator(
    campaign, stac_schema_config, tmp_path
):
    item = _item(campaign)
    item["assets"]["dr"]["raster:bands"][0]["data_type"] = "uint17"
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item))
    run = _stac_validator(path, stac_schema_config)
    assert run.returncode == 1
    assert _verdicts(run)[0]["valid_stac"] is False


def test_item_assets_carry_roles_and_media_types(campaign):
    assets = _item(campaign)["assets"]
    assert set(assets) == {"s2", "scl", "dr", "fields", "fields_gpkg", "qc"}
    for key in ("s2", "scl", "dr"):
        assert assets[key]["type"] in (COG, GEOTIFF)
    assert assets["fields"]["type"] == "application/vnd.apache.parquet"
    assert assets["fields_gpkg"]["type"] == "application/geopackage+sqlite3"
    assert assets["qc"]["type"] == "application/json"
    assert assets["qc"]["roles"] == ["metadata"] and assets["dr"]["roles"] == ["data"]
    assert all(a["href"].startswith("./") for a in assets.values())


def test_raster_media_type_says_cog_only_for_a_cog_layout(campaign):
    out = campaign["scenes"][DATES[1]]
    assets = _item(campaign)["assets"]
    for key in ("s2", "dr"):
        with rasterio.open(out / f"{key}.tif") as src:
            layout = src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "")
        assert (assets[key]["type"] == COG) == (layout == "COG")


def test_item_projection_matches_each_raster(campaign):
    item, out = _item(campaign), campaign["scenes"][DATES[1]]
    assert item["properties"]["proj:code"] == "EPSG:32633"
    for key in ("s2", "scl", "dr"):
        with rasterio.open(out / f"{key}.tif") as src:
            assert item["assets"][key]["proj:shape"] == [src.height, src.width]
            assert item["assets"][key]["proj:transform"] == list(src.transform)[:6]
            assert item["assets"][key]["gsd"] == src.res[0]


def test_item_raster_bands_carry_data_type_nodata_scale_and_offset(campaign):
    bands = _item(campaign)["assets"]["dr"]["raster:bands"]
    assert len(bands) == 4
    for band in bands:
        assert band["data_type"] == "uint16" and band["nodata"] == 0
        assert band["scale"] == pytest.approx(1e-4) and band["offset"] == 0
    names = [b["common_name"] for b in _item(campaign)["assets"]["s2"]["eo:bands"]]
    assert names == ["blue", "green", "red", "nir"]


def test_item_records_source_harmonisation_and_model(campaign):
    props = _item(campaign)["properties"]
    with open(campaign["manifest"]) as fh:
        rows = [line for line in fh if line.startswith(f"{TILE},{DATES[1]},")]
    source_item = rows[0].split(",")[2]
    assert props["tilepipe:source_item"] == source_item
    assert props["tilepipe:boa_offset_dn"] == 1000  # baseline 05.09: the offset removed
    assert props["tilepipe:offset_source"] == props["tilepipe:harmonisation_from"]
    assert "subtracted BOA_ADD_OFFSET 1000 DN" in props["tilepipe:harmonisation"]
    assert set(props["tilepipe:source_assets"]) == {"B02", "B03", "B04", "B08", "SCL", *MORE_BANDS}
    dr = _item(campaign)["assets"]["dr"]
    weights = (REPO / "models/dr_demo.pt").read_bytes()
    assert dr["tilepipe:model_sha256"] == hashlib.sha256(weights).hexdigest()
    assert dr["tilepipe:model_id"] and dr["tilepipe:method"] == "model"


def test_rewriting_an_item_from_the_same_outputs_is_byte_identical(campaign, tmp_path):
    out = campaign["scenes"][DATES[1]]
    before = (out / "item.json").read_bytes()
    assert main(_item_args(out, DATES[1], campaign["manifest"], campaign["collection"])) == 0
    assert (out / "item.json").read_bytes() == before


def test_an_item_names_its_missing_output(campaign, tmp_path):
    out = campaign["scenes"][DATES[1]]
    scene = {k: out / f for k, f in [("s2", "s2.tif"), ("scl", "scl.tif"), ("dr", "dr.tif")]}
    scene |= {"fields": tmp_path / "fields.parquet", "fields_gpkg": out / "fields.gpkg"}
    scene["qc"] = out / "qc.json"
    with pytest.raises(InputError, match=rf"tile {TILE}, date {DATES[1]}: .*fields.parquet"):
        scene_item(TILE, DATES[1], scene, {}, {"id": "tilepipe", "href": "c.json"})


def _same_table(a: pa.Table, b: pa.Table) -> bool:
    """Equal schemas and values, NaN equal to NaN (``masked_share`` is NaN without a mask)."""
    if a.schema != b.schema:
        return False
    for name in a.column_names:
        x, y = a[name].combine_chunks(), b[name].combine_chunks()
        if pa.types.is_floating(x.type):
            same = np.array_equal(x.to_numpy(False), y.to_numpy(False), equal_nan=True)
        else:
            same = x.equals(y)
        if not same:
            return False
    return True


def test_a_partition_moves_tile_and_date_into_its_path_and_keeps_the_rest(campaign):
    src = campaign["scenes"][DATES[1]] / "fields.parquet"
    dest = partition_path(campaign["fields_root"], TILE, DATES[1])
    assert dest.relative_to(campaign["fields_root"]).as_posix() == (
        f"tile={TILE}/date={DATES[1]}/part.parquet"
    )
    scene, part = pq.ParquetFile(src), pq.ParquetFile(dest)
    kept = [c for c in scene.schema_arrow.names if c not in ("tile", "date")]
    assert part.schema_arrow.names == kept
    assert part.schema_arrow.metadata[b"geo"] == scene.schema_arrow.metadata[b"geo"]
    compression = part.metadata.row_group(0).column(0).compression
    assert compression == scene.metadata.row_group(0).column(0).compression
    assert _same_table(part.read(), scene.read().select(kept))


def test_the_campaign_fields_read_in_one_call(campaign):
    table = read_campaign_fields(campaign["fields_root"])
    direct = pq.read_table(campaign["fields_root"])  # plain pyarrow, no tilepipe
    assert direct.num_rows == table.num_rows
    per_scene = {d: pq.read_table(campaign["scenes"][d] / "fields.parquet") for d in DATES}
    assert table.num_rows == sum(t.num_rows for t in per_scene.values())
    dates = table["date"].to_pylist()
    assert {d: dates.count(d) for d in DATES} == {d: t.num_rows for d, t in per_scene.items()}
    assert set(table["tile"].to_pylist()) == {TILE}
    assert b"geo" in table.schema.metadata


def test_a_partition_refuses_another_scenes_fields(campaign, tmp_path):
    src = campaign["scenes"][DATES[1]] / "fields.parquet"
    with pytest.raises(InputError, match=r"tile 31UFS, date .*column tile holds another tile"):
        write_partition(src, tmp_path / "part.parquet", "31UFS", DATES[1])
    assert not (tmp_path / "part.parquet").exists()


def test_a_partition_refuses_a_parquet_without_geo_metadata(tmp_path):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"field_id": [1]}), plain)
    with pytest.raises(InputError, match=r"no GeoParquet 'geo' metadata"):
        write_partition(plain, tmp_path / "part.parquet", TILE, DATES[0])


def test_the_collection_links_every_item_and_spans_their_extent(campaign):
    collection = json.loads(campaign["collection"].read_text())
    hrefs = [link["href"] for link in collection["links"] if link["rel"] == "item"]
    assert hrefs == [f"../{TILE}/{d}/item.json" for d in DATES]
    interval = collection["extent"]["temporal"]["interval"][0]
    assert interval == [f"{DATES[0]}T00:00:00Z", f"{DATES[1]}T23:59:59Z"]
    items = [_item(campaign, d) for d in DATES]
    box = collection["extent"]["spatial"]["bbox"][0]
    assert all(box[0] <= i["bbox"][0] and i["bbox"][2] <= box[2] for i in items)
    assert collection["assets"]["fields"]["href"] == "./fields/"


def test_pystac_reads_the_catalog_with_its_extensions(campaign):
    import pystac
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterExtension

    collection = pystac.read_file(str(campaign["collection"]))
    items = list(collection.get_items())
    assert [i.id for i in items] == [f"{TILE}_{d}" for d in DATES]
    dr = items[1].assets["dr"]
    assert ProjectionExtension.ext(items[1]).code == "EPSG:32633"
    assert RasterExtension.ext(dr).bands[0].nodata == 0
    assert Path(dr.get_absolute_href()) == campaign["scenes"][DATES[1]] / "dr.tif"


def test_odc_stac_loads_the_s2_bands_as_they_are_on_disk(campaign):
    import odc.stac
    import pystac

    items = list(pystac.read_file(str(campaign["collection"])).get_items())
    with rasterio.open(campaign["scenes"][DATES[1]] / "s2.tif") as src:
        expected = src.read(3)
        crs = src.crs.to_string()
    ds = odc.stac.load(items[1:], bands=["s2.3"], crs=crs, resolution=10, anchor="edge")
    loaded = ds["s2.3"].isel(time=0).values
    assert loaded.shape == expected.shape and np.array_equal(loaded, expected)


def test_the_schema_config_maps_each_published_url_to_a_copy_with_its_id(tmp_path):
    config = json.loads(schema_config().read_text())["schemas"]
    for url in EXTENSIONS:
        copy = json.loads(Path(config[url]).read_text())
        assert copy["$id"].rstrip("#") == url
    core = "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"
    assert json.loads(Path(config[core]).read_text())["$id"] == core


def test_the_collection_lists_its_items_from_the_manifest(campaign, tmp_path):
    lines = Path(campaign["manifest"]).read_text().splitlines(keepends=True)
    manifest = tmp_path / "scenes.csv"
    manifest.write_text("".join([lines[0], *(ln for ln in lines[1:] if ln.startswith(TILE))]))
    results = campaign["collection"].parents[1]
    out = results / "campaign" / "from-manifest.json"
    args = ["stac-collection", "--manifest", str(manifest), "--results", str(results)]
    assert main([*args, "--out", str(out)]) == 0
    links = json.loads(out.read_text())["links"]
    assert [ln["href"] for ln in links if ln["rel"] == "item"] == [
        f"../{TILE}/{d}/item.json" for d in DATES
    ]


def test_the_collection_names_a_missing_item(campaign, tmp_path):
    missing = tmp_path / "item.json"
    with pytest.raises(InputError, match=rf"file {missing}: not a STAC item"):
        campaign_collection(
            [missing], tmp_path / "c.json", collection_id="t", description="d", license="other"
        )
