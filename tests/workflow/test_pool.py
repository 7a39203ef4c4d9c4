"""The demo campaign with a pool of GPU workers (config ``workers``), on the local executor.

Snakemake's own starter thread starts the worker when the first scene asks; every scene's
superres and fields job hands its step over and logs the step's own output; the outputs are
those of a run without a pool; and turning the pool off afterwards reruns nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO

pytestmark = pytest.mark.workflow

SCENES = [(t, d) for t in ("33UXP", "31UFS") for d in ("2022-01-12", "2022-06-21")]


def _snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env = {k: v for k, v in env.items() if not k.startswith("TILEPIPE_WORKER")}
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/local", "--cores", "2"]
    cmd += [*args, "--configfile", "config/config.yaml", "pool.yaml"]  # it takes what follows
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1200)


def _pool(work: Path, count: int) -> None:
    pool = {"tiles": ["33UXP", "31UFS"], "workers": {"count": count, "idle_s": 5}}
    (work / "pool.yaml").write_text(yaml.safe_dump(pool))


@pytest.fixture(scope="module")
def pooled(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("pool")
    for name in ("Snakefile", "workflow", "config", "profiles", "models", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    _pool(work, 1)
    run = _snakemake(work)  # the whole campaign: a rerun of it must find nothing to do
    assert run.returncode == 0, run.stderr[-4000:]
    return work


def test_snakemake_started_a_worker_when_the_first_scene_asked(pooled):
    start = (pooled / ".tilepipe" / "workers" / "logs" / "start.log").read_text()
    assert "ready in" in start


def test_every_scene_s_gpu_steps_ran_in_the_worker_and_logged_as_their_own(pooled):
    served = (pooled / ".tilepipe" / "workers" / "logs" / "start.log").read_text()
    for tile, date in SCENES:
        superres = (pooled / "logs" / "superres" / tile / f"{date}.log").read_text()
        fields = (pooled / "logs" / "fields" / tile / f"{date}.log").read_text()
        assert "superres done" in superres and "fields" in fields
        assert f"superres --tile {tile} --date {date} exit 0" in served


def test_a_scene_run_alone_writes_the_dr_the_pool_wrote(pooled, tmp_path):
    tile, date = SCENES[0]
    scene = pooled / "results" / tile / date
    cmd = [str(Path(sys.executable).parent / "tilepipe"), "superres", "--tile", tile]
    cmd += ["--date", date, "--s2", str(scene / "s2.tif"), "--out", str(tmp_path / "dr.tif")]
    config = yaml.safe_load((pooled / "config" / "config.yaml").read_text())
    cmd += ["--model", str(pooled / "models" / "dr_demo.pt")]
    cmd += ["--settings", json.dumps(config["superres"])]  # the campaign's, as the rule passes
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILEPIPE_WORKER")}
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    assert (tmp_path / "dr.tif").read_bytes() == (scene / "dr.tif").read_bytes()


def test_turning_the_pool_off_reruns_nothing(pooled):
    _pool(pooled, 0)
    try:
        run = _snakemake(pooled, "-n")
    finally:
        _pool(pooled, 1)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Nothing to be done" in run.stdout + run.stderr
