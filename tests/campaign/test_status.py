"""`tilepipe status`: done / failed / incomplete / pending per tile-date, read from disk only.

These tests lay out a campaign directory as the workflow leaves it (outputs, step logs,
Snakemake's run log and incomplete markers) in each state; tests/workflow/test_reliability.py
checks the same command on a real campaign with a broken scene.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tilepipe.campaign.locks import LOCKS, OWNER, write_owner
from tilepipe.campaign.status import SCENE_STEPS, campaign_status, incomplete_marker, targets
from tilepipe.core.scratch import Owner, host_hash, this_process

from ..core.test_scratch import dead_owner

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
    # fields being written right now: Snakemake's incomplete marker while a Snakemake (this
    # process stands in for it) holds the working directory's lock
    _finish(tmp_path, "31UFS", "2022-06-21", until="fields")
    marker = incomplete_marker(tmp_path, "results/31UFS/2022-06-21/fields.gpkg")
    _write(marker, "")
    _write(tmp_path / LOCKS / "0.input.lock")
    write_owner(tmp_path)
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


# issue 18, classes 5 and 6


def _kill_snakemake_stand_in(work: Path) -> None:
    """The lock stays, its recorded holder is a process that has exited (a killed Snakemake)."""
    owner = dead_owner()
    record = {"host": socket.gethostname(), "pid": owner.pid, "start": str(owner.start)}
    (work / OWNER).write_text(json.dumps(record))


def test_a_marker_without_its_output_after_a_killed_run_is_pending_as_snakemake_plans_it(work):
    _kill_snakemake_stand_in(work)
    status = _by_scene(work)[("31UFS", "2022-06-21")]
    assert (status.state, status.step) == ("pending", "fields")


def test_a_marker_with_its_output_after_a_killed_run_is_incomplete(work):
    _kill_snakemake_stand_in(work)
    _write(work / "results/31UFS/2022-06-21/fields.gpkg")  # an orphan finished it
    status = _by_scene(work)[("31UFS", "2022-06-21")]
    assert (status.state, status.step) == ("incomplete", "fields")


def test_a_marker_without_its_output_and_without_any_snakemake_is_not_incomplete(work):
    (work / LOCKS / "0.input.lock").unlink()  # Snakemake ended (removes its lock)
    status = _by_scene(work)[("31UFS", "2022-06-21")]
    assert status.steps["fields"] == "pending"


def _leftover(folder: Path, name: str, size: int) -> Path:
    path = folder / f".{name}.tmp-{dead_owner().tag}-abcd1234.tif"
    _write(path, "x" * size)
    return path


def test_leftover_temporaries_are_counted_per_scene_in_bytes(work):
    scene = work / "results/33UXP/2022-01-12"
    _leftover(scene, "dr.tif", 1500)
    _leftover(scene / "dr.tif.parts", "c000000000_r000000000_000000016.tif", 500)
    status = _by_scene(work)
    assert status[("33UXP", "2022-01-12")].leftover_bytes == 2000
    assert status[SCENES[1]].leftover_bytes == 0


def test_temporaries_of_live_or_foreign_processes_are_no_leftovers(work):
    scene = work / "results/33UXP/2022-01-12"
    live = this_process()
    foreign = Owner(dead_owner().pid, 1, host_hash("another-node"))
    for owner in (live, foreign):
        _write(scene / f".dr.tif.tmp-{owner.tag}-abcd1234.tif", "x" * 100)
    assert _by_scene(work)[("33UXP", "2022-01-12")].leftover_bytes == 0


def test_the_cli_reports_the_space_leftovers_hold(work):
    _leftover(work / "results/33UXP/2022-01-12", "dr.tif", 11_000_000)
    run = _status_cli(work)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    scene = next(line for line in lines if line.startswith("33UXP  2022-01-12"))
    assert scene.endswith("[leftovers 11.0 MB]")
    assert lines[-1].startswith("1 done, 2 failed, 1 incomplete, 0 pending of 4; 1 leftover")
    assert "11.0 MB" in lines[-1]
