"""A corpus of bad inputs: each ends in a named error or a QC fail, and loses nothing else.

Every case starts from a good scene of the demo campaign (downloaded, bicubic DR, fields),
breaks one thing, and runs the step that meets it as a real `tilepipe` process. An error must
be one line `tilepipe STEP: error: ...` naming the tile and date (where the step has them) and
the file or cause, with exit status 2; the step's output must not exist and no temporary file
may be left beside it. A data fault that is a property of the scene (clouds, nodata, a wrong
grid) is QC's to judge: `qc.json` says fail and which check failed.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

from tilepipe.cli import main
from tilepipe.demo.tessera import write_registry
from tilepipe.embeddings.tessera import cell_name

from ..scripted import Poisoned, conv_net, save_scripted, sr_meta

TILE, DATE = "33UXP", "2022-06-21"
WHERE = f"tile {TILE}, date {DATE}"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def good(demo, tmp_path_factory) -> dict[str, Path]:
    """One good scene: s2, scl, bicubic dr and fields, made by the CLI."""
    out = tmp_path_factory.mktemp("good")
    paths = {n: out / n for n in ("s2.tif", "scl.tif", "dr.tif", "fields.gpkg")}
    common = ["--tile", TILE, "--date", DATE]
    window = ",".join(map(str, demo["window"]))
    assert main(["download", *common, "--manifest", demo["manifest"], "--window", window,
                 "--s2", str(paths["s2.tif"]), "--scl", str(paths["scl.tif"])]) == 0  # fmt: skip
    assert main(["superres", *common, "--s2", str(paths["s2.tif"]), "--out",
                 str(paths["dr.tif"]), "--method", "bicubic"]) == 0  # fmt: skip
    model = str(Path(__file__).resolve().parents[2] / "models" / "fields_demo.pt")
    assert main(["fields", *common, "--dr", str(paths["dr.tif"]), "--out",
                 str(paths["fields.gpkg"]), "--model", model]) == 0  # fmt: skip
    return paths


def tilepipe(*args: str, limit_file_bytes: int | None = None) -> subprocess.CompletedProcess:
    """Run `tilepipe ARGS` as its own process (optionally with a file-size limit)."""

    def limit() -> None:
        if limit_file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))

    return subprocess.run(
        [str(BIN / "tilepipe"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )


def assert_named_error(run: subprocess.CompletedProcess, step: str, *words: str) -> str:
    """Exit 2 with tilepipe's one-line error containing `words`; return that line."""
    assert run.returncode == 2, (run.returncode, run.stderr[-3000:])
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith(f"tilepipe {step}: error: "), run.stderr[-3000:]
    for word in words:
        assert word in line, (word, line)
    return line


def assert_nothing_left(out: Path) -> None:
    """No output where the finished one belongs, and no temporary beside it."""
    assert not out.exists()
    if out.parent.is_dir():
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def copy_s2(good: dict, tmp_path: Path, **changes) -> Path:
    """The good s2.tif rewritten with changed data, profile or transform."""
    with rasterio.open(good["s2.tif"]) as src:
        profile, data, tags = src.profile, src.read(), src.tags()
        descriptions = src.descriptions
    data = changes.pop("data", lambda d: d)(data)
    profile.update(count=data.shape[0], dtype=data.dtype, **changes)
    path = tmp_path / "s2.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
        for i, desc in enumerate(descriptions[: data.shape[0]], start=1):
            dst.set_band_description(i, desc)
    return path


def superres(s2: Path, out: Path, *extra: str, **kw) -> subprocess.CompletedProcess:
    args = ["superres", "--tile", TILE, "--date", DATE, "--s2", str(s2), "--out", str(out)]
    return tilepipe(*args, *extra, **kw)


def qc(good: dict, out: Path, **inputs: Path) -> dict:
    paths = {**good, **{f"{k}.tif": v for k, v in inputs.items()}}
    args = ["qc", "--tile", TILE, "--date", DATE, "--out", str(out)]
    args += ["--s2", str(paths["s2.tif"]), "--scl", str(paths["scl.tif"])]
    args += ["--dr", str(paths["dr.tif"]), "--fields", str(paths["fields.gpkg"])]
    run = tilepipe(*args)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(out.read_text())


def failed_checks(report: dict) -> set[str]:
    checks = report["checks"]
    items = checks.items() if isinstance(checks, dict) else ((c["name"], c) for c in checks)
    return {name for name, check in items if check["status"] == "fail"}


# ------------------------------------------------------------------ rasters into superres


def test_truncated_geotiff_is_named(good, tmp_path):
    s2 = tmp_path / "s2.tif"
    s2.write_bytes(good["s2.tif"].read_bytes()[:3000])
    out = tmp_path / "dr.tif"
    assert_named_error(superres(s2, out, "--method", "bicubic"), "superres", WHERE, "s2")
    assert_nothing_left(out)


def test_south_up_raster_is_refused(good, tmp_path):
    with rasterio.open(good["s2.tif"]) as src:
        t = src.transform
    flipped = Affine(t.a, 0, t.c, 0, -t.e, t.f + t.e * src.height)
    s2 = copy_s2(good, tmp_path, transform=flipped, data=lambda d: d[:, ::-1, :].copy())
    out = tmp_path / "dr.tif"
    assert_named_error(superres(s2, out, "--method", "bicubic"), "superres", WHERE, "north-up")
    assert_nothing_left(out)


def test_missing_band_is_refused_before_any_compute(good, tmp_path):
    s2 = copy_s2(good, tmp_path, data=lambda d: d[:3])
    out = tmp_path / "dr.tif"
    assert_named_error(superres(s2, out, "--method", "bicubic"), "superres", WHERE, "bands")
    assert_nothing_left(out)


def test_nan_filled_raster_is_refused(good, tmp_path):
    s2 = copy_s2(good, tmp_path, nodata=None, data=lambda d: np.full(d.shape, np.nan, "float32"))
    out = tmp_path / "dr.tif"
    assert_named_error(superres(s2, out, "--method", "bicubic"), "superres", WHERE)
    assert_nothing_left(out)


def test_unreadable_model_file_is_named(good, tmp_path):
    model = tmp_path / "dr_demo.pt"
    model.write_bytes(b"not a torch file")
    shutil.copy(Path(__file__).resolve().parents[2] / "models" / "dr_demo.json", tmp_path)
    out = tmp_path / "dr.tif"
    run = superres(good["s2.tif"], out, "--method", "model", "--model", str(model))
    assert_named_error(run, "superres", "dr_demo.pt")
    assert_nothing_left(out)


def test_disk_full_while_writing_leaves_no_output(good, tmp_path):
    # the kernel refuses writes past RLIMIT_FSIZE with EFBIG, as a full disk refuses with ENOSPC
    out = tmp_path / "dr.tif"
    run = superres(good["s2.tif"], out, "--method", "bicubic", limit_file_bytes=20_000)
    assert_named_error(run, "superres", WHERE)
    assert_nothing_left(out)


def test_permission_denied_on_the_results_directory_is_named(good, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    if os.geteuid() == 0:  # root ignores modes: make the directory immutable instead
        if not shutil.which("chattr"):
            pytest.skip("running as root without chattr: cannot make a directory unwritable")
        subprocess.run(["chattr", "+i", str(results)], check=True)
    else:
        results.chmod(0o555)
    try:
        out = results / "dr.tif"
        run = superres(good["s2.tif"], out, "--method", "bicubic")
        assert_named_error(run, "superres", WHERE, str(results))
        assert not out.exists()
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(results)], check=True)
        results.chmod(0o755)


# ------------------------------------------------------------------ scene faults are QC's


def test_wrong_crs_fails_qc_on_the_grid_check(good, tmp_path):
    s2 = copy_s2(good, tmp_path, crs=CRS.from_epsg(32632))
    report = qc(good, tmp_path / "qc.json", s2=s2)
    assert report["status"] == "fail" and "crs_matches_tile" in failed_checks(report)


def test_all_nodata_fails_qc_on_nodata(good, tmp_path):
    s2 = copy_s2(good, tmp_path, data=lambda d: np.zeros_like(d))
    report = qc(good, tmp_path / "qc.json", s2=s2)
    assert report["status"] == "fail" and any("nodata" in c for c in failed_checks(report))


def test_full_cloud_fails_qc_on_cloud(good, tmp_path):
    with rasterio.open(good["scl.tif"]) as src:
        profile, data = src.profile, src.read()
    scl = tmp_path / "scl.tif"
    with rasterio.open(scl, "w", **profile) as dst:
        dst.write(np.full_like(data, 9))  # SCL 9: cloud, high probability
    report = qc(good, tmp_path / "qc.json", scl=scl)
    assert report["status"] == "fail" and any("cloud" in c for c in failed_checks(report))


# ------------------------------------------------------------------ embeddings and labels


@pytest.fixture
def tessera(demo, tmp_path) -> Path:
    """A private copy of the demo's TESSERA source, safe to break."""
    return Path(shutil.copytree(demo["tessera"], tmp_path / "tessera"))


def _rehash(tessera: Path, changed: Path) -> None:
    """Keep the registries' sizes and hashes true, so the fault itself (not a hash) is caught."""
    table = pq.read_table(tessera / "registry.parquet").to_pydict()
    cells = [
        (y, cell_name(lon, lat))
        for y, lon, lat in zip(table["year"], table["lon"], table["lat"], strict=True)
    ]
    write_registry(tessera, cells)


def _first(tessera: Path, pattern: str) -> Path:
    return sorted(tessera.rglob(pattern))[0]


def embeddings(tessera: Path, out: Path, window: tuple) -> subprocess.CompletedProcess:
    args = ["embeddings", "--tile", TILE, "--year", "2022", "--source", str(tessera)]
    return tilepipe(*args, "--window", ",".join(map(str, window)), "--out", str(out))


def test_truncated_npy_is_named(demo, tessera, tmp_path):
    npy = _first(tessera, "grid_*[0-9].npy")
    npy.write_bytes(npy.read_bytes()[:1000])
    _rehash(tessera, npy)
    out = tmp_path / "embeddings.tif"
    run = embeddings(tessera, out, demo["window"])
    assert_named_error(run, "embeddings", npy.name)
    assert_nothing_left(out)


def test_embeddings_with_only_invalid_scales_are_named_all_nodata(demo, tessera, tmp_path):
    for scales in tessera.rglob("grid_*_scales.npy"):  # invalid pixels are nodata, all of them
        np.save(scales, np.load(scales) * 1e9)
        _rehash(tessera, scales)
    out = tmp_path / "embeddings.tif"
    run = embeddings(tessera, out, demo["window"])
    assert_named_error(run, "embeddings", "all NaN")
    assert_nothing_left(out)


def test_empty_label_file_is_named(demo, tmp_path):
    labels = tmp_path / "labels.gpkg"
    labels.write_bytes(b"")
    out = tmp_path / "classifier.cbm"
    run = tilepipe("train", "--labels", str(labels), "--embeddings", f"{TILE}=missing.tif",
                   "--model-out", str(out), "--metrics-out", str(tmp_path / "m.json"))  # fmt: skip
    assert_named_error(run, "train", "labels.gpkg")
    assert_nothing_left(out)


# issue 18, classes 1 and 3


def test_superres_model_with_float64_weights_is_one_named_line_with_the_cause_in_the_log(
    good, tmp_path
):
    model = save_scripted(conv_net(10, 4, 4).double(), tmp_path / "sr-f64.pt", sr_meta("sr-f64"))
    out = tmp_path / "dr.tif"
    args = ["--s2", str(good["s2.tif"]), "--out", str(out), "--model", model]
    run = tilepipe("-v", "superres", "--tile", TILE, "--date", DATE, *args)
    assert_named_error(run, "superres", WHERE, "sr-f64.pt", "model sr-f64", "double")
    assert "Traceback" in run.stderr  # the chained cause, in the debug log only
    assert_nothing_left(out)


def test_superres_model_returning_nan_is_named_instead_of_a_dr_of_nodata(good, tmp_path):
    model = save_scripted(Poisoned(10, 4, float("nan"), 100), tmp_path / "nan.pt", sr_meta("nan"))
    out = tmp_path / "dr.tif"
    run = superres(good["s2.tif"], out, "--model", model)
    assert_named_error(run, "superres", WHERE, "nan.pt", "non-finite values (NaN)", "window")
    assert_nothing_left(out)


def test_dr_empty_over_part_of_every_window_fails_qc_on_coverage(good, tmp_path):
    with rasterio.open(good["dr.tif"]) as src:
        profile, data, tags = src.profile, src.read(), src.tags()
    for r in range(0, data.shape[1], 640):  # as NaN over the top of every 64-pixel window was
        data[:, r : r + 360] = 0
    dr = tmp_path / "dr.tif"
    with rasterio.open(dr, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
    report = qc(good, tmp_path / "qc.json", dr=dr)
    assert report["status"] == "fail" and "dr_coverage" in failed_checks(report)


# issue 18, classes 7 and 8
# ------------------------------------------------- values the workflow's config check refuses


def _search(tmp_path: Path, *extra: str, start="2022-06-01", end="2022-06-30"):
    out = tmp_path / "scenes.csv"
    run = tilepipe("search", "--catalog", "nowhere", "--tiles", TILE, "--start", start,
                   "--end", end, "--out", str(out), *extra)  # fmt: skip
    return run, out


def test_search_with_end_before_start_writes_no_manifest(tmp_path):
    run, out = _search(tmp_path, start="2022-06-30", end="2022-06-01")
    assert_named_error(run, "search", "start 2022-06-30 is after end 2022-06-01")
    assert_nothing_left(out)


def test_search_with_a_window_past_the_tile_edge_is_refused(tmp_path):
    run, out = _search(tmp_path, "--window", "10900,5000,200,64")
    assert_named_error(run, "search", "setting 'window.width'", "runs past the tile")
    assert_nothing_left(out)


def test_search_with_a_cloud_limit_above_100_is_refused(tmp_path):
    run, out = _search(tmp_path, "--max-cloud", "150")
    assert_named_error(run, "search", "source.max_cloud", "maximum of 100")
    assert_nothing_left(out)


def test_fields_with_min_area_above_max_area_is_refused(good, tmp_path):
    out = tmp_path / "fields.gpkg"
    run = tilepipe("fields", "--tile", TILE, "--date", DATE, "--dr", str(good["dr.tif"]),
                   "--out", str(out), "--min-area-m2", "5000", "--max-area-m2", "1000")  # fmt: skip
    assert_named_error(run, "fields", "max_area_m2 1000.0 must exceed min_area_m2 5000.0")
    assert_nothing_left(out)


def _labels_of(demo, tmp_path: Path, wkb) -> Path:
    """The demo's labels with every geometry replaced by ``wkb``."""
    import pyogrio.raw

    meta, _, _, columns = pyogrio.raw.read(demo["labels"], layer="labels")
    path = tmp_path / "labels.gpkg"
    pyogrio.raw.write(path, np.array([wkb] * len(columns[0]), dtype=object), columns,
                      meta["fields"], layer="labels", driver="GPKG", geometry_type="Polygon",
                      crs=meta["crs"])  # fmt: skip
    return path


def _train(demo, tmp_path: Path, labels: Path, *extra: str):
    out = tmp_path / "classifier.cbm"
    embeddings = [f"{t}={demo['root']}/missing-{t}.tif" for t in demo["tiles"]]
    run = tilepipe("train", "--labels", str(labels), "--embeddings", *embeddings, "--model-out",
                   str(out), "--metrics-out", str(tmp_path / "m.json"), *extra)  # fmt: skip
    return run, out


def test_train_on_labels_with_no_valid_geometry_is_named(demo, tmp_path):
    empty = bytes.fromhex("010300000000000000")  # POLYGON EMPTY
    run, out = _train(demo, tmp_path, _labels_of(demo, tmp_path, empty))
    assert_named_error(run, "train", "labels.gpkg", "no valid label geometry")
    assert_nothing_left(out)


def test_train_refusing_invalid_labels_names_them(demo, tmp_path):
    import shapely

    bowtie = shapely.to_wkb(shapely.from_wkt("POLYGON ((0 0, 1 1, 1 0, 0 1, 0 0))"))
    labels = _labels_of(demo, tmp_path, bowtie)
    run, out = _train(demo, tmp_path, labels, "--invalid-labels", "refuse")
    assert_named_error(run, "train", "labels.gpkg", "invalid label geometries", "field_id")
    assert_nothing_left(out)


# issue 18, classes 2 and 4
# ------------------------------------------------- wrong-kind inputs; outputs all or nothing


def test_fields_on_a_float32_0_1_raster_is_named_and_writes_nothing(good, tmp_path):
    with rasterio.open(good["dr.tif"]) as src:
        profile, data, tags = src.profile, src.read(), src.tags()
    profile.update(dtype="float32", nodata=None)
    dr = tmp_path / "dr.tif"
    with rasterio.open(dr, "w", **profile) as dst:  # reflectance 0-1, as other tools write it
        dst.write(data.astype(np.float32) / 10000)
        dst.update_tags(**tags)
    out, parquet = tmp_path / "fields.gpkg", tmp_path / "fields.parquet"
    model = str(Path(__file__).resolve().parents[2] / "models" / "fields_demo.pt")
    run = tilepipe("fields", "--tile", TILE, "--date", DATE, "--dr", str(dr), "--model", model,
                   "--out", str(out), "--parquet", str(parquet))  # fmt: skip
    assert_named_error(run, "fields", WHERE, "dr.tif", "expected dtype uint16, found float32")
    assert_nothing_left(out)
    assert_nothing_left(parquet)


def test_download_whose_scl_cannot_be_put_in_place_leaves_no_s2(demo, tmp_path):
    s2, scl = tmp_path / "s2.tif", tmp_path / "scl.tif"
    scl.mkdir()  # s2.tif would be renamed into place first
    window = ",".join(map(str, demo["window"]))
    run = tilepipe("download", "--tile", TILE, "--date", DATE, "--manifest", demo["manifest"],
                   "--window", window, "--s2", str(s2), "--scl", str(scl))  # fmt: skip
    assert_named_error(run, "download", WHERE, "scl.tif")
    assert_nothing_left(s2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scl.tif"]


def test_a_scene_without_fields_fails_qc_on_field_count(good, tmp_path):
    import pyogrio.raw

    meta, _, _, data = pyogrio.raw.read(good["fields.gpkg"], layer="fields")
    fields = tmp_path / "fields.gpkg"
    empty = [values[:0] for values in data]
    pyogrio.raw.write(fields, np.array([], dtype=object), empty, list(meta["fields"]),
                      layer="fields", driver="GPKG", geometry_type="Polygon",
                      crs=meta["crs"])  # fmt: skip
    report = qc({**good, "fields.gpkg": fields}, tmp_path / "qc.json")
    assert report["status"] == "fail" and "field_count" in failed_checks(report)
