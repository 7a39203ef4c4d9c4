"""`tilepipe status`: done / failed / incomplete / pending per tile-date, read from disk only.

These tests lay out a campaign directory as the workflow leaves it (outputs, step logs,
Snakemake's run log and incomplete markers) in each state; tests/workflow/test_reliability.py
checks the same command on a real campaign with a broken scene.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tilepipe.campaign.status import SCENE_STEPS, campaign_status, incomplete_marker, targets

SCENES = [
    ("33UXP", "2022-01-12"),
    ("33UXP", "2022-06-21"),
    ("31UFS", "2022-01-12"),
    ("31UFS", "2022-06-21"),
]


def _write(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _finish(work: Path, tile: str, date: str, until: str | None = None) -> None:
    """Write the outputs of every step before `until` (all steps when None)."""
    for step, names in SCENE_STEPS:
        if step == until:
            return
        for name in names:
            text = json.dumps({"status": "warn"}) if name == "qc.json" else "x"
            _write(work / "results" / tile / date / name, text)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    rows = ["item_id,tile,date"] + [f"i{n},{t},{d}" for n, (t, d) in enumerate(SCENES)]
    _write(tmp_path / "manifests" / "scenes.csv", "\n".join(rows) + "\n")
    _finish(tmp_path, *SCENES[0])
    # a download that failed with tilepipe's one-line error
    _write(
        tmp_path / "logs/download/33UXP/2022-06-21.log",
        "INFO starting\ntilepipe download: error: tile 33UXP, date 2022-06-21, "
        "file B04.tif: truncated COG (read 2000 of 51234 bytes)\n",
    )
    # superres killed by Slurm: no tilepipe error, Snakemake's run log says why
    _finish(tmp_path, "31UFS", "2022-01-12", until="superres")
    _write(tmp_path / "logs/superres/31UFS/2022-01-12.log", "INFO 40% of windows\n")
    _write(
        tmp_path / ".snakemake/log/2026-11-23T010203.snakemake.log",
        "Error in rule superres:\n    message: SLURM-job '1234' failed, SLURM status is: "
        "'TIMEOUT'\n    jobid: 7\n    output: results/31UFS/2022-01-12/dr.tif\n",
    )
    # fields being written right now (or killed): Snakemake's incomplete marker
    _finish(tmp_path, "31UFS", "2022-06-21", until="fields")
    marker = incomplete_marker(tmp_path, "results/31UFS/2022-06-21/fields.gpkg")
    _write(marker, "")
    return tmp_path


def _status_cli(work: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tilepipe.cli", "status", "--workdir", str(work)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _by_scene(work: Path) -> dict:
    return {(s.tile, s.date): s for s in campaign_status(work)}


def test_a_scene_with_every_output_is_done_with_its_qc_verdict(work):
    status = _by_scene(work)[SCENES[0]]
    assert status.state == "done" and status.qc == "warn"


def test_a_failed_step_is_reported_with_the_cause_from_its_log(work):
    status = _by_scene(work)[("33UXP", "2022-06-21")]
    assert (status.state, status.step) == ("failed", "download")
    assert "truncated COG" in status.cause and "B04.tif" in status.cause


def test_a_job_killed_by_slurm_is_failed_with_snakemakes_message(work):
    status = _by_scene(work)[("31UFS", "2022-01-12")]
    assert (status.state, status.step) == ("failed", "superres")
    assert "TIMEOUT" in status.cause
    assert status.steps["download"] == "done" and status.steps["fields"] == "pending"


def test_an_output_marked_incomplete_is_incomplete_not_done(work):
    _write(work / "results/31UFS/2022-06-21/fields.gpkg")  # present but still marked
    status = _by_scene(work)[("31UFS", "2022-06-21")]
    assert (status.state, status.step) == ("incomplete", "fields")


def test_targets_redo_only_the_failed_scenes(work):
    failed = targets(campaign_status(work), {"failed"})
    assert failed and all(("33UXP/2022-06-21" in t or "31UFS/2022-01-12" in t) for t in failed)


def test_the_cli_prints_a_line_per_scene_and_the_counts(work):
    run = _status_cli(work)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == len(SCENES) + 1
    assert lines[-1] == "1 done, 2 failed, 1 incomplete, 0 pending of 4"


def test_without_a_manifest_the_cli_says_the_search_has_not_run(tmp_path):
    run = _status_cli(tmp_path)
    assert run.returncode == 2
    assert "no scene manifest yet" in run.stderr
