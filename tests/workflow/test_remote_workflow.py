"""Remote sources end to end: `tilepipe` commands and a real Snakemake run against the loopback
server, for what only shows outside one Python call: proxy variables taking effect, AOI mode
from config to files, embeddings fetched from a TESSERA mirror (geotessera 0.7's layout) and
streamed from a Zarr store (geotessera >= 0.8's) to the same numbers, the >= 0.8 tile tree, AEF
COGs found through their index, and secrets kept out of every file a run leaves behind.

Not exercised here: Slurm job scripts (no Slurm in this test; the local executor writes none,
and network rules run on the login node through `localrules` where `cluster.network_local`),
the report (it only reads these files), and the real services.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from pyproj import Transformer

from tilepipe.core.grid import tile_grid

from ..conftest import REPO
from ..loopback import Fault

SECRET_KEY = "fake-pc-subscription-key-5f3a9c"
CDSE_SECRET = "fake-cdse-secret-8d2e71"


def _tilepipe(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).parent / "tilepipe")
    return subprocess.run(
        [exe, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_proxy_variables_carry_search_and_download_through_the_proxy(server, demo, tmp_path):
    # only the upper-case name is set: libcurl (GDAL) reads just the lower-case one
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["HTTP_PROXY"] = server.url
    manifest = tmp_path / "scenes.csv"
    search = [
        "search",
        "--catalog",
        "http://stac.example.invalid/",
        "--tiles",
        "33UXP",
        "--start",
        "2022-06-01",
        "--end",
        "2022-06-30",
        "--out",
        str(manifest),
    ]
    assert _tilepipe(search, env, tmp_path).returncode == 0
    download = ["download", "--tile", "33UXP", "--date", "2022-06-21", "--manifest"]
    download += [str(manifest), "--window", "5000,5000,64,64"]
    download += ["--s2", str(tmp_path / "s2.tif"), "--scl", str(tmp_path / "scl.tif")]
    run = _tilepipe(download, env, tmp_path)
    assert run.returncode == 0, run.stderr
    proxied = server.stats()["proxied"]
    assert any(uri.startswith("http://stac.example.invalid/search") for uri in proxied)
    assert any("/files/" in uri and uri.endswith("B08.tif") for uri in proxied)


def _aoi_around_demo_centre(tile: str, half_m: float) -> list[float]:
    """A lon/lat bbox of 2 * half_m around the centre of the 64 px demo window of ``tile``."""
    grid = tile_grid(tile)
    x, y = grid.ulx + 10 * (5000 + 32), grid.uly - 10 * (5000 + 32)
    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    west, south = to_ll.transform(x - half_m, y - half_m)
    east, north = to_ll.transform(x + half_m, y + half_m)
    return [west, south, east, north]


@pytest.fixture(scope="module")
def remote_run(provider_servers, tmp_path_factory) -> dict:
    """Search + download through Snakemake, AOI mode, Planetary-Computer signing, one 403,
    over items shaped as Planetary Computer publishes them (no scale or offset, only the
    baseline; the collection left to the provider's default)."""
    server = provider_servers("planetary_computer")
    work = tmp_path_factory.mktemp("remote_run")
    for name in ("Snakefile", "workflow", "config", "profiles", "models", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    del config["tiles"], config["window"]
    config["aoi"] = {"bbox": _aoi_around_demo_centre("33UXP", 100.0), "margin_m": 50}
    config["demo"] = {"generate": False}
    config["source"] = {
        "provider": "planetary_computer",
        "catalog": f"{server.url}/",
        "token_url": f"{server.url}/sas/token",
        "max_cloud": 100,
        "retry": {"base_delay_s": 0.01},
    }
    config["embeddings"] = {
        "source": server.mirror_url("tessera"),
        "kind": "tessera",
        "aef_dequantise": "signed_square",
    }
    (work / "config/config.yaml").write_text(yaml.safe_dump(config))
    server.settings(require_token=True, token_lifetime_s=3600)
    server.inject(Fault("status", 2, status=403, match="B02"))  # refuses both tries of one open
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PC_SDK_SUBSCRIPTION_KEY": SECRET_KEY,
        "CDSE_S3_SECRET_KEY": CDSE_SECRET,
    }
    target = "results/33UXP/2022-06-21/s2.tif"
    embeddings = "results/33UXP/2022/embeddings.tif"
    snakemake = [sys.executable, "-m", "snakemake", "--profile", "profiles/local", "--cores", "2"]
    run = subprocess.run(
        [*snakemake, target, embeddings],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    logs = "\n".join(p.read_text() for p in (work / "logs").rglob("*.log"))
    assert run.returncode == 0, run.stderr[-4000:] + logs[-4000:]
    # the report of the run, so that the secrets test reads it too
    report = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", target, "--report", "report.html"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0 and (work / "report.html").is_file(), report.stderr[-3000:]
    out = run.stdout + run.stderr + report.stdout + report.stderr
    stats = server.stats()
    return {"work": work, "stderr": out, "issued": stats["issued"], "requests": stats["requests"]}


@pytest.mark.workflow
def test_aoi_mode_plans_the_aois_tiles_and_writes_only_the_aoi_window(remote_run):
    work = remote_run["work"]
    rows = (work / "manifests/scenes.csv").read_text().splitlines()[1:]
    assert {row.split(",")[0] for row in rows} == {"33UXP"}
    with rasterio.open(work / "results/33UXP/2022-06-21/s2.tif") as src:
        # 200 m AOI + 50 m margin on each side: about 30 px, far below the 64 px demo window
        assert 28 <= src.width <= 34 and 28 <= src.height <= 34
        tags = src.tags()
        assert tags["SOURCE_PROVIDER"] == "planetary_computer"
        assert tags["HARMONISATION_FROM"] == "processing baseline"
        assert "1000" in tags["HARMONISATION"]
        assert tags["HARMONISATION_CHECK"].startswith("consistent")
        assert src.read().any()
    # the download job held its share of the source's connection budget
    assert "planetary_computer_connections=2" in remote_run["stderr"]


@pytest.mark.workflow
def test_the_embeddings_rule_fetches_the_tessera_mirror_onto_the_aoi_window(remote_run):
    work = remote_run["work"]
    with rasterio.open(work / "results/33UXP/2022/embeddings.tif") as emb:
        with rasterio.open(work / "results/33UXP/2022-06-21/s2.tif") as s2:
            assert (emb.transform, emb.shape) == (s2.transform, s2.shape)
        assert emb.tags()["EMBEDDINGS_SOURCE"] == "tessera" and np.isfinite(emb.read(1)).all()
    fetched = {path for _, path, status in remote_run["requests"] if status == 200}
    assert "/mirror/tessera/registry.parquet" in fetched
    assert "/mirror/tessera/landmasks.parquet" in fetched
    assert any(p.endswith("_scales.npy") for p in fetched)
    assert list((work / "cache/embeddings/tessera").rglob("*_scales.npy"))  # the verified cache


@pytest.mark.workflow
def test_the_embeddings_rule_streams_a_zarr_store_to_the_mirror_s_numbers(
    remote_run, provider_servers, tmp_path
):
    work = Path(shutil.copytree(remote_run["work"], tmp_path / "work", symlinks=True))
    store = provider_servers("planetary_computer").mirror_url("tessera-sc") + "/zarr/v1"
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    config["embeddings"]["source"] = store
    (work / "config/config.yaml").write_text(yaml.safe_dump(config))
    target = "results/33UXP/2022/embeddings.tif"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    snakemake = [sys.executable, "-m", "snakemake", "--profile", "profiles/local", "--cores", "2"]
    run = subprocess.run(
        [*snakemake, target, "--forcerun", "embeddings"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    with rasterio.open(work / target) as new, rasterio.open(remote_run["work"] / target) as old:
        assert new.tags()["EMBEDDINGS_STORE"] == store
        assert np.array_equal(new.read(), old.read(), equal_nan=True)


def test_embeddings_cli_reads_aef_cogs_through_the_mirrors_index(server, demo, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = tmp_path / "aef.tif"
    args = ["embeddings", "--kind", "aef", "--tile", "33UXP", "--year", "2022"]
    args += ["--source", server.mirror_url("aef"), "--window", "5000,5000,64,64"]
    run = _tilepipe([*args, "--out", str(out), "--cache", str(tmp_path / "cache")], env, tmp_path)
    assert run.returncode == 0, run.stderr
    with rasterio.open(out) as src:
        assert src.tags()["EMBEDDINGS_SOURCE"] == "aef" and np.isfinite(src.read(1)).all()
    paths = [r[1] for r in server.stats()["requests"]]
    assert "/mirror/aef/aef_index.parquet" in paths
    assert any(p.endswith("aef_33UXP.tiff") for p in paths)  # COG range reads over HTTP


@pytest.mark.parametrize(
    ("tree", "expect"),
    [("zarr/v1", "/embeddings/c/"), ("npy/v1", "/npy/v1/manifest.parquet")],
    ids=["zarr-store", "manifest-tree"],
)
def test_embeddings_cli_reads_geotessera_0_8_s_formats_over_http(
    server, demo, tmp_path, tree, expect
):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = tmp_path / "tessera.tif"
    args = ["embeddings", "--tile", "33UXP", "--year", "2022", "--window", "5000,5000,64,64"]
    args += ["--source", f"{server.mirror_url('tessera-sc')}/{tree}"]
    run = _tilepipe([*args, "--out", str(out), "--cache", str(tmp_path / "cache")], env, tmp_path)
    assert run.returncode == 0, run.stderr
    with rasterio.open(out) as src:
        assert src.tags()["EMBEDDINGS_SOURCE"] == "tessera" and np.isfinite(src.read(1)).all()
    assert any(expect in r[1] for r in server.stats()["requests"])


@pytest.mark.workflow
def test_no_token_key_or_signed_url_reaches_any_file_of_the_run(remote_run):
    work = remote_run["work"]
    issued = remote_run["issued"]
    assert issued, "the run signed no URL: nothing was tested"
    signatures = [token.rsplit("sig=", 1)[1] for token in issued]
    for needle in [SECRET_KEY, CDSE_SECRET, *signatures]:
        assert needle not in remote_run["stderr"]
    log_text = "".join(p.read_text() for p in (work / "logs").rglob("*.log"))
    assert "re-signing" in log_text  # the 403 path ran and was logged
    for path in [p for p in work.rglob("*") if p.is_file()]:
        if path.is_relative_to(work / "workflow") or path.is_relative_to(work / "models"):
            continue
        blob = path.read_bytes()
        for needle in [SECRET_KEY, CDSE_SECRET, "sig=", *signatures]:
            assert needle.encode() not in blob, f"{needle!r} found in {path}"
    with rasterio.open(work / "results/33UXP/2022-06-21/s2.tif") as src:
        assert "sig=" not in json.dumps(src.tags())
    assert (work / "report.html").stat().st_size > 0  # read above with every other file


CDSE_KEY = "AKLOOPBACKCDSECLI"


def _cdse_commands(server, tmp_path: Path, key: str) -> tuple[list, dict[str, str]]:
    """``tilepipe -v search`` and ``download`` of one CDSE scene (s3:// assets, keys in the
    environment), and the environment they run in."""
    settings = json.dumps(
        {"provider": "cdse", "endpoint_url": server.url, "retry": {"base_delay_s": 0.01}}
    )
    manifest = tmp_path / "scenes.csv"
    search = ["-v", "search", "--catalog", f"{server.url}/", "--tiles", "33UXP"]
    search += ["--start", "2022-06-21", "--end", "2022-06-21", "--out", str(manifest)]
    download = ["-v", "download", "--tile", "33UXP", "--date", "2022-06-21", "--manifest"]
    download += [str(manifest), "--window", "5000,5000,64,64"]
    download += ["--s2", str(tmp_path / "s2.tif"), "--scl", str(tmp_path / "scl.tif")]
    env = {
        **os.environ,
        "CDSE_S3_ACCESS_KEY": key,
        "CDSE_S3_SECRET_KEY": CDSE_SECRET,
        "HOME": str(tmp_path),  # no ~/.netrc of the user's
    }
    return [[*search, "--settings", settings], [*download, "--settings", settings]], env


def test_cdse_commands_read_s3_assets_and_no_secret_reaches_any_output(provider_servers, tmp_path):
    server = provider_servers("cdse")
    server.settings(s3_bucket="eodata", s3_keys=[CDSE_KEY])
    commands, env = _cdse_commands(server, tmp_path, CDSE_KEY)
    runs = [_tilepipe(args, env, tmp_path) for args in commands]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr[-3000:]
    assert "s3://eodata/" in (tmp_path / "scenes.csv").read_text()
    with rasterio.open(tmp_path / "s2.tif") as src:
        assert src.tags()["SOURCE_PROVIDER"] == "cdse" and src.read().any()
    text = "".join(r.stdout + r.stderr for r in runs)
    files = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert CDSE_SECRET not in text and CDSE_SECRET.encode() not in files


def test_cdse_download_with_a_refused_key_is_one_line_naming_the_credentials(
    provider_servers, tmp_path
):
    server = provider_servers("cdse")
    server.settings(s3_bucket="eodata", s3_keys=[CDSE_KEY])
    (search, download), env = _cdse_commands(server, tmp_path, "AKNOTTHEONE")
    assert _tilepipe(search, env, tmp_path).returncode == 0
    run = _tilepipe(download, env, tmp_path)
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert run.returncode == 2 and len(errors) == 1
    assert "tile 33UXP, date 2022-06-21" in errors[0] and "credentials" in errors[0]
    assert CDSE_SECRET not in run.stderr and not (tmp_path / "s2.tif").exists()
