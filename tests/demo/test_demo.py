"""The demo campaign is a physically shaped, self-consistent Sentinel-2 world."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pyogrio
import pystac
import rasterio
import shapely

from tilepipe.core.grid import tile_grid
from tilepipe.demo.campaign import generate_campaign
from tilepipe.demo.stac import MORE_BANDS
from tilepipe.demo.world import CLASSES, SIGNATURES, demo_scene, demo_window, render_scene
from tilepipe.embeddings.tessera import cell_files, cell_name


def test_catalog_holds_every_tile_date_as_an_item_with_band_cogs(demo):
    catalog = pystac.Catalog.from_file(demo["catalog"])
    items = list(catalog.get_items(recursive=True))
    assert {(i.properties["grid:code"], i.datetime.date().isoformat()) for i in items} == {
        (f"MGRS-{t}", d) for t in demo["tiles"] for d in demo["dates"]
    }
    for item in items:
        assert set(item.assets) == {"B02", "B03", "B04", "B08", "SCL", *MORE_BANDS}
        for band, res in (("B04", 10.0), ("B11", 20.0), ("B01", 60.0)):  # as L2A publishes them
            with rasterio.open(item.assets[band].get_absolute_href()) as asset:
                assert asset.res == (res, res) and asset.dtypes[0] == "uint16"
                assert asset.profile["tiled"] and asset.crs.to_epsg() == int(
                    item.properties["proj:code"][5:]
                )
        with rasterio.open(item.assets["SCL"].get_absolute_href()) as scl:
            assert scl.res == (20.0, 20.0) and scl.dtypes[0] == "uint8"


def test_items_after_baseline_04_carry_the_reflectance_offset(demo):
    catalog = pystac.Catalog.from_file(demo["catalog"])
    for item in catalog.get_items(recursive=True):
        band = item.assets["B08"].extra_fields["raster:bands"][0]
        if item.properties["s2:processing_baseline"] >= "04.00":
            assert band["offset"] == -0.1
            assert item.datetime.date().isoformat() >= "2022-01-25"
        else:
            assert band["offset"] == 0


def test_crops_differ_in_spectrum_and_season():
    # every pair of classes is separable on at least one date by > 0.02 reflectance in some band
    for a in range(len(CLASSES)):
        for b in range(a + 1, len(CLASSES)):
            assert np.abs(SIGNATURES[a] - SIGNATURES[b]).max() > 0.02
    # and seasons differ for every crop
    assert (np.abs(SIGNATURES[:, 0] - SIGNATURES[:, 1]).max(axis=1) >= 0.04).all()


def test_scene_has_fields_roads_and_clouds_and_lr_is_the_block_mean_of_hr():
    scene = render_scene(7, 64, 64, 1)
    assert len(scene.field_class) >= 2
    assert 0.02 < (scene.field_ids_hr == 0).mean() < 0.5  # roads and hedges between fields
    assert scene.cloud_lr.any()
    clear = ~(scene.cloud_lr | scene.shadow_lr)
    block_mean = scene.hr.reshape(4, 64, 10, 64, 10).mean(axis=(2, 4))
    assert np.abs(block_mean - scene.lr)[:, clear].mean() < 0.005


def test_embeddings_are_int8_with_float32_scales_and_a_landmask(demo):
    root = Path(demo["tessera"])
    table = pq.read_table(root / "registry.parquet").to_pydict()
    names = [cell_name(lon, lat) for lon, lat in zip(table["lon"], table["lat"], strict=True)]
    raw = [root / cell_files(n, y)["embeddings"] for n, y in zip(names, table["year"], strict=True)]
    assert raw and all(p.is_file() for p in raw)
    for path in raw:
        emb = np.load(path)
        scales = np.load(path.with_name(path.stem + "_scales.npy"))
        assert emb.dtype == np.int8 and emb.shape[2] == 128
        assert scales.dtype == np.float32 and scales.shape == emb.shape[:2]
        mask = root / "global_0.1_degree_tiff_all" / f"{path.parent.name}.tiff"
        with rasterio.open(mask) as src:
            assert (src.height, src.width) == emb.shape[:2]


def test_labels_are_polygons_in_wgs84_with_a_crop_per_field(demo):
    info = pyogrio.read_info(demo["labels"], layer="labels")
    assert info["crs"] == "EPSG:4326"
    assert {"field_id", "crop", "tile"} <= set(info["fields"])
    _, _, _, fields = pyogrio.raw.read(demo["labels"])
    field_ids, crops = fields[0], fields[1]
    assert len(set(field_ids)) == len(field_ids) >= 4
    assert set(crops) <= set(CLASSES)


def test_generation_is_deterministic_for_a_seed(tmp_path):
    a = generate_campaign(tmp_path / "a", tiles=("33UXP",), dates=("2022-06-21",), size=32)
    b = generate_campaign(tmp_path / "b", tiles=("33UXP",), dates=("2022-06-21",), size=32)
    assert json.loads(Path(a["catalog"]).read_text())["id"] == "tilepipe-demo"
    name = "sentinel-2-l2a/S2B_33UXP_20220621_0_L2A/B08.tif"
    with (
        rasterio.open(Path(a["catalog"]).parent / name) as x,
        rasterio.open(Path(b["catalog"]).parent / name) as y,
    ):
        assert np.array_equal(x.read(), y.read())


def test_a_neighbour_window_lies_inside_its_sources_ground_across_the_zone_edge():
    from pyproj import Transformer
    from shapely import box

    s_tr, s_w, s_h = demo_window("33UXP", 160)
    n_tr, n_w, n_h = demo_window("34UBU", 160)
    outline = box(s_tr.c, s_tr.f - 10 * s_h, s_tr.c + 10 * s_w, s_tr.f)
    to_33 = Transformer.from_crs(tile_grid("34UBU").crs, tile_grid("33UXP").crs, always_xy=True)
    xs, ys = to_33.transform(
        [n_tr.c, n_tr.c + 10 * n_w, n_tr.c, n_tr.c + 10 * n_w],
        [n_tr.f, n_tr.f, n_tr.f - 10 * n_h, n_tr.f - 10 * n_h],
    )
    assert (n_w, n_h) == (96, 96)  # NEIGHBOUR_SHARE of the source's side
    assert all(outline.contains(shapely.Point(x, y)) for x, y in zip(xs, ys, strict=True))


def test_a_neighbour_sees_its_sources_fields_and_clouds_on_the_same_ground():
    from pyproj import Transformer

    own = demo_scene("33UXP", 160, 0)
    seen = demo_scene("34UBU", 160, 0)
    s_tr, _, _ = demo_window("33UXP", 160)
    n_tr, _, _ = demo_window("34UBU", 160)
    to_33 = Transformer.from_crs(tile_grid("34UBU").crs, tile_grid("33UXP").crs, always_xy=True)
    rows, cols = np.mgrid[5:96:10, 5:96:10]  # 10 m pixel centres of the neighbour
    x, y = to_33.transform(*(n_tr * (cols + 0.5, rows + 0.5)))
    c33, r33 = (np.floor(v).astype(int) for v in ~s_tr * (x, y))
    assert np.array_equal(seen.cloud_lr[rows, cols], own.cloud_lr[r33, c33])
    fine_r, fine_c = rows * 10 + 5, cols * 10 + 5
    x, y = to_33.transform(*((n_tr * rasterio.Affine.scale(0.1)) * (fine_c + 0.5, fine_r + 0.5)))
    fc, fr = (np.floor(v).astype(int) for v in ~(s_tr * rasterio.Affine.scale(0.1)) * (x, y))
    assert np.array_equal(seen.field_ids_hr[fine_r, fine_c], own.field_ids_hr[fr, fc])
    assert seen.field_class.items() <= own.field_class.items()
