"""Campaign QC summary: summary.csv rows, plots, and the classifier section beside its baseline."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import rasterio

from tilepipe.report.summary import qc_summary


def _check(name, status, value, threshold=None):
    return {"name": name, "status": status, "value": value, "threshold": threshold, "message": ""}


def _write(path, tile, date, status, checks):
    path.write_text(json.dumps({"tile": tile, "date": date, "status": status, "checks": checks}))
    return str(path)


@pytest.fixture
def campaign(tmp_path):
    scene = [
        _write(
            tmp_path / "a.json",
            "33UXP",
            "2022-06-21",
            "pass",
            [
                _check("cloud_fraction", "pass", 0.1, {"warn": 0.3, "fail": 0.7}),
                _check("sr_spatial", "pass", {"shift_px": 0.05}, {"warn": 0.25, "fail": 0.5}),
            ],
        ),
        _write(
            tmp_path / "b.json",
            "31UFS",
            "2022-08-10",
            "fail",
            [
                _check("cloud_fraction", "fail", 0.9, {"warn": 0.3, "fail": 0.7}),
                _check("sr_spatial", "warn", {"shift_px": 0.3}, {"warn": 0.25, "fail": 0.5}),
            ],
        ),
    ]
    classification = [
        _write(
            tmp_path / "ca.json",
            "33UXP",
            "2022-06-21",
            "pass",
            [_check("low_confidence", "pass", 0.1, {"prob": 0.5, "warn": 0.3, "fail": 0.6})],
        )
    ]
    report = {
        "classes": ["maize", "wheat"],
        "confusion": {"classes": ["maize", "wheat"], "matrix": [[3, 1], [0, 4]]},
        "per_class": {
            "maize": {"precision": 1.0, "recall": 0.75, "f1": 0.857, "support": 4},
            "wheat": {"precision": 0.8, "recall": 1.0, "f1": 0.889, "support": 4},
        },
        "macro_f1": 0.873,
        "weighted_f1": 0.873,
        "n": 8,
    }
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps(
            {
                "field_macro_f1": 0.873,
                "weighted_f1": 0.873,
                "field_report": report,
                "split": {"kind": "field"},
                "n_fields": {"train": 20, "test": 8},
                "baseline": {
                    "name": "kNN (k=5) on field mean embeddings",
                    "macro_f1": 0.5,
                    "weighted_f1": 0.5,
                    "report": {**report, "macro_f1": 0.5},
                },
            }
        )
    )
    return tmp_path, scene, classification, str(metrics)


def test_summary_csv_has_one_row_per_scene_with_check_status_and_value(campaign):
    root, scene, classification, metrics = campaign
    qc_summary(
        scene,
        root / "qc_summary.html",
        metrics=metrics,
        classification_qc=classification,
        summary_csv=root / "qc" / "summary.csv",
    )
    rows = list(csv.DictReader((root / "qc" / "summary.csv").open()))
    by_tile = {r["tile"]: r for r in rows}
    assert len(rows) == 2
    assert (
        by_tile["31UFS"]["status"] == "fail" and by_tile["31UFS"]["cloud_fraction_value"] == "0.9"
    )
    assert (
        by_tile["31UFS"]["sr_spatial"] == "warn" and by_tile["31UFS"]["sr_spatial_value"] == "0.3"
    )
    assert by_tile["33UXP"]["classification_status"] == "pass"
    assert by_tile["33UXP"]["low_confidence_value"] == "0.1"
    assert by_tile["31UFS"]["classification_status"] == ""  # not classified (yet)


def test_plots_are_written_as_pngs(campaign):
    root, scene, classification, metrics = campaign
    plots = {k: str(root / f"{k}.png") for k in ("status", "values", "confusion")}
    qc_summary(
        scene, root / "s.html", metrics=metrics, classification_qc=classification, plots=plots
    )
    for path in plots.values():
        with rasterio.open(path) as src:
            assert src.driver == "PNG" and src.width > 100 and np.ptp(src.read()) > 0


def test_html_shows_catboost_beside_the_baseline(campaign):
    root, scene, classification, metrics = campaign
    qc_summary(scene, root / "s.html", metrics=metrics, classification_qc=classification)
    page = (root / "s.html").read_text()
    assert "<th>CatBoost</th><th>kNN (k=5) on field mean embeddings</th>" in page
    assert "<td>macro F1 (fields)</td><td>0.873</td><td>0.500</td>" in page
    assert "Per class (held-out fields)" in page


# -- issue 18: the quicklooks and the QC summary appear together or not at all


def test_qc_summary_outputs_appear_together_or_not_at_all(campaign):
    root, scene, classification, metrics = campaign
    out = root / "report"
    (out / "confusion.png").mkdir(parents=True)  # the last plot cannot be put in place
    plots = {k: str(out / f"{k}.png") for k in ("status", "values", "confusion")}
    with pytest.raises(OSError):
        qc_summary(
            scene,
            out / "qc_summary.html",
            metrics=metrics,
            classification_qc=classification,
            summary_csv=out / "summary.csv",
            plots=plots,
        )
    assert [p.name for p in out.iterdir()] == ["confusion.png"]


def _reflectance(path, pixel_m: float, size: int, dtype: str = "uint16") -> str:
    """A 4-band reflectance raster (uint16 x 10^4 or float 0-1) on tile 33UXP's grid."""
    from affine import Affine

    from tilepipe.core.raster import gtiff_profile
    from tilepipe.demo.world import render_scene

    data = render_scene(3, size, size, 1, cloud=False).hr
    data = data * 10000 if dtype == "uint16" else data
    transform = Affine(pixel_m, 0, 600000.0, 0, -pixel_m, 5300000.0)
    profile = gtiff_profile(
        width=size, height=size, count=4, dtype=dtype, crs="EPSG:32633", transform=transform
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype))
        dst.descriptions = ("B02", "B03", "B04", "B08")
    return str(path)


def test_quicklooks_with_unreadable_fields_are_an_input_error_and_leave_no_png(tmp_path):
    from tilepipe.core.errors import InputError
    from tilepipe.report.quicklooks import quicklooks

    s2, dr = _reflectance(tmp_path / "s2.tif", 10.0, 16), _reflectance(tmp_path / "dr.tif", 1, 160)
    (tmp_path / "fields.gpkg").write_text("not a geopackage")
    pngs = {k: tmp_path / "ql" / f"{k}.png" for k in ("rgb", "dr_png", "fields_png")}
    with pytest.raises(InputError, match=r"fields\.gpkg.*cannot read the fields"):
        quicklooks(s2, dr, tmp_path / "fields.gpkg", **pngs, size=64)
    assert not (tmp_path / "ql").exists() or list((tmp_path / "ql").iterdir()) == []


def test_quicklooks_of_a_float_dr_are_an_input_error(tmp_path):
    from tilepipe.core.errors import InputError
    from tilepipe.report.quicklooks import quicklooks

    s2 = _reflectance(tmp_path / "s2.tif", 10.0, 16)
    dr = _reflectance(tmp_path / "dr.tif", 1.0, 160, dtype="float32")
    pngs = {k: tmp_path / "ql" / f"{k}.png" for k in ("rgb", "dr_png", "fields_png")}
    with pytest.raises(InputError, match=r"dr\.tif: .*expected dtype uint16, found float32"):
        quicklooks(s2, dr, tmp_path / "fields.gpkg", **pngs, size=64)
    assert not (tmp_path / "ql").exists()


def test_quicklooks_of_a_scale_4_dr_draw_the_fields_at_its_pixel_size(tmp_path):
    import numpy as np
    import shapely

    from tilepipe.fields.delineate import write_fields
    from tilepipe.report.quicklooks import quicklooks

    s2, dr = _reflectance(tmp_path / "s2.tif", 10.0, 16), _reflectance(tmp_path / "dr.tif", 2.5, 64)
    field = shapely.box(600040.0, 5299880.0, 600120.0, 5299960.0)  # inside the 160 m dr
    cols = {"field_id": np.array([1]), "area_m2": np.array([field.area])}
    cols |= {k: np.array([0.0]) for k in ("perimeter_m", "score", "boundary_score")}
    write_fields(tmp_path / "f.gpkg", [field], cols, crs="EPSG:32633", tile="33UXP", date="d")
    pngs = {k: tmp_path / "ql" / f"{k}.png" for k in ("rgb", "dr_png", "fields_png")}
    quicklooks(s2, dr, tmp_path / "f.gpkg", **pngs, size=64)
    with rasterio.open(pngs["fields_png"]) as png:
        img = png.read()
    yellow = (img[0] == 255) & (img[1] == 220) & (img[2] == 0)
    rows, cols_ = np.nonzero(yellow)
    assert (rows.min(), rows.max(), cols_.min(), cols_.max()) == (16, 48, 16, 48)  # 2.5 m px
