"""Season fusion: one field layer per tile-season from the clear observations of all dates."""

from __future__ import annotations

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import rasterio.features
import shapely

from tilepipe.core.errors import InputError
from tilepipe.core.geoparquet import read_geoparquet
from tilepipe.core.settings import section_defaults
from tilepipe.demo.world import render_scene, scl_from_scene
from tilepipe.fields.delineate import run_fields
from tilepipe.fields.metrics import field_ious, instance_scores, paired_iou
from tilepipe.fields.polygons import Params
from tilepipe.fields.season import DateInput, clear_weights, fuse_block, run_season
from tilepipe.superres import run_superres

from ..conftest import REPO
from .test_accuracy import SEED, SIZE, write_s2
from .test_accuracy import TRANSFORM as TRANSFORM_10M
from .test_mask import write_scl
from .test_polygons import prob_raster

FIELDS = section_defaults("fields")
CLASSES = tuple(FIELDS["mask_classes"])
SCORED = ("matched", "mean_iou", "split_rate", "merge_rate")


def test_fusion_takes_the_mean_extent_and_max_boundary_of_clear_dates_only():
    ext = np.array([[[0.9, 0.2]], [[0.5, 0.8]], [[0.1, 0.1]]], dtype=np.float32)
    bnd = np.array([[[0.1, 0.6]], [[0.3, 0.2]], [[0.9, 0.9]]], dtype=np.float32)
    clear = np.array([[[True, False]], [[True, False]], [[False, False]]])
    extent, boundary = fuse_block(ext, bnd, clear)
    np.testing.assert_allclose(extent[0, 0], 0.7, atol=1e-6)
    np.testing.assert_allclose(boundary[0, 0], 0.3, atol=1e-6)
    assert np.isnan(extent[0, 1]) and np.isnan(boundary[0, 1])


def test_a_date_counts_less_next_to_its_cloud_than_a_date_clear_far_around():
    clear = np.ones((2, 1, 41), dtype=bool)
    clear[0, 0, :1] = False  # date 0: a cloud at the left edge
    weights = clear_weights(clear, ramp_px=20)
    assert weights[0, 0, 0] == 0 and weights[0, 0, 1] < 0.1 and weights[0, 0, 21] == 1
    assert (weights[1] == 1).all()  # no mask edge: every pixel counts fully
    ext = np.stack([np.full((1, 41), 0.2), np.full((1, 41), 0.9)]).astype(np.float32)
    bnd = np.stack([np.full((1, 41), 0.8), np.full((1, 41), 0.1)]).astype(np.float32)
    extent, boundary = fuse_block(ext, bnd, clear, weights)
    assert extent[0, 1] > 0.85 and boundary[0, 1] < 0.15  # the clear date leads by the cloud
    np.testing.assert_allclose(extent[0, 30], 0.55, atol=1e-6)  # far away: the plain mean
    np.testing.assert_allclose(boundary[0, 30], 0.8, atol=1e-6)  # and the plain max


def test_a_pixel_one_date_saw_clear_keeps_that_dates_values_however_near_its_cloud():
    clear = np.array([[[False, True, True]], [[False, False, False]]])
    ext = np.array([[[0.1, 0.7, 0.7]], [[0.9, 0.9, 0.9]]], dtype=np.float32)
    bnd = np.array([[[0.1, 0.4, 0.4]], [[0.9, 0.9, 0.9]]], dtype=np.float32)
    extent, boundary = fuse_block(ext, bnd, clear, clear_weights(clear, ramp_px=50))
    np.testing.assert_allclose(extent[0, 1:], 0.7, atol=1e-6)
    np.testing.assert_allclose(boundary[0, 1:], 0.4, atol=1e-6)


def two_field_probs() -> tuple[np.ndarray, np.ndarray]:
    """Extent and boundary of two 40 x 40 m fields on the 1 m grid, 20 m apart."""
    extent = np.zeros((60, 120), dtype=np.float32)
    extent[10:50, 10:50] = 1.0
    extent[10:50, 70:110] = 1.0
    return extent, np.zeros_like(extent)


def write_date(tmp_path, name: str, cloud_cols: slice) -> DateInput:
    """A date of ``two_field_probs`` whose SCL has class 9 over the SCL columns ``cloud_cols``."""
    classes = np.full((6, 12), 4, dtype=np.uint8)
    classes[:, cloud_cols] = 9
    prob = prob_raster(tmp_path, *two_field_probs(), name=f"prob_{name}")
    return DateInput(name, prob, write_scl(tmp_path / f"scl_{name}.tif", classes))


def read_layer(path) -> tuple[list, dict]:
    """Geometries and columns of a fields layer."""
    meta, _, wkb, data = pyogrio.raw.read(path, layer="fields")
    return list(shapely.from_wkb(wkb)), dict(zip(meta["fields"], data, strict=True))


def test_each_field_comes_once_from_the_dates_that_saw_it_clear(tmp_path):
    dates = [
        write_date(tmp_path, "2022-01-12", slice(6, 12)),  # the eastern field under cloud
        write_date(tmp_path, "2022-06-21", slice(0, 6)),  # the western field under cloud
    ]
    out = tmp_path / "season.gpkg"
    n = run_season(
        dates,
        out,
        tile="33UXP",
        season="2022",
        params=Params(min_area_m2=100, simplify_m=0),
        mask_classes=CLASSES,
    )
    geoms, cols = read_layer(out)
    west = int(np.argmin([g.bounds[0] for g in geoms]))
    assert n == 2
    np.testing.assert_allclose(sorted(cols["metrics:area"]), [1600.0, 1600.0])
    assert cols["dates"][west] == "2022-01-12" and cols["dates"][1 - west] == "2022-06-21"
    assert cols["n_dates"].tolist() == [1, 1]
    np.testing.assert_allclose(cols["agreement"], [1.0, 1.0])
    assert set(cols["date"]) == {"2022"}


def test_the_season_geoparquet_holds_the_same_fields_and_provenance(tmp_path):
    dates = [write_date(tmp_path, "2022-01-12", slice(6, 12))]
    out, parquet = tmp_path / "season.gpkg", tmp_path / "season.parquet"
    params = Params(min_area_m2=100, simplify_m=0)
    run_season(
        dates,
        out,
        tile="33UXP",
        season="2022",
        params=params,
        mask_classes=CLASSES,
        parquet_path=parquet,
    )
    _, geoms, cols = read_geoparquet(parquet)
    assert cols["dates"].tolist() == ["2022-01-12"] and cols["n_dates"].tolist() == [1]
    assert geoms[0].equals(read_layer(out)[0][0])


def test_a_date_on_another_grid_is_an_input_error_naming_it(tmp_path):
    good = write_date(tmp_path, "2022-01-12", slice(0, 0))
    other = prob_raster(tmp_path, *(a[:, :100] for a in two_field_probs()), name="other")
    with pytest.raises(InputError, match=r"2022-06-21.*differs from 2022-01-12"):
        run_season(
            [good, DateInput("2022-06-21", other, None)],
            tmp_path / "season.gpkg",
            tile="33UXP",
            season="2022",
        )
    assert not (tmp_path / "season.gpkg").exists()


def scores_of(path, shape, transform, truth: np.ndarray) -> dict[str, float]:
    """Instance scores of a fields layer rasterised back onto the 1 m truth grid."""
    geoms, cols = read_layer(path)
    pred = rasterio.features.rasterize(
        zip(geoms, cols["field_id"].tolist(), strict=True),
        out_shape=shape,
        transform=transform,
        dtype="int32",
    )
    return {
        **instance_scores(pred, truth, min_truth_px=2000),
        "ious": field_ious(pred, truth, min_truth_px=2000),
    }


@pytest.fixture(scope="module")
def demo_season(tmp_path_factory) -> dict[str, dict[str, float]]:
    """Scores per date (January, June: clouds and shadows masked) and of their fused layer."""
    tmp = tmp_path_factory.mktemp("season")
    scores, dates = {}, []
    for index, name in enumerate(("january", "june")):
        scene = render_scene(SEED, SIZE, SIZE, index)
        s2, dr, scl = tmp / f"s2_{name}.tif", tmp / f"dr_{name}.tif", tmp / f"scl_{name}.tif"
        write_s2(s2, scene.lr)
        write_scl(scl, scl_from_scene(scene), TRANSFORM_10M)
        run_superres(s2, dr, model_path=REPO / "models/dr_demo.pt", device="cpu")
        prob, out = tmp / f"prob_{name}.tif", tmp / f"fields_{name}.gpkg"
        run_fields(
            dr,
            out,
            model_path=REPO / "models/fields_demo.pt",
            device="cpu",
            scl_path=scl,
            mask_classes=CLASSES,
            mask_buffer=FIELDS["mask_buffer"],
            prob_out=prob,
        )
        with rasterio.open(dr) as src:
            grid = (src.height, src.width), src.transform
        scores[name] = scores_of(out, *grid, scene.field_ids_hr)
        dates.append(DateInput(name, prob, scl))
    fused = tmp / "season.gpkg"
    run_season(dates, fused, tile="33UXP", season="2022", mask_classes=CLASSES, mask_buffer=1)
    scores["fused"] = scores_of(fused, *grid, scene.field_ids_hr)
    for name, s in scores.items():
        print(f"\n{name}: " + ", ".join(f"{k} {s[k]:.3f}" for k in ("n_true", *SCORED)))
    return scores


def test_fused_layer_matches_at_least_as_many_fields_as_the_best_date(demo_season):
    assert demo_season["fused"]["matched"] >= max(
        demo_season[d]["matched"] for d in ("january", "june")
    )


def test_fused_layer_matches_them_at_least_as_well_as_the_best_date(demo_season):
    best = max(demo_season[d]["mean_iou"] for d in ("january", "june"))
    assert demo_season["fused"]["mean_iou"] >= best


@pytest.mark.parametrize("date", ["january", "june"])
def test_fused_layer_fits_the_fields_both_match_at_least_as_well_as_each_date(demo_season, date):
    n, fused, alone = paired_iou(demo_season["fused"]["ious"], demo_season[date]["ious"])
    print(f"\n{date}: {n} fields both match, IoU fused {fused:.3f}, {date} {alone:.3f}")
    assert n >= 10 and fused >= alone


def test_fused_layer_splits_no_more_than_the_best_date(demo_season):
    best = min(demo_season[d]["split_rate"] for d in ("january", "june"))
    assert demo_season["fused"]["split_rate"] <= best


def test_fused_layer_merges_fewer_fields_than_the_best_date(demo_season):
    best = min(demo_season[d]["merge_rate"] for d in ("january", "june"))
    assert demo_season["fused"]["merge_rate"] < best
