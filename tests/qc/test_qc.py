"""QC checks on small synthetic (s2, scl, dr, fields) sets on tile 33UXP's grid."""

from __future__ import annotations

import json

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from affine import Affine

from tilepipe.classify.quality import run_classification_qc
from tilepipe.core.errors import ConfigError, InputError
from tilepipe.core.grid import tile_grid
from tilepipe.qc.checks import CLASSIFICATION_CHECKS, DEFAULT_THRESHOLDS, SCENE_CHECKS, write_qc
from tilepipe.qc.scene import run_qc

TILE, DATE, SIZE = "33UXP", "2022-06-21", 40
BANDS = ("B02", "B03", "B04", "B08")


def _write(path, data, crs, transform, nodata=0):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data)
        if data.shape[0] == 4:
            dst.descriptions = BANDS


def _fields(path, crs, x0, y0, n=4, side=100.0, geoms=None, extra=None):
    """Write a fields.gpkg of ``n`` boxes in a row (or the given geometries) with its columns."""
    if geoms is None:
        geoms = [
            shapely.box(x0 + i * side, y0 - side, x0 + (i + 1) * side - 10, y0) for i in range(n)
        ]
    n = len(geoms)
    columns = {
        "field_id": np.arange(1, n + 1, dtype=np.int64),
        "metrics:area": np.array([g.area for g in geoms]),
        "score": np.full(n, 0.9),
        "tile": np.array([TILE] * n, dtype=object),
        "date": np.array([DATE] * n, dtype=object),
        **(extra or {}),
    }
    pyogrio.raw.write(
        path,
        shapely.to_wkb(np.array(geoms, dtype=object)),
        list(columns.values()),
        list(columns),
        layer="fields",
        driver="GPKG",
        geometry_type="Polygon",
        crs=crs,
    )


def smooth_reflectance(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Random reflectance (DN 300..4000) without detail finer than ~5 px, as natural scenes are.

    DR nearest-upsampled from it is consistent under both degradations, block means and
    opensr-test's antialiased bilinear (which mixes in neighbours: pixel noise would fail it).
    """
    noise = np.random.default_rng(seed).normal(size=shape)
    fy = np.fft.fftfreq(shape[1])[:, None]
    fx = np.fft.fftfreq(shape[2])[None, :]
    smooth = np.fft.ifft2(np.fft.fft2(noise) * (np.hypot(fy, fx) < 0.2)).real
    lo, hi = smooth.min(axis=(1, 2), keepdims=True), smooth.max(axis=(1, 2), keepdims=True)
    return (300 + (smooth - lo) / (hi - lo) * 3700).astype(np.uint16)


def make_set(tmp_path, *, crs=None, south_up=False, dr_shift=0, cloud_rows=0, offset=0.0, scale=10):
    """Write a consistent s2/scl/dr/fields set (optionally broken one way) and return the paths;
    dr is s2 at 1/``scale`` pixel."""
    grid = tile_grid(TILE)
    crs = crs or grid.crs
    transform = Affine.translation(offset, 0) @ grid.transform @ Affine.translation(120, 340)
    s2 = smooth_reflectance((4, SIZE, SIZE))
    scl = np.full((1, SIZE, SIZE), 4, dtype=np.uint8)
    scl[:, :cloud_rows] = 9
    dr = np.repeat(np.repeat(s2, scale, axis=1), scale, axis=2)
    dr = np.roll(dr, dr_shift, axis=2)
    hr_transform = transform @ Affine.scale(1 / scale)
    if south_up:
        # same footprint, rows stored south to north (positive y pixel size)
        transform = Affine(10, 0, transform.c, 0, 10, transform.f - 10 * SIZE)
        hr_transform = transform @ Affine.scale(1 / scale)
        s2, scl, dr = s2[:, ::-1], scl[:, ::-1], dr[:, ::-1]
    paths = {k: tmp_path / f"{k}.tif" for k in ("s2", "scl", "dr")}
    _write(paths["s2"], np.ascontiguousarray(s2), crs, transform)
    _write(paths["scl"], np.ascontiguousarray(scl), crs, transform)
    _write(paths["dr"], np.ascontiguousarray(dr), crs, hr_transform)
    paths["fields"] = tmp_path / "fields.gpkg"
    _fields(paths["fields"], crs, transform.c, grid.transform.f - 3400)
    return paths


def qc(paths, thresholds=None):
    return run_qc(
        tile=TILE,
        date=DATE,
        s2_path=paths["s2"],
        scl_path=paths["scl"],
        dr_path=paths["dr"],
        fields_path=paths["fields"],
        thresholds=thresholds or {},
    )


def status_of(report, name):
    return next(c for c in report["checks"] if c["name"] == name)["status"]


def test_consistent_set_passes_every_check(tmp_path):
    report = qc(make_set(tmp_path))
    assert report["status"] == "pass", report
    assert {c["status"] for c in report["checks"]} == {"pass"}
    assert report["summary"]["n_checks"] == len(SCENE_CHECKS)


def test_write_qc_writes_the_report_as_json(tmp_path):
    report = qc(make_set(tmp_path))
    write_qc(report, tmp_path / "out" / "qc.json")
    loaded = json.loads((tmp_path / "out" / "qc.json").read_text())
    assert loaded["status"] == "pass"
    assert {"name", "status", "value", "threshold", "message"} <= set(loaded["checks"][0])


def test_wrong_crs_fails_crs_check(tmp_path):
    report = qc(make_set(tmp_path, crs="EPSG:32632"))
    assert status_of(report, "crs_matches_tile") == "fail"
    assert report["status"] == "fail"


def test_south_up_raster_fails_north_up_check(tmp_path):
    report = qc(make_set(tmp_path, south_up=True))
    assert status_of(report, "north_up") == "fail"
    assert report["status"] == "fail"


def test_shifted_dr_fails_dr_consistency(tmp_path):
    report = qc(make_set(tmp_path, dr_shift=30))
    assert status_of(report, "dr_consistency") == "fail"
    assert status_of(report, "grid_consistent") == "pass"


def test_origin_off_the_tile_grid_fails_crs_check(tmp_path):
    report = qc(make_set(tmp_path, offset=5.0))
    check = next(c for c in report["checks"] if c["name"] == "crs_matches_tile")
    assert check["status"] == "fail" and "off the tile's 10 m grid" in check["message"]


def test_field_larger_than_the_raster_fails_field_area(tmp_path):
    paths = make_set(tmp_path)
    paths["fields"].unlink()
    _fields(paths["fields"], tile_grid(TILE).crs, 601200.0, 5396600.0, n=1, side=1000.0)
    assert status_of(qc(paths), "field_area") == "fail"


@pytest.mark.parametrize(("cloud_rows", "expected"), [(16, "warn"), (32, "fail")])
def test_cloud_fraction_warns_then_fails(tmp_path, cloud_rows, expected):
    report = qc(make_set(tmp_path, cloud_rows=cloud_rows))
    assert status_of(report, "cloud_fraction") == expected


def test_missing_dr_fails_its_checks_without_raising(tmp_path):
    paths = make_set(tmp_path)
    paths["dr"].unlink()
    report = qc(paths)
    assert status_of(report, "dr_consistency") == "fail"
    assert (
        "does not exist" in next(c for c in report["checks"] if c["name"] == "north_up")["message"]
    )


def test_unreadable_s2_raises_input_error_naming_tile_and_file(tmp_path):
    paths = make_set(tmp_path)
    paths["s2"].write_bytes(b"not a tiff")
    with pytest.raises(InputError, match=rf"tile {TILE}, date {DATE}, file .*s2.tif"):
        qc(paths)


def test_unknown_threshold_key_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown QC threshold"):
        qc(make_set(tmp_path), {"cloudiness": {"warn": 0.1}})


def test_default_thresholds_cover_every_thresholded_check():
    exact = {"crs_matches_tile", "north_up", "grid_consistent"}
    assert set(DEFAULT_THRESHOLDS) == (set(SCENE_CHECKS) - exact) | set(CLASSIFICATION_CHECKS)


def check_of(report, name):
    return next(c for c in report["checks"] if c["name"] == name)


def _field_origin():
    grid = tile_grid(TILE)
    return grid.transform.c + 1200, grid.transform.f - 3400  # make_set's fields corner


def test_dr_shifted_half_a_pixel_is_measured_by_phase_correlation(tmp_path):
    report = qc(make_set(tmp_path, dr_shift=5))  # 5 m east = 0.5 px at 10 m
    check = check_of(report, "sr_spatial")
    assert check["value"]["median_dx_px"] == pytest.approx(-0.5, abs=0.05)
    assert check["value"]["median_dy_px"] == pytest.approx(0.0, abs=0.05)
    assert check["status"] == "warn"  # 0.5 px: above warn 0.25, not above fail 0.5


def test_dr_with_a_distorted_band_fails_spectral_angle_only(tmp_path):
    paths = make_set(tmp_path)
    with rasterio.open(paths["dr"], "r+") as dst:
        dst.write(dst.read(4) // 2, 4)  # NIR halved: same structure, wrong spectrum
    report = qc(paths)
    assert check_of(report, "sr_spectral")["status"] == "fail"
    assert check_of(report, "sr_spectral")["value"] > DEFAULT_THRESHOLDS["sr_spectral"]["fail"]
    assert check_of(report, "sr_spatial")["value"]["shift_px"] == pytest.approx(0.0, abs=0.05)


def test_self_intersecting_field_counts_as_invalid(tmp_path):
    paths = make_set(tmp_path)
    x0, y0 = _field_origin()
    bowtie = shapely.Polygon([(x0, y0), (x0 + 100, y0 - 100), (x0 + 100, y0), (x0, y0 - 100)])
    good = [shapely.box(x0 + 200 * i, y0 - 300, x0 + 200 * i + 90, y0 - 200) for i in range(3)]
    _fields(paths["fields"], tile_grid(TILE).crs, 0, 0, geoms=[bowtie, *good])
    check = check_of(qc(paths), "field_invalid")
    assert check["value"] == pytest.approx(0.25)
    assert check["status"] == "fail" and "1 of 4" in check["message"]


def test_thin_fields_are_counted_as_slivers(tmp_path):
    paths = make_set(tmp_path)
    x0, y0 = _field_origin()
    slivers = [shapely.box(x0 + 20 * i, y0 - 300, x0 + 20 * i + 2, y0) for i in range(2)]
    good = [shapely.box(x0 + 100 * i, y0 - 500, x0 + 100 * i + 90, y0 - 400) for i in range(2)]
    _fields(paths["fields"], tile_grid(TILE).crs, 0, 0, geoms=[*slivers, *good])
    check = check_of(qc(paths), "field_slivers")
    assert check["value"] == pytest.approx(0.5) and check["status"] == "fail"


@pytest.mark.parametrize("column", ["metrics:perimeter", "perimeter_m"])  # fiboa, older files
def test_perimeter_column_is_used_for_slivers_when_present(tmp_path, column):
    paths = make_set(tmp_path)
    x0, y0 = _field_origin()
    boxes = [shapely.box(x0 + 100 * i, y0 - 100, x0 + 100 * i + 90, y0) for i in range(4)]
    perimeter = np.array([380.0, 380.0, 380.0, 5000.0])  # the last one claims a ragged outline
    _fields(paths["fields"], tile_grid(TILE).crs, 0, 0, geoms=boxes, extra={column: perimeter})
    assert check_of(qc(paths), "field_slivers")["value"] == pytest.approx(0.25)


def test_field_coverage_is_fields_area_over_valid_scene_area(tmp_path):
    check = check_of(qc(make_set(tmp_path)), "field_coverage")
    assert check["value"] == pytest.approx(4 * 90 * 100 / (SIZE * SIZE * 100))
    assert check["status"] == "pass"


def test_overlapping_fields_covering_more_than_the_scene_fail_coverage(tmp_path):
    paths = make_set(tmp_path)
    grid = tile_grid(TILE)
    x0, y0 = grid.transform.c + 1200, grid.transform.f - 3400
    whole = shapely.box(x0, y0 - 400, x0 + 400, y0)  # the whole 400 m scene, three times
    _fields(paths["fields"], grid.crs, 0, 0, geoms=[whole, whole, whole])
    check = check_of(qc(paths), "field_coverage")
    assert check["status"] == "fail" and "overlap" in check["message"]


def test_field_area_reports_the_area_distribution(tmp_path):
    value = check_of(qc(make_set(tmp_path)), "field_area")["value"]
    assert value["min_m2"] == value["p10_m2"] == value["median_m2"] == value["max_m2"] == 9000.0


def test_empty_field_set_fails_the_scene_through_coverage(tmp_path):
    paths = make_set(tmp_path)
    _fields(paths["fields"], tile_grid(TILE).crs, 0, 0, geoms=[])
    report = qc(paths)
    assert check_of(report, "field_count")["value"] == 0
    assert check_of(report, "field_coverage")["status"] == "fail"
    assert report["status"] == "fail"


def _classified(path, crops, probs):
    """A fields_classified.gpkg with the given crop classes and probabilities."""
    n = len(crops)
    x0, y0 = _field_origin()
    geoms = [shapely.box(x0 + 100 * i, y0 - 100, x0 + 100 * i + 90, y0) for i in range(n)]
    _fields(
        path,
        tile_grid(TILE).crs,
        0,
        0,
        geoms=geoms,
        extra={"crop": np.array(crops, dtype=object), "crop_prob": np.array(probs, dtype=float)},
    )
    return path


def classification_qc(path, thresholds=None):
    return run_classification_qc(
        tile=TILE, date=DATE, classified_path=path, thresholds=thresholds or {}
    )


def test_mixed_confident_classes_pass_classification_qc(tmp_path):
    path = _classified(tmp_path / "c.gpkg", ["maize", "wheat", "maize", "rape"], [0.9] * 4)
    report = classification_qc(path)
    assert report["status"] == "pass"
    value = check_of(report, "class_distribution")["value"]
    assert value["counts"] == {"maize": 2, "rape": 1, "wheat": 1}
    assert value["dominant_share"] == 0.5
    assert [c["name"] for c in report["checks"]] == list(CLASSIFICATION_CHECKS)


def test_low_confidence_fraction_fails_above_its_threshold(tmp_path):
    path = _classified(tmp_path / "c.gpkg", ["maize", "wheat", "maize"], [0.9, 0.3, 0.4])
    check = check_of(classification_qc(path), "low_confidence")
    assert check["value"] == pytest.approx(2 / 3) and check["status"] == "fail"


def test_single_class_everywhere_warns(tmp_path):
    path = _classified(tmp_path / "c.gpkg", ["maize"] * 5, [0.9] * 5)
    assert check_of(classification_qc(path), "class_distribution")["status"] == "warn"


def test_many_unknown_fields_fail_class_distribution(tmp_path):
    path = _classified(tmp_path / "c.gpkg", ["unknown", "unknown", "maize"], [0.0, 0.0, 0.9])
    check = check_of(classification_qc(path), "class_distribution")
    assert check["value"]["unknown_share"] == pytest.approx(2 / 3) and check["status"] == "fail"


def test_scene_kept_out_of_classification_warns(tmp_path):
    path = _classified(tmp_path / "c.gpkg", ["qc_fail"] * 2, [0.0] * 2)
    report = classification_qc(path)
    assert report["status"] == "warn" and "qc.json failed" in report["checks"][0]["message"]


def test_empty_classified_field_set_fails(tmp_path):
    report = classification_qc(_classified(tmp_path / "c.gpkg", [], []))
    assert report["status"] == "fail" and "empty field set" in report["checks"][0]["message"]


def test_unreadable_classified_fields_fail_with_tile_date_and_file(tmp_path):
    (tmp_path / "c.gpkg").write_text("garbage")
    report = classification_qc(tmp_path / "c.gpkg")
    assert report["status"] == "fail"
    assert f"tile {TILE}, date {DATE}, file " in report["checks"][0]["message"]


# issue 18, classes 1 and 3: DR coverage against the input


def _blank_dr(paths, rows: slice, cols: slice, tags: dict | None = None) -> None:
    """Make dr nodata (0 in every band) over the given 1 m rows and columns of it."""
    with rasterio.open(paths["dr"], "r+") as dst:
        data = dst.read()
        data[:, rows, cols] = 0
        dst.write(data)
        dst.update_tags(**(tags or {}))


def test_dr_empty_over_part_of_every_window_fails_coverage_and_consistency(tmp_path):
    """The issue's case: a model returning NaN over part of each window left 56 % of dr empty."""
    paths = make_set(tmp_path)
    with rasterio.open(paths["dr"], "r+") as dst:
        data = dst.read()
        for r in range(0, data.shape[1], 160):  # the top 90 of every 160 rows, as windows would
            data[:, r : r + 90] = 0
        dst.write(data)
    report = qc(paths)
    coverage = check_of(report, "dr_coverage")
    assert coverage["status"] == "fail" and coverage["value"]["ratio"] < 0.5
    assert coverage["value"]["s2_valid_px"] == SIZE * SIZE
    consistency = check_of(report, "dr_consistency")
    assert consistency["status"] == "fail" and consistency["value"]["compared_fraction"] < 0.5
    assert report["status"] == "fail"


def test_a_single_s2_pixel_left_empty_in_dr_fails_coverage_by_default(tmp_path):
    paths = make_set(tmp_path)
    _blank_dr(paths, slice(200, 210), slice(100, 110))
    report = qc(paths)
    assert check_of(report, "dr_coverage")["value"]["dr_valid_px"] == SIZE * SIZE - 1
    assert check_of(report, "dr_coverage")["status"] == "fail"
    assert check_of(report, "dr_consistency")["status"] == "pass"  # 1599 of 1600 compared


def test_dr_coverage_threshold_comes_from_the_qc_settings(tmp_path):
    paths = make_set(tmp_path)
    _blank_dr(paths, slice(0, 40), slice(None))  # 10 % of the rows
    report = qc(paths, {"dr_coverage": {"warn": 0.95, "fail": 0.8}})
    assert check_of(report, "dr_coverage")["status"] == "warn"
    assert check_of(report, "dr_coverage")["value"]["ratio"] == pytest.approx(0.9)


def test_dr_nodata_outside_its_aoi_is_not_missing_coverage(tmp_path):
    paths = make_set(tmp_path)
    with rasterio.open(paths["s2"]) as s2:
        x0, y0 = s2.transform.c, s2.transform.f
    aoi = f"{x0},{y0 - SIZE * 10},{x0 + 200},{y0}"  # the western half
    _blank_dr(paths, slice(None), slice(200, None), {"DR_AOI": aoi, "DR_AOI_MARGIN": 0})
    report = qc(paths)
    assert check_of(report, "dr_coverage")["status"] == "pass"
    assert check_of(report, "dr_coverage")["value"]["s2_valid_px"] == SIZE * SIZE // 2
    assert check_of(report, "dr_consistency")["status"] == "pass"


# -- issue 18: zero fields fail field_count; inputs of the wrong kind are named


def test_zero_fields_fail_field_count(tmp_path):
    paths = make_set(tmp_path)
    _fields(paths["fields"], tile_grid(TILE).crs, 0, 0, geoms=[])
    check = check_of(qc(paths), "field_count")
    assert check["status"] == "fail" and check["value"] == 0


def test_zero_fields_fail_even_with_a_fail_threshold_of_zero(tmp_path):
    paths = make_set(tmp_path)
    _fields(paths["fields"], tile_grid(TILE).crs, 0, 0, geoms=[])
    check = check_of(qc(paths, {"field_count": {"warn": 0, "fail": 0}}), "field_count")
    assert check["status"] == "fail"


def test_field_count_schema_refuses_a_fail_threshold_that_never_fails():
    from tilepipe.core.settings import section_settings

    with pytest.raises(ConfigError, match="field_count"):
        section_settings("qc", {"field_count": {"fail": 0}})


def test_float_s2_is_an_input_error_naming_the_dtype(tmp_path):
    paths = make_set(tmp_path)
    with rasterio.open(paths["s2"]) as src:
        profile, data = src.profile, src.read()
    profile.update(dtype="float32", nodata=None)
    with rasterio.open(paths["s2"], "w", **profile) as dst:
        dst.write(data.astype(np.float32) / 10000)
        dst.descriptions = BANDS
    with pytest.raises(InputError, match=rf"tile {TILE}, date {DATE}, file .*s2\.tif: .*float32"):
        qc(paths)


def test_dr_of_another_dtype_fails_the_checks_that_need_it(tmp_path):
    paths = make_set(tmp_path)
    with rasterio.open(paths["dr"]) as src:
        profile, data = src.profile, src.read()
    profile.update(dtype="float32")
    with rasterio.open(paths["dr"], "w", **profile) as dst:
        dst.write(data.astype(np.float32) / 10000)
        dst.descriptions = BANDS
    report = qc(paths)
    check = check_of(report, "dr_consistency")
    assert check["status"] == "fail" and "expected dtype uint16, found float32" in check["message"]
    assert report["status"] == "fail"


def test_scl_with_four_bands_fails_the_cloud_check(tmp_path):
    paths = make_set(tmp_path)
    with rasterio.open(paths["s2"]) as src:  # an s2.tif given as scl.tif
        profile, data = src.profile, src.read()
    with rasterio.open(paths["scl"], "w", **profile) as dst:
        dst.write(data)
    check = check_of(qc(paths), "cloud_fraction")
    assert check["status"] == "fail" and "not scl.tif" in check["message"]


# issue 14: the DR scale is read from the dr.tif itself


def test_a_scale_4_dr_passes_every_check_judged_at_its_own_scale(tmp_path):
    report = qc(make_set(tmp_path, scale=4))
    assert report["status"] == "pass", [c for c in report["checks"] if c["status"] != "pass"]
    grid = check_of(report, "grid_consistent")
    assert grid["message"] == "scl on the s2 grid, dr on it at 1/4 pixel"
    assert check_of(report, "dr_coverage")["value"]["ratio"] == 1.0


def test_a_dr_whose_scale_tag_contradicts_its_pixels_fails_the_grid_check(tmp_path):
    paths = make_set(tmp_path, scale=4)
    with rasterio.open(paths["dr"], "r+") as dr:
        dr.update_tags(DR_SCALE="10")
    report = qc(paths)
    grid = check_of(report, "grid_consistent")
    assert grid["status"] == "fail" and "is not s2's at 1/10 pixel" in grid["message"]
    assert "(DR scale 10)" in grid["message"]


def test_masked_area_reports_the_share_and_area_of_the_scene_under_the_mask(tmp_path):
    report = qc(make_set(tmp_path, cloud_rows=8))  # 8 of 40 rows of class 9
    masked = check_of(report, "masked_area")
    assert masked["status"] == "pass"
    assert masked["value"] == pytest.approx(0.2)
    assert "(32000 m²)" in masked["message"] and "unknown" in masked["message"]


def test_masked_area_gives_the_fields_area_under_the_mask(tmp_path):
    paths = make_set(tmp_path)
    grid = tile_grid(TILE)
    paths["fields"].unlink()
    extra = {"masked_share": np.array([0.5, 0.0, 0.0, 0.25])}
    x0 = grid.transform.c + 1200  # make_set's window starts 120 pixels east of the tile's
    _fields(paths["fields"], grid.crs, x0, grid.transform.f - 3400, extra=extra)
    message = check_of(qc(paths), "masked_area")["message"]
    assert "6750 m² of the fields lie under it" in message  # (0.5 + 0.25) x 90 m x 100 m


@pytest.mark.parametrize(("cloud_rows", "expected"), [(24, "warn"), (38, "fail")])
def test_masked_area_warns_then_fails(tmp_path, cloud_rows, expected):
    assert status_of(qc(make_set(tmp_path, cloud_rows=cloud_rows)), "masked_area") == expected
