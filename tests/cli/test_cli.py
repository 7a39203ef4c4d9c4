"""Each step runs as a plain `tilepipe STEP` command on generated data, without Snakemake."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio

from tilepipe.cli import main

from ..conftest import REPO


@pytest.fixture(scope="module")
def scene(demo, tmp_path_factory):
    """One tile-date taken through download, bicubic DR and fields by the CLI."""
    out = tmp_path_factory.mktemp("cli")
    tile, date = "33UXP", "2022-06-21"
    names = ("s2.tif", "scl.tif", "dr.tif", "fields.gpkg", "qc.json")
    paths = {name: out / name for name in names}
    window = ",".join(map(str, demo["window"]))
    common = ["--tile", tile, "--date", date]
    assert (
        main(
            [
                "download",
                *common,
                "--manifest",
                demo["manifest"],
                "--window",
                window,
                "--s2",
                str(paths["s2.tif"]),
                "--scl",
                str(paths["scl.tif"]),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "superres",
                *common,
                "--s2",
                str(paths["s2.tif"]),
                "--out",
                str(paths["dr.tif"]),
                "--method",
                "bicubic",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "fields",
                *common,
                "--dr",
                str(paths["dr.tif"]),
                "--out",
                str(paths["fields.gpkg"]),
                "--model",
                str(REPO / "models/fields_demo.pt"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "qc",
                *common,
                "--s2",
                str(paths["s2.tif"]),
                "--scl",
                str(paths["scl.tif"]),
                "--dr",
                str(paths["dr.tif"]),
                "--fields",
                str(paths["fields.gpkg"]),
                "--out",
                str(paths["qc.json"]),
            ]
        )
        == 0
    )
    return {"tile": tile, "date": date, "out": out, "window": window, "common": common, **paths}


def test_demo_writes_a_catalog_embeddings_and_labels(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--size", "32", "--tiles", "31UFS"]) == 0
    assert (tmp_path / "stac/catalog.json").is_file()
    assert (tmp_path / "tessera/registry.parquet").is_file()
    assert (tmp_path / "aef/aef_index.parquet").is_file()
    assert (tmp_path / "labels.gpkg").is_file()


def test_search_writes_the_manifest(demo, tmp_path):
    out = tmp_path / "scenes.csv"
    assert (
        main(
            [
                "search",
                "--catalog",
                demo["catalog"],
                "--tiles",
                "33UXP",
                "31UFS",
                "--start",
                "2022-01-01",
                "--end",
                "2022-12-31",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert len(out.read_text().splitlines()) == 1 + 4


def test_download_writes_s2_and_scl(scene):
    with rasterio.open(scene["s2.tif"]) as s2, rasterio.open(scene["scl.tif"]) as scl:
        assert s2.count == 4 and scl.count == 1 and s2.transform == scl.transform


def test_superres_bicubic_writes_a_10x_raster(scene):
    with rasterio.open(scene["s2.tif"]) as s2, rasterio.open(scene["dr.tif"]) as dr:
        assert (dr.width, dr.height) == (s2.width * 10, s2.height * 10)
        assert dr.tags()["DR_METHOD"] == "bicubic"


def test_superres_with_the_demo_model_tags_its_checksum(scene, tmp_path):
    out = tmp_path / "dr.tif"
    assert (
        main(
            [
                "superres",
                *scene["common"],
                "--s2",
                str(scene["s2.tif"]),
                "--out",
                str(out),
                "--model",
                str(REPO / "models/dr_demo.pt"),
            ]
        )
        == 0
    )
    with rasterio.open(out) as dr:
        assert len(dr.tags()["DR_MODEL_SHA256"]) == 64


def test_fields_writes_polygons(scene):
    info = pyogrio.read_info(scene["fields.gpkg"])
    assert info["features"] >= 1 and {"field_id", "metrics:area", "score"} <= set(info["fields"])


def test_qc_writes_a_verdict(scene):
    report = json.loads(scene["qc.json"].read_text())
    assert report["status"] in {"pass", "warn", "fail"} and report["checks"]


def test_embeddings_train_and_classify_chain(demo, scene, tmp_path):
    pairs = []
    for tile in demo["tiles"]:
        emb = tmp_path / f"{tile}.tif"
        assert (
            main(
                [
                    "embeddings",
                    "--tile",
                    tile,
                    "--year",
                    "2022",
                    "--source",
                    demo["tessera"],
                    "--window",
                    scene["window"],
                    "--out",
                    str(emb),
                ]
            )
            == 0
        )
        pairs.append(f"{tile}={emb}")
    model, metrics = tmp_path / "m.cbm", tmp_path / "m.json"
    assert (
        main(
            [
                "train",
                "--labels",
                demo["labels"],
                "--embeddings",
                *pairs,
                "--model-out",
                str(model),
                "--metrics-out",
                str(metrics),
                "--iterations",
                "50",
            ]
        )
        == 0
    )
    assert "macro_f1" in json.loads(metrics.read_text())
    out = tmp_path / "classified.gpkg"
    assert (
        main(
            [
                "classify",
                *scene["common"],
                "--fields",
                str(scene["fields.gpkg"]),
                "--embeddings",
                pairs[0].split("=")[1],
                "--model",
                str(model),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "crop" in pyogrio.read_info(out)["fields"]


def test_quicklook_and_qc_summary_write_report_files(scene, tmp_path):
    pngs = [tmp_path / f"{n}.png" for n in ("rgb", "dr", "fields")]
    assert (
        main(
            [
                "quicklook",
                "--s2",
                str(scene["s2.tif"]),
                "--dr",
                str(scene["dr.tif"]),
                "--fields",
                str(scene["fields.gpkg"]),
                "--rgb",
                str(pngs[0]),
                "--dr-png",
                str(pngs[1]),
                "--fields-png",
                str(pngs[2]),
                "--size",
                "200",
            ]
        )
        == 0
    )
    for png, side in zip(pngs, (64, 200, 200), strict=True):  # s2 is 64 px, never upsampled
        with rasterio.open(png) as src:
            assert src.count == 3 and max(src.width, src.height) == side
            assert np.ptp(src.read()) > 0
    qc = scene["qc.json"]
    html = tmp_path / "summary.html"
    assert main(["qc-summary", "--qc", str(qc), "--out", str(html)]) == 0
    assert "33UXP" in html.read_text() and html.with_suffix(".tsv").is_file()


def test_qc_summary_reads_every_scenes_qc_from_the_manifest(scene, tmp_path):
    """A campaign's thousands of qc.json paths come from a file, not the command line."""
    dates = ("2022-06-21", "2022-07-01")
    for date in dates:
        target = tmp_path / "results/33UXP" / date
        target.mkdir(parents=True)
        report = json.loads(Path(scene["qc.json"]).read_text())
        (target / "qc.json").write_text(json.dumps({**report, "date": date}))
    manifest = tmp_path / "scenes.csv"
    manifest.write_text("tile,date\n" + "".join(f"33UXP,{d}\n" for d in dates))
    html = tmp_path / "summary.html"
    args = ["qc-summary", "--manifest", str(manifest), "--results", str(tmp_path / "results")]
    assert main([*args, "--out", str(html)]) == 0
    rows = html.with_suffix(".tsv").read_text().splitlines()
    assert len(rows) == 1 + len(dates) and all(any(d in r for r in rows) for d in dates)


def test_qc_summary_without_any_qc_is_a_named_error(tmp_path, capsys):
    assert main(["qc-summary", "--out", str(tmp_path / "s.html")]) == 2
    assert "no qc.json given" in capsys.readouterr().err


def test_bad_input_exits_2_with_one_line_naming_tile_date_and_cause(demo, tmp_path, capsys):
    code = main(
        [
            "download",
            "--tile",
            "33UXP",
            "--date",
            "2030-01-01",
            "--manifest",
            demo["manifest"],
            "--s2",
            str(tmp_path / "s2.tif"),
            "--scl",
            str(tmp_path / "scl.tif"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("tilepipe download: error: tile 33UXP, date 2030-01-01")
    assert not list(tmp_path.iterdir())


def test_download_writes_the_further_bands_named_on_its_command_line_and_in_settings(
    demo, tmp_path
):
    s2 = tmp_path / "s2.tif"
    args = ["download", "--tile", "33UXP", "--date", "2022-06-21", "--manifest", demo["manifest"]]
    args += ["--window", ",".join(map(str, demo["window"])), "--s2", str(s2)]
    args += ["--scl", str(tmp_path / "scl.tif"), "--bands", "B8A,B11"]
    args += ["--settings", json.dumps({"catalog": "x", "bands": ["B05"], "resampling": "nearest"})]
    assert main(args) == 0
    with rasterio.open(s2) as src:
        assert src.descriptions == ("B02", "B03", "B04", "B08", "B05", "B8A", "B11")
