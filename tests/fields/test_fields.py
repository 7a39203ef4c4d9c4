"""Field delineation step: engine run, input (dr or s2), heads, fields.gpkg/.parquet contract."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from shapely.geometry import box

from tilepipe.cli import main
from tilepipe.core.errors import InputError, ModelError
from tilepipe.core.geoparquet import read_geoparquet
from tilepipe.core.raster import gtiff_profile
from tilepipe.demo.world import render_scene
from tilepipe.fields.delineate import COLUMNS, fields_metadata, run_fields, scratch_raster
from tilepipe.fields.polygons import Params
from tilepipe.models.loading import BANDS, save_model
from tilepipe.models.nets import FieldNet, SRNet

from ..byo import script_three_class, script_two_date
from ..core.test_scratch import killed_writer_leaves
from ..scripted import Poisoned, broken_forwards, fields_meta, save_scripted

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


def write_image(path, reflectance: np.ndarray, transform: Affine) -> str:
    """Write reflectance (4, h, w) as a uint16 image like dr.tif / s2.tif (nodata 0, tags)."""
    valid = np.isfinite(reflectance).all(axis=0)
    dn = np.clip(np.rint(np.nan_to_num(reflectance) * 10000), 1, 65535).astype(np.uint16)
    dn[:, ~valid] = 0
    _, h, w = dn.shape
    profile = gtiff_profile(
        width=w, height=h, count=4, dtype="uint16", crs="EPSG:32633", transform=transform, nodata=0
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn)
        dst.descriptions = BANDS
        dst.update_tags(TILE="33UXP", DATE="2022-06-21")
    return str(path)


@pytest.fixture
def dr(tmp_path) -> str:
    """A 1 m dr.tif made from a demo scene's true 1 m image, with a nodata corner."""
    hr = render_scene(11, 60, 60, 1, cloud=False).hr.copy()
    hr[:, :60, :60] = np.nan
    return write_image(tmp_path / "dr.tif", hr, TRANSFORM)


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
    assert (cols["metrics:area"] >= 2000.0 * 0.95).all()
    np.testing.assert_allclose(cols["metrics:area"], shapely.area(geoms), rtol=1e-6)
    np.testing.assert_allclose(cols["metrics:perimeter"], shapely.length(geoms), rtol=1e-6)
    assert ((cols["score"] > 0.5) & (cols["score"] <= 1.0)).all()
    assert set(cols["tile"]) == {"33UXP"} and set(cols["date"]) == {"2022-06-21"}
    assert all(g.geom_type in ("Polygon", "MultiPolygon") and g.is_valid for g in geoms)


def test_geoparquet_holds_the_same_fields_as_the_geopackage(tmp_path, dr, nir_model):
    gpkg, parquet = tmp_path / "fields.gpkg", tmp_path / "fields.parquet"
    run_fields(dr, gpkg, model_path=nir_model, patch=64, overlap=16, parquet_path=parquet)
    _, geoms, cols = read_fields(gpkg)
    geo, pgeoms, pcols = read_geoparquet(parquet)
    assert list(pcols) == list(COLUMNS)
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert geo["columns"]["geometry"]["crs"]["id"] == {"authority": "EPSG", "code": 32633}
    order = np.argsort(pcols["field_id"])  # the GeoParquet is in spatial order
    for name in COLUMNS:
        if name == "determination:datetime":  # tz-aware in Parquet, UTC naive in the GeoPackage
            continue
        np.testing.assert_array_equal(pcols[name][order], cols[name])
    assert all(a.equals(pgeoms[i]) for a, i in zip(geoms, order, strict=True))


def test_no_field_reaches_into_nodata(tmp_path, dr, nir_model):
    out = tmp_path / "fields.gpkg"
    run_fields(dr, out, model_path=nir_model, patch=64, overlap=16, device="cpu")
    _, geoms, _ = read_fields(out)
    hole = box(600000.0 + 1, 5300000.0 - 59, 600000.0 + 59, 5300000.0 - 1)
    assert not any(g.intersects(hole) for g in geoms)


def test_zero_fields_give_an_empty_layer_with_the_schema(tmp_path, dr, nir_model):
    out = tmp_path / "fields.gpkg"
    parquet = tmp_path / "fields.parquet"
    params = Params(min_area_m2=1e9)
    n = run_fields(
        dr, out, model_path=nir_model, params=params, patch=64, overlap=16, parquet_path=parquet
    )
    meta, geoms, _ = read_fields(out)
    assert n == 0 and len(geoms) == 0
    assert tuple(meta["fields"]) == COLUMNS and "32633" in meta["crs"]
    _, pgeoms, pcols = read_geoparquet(parquet)
    assert pgeoms == [] and list(pcols) == list(COLUMNS)


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


def test_s2_input_at_10_m_gives_fields_in_the_same_contract(tmp_path, nir_model):
    scene = render_scene(11, 60, 60, 1, cloud=False)
    s2 = write_image(tmp_path / "s2.tif", scene.lr, Affine(10.0, 0, 600000.0, 0, -10.0, 5300000.0))
    out = tmp_path / "fields.gpkg"
    n = run_fields(s2, out, model_path=nir_model, patch=32, overlap=8, device="cpu")
    meta, geoms, cols = read_fields(out)
    assert n >= 1 and tuple(meta["fields"]) == COLUMNS and "32633" in meta["crs"]
    assert (cols["metrics:area"] >= 2000.0).all()
    assert all(g.is_valid for g in geoms)
    # polygons follow the 10 m pixel edges
    assert np.allclose(np.mod(shapely.bounds(np.array(geoms)) - 600000.0, 10.0), 0.0)


def test_model_trained_at_1_m_refuses_a_10_m_image(tmp_path, nir_model):
    path = tmp_path / "m1.pt"
    save_model(FieldNet(features=1, dilations=[1], gain=1.0), path, model_meta(gsd_m=1.0))
    scene = render_scene(11, 40, 40, 1, cloud=False)
    s2 = write_image(tmp_path / "s2.tif", scene.lr, Affine(10.0, 0, 600000.0, 0, -10.0, 5300000.0))
    with pytest.raises(ModelError, match=r"tile 33UXP.*trained on 1 m pixels.*10 m pixels"):
        run_fields(s2, tmp_path / "out" / "fields.gpkg", model_path=path, tile="33UXP")
    assert not (tmp_path / "out").exists()


def test_model_with_unknown_output_heads_is_refused(tmp_path, dr):
    path = tmp_path / "odd.pt"
    net = FieldNet(features=1, dilations=[1], heads=2)
    save_model(
        net,
        path,
        model_meta(
            arch_kwargs={"features": 1, "dilations": [1], "heads": 2},
            bands_out=["extent_logit", "ndvi"],
        ),
    )
    with pytest.raises(ModelError, match="ndvi"):
        run_fields(dr, tmp_path / "fields.gpkg", model_path=path)


def test_multitask_heads_become_described_probability_bands(tmp_path, dr, monkeypatch):
    """The step writes one probability band per head (extent, boundary, distance) for delineate."""
    import tilepipe.fields.delineate as fields_mod

    seen = {}
    real = fields_mod.delineate

    def spy(prob_path, params, **kw):
        with rasterio.open(prob_path) as src:
            seen["desc"], seen["dtype"] = src.descriptions, src.dtypes[0]
        return real(prob_path, params, **kw)

    monkeypatch.setattr(fields_mod, "delineate", spy)
    path = tmp_path / "mt.pt"
    kwargs = {"features": 2, "dilations": [1], "heads": 3}
    save_model(
        FieldNet(**kwargs),
        path,
        model_meta(
            arch_kwargs=kwargs, bands_out=["extent_logit", "boundary_logit", "distance_logit"]
        ),
    )
    run_fields(dr, tmp_path / "fields.gpkg", model_path=path, patch=64, overlap=16)
    assert seen == {"desc": ("extent", "boundary", "distance"), "dtype": "uint8"}


def test_unreadable_image_is_refused_naming_tile_date_and_file(tmp_path, nir_model):
    bad = tmp_path / "dr.tif"
    bad.write_bytes(b"not a tiff")
    with pytest.raises(InputError, match=r"tile 33UXP, date 2022-06-21, file .*dr\.tif: cannot"):
        run_fields(bad, tmp_path / "f.gpkg", model_path=nir_model, tile="33UXP", date="2022-06-21")
    assert not (tmp_path / "f.gpkg").exists()


def test_an_all_nodata_image_gives_an_empty_layer(tmp_path, nir_model):
    empty = write_image(tmp_path / "dr.tif", np.full((4, 64, 64), np.nan), TRANSFORM)
    out = tmp_path / "fields.gpkg"
    assert run_fields(empty, out, model_path=nir_model, patch=32, overlap=8) == 0
    meta, geoms, _ = read_fields(out)
    assert len(geoms) == 0 and tuple(meta["fields"]) == COLUMNS


def test_cli_refuses_impossible_parameters_in_one_line(tmp_path, dr, nir_model, capsys):
    argv = ["fields", "--tile", "33UXP", "--date", "2022-06-21", "--dr", dr, "--model", nir_model]
    argv += ["--out", str(tmp_path / "f.gpkg"), "--block", "100", "--max-area-m2", "10"]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "block 100 must be a multiple of 16" in line and "max_area_m2 10.0" in line
    assert not (tmp_path / "f.gpkg").exists()


def test_scratch_raster_lies_beside_the_output_and_is_removed_afterwards(tmp_path):
    dst = tmp_path / "out" / "fields.gpkg"
    with scratch_raster(dst) as prob:
        assert prob.parent == dst.parent and prob.name.startswith(".fields.gpkg.prob-")
        assert prob.is_file()
    assert list(dst.parent.iterdir()) == []


def test_scratch_raster_is_removed_when_the_step_fails(tmp_path):
    with pytest.raises(RuntimeError), scratch_raster(tmp_path / "f.gpkg"):
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_fields_metadata_names_model_heads_parameters_and_source(tmp_path):
    model = type("M", (), {"model_id": "m1", "sha256": "abc"})()
    meta = fields_metadata(model, ["extent", "boundary"], Params(), tmp_path / "dr.tif")
    assert meta["FIELDS_MODEL_ID"] == "m1" and meta["HEADS"] == "extent,boundary"
    assert meta["SOURCE"] == "dr.tif" and meta["THRESHOLD"] == str(Params().threshold)


# issue 18, classes 1 and 3: non-finite model output and errors raised by user model code


def run_scripted_fields(tmp_path, image: str, module: torch.nn.Module) -> None:
    """Delineate fields on ``image`` with ``module`` as a TorchScript fields model."""
    model = save_scripted(module, tmp_path / "models" / "user.pt", fields_meta("fields-user"))
    out = tmp_path / "out" / "fields.gpkg"
    run_fields(image, out, model_path=model, patch=64, overlap=16, device="cpu")


@pytest.mark.parametrize("rows", [64, 20], ids=["nan-everywhere", "nan-in-part-of-each-window"])
def test_nan_logits_are_a_model_error_not_probability_zero(tmp_path, dr, rows):
    with pytest.raises(ModelError, match=r"fields-user returned non-finite values \(NaN\)") as err:
        run_scripted_fields(tmp_path, dr, Poisoned(1, 1, float("nan"), rows))
    assert str(err.value).startswith("tile 33UXP, date 2022-06-21, file ")
    assert "window at source row" in str(err.value)
    assert not (tmp_path / "out" / "fields.gpkg").exists()


@pytest.mark.parametrize(("module", "words"), broken_forwards(1, 1))
def test_error_inside_the_fields_models_forward_is_a_model_error_naming_the_scene(
    tmp_path, dr, module, words
):
    with pytest.raises(ModelError, match=re.escape(words)) as err:
        run_scripted_fields(tmp_path, dr, module)
    assert str(err.value).startswith("tile 33UXP, date 2022-06-21, file ")
    assert "model fields-user failed on the first batch" in str(err.value)
    assert not (tmp_path / "out" / "fields.gpkg").exists()


def test_fields_model_with_more_outputs_than_its_sidecar_is_a_model_error(tmp_path, dr):
    with pytest.raises(ModelError, match=r"fields-user returned shape \(\d+, 2, 64, 64\)"):
        run_scripted_fields(tmp_path, dr, Poisoned(1, 2, 0.0, 0))
    assert not (tmp_path / "out" / "fields.gpkg").exists()


# -- issue 18: wrong-kind inputs stop the step; fields.gpkg and fields.parquet come together


def write_raster(path, data: np.ndarray, transform: Affine = TRANSFORM, crs="EPSG:32633", **tags):
    """Write (bands, h, w) ``data`` as a GeoTIFF in its own dtype, tagged as the demo scene."""
    _, h, w = data.shape
    profile = gtiff_profile(
        width=w, height=h, count=data.shape[0], dtype=str(data.dtype), crs=crs, transform=transform
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(TILE="33UXP", DATE="2022-06-21", **tags)
    return str(path)


def demo_reflectance() -> np.ndarray:
    """A demo scene's true 1 m reflectance (4, 64, 64) as floats 0–1."""
    return render_scene(11, 64, 64, 1, cloud=False).hr.astype(np.float32)


def test_fields_on_a_float32_0_1_raster_is_an_input_error_with_no_output(tmp_path, nir_model):
    image = write_raster(tmp_path / "dr.tif", demo_reflectance())
    out, parquet = tmp_path / "fields.gpkg", tmp_path / "fields.parquet"
    with pytest.raises(
        InputError, match=r"tile 33UXP, date 2022-06-21, file .*dr\.tif: .*expected dtype uint16"
    ):
        run_fields(image, out, model_path=nir_model, parquet_path=parquet, date="2022-06-21")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dr.tif", "models"]


def test_fields_on_a_three_band_raster_names_the_band_count(tmp_path, nir_model):
    dn = (demo_reflectance()[:3] * 10000).astype(np.uint16)
    image = write_raster(tmp_path / "dr.tif", dn)
    with pytest.raises(
        InputError, match=r"expected 4 bands \['B02', 'B03', 'B04', 'B08'\], found 3"
    ):
        run_fields(image, tmp_path / "fields.gpkg", model_path=nir_model)
    assert not (tmp_path / "fields.gpkg").exists()


def test_fields_on_a_raster_whose_scale_tag_is_not_reflectance_is_refused(tmp_path, nir_model):
    dn = (demo_reflectance() * 10000).astype(np.uint16)
    image = write_raster(tmp_path / "dr.tif", dn, REFLECTANCE_SCALE="1e-05")
    with pytest.raises(InputError, match=r"expected tag REFLECTANCE_SCALE 0.0001, found '1e-05'"):
        run_fields(image, tmp_path / "fields.gpkg", model_path=nir_model)


def test_fields_on_another_tiles_grid_is_refused(tmp_path, nir_model):
    dn = (demo_reflectance() * 10000).astype(np.uint16)
    image = write_raster(tmp_path / "dr.tif", dn, crs="EPSG:32632")
    with pytest.raises(
        InputError, match=r"expected CRS EPSG:32633 of tile 33UXP, found EPSG:32632"
    ):
        run_fields(image, tmp_path / "fields.gpkg", model_path=nir_model)


def test_fields_gpkg_and_parquet_appear_together_or_not_at_all(tmp_path, dr, nir_model):
    out, parquet = tmp_path / "fields.gpkg", tmp_path / "fields.parquet"
    out.mkdir()  # the GeoPackage cannot be put in place: the GeoParquet must not stay either
    with pytest.raises(OSError):
        run_fields(dr, out, model_path=nir_model, patch=64, overlap=16, parquet_path=parquet)
    assert not parquet.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".prob-" in p.name]


# issue 18, classes 5 and 6


def test_a_killed_runs_probability_raster_is_removed_by_the_rerun(tmp_path, dr, nir_model):
    """The example: a killed ``fields`` leaves ``.fields.gpkg.prob-*``; the rerun removes it."""
    out = tmp_path / "out" / "fields.gpkg"
    left = killed_writer_leaves(out, "prob", 50_000)
    run_fields(dr, out, model_path=nir_model, patch=64, overlap=16)
    assert not left.exists()
    assert [p.name for p in out.parent.iterdir()] == ["fields.gpkg"]


# issue 14: fields on the DR output of another scale, with an FTW-like softmax model


def test_softmax_model_with_named_roles_finds_fields_on_a_scale_4_dr(tmp_path):
    hr = render_scene(11, 60, 60, 1, scale=4, cloud=False).hr
    dr = write_image(tmp_path / "dr.tif", hr, Affine(2.5, 0, 600000.0, 0, -2.5, 5300000.0))
    model = script_three_class(tmp_path / "ftw.pt", gsd_m=2.5)
    out = tmp_path / "fields.gpkg"
    n = run_fields(dr, out, model_path=model, patch=64, overlap=16, device="cpu")
    _, geoms, cols = read_fields(out)
    assert n == len(geoms) >= 1 and ((cols["score"] > 0.5) & (cols["score"] <= 1.0)).all()
    assert shapely.area(geoms).sum() > 0.5 * 600 * 600  # the bright-NIR crops, in m²
    assert pyogrio.read_info(out, layer="fields")["layer_metadata"]["HEADS"] == "extent,boundary"


def test_a_field_model_for_1_m_refuses_a_scale_4_dr(tmp_path):
    hr = render_scene(11, 20, 20, 1, scale=4, cloud=False).hr
    dr = write_image(tmp_path / "dr.tif", hr, Affine(2.5, 0, 600000.0, 0, -2.5, 5300000.0))
    model = script_three_class(tmp_path / "ftw.pt", gsd_m=1.0)
    with pytest.raises(ModelError, match=r"trained on 1 m pixels but the image has 2\.5 m"):
        run_fields(dr, tmp_path / "out" / "fields.gpkg", model_path=model, patch=32)
    assert not (tmp_path / "out").exists()


def _s2_of(path: Path, date: str, b08: float, size: int = 64, x0: float = 600000.0) -> str:
    """A 10 m s2.tif of one date: flat visible bands, B08 at ``b08`` reflectance."""
    reflectance = np.full((4, size, size), 0.05, dtype=np.float32)
    reflectance[3] = b08
    image = write_image(path, reflectance, Affine(10.0, 0, x0, 0, -10.0, 5300000.0))
    with rasterio.open(image, "r+") as dst:
        dst.update_tags(DATE=date, REFLECTANCE_SCALE="0.0001")
    return image


def test_a_two_date_model_without_a_partner_is_refused_naming_why(tmp_path):
    scene = _s2_of(tmp_path / "s2.tif", "2022-06-21", 0.4)
    model = script_two_date(tmp_path / "ftw2.pt")
    why = "tile 33UXP has no scene of 2022 in window a (04-01..05-31)"
    with pytest.raises(ModelError, match=r"takes 2 dates, but the scene has no partner date: "):
        run_fields(scene, tmp_path / "out" / "f.gpkg", model_path=model, patch=32, unpaired=why)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("window", "fields"), [("b", True), ("a", False)])
def test_a_two_date_model_takes_window_a_then_window_b(tmp_path, window, fields):
    """The model sees field where window B's B08 is bright: the partner's, when it is in B."""
    scene = _s2_of(tmp_path / "s2.tif", "2022-04-20", 0.05)
    partner = _s2_of(tmp_path / "partner.tif", "2022-08-30", 0.4)
    model = script_two_date(tmp_path / "ftw2.pt")
    out = tmp_path / "fields.gpkg"
    args = {"model_path": model, "patch": 32, "overlap": 8, "device": "cpu"}
    run_fields(scene, out, partner=partner, partner_window=window, **args)
    _, geoms, _ = read_fields(out)
    assert (shapely.area(geoms).sum() > 0.5 * 640 * 640) == fields
    meta = pyogrio.read_info(out, layer="fields")["layer_metadata"]
    dates = ["2022-04-20", "2022-08-30"] if window == "b" else ["2022-08-30", "2022-04-20"]
    assert meta["FIELDS_DATES"] == ",".join(dates) and meta["SOURCE"] == "s2.tif"


def test_a_partner_on_another_grid_is_an_input_error(tmp_path):
    scene = _s2_of(tmp_path / "s2.tif", "2022-04-20", 0.05)
    partner = _s2_of(tmp_path / "partner.tif", "2022-08-30", 0.4, x0=600010.0)
    model = script_two_date(tmp_path / "ftw2.pt")
    with pytest.raises(InputError, match=r"partner image is not on the scene's grid"):
        run_fields(scene, tmp_path / "out" / "f.gpkg", model_path=model, partner=partner)
    assert not (tmp_path / "out").exists()


def test_a_field_model_on_s2_takes_a_20_m_band_download_added(tmp_path):
    """Field where B11, the model's 4th input, is bright (left half); B08 is dark all over."""
    size = 64
    reflectance = np.full((5, size, size), 0.05, dtype=np.float32)
    reflectance[4, :, : size // 2] = 0.4  # B11
    dn = np.clip(np.rint(reflectance * 10000), 1, 65535).astype(np.uint16)
    transform = Affine(10.0, 0, 600000.0, 0, -10.0, 5300000.0)
    profile = gtiff_profile(
        width=size, height=size, count=5, dtype="uint16", crs="EPSG:32633", transform=transform
    )
    s2 = tmp_path / "s2.tif"
    with rasterio.open(s2, "w", **{**profile, "nodata": 0}) as dst:
        dst.write(dn)
        dst.descriptions = (*BANDS, "B11")
        dst.update_tags(TILE="33UXP", DATE="2022-06-21", REFLECTANCE_SCALE="0.0001")
    model = script_three_class(tmp_path / "ftw.pt", bands_in=["B04", "B03", "B02", "B11"])
    out = tmp_path / "fields.gpkg"
    run_fields(str(s2), out, model_path=model, patch=32, overlap=8, device="cpu")
    _, geoms, _ = read_fields(out)
    left = shapely.box(600000.0, 5300000.0 - size * 10, 600000.0 + size * 5, 5300000.0)
    inside = shapely.area(shapely.intersection(geoms, left)).sum()
    assert inside > 0.5 * left.area and shapely.area(geoms).sum() < 1.2 * inside
