"""Field delineation: engine run, polygonisation and the fields.gpkg contract."""

from __future__ import annotations

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from shapely.geometry import box

from tilepipe.demo import render_scene
from tilepipe.errors import ModelError
from tilepipe.fields import COLUMNS, polygonise, run_fields
from tilepipe.models import BANDS, FieldNet, SRNet, save_model
from tilepipe.raster import gtiff_profile

TRANSFORM = Affine(1.0, 0.0, 600000.0, 0.0, -1.0, 5300000.0)
NIR_CUT = 0.175  # demo roads are darker than this in B08, every crop is brighter


def model_meta(**over) -> dict:
    meta = {
        "id": "fields-nir",
        "architecture": "fieldnet",
        "arch_kwargs": {"features": 1, "dilations": [1], "gain": 1.0},
        "bands_in": list(BANDS),
        "bands_out": ["field_interior_logit"],
        "scale": 1,
        "normalise": {"divide": 10000.0},
    }
    meta.update(over)
    return meta


@pytest.fixture
def nir_model(tmp_path) -> str:
    """A hand-set FieldNet: logit = 100 * (B08 - 0.175), so fields are bright-NIR regions."""
    net = FieldNet(features=1, dilations=[1], gain=1.0)
    conv, head = net.body[0], net.body[2]
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 3, 1, 1] = 1.0
        conv.bias.zero_()
        head.weight.fill_(100.0)
        head.bias.fill_(-100.0 * NIR_CUT)
    path = tmp_path / "models" / "f.pt"
    path.parent.mkdir()
    save_model(net, path, model_meta())
    return str(path)


@pytest.fixture
def dr(tmp_path) -> str:
    """A 1 m dr.tif made from a demo scene's true 1 m image, with a nodata corner."""
    scene = render_scene(11, 60, 60, 1, cloud=False)
    dn = np.clip(np.rint(scene.hr * 10000), 1, 65535).astype(np.uint16)
    dn[:, :60, :60] = 0
    profile = gtiff_profile(
        width=600,
        height=600,
        count=4,
        dtype="uint16",
        crs="EPSG:32633",
        transform=TRANSFORM,
        nodata=0,
    )
    path = tmp_path / "dr.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn)
        dst.descriptions = BANDS
        dst.update_tags(TILE="33UXP", DATE="2022-06-21")
    return str(path)


def read_fields(path):
    meta, _, wkb, data = pyogrio.raw.read(path, layer="fields")
    cols = dict(zip(meta["fields"], data, strict=True))
    return meta, shapely.from_wkb(wkb) if len(wkb) else np.array([]), cols


def test_fields_from_a_demo_scene_follow_the_contract(tmp_path, dr, nir_model):
    out = tmp_path / "res" / "fields.gpkg"
    n = run_fields(dr, out, model_path=nir_model, patch=64, overlap=16, device="cpu")
    meta, geoms, cols = read_fields(out)
    assert n == len(geoms) >= 2
    assert tuple(meta["fields"]) == COLUMNS
    assert "32633" in meta["crs"]
    assert cols["field_id"].tolist() == list(range(1, n + 1))
    assert (cols["area_m2"] >= 2000.0 * 0.95).all()
    np.testing.assert_allclose(cols["area_m2"], shapely.area(geoms))
    assert ((cols["score"] > 0.5) & (cols["score"] <= 1.0)).all()
    assert set(cols["tile"]) == {"33UXP"} and set(cols["date"]) == {"2022-06-21"}
    assert all(g.geom_type in ("Polygon", "MultiPolygon") and g.is_valid for g in geoms)


def test_no_field_reaches_into_nodata(tmp_path, dr, nir_model):
    out = tmp_path / "fields.gpkg"
    run_fields(dr, out, model_path=nir_model, patch=64, overlap=16, device="cpu")
    _, geoms, _ = read_fields(out)
    hole = box(600000.0 + 1, 5300000.0 - 59, 600000.0 + 59, 5300000.0 - 1)
    assert not any(g.intersects(hole) for g in geoms)


def test_zero_fields_give_an_empty_layer_with_the_schema(tmp_path, dr, nir_model):
    out = tmp_path / "fields.gpkg"
    n = run_fields(dr, out, model_path=nir_model, min_area_m2=1e9, patch=64, overlap=16)
    meta, geoms, _ = read_fields(out)
    assert n == 0 and len(geoms) == 0
    assert tuple(meta["fields"]) == COLUMNS and "32633" in meta["crs"]


def test_probability_raster_is_removed_afterwards(tmp_path, dr, nir_model):
    out = tmp_path / "res" / "fields.gpkg"
    run_fields(dr, out, model_path=nir_model, patch=64, overlap=16)
    assert sorted(p.name for p in out.parent.iterdir()) == ["fields.gpkg"]


def test_superres_model_is_refused_before_any_output(tmp_path, dr):
    path = tmp_path / "sr.pt"
    meta = model_meta(architecture="srnet", arch_kwargs={"features": 4, "depth": 1}, scale=10)
    save_model(SRNet(features=4, depth=1), path, meta)
    with pytest.raises(ModelError, match="scale is 10"):
        run_fields(dr, tmp_path / "out" / "fields.gpkg", model_path=path)
    assert not (tmp_path / "out").exists()


def test_polygonise_keeps_corner_touching_components_apart_and_scores_them():
    prob = np.zeros((20, 20), dtype=np.float32)
    prob[2:8, 2:8] = 0.9
    prob[8:14, 8:14] = 0.7
    prob[16:18, 16:18] = 0.95  # 4 px: below the minimum area
    geoms, areas, scores = polygonise(
        prob, Affine(2.0, 0, 0, 0, -2.0, 40.0), threshold=0.5, min_area_m2=20.0, simplify_m=0.0
    )
    assert len(geoms) == 2
    np.testing.assert_allclose(areas, [144.0, 144.0])
    np.testing.assert_allclose(scores, [0.9, 0.7], rtol=1e-6)
