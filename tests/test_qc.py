"""QC checks on small synthetic (s2, scl, dr, fields) sets on tile 33UXP's grid."""

from __future__ import annotations

import json

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from affine import Affine

from tilepipe.errors import ConfigError, InputError
from tilepipe.grid import tile_grid
from tilepipe.qc import DEFAULT_THRESHOLDS, run_qc, write_qc

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


def _fields(path, crs, x0, y0, n=4, side=100.0):
    boxes = [shapely.box(x0 + i * side, y0 - side, x0 + (i + 1) * side - 10, y0) for i in range(n)]
    pyogrio.raw.write(
        path,
        shapely.to_wkb(np.array(boxes, dtype=object)),
        [
            np.arange(1, n + 1, dtype=np.int64),
            np.array([b.area for b in boxes]),
            np.full(n, 0.9),
            np.array([TILE] * n, dtype=object),
            np.array([DATE] * n, dtype=object),
        ],
        ["field_id", "area_m2", "score", "tile", "date"],
        layer="fields",
        driver="GPKG",
        geometry_type="Polygon",
        crs=crs,
    )


def make_set(tmp_path, *, crs=None, south_up=False, dr_shift=0, cloud_rows=0, offset=0.0):
    """Write a consistent s2/scl/dr/fields set (optionally broken one way) and return the paths."""
    grid = tile_grid(TILE)
    crs = crs or grid.crs
    transform = Affine.translation(offset, 0) @ grid.transform @ Affine.translation(120, 340)
    rng = np.random.default_rng(0)
    s2 = rng.integers(300, 4000, size=(4, SIZE, SIZE)).astype(np.uint16)
    scl = np.full((1, SIZE, SIZE), 4, dtype=np.uint8)
    scl[:, :cloud_rows] = 9
    dr = np.repeat(np.repeat(s2, 10, axis=1), 10, axis=2)
    dr = np.roll(dr, dr_shift, axis=2)
    hr_transform = transform @ Affine.scale(0.1)
    if south_up:
        # same footprint, rows stored south to north (positive y pixel size)
        transform = Affine(10, 0, transform.c, 0, 10, transform.f - 10 * SIZE)
        hr_transform = transform @ Affine.scale(0.1)
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
    assert report["summary"]["n_checks"] == 9


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
    assert set(DEFAULT_THRESHOLDS) == {
        "nodata_fraction",
        "cloud_fraction",
        "reflectance_range",
        "dr_consistency",
        "field_count",
        "field_area",
    }
