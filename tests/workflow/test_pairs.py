"""A two-date field model in the workflow (issue 14): each scene's fields job reads its partner.

The demo campaign with a two-date TorchScript model on s2.tif and `fields.pairing` windows that
put the demo's January date in window A and its June date in window B: the DAG gives each
scene's fields job its partner's image, the layer records both dates in window order, and a
campaign whose pairs leave a tile out fails that tile's fields jobs naming why, while the
other tile's go on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyogrio
import pytest
import rasterio
import yaml

from ..byo import script_two_date
from ..conftest import REPO

pytestmark = pytest.mark.workflow

WINDOWS = {"a": {"start": "01-01", "end": "03-31"}, "b": {"start": "06-01", "end": "07-31"}}
TARGETS = [
    f"results/{t}/{d}/fields.gpkg" for t in ("33UXP", "31UFS") for d in ("2022-01-12", "2022-06-21")
]


def _campaign(work: Path, pairing: dict) -> Path:
    """The workflow in ``work`` with a two-date fields model on s2.tif and ``pairing``."""
    work.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "profiles", "models", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    script_two_date(work / "models/ftw_two_date.pt")
    fields = {"model": "models/ftw_two_date.pt", "input": "s2", "pairing": pairing}
    (work / "pairs.yaml").write_text(
        yaml.safe_dump({"tiles": ["33UXP", "31UFS"], "fields": fields})
    )
    return work


def _snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/local", "--cores", "2"]
    cmd += [*args, "--configfile", "config/config.yaml", "pairs.yaml"]  # it takes what follows
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> Path:
    work = _campaign(tmp_path_factory.mktemp("pairs"), {"windows": WINDOWS})
    run = _snakemake(work, *TARGETS)
    assert run.returncode == 0, run.stderr[-4000:]
    return work


@pytest.mark.parametrize("date", ["2022-01-12", "2022-06-21"])
def test_each_scene_is_delineated_with_its_partner_in_window_order(paired, date):
    meta = pyogrio.read_info(paired / f"results/33UXP/{date}/fields.gpkg", layer="fields")
    assert meta["layer_metadata"]["FIELDS_DATES"] == "2022-01-12,2022-06-21"
    assert meta["layer_metadata"]["FIELDS_MODEL_ID"] == "ftw-two-date"


def test_the_dag_gives_the_fields_job_its_partners_image(paired):
    s2_jan = paired / "results/33UXP/2022-01-12/s2.tif"
    with rasterio.open(s2_jan, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as s2:
        s2.update_tags(CHANGED="1")  # new content: Snakemake compares checksums, not mtimes
    run = _snakemake(paired, "--dry-run", *TARGETS)
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout + run.stderr
    # the January image is the June scene's partner: both scenes' fields are redone
    assert text.count("rule fields:") == 2 and "results/33UXP/2022-06-21/fields.gpkg" in text


def test_a_scene_without_a_partner_fails_naming_why_and_the_others_go_on(tmp_path):
    pairs = [{"tile": "33UXP", "a": "2022-01-12", "b": "2022-06-21"}]
    work = _campaign(tmp_path / "w", {"pairs": pairs})
    run = _snakemake(work, *TARGETS)
    assert run.returncode != 0
    for date in ("2022-01-12", "2022-06-21"):
        assert (work / f"results/33UXP/{date}/fields.gpkg").is_file()
        assert not (work / f"results/31UFS/{date}/fields.gpkg").exists()
    log = (work / "logs/fields/31UFS/2022-06-21.log").read_text()
    assert "takes 2 dates, but the scene has no partner date" in log
    assert "no entry of fields.pairing.pairs names tile 31UFS and date 2022-06-21" in log
