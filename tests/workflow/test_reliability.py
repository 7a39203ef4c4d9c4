"""Kills lose nothing, bad tiles stay contained, and a rerun redoes only what failed.

Real Snakemake runs of the demo campaign (64 px, `profiles/local`) in a temporary directory:

- kill trials: SIGKILL the Snakemake process, or one running `tilepipe` step, at a random moment
  (seeded by `TILEPIPE_KILL_SEED`, `TILEPIPE_KILL_TRIALS` trials each, 2 by default); then every
  declared output on disk (the files Snakemake's `--summary` lists for the campaign, never
  resume state such as `dr.tif.parts/`) must be complete (rasters read to the last block,
  vectors and JSON parse), rerunning the same command must finish the campaign, resume from
  any journaled slabs and remove them, and outputs Snakemake had finished must not be redone;
- containment: one scene's B04 asset truncated; the other scenes finish, `tilepipe status`
  names the failed scene and the cause, and after the asset is repaired the targets `tilepipe
  status --targets failed` prints redo that scene alone;
- orphans: Snakemake SIGKILLed while a `superres`, stopped by `TILEPIPE_STOP_AFTER_SLABS=1`
  right after journaling a slab, is its running job; `tilepipe status` agrees with
  `snakemake -n`, and the rerun stops the orphan before any superres starts (its writer lock
  would refuse the rerun's job otherwise), resumes from the orphan's journal and leaves
  nothing to do.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyogrio
import pytest
import rasterio

from tilepipe.campaign.status import SCENE_STEPS, campaign_status, incomplete_marker
from tilepipe.engine.journal import STOP_AFTER_SLABS_ENV

from ..conftest import REPO

pytestmark = pytest.mark.workflow

BIN = Path(sys.executable).parent
TILES = ("33UXP", "31UFS")
DATES = ("2022-01-12", "2022-06-21")
CONFIG = (
    "demo={generate: true, out: demo_data, size: 64, seed: 0}",
    "tiles=[33UXP, 31UFS]",
    "window={col_off: 5000, row_off: 5000, width: 64, height: 64}",
)
BROKEN = ("31UFS", "2022-06-21")
BROKEN_ASSET = "demo_data/stac/sentinel-2-l2a/S2B_31UFS_20220621_0_L2A/B04.tif"
TRIALS = int(os.environ.get("TILEPIPE_KILL_TRIALS", "2"))
SEED = os.environ.get("TILEPIPE_KILL_SEED", "7")  # another seed draws other kill moments


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def _command(*targets: str) -> list[str]:
    smk = [sys.executable, "-m", "snakemake", "--profile", "profiles/local", "--cores", "2"]
    return [*smk, *targets, "--config", *CONFIG]


def _snakemake(work: Path, *targets: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(*targets), cwd=work, env=_env(), capture_output=True, text=True, timeout=1200
    )


def _copy_workflow(work: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "profiles", "models", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    return work


def _declared_outputs(work: Path) -> list[str]:
    """Every output file the campaign's rules declare, as Snakemake's `--summary` lists them."""
    run = _snakemake(work, "--summary")
    assert run.returncode == 0, run.stderr[-4000:]
    rows = [line.split("\t") for line in run.stdout.splitlines()]
    assert rows and rows[0][0] == "output_file", run.stdout[:2000]
    return [row[0] for row in rows[1:] if row and row[0]]


def _outputs(work: Path, declared: list[str]) -> list[Path]:
    """The declared outputs that are on disk now."""
    return [work / p for p in declared if (work / p).is_file()]


def _journaled(work: Path) -> dict[Path, int]:
    """Resume directories left in `results/` with the number of slabs their journals hold."""
    found = {}
    for parts in (work / "results").rglob("*.parts"):
        journal = parts / "journal.jsonl"
        lines = journal.read_text().splitlines()[1:] if journal.is_file() else []
        found[parts] = sum(1 for line in lines if '"file": "' in line)  # line 1: the fingerprint
    return found


def _step_log(work: Path, parts: Path) -> Path:
    """The step log of the superres job that owns a `results/<tile>/<date>/dr.tif.parts`."""
    date, tile = parts.parent.name, parts.parent.parent.name
    return work / "logs" / "superres" / tile / f"{date}.log"


def _assert_complete(path: Path) -> None:
    """Read the whole file with the library that reads it in the workflow."""
    if path.suffix == ".tif":
        with rasterio.open(path) as src:
            src.read()  # every block: a truncated file fails here
    elif path.suffix == ".gpkg":
        pyogrio.read_info(path)
        pyogrio.raw.read(path)
    elif path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix == ".png":
        with rasterio.open(path) as src:
            src.read()
    else:
        assert path.stat().st_size > 0, path


def _finished(work: Path, declared: list[str]) -> dict[Path, int]:
    """Outputs Snakemake considers finished (no incomplete marker), with their mtimes."""
    return {
        p: p.stat().st_mtime_ns
        for p in _outputs(work, declared)
        if not incomplete_marker(work, str(p.relative_to(work))).exists()
    }


def _steps_running(work: Path) -> list[int]:
    """PIDs of `tilepipe` step processes running in `work`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd == str(work) and any(c.endswith(b"/tilepipe") for c in cmd[:2]):
            pids.append(int(proc.name))
    return pids


def _wait_steps_gone(work: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while _steps_running(work) and time.monotonic() < deadline:
        time.sleep(0.5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """An uninterrupted campaign: how long it takes here (kill moments are drawn within it) and
    the outputs its rules declare."""
    work = _copy_workflow(tmp_path_factory.mktemp("reference"))
    started = time.monotonic()
    run = _snakemake(work)
    assert run.returncode == 0, run.stderr[-4000:]
    seconds = time.monotonic() - started
    declared = _declared_outputs(work)
    assert all((work / p).is_file() for p in declared)
    return {"seconds": seconds, "declared": declared}


def _kill_and_rerun(work: Path, kill, rng: random.Random, reference: dict) -> str:
    """Start the campaign, `kill` it at a random moment, check what is left, rerun; a summary."""
    seconds, declared = reference["seconds"], reference["declared"]
    proc = subprocess.Popen(
        _command(), cwd=work, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    moment = rng.uniform(0.1, 0.9) * seconds
    time.sleep(moment)
    what = kill(proc, work)
    proc.wait(timeout=1200)
    _wait_steps_gone(work)  # a killed Snakemake's running step may still finish its file
    for path in _outputs(work, declared):
        _assert_complete(path)
    before = _finished(work, declared)
    journaled = _journaled(work)
    rerun = _snakemake(work)
    assert rerun.returncode == 0, (what, rerun.stderr[-4000:])
    assert all((work / p).is_file() for p in declared), what
    redone = [p for p, mtime in before.items() if p.stat().st_mtime_ns != mtime]
    assert not redone, (what, redone)
    # resume state keeps its promise: the rerun resumed from the slabs and removed them
    for parts, slabs in journaled.items():
        assert not parts.exists(), (what, parts)
        if slabs:
            assert "resuming after" in _step_log(work, parts).read_text(), (what, parts)
    resumed = sum(1 for slabs in journaled.values() if slabs)
    return (
        f"{what} at {moment:.1f} s: {len(before)} finished outputs kept, "
        f"{resumed} journaled output(s) resumed, rerun completed"
    )


def _kill_snakemake(proc: subprocess.Popen, work: Path) -> str:
    proc.send_signal(signal.SIGKILL)
    return "SIGKILL snakemake"


def _kill_a_step(proc: subprocess.Popen, work: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        steps = _steps_running(work)
        if steps:
            try:  # the command line first: a killed process has none
                cmd = Path(f"/proc/{steps[0]}/cmdline").read_bytes().split(b"\0")
            except OSError:
                cmd = []
            os.kill(steps[0], signal.SIGKILL)
            return "SIGKILL step " + " ".join(c.decode() for c in cmd[1:3])
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    return "no step running to kill"


@pytest.mark.parametrize("kill", [_kill_snakemake, _kill_a_step], ids=["snakemake", "step"])
def test_a_killed_campaign_resumes_losing_nothing_and_redoing_only_unfinished_jobs(
    kill, reference, tmp_path
):
    rng = random.Random(f"{kill.__name__}-{SEED}")
    for trial in range(TRIALS):
        work = _copy_workflow(tmp_path / f"trial{trial}")
        print(f"trial {trial}:", _kill_and_rerun(work, kill, rng, reference), flush=True)
        shutil.rmtree(work)  # many trials in a row: keep the disk use of one


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> dict:
    """A campaign run with one scene's B04 asset truncated (the original bytes kept aside)."""
    work = _copy_workflow(tmp_path_factory.mktemp("broken"))
    demo = [str(BIN / "tilepipe"), "demo", "--out", "demo_data", "--tiles", *TILES]
    subprocess.run([*demo, "--size", "64", "--seed", "0"], cwd=work, check=True, timeout=300)
    asset = work / BROKEN_ASSET
    original = asset.read_bytes()
    asset.write_bytes(original[:2000])
    run = _snakemake(work)
    return {"work": work, "run": run, "asset": asset, "original": original}


def test_a_corrupt_asset_fails_its_scene_alone_with_a_named_cause(broken):
    work, run = broken["work"], broken["run"]
    assert run.returncode != 0
    for tile in TILES:
        for date in DATES:
            classified = work / "results" / tile / date / "fields_classified.gpkg"
            assert classified.is_file() == ((tile, date) != BROKEN), (tile, date)
    log = (work / "logs/download/31UFS/2022-06-21.log").read_text()
    assert "tile 31UFS, date 2022-06-21" in log and "B04" in log
    assert not list((work / "results" / BROKEN[0] / BROKEN[1]).glob("*"))


def test_status_names_the_failed_scene_and_why(broken):
    run = subprocess.run(
        [str(BIN / "tilepipe"), "status"], cwd=broken["work"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    scenes = [line for line in run.stdout.splitlines()[:-1] if " season " not in line]
    lines = {tuple(line.split()[:2]): line for line in scenes}
    assert " failed " in lines[BROKEN] and "download:" in lines[BROKEN] and "B04" in lines[BROKEN]
    assert all(" done " in line for scene, line in lines.items() if scene != BROKEN)
    assert run.stdout.splitlines()[-1].startswith("3 done, 1 failed")


def test_rerunning_the_failed_targets_redoes_that_scene_alone(broken):
    work = broken["work"]
    broken["asset"].write_bytes(broken["original"])  # the user fixes (or re-fetches) the asset
    targets = subprocess.run(
        [str(BIN / "tilepipe"), "status", "--targets", "failed"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert targets and all("/".join(BROKEN) in t for t in targets)
    before = _finished(work, _declared_outputs(work))
    run = _snakemake(work, *targets)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (work / "results" / BROKEN[0] / BROKEN[1] / "fields_classified.gpkg").is_file()
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in before.items())


# issue 18, classes 5 and 6

#: Steps whose status `tilepipe status` reports per tile-date (the rule of the same name).
SCENE_RULES = {step for step, _ in SCENE_STEPS}


def _stopped_superres(work: Path, timeout: float = 900) -> tuple[int, str]:
    """(PID, --out) of a `tilepipe superres` of `work` once it has stopped at the fault hook."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in _steps_running(work):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if b"superres" in cmd and state == "T":
                return pid, cmd[cmd.index(b"--out") + 1].decode()
        time.sleep(0.2)
    raise AssertionError("no superres stopped at its fault hook")


def _planned(work: Path) -> set[tuple[str, str, str]]:
    """(rule, tile, date) of the per-scene jobs `snakemake -n` would run now."""
    run = _snakemake(work, "-n")
    assert run.returncode == 0, run.stderr[-4000:]
    jobs = set()
    text = run.stdout + run.stderr
    for block in re.split(r"\n\s*\n", text):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        tile = re.search(r"^\s+wildcards:.*\btile=(\w+)", block, re.M)
        date = re.search(r"^\s+wildcards:.*\bdate=([\d-]+)", block, re.M)
        if rule and tile and date and rule[1] in SCENE_RULES:
            jobs.add((rule[1], tile[1], date[1]))
    return jobs


def _status_todo(work: Path) -> set[tuple[str, str, str]]:
    """(step, tile, date) that `tilepipe status` does not call done."""
    return {
        (step, s.tile, s.date)
        for s in campaign_status(work)
        for step, state in s.steps.items()
        if state != "done"
    }


@pytest.fixture(scope="module")
def orphaned(tmp_path_factory) -> Iterator[dict]:
    """A campaign whose Snakemake was SIGKILLed while a superres, stopped at its fault hook
    after one journaled slab, was writing its journal: that step is the orphan."""
    work = _copy_workflow(tmp_path_factory.mktemp("orphan"))
    env = {**_env(), STOP_AFTER_SLABS_ENV: "1"}
    proc = subprocess.Popen(
        _command(), cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        pid, out = _stopped_superres(work)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    _wait_only_stopped(work)  # the orphans that are not stopped finish: a still picture
    yield {"work": work, "pid": pid, "out": out}
    for step in _steps_running(work):  # stopped orphans would wait forever
        os.kill(step, signal.SIGKILL)


def _wait_only_stopped(work: Path, timeout: float = 300) -> None:
    """Wait until every `tilepipe` step of `work` has ended or stopped itself."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for pid in _steps_running(work):
            try:
                states.append(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
            except OSError:
                continue
        if all(state == "T" for state in states):
            return
        time.sleep(0.5)


def test_status_agrees_with_snakemake_on_what_a_killed_run_left_to_do(orphaned):
    work = orphaned["work"]
    assert _status_todo(work) == _planned(work)
    assert Path(f"/proc/{orphaned['pid']}").exists()  # a dry-run leaves the orphan alone


def test_the_rerun_stops_the_orphan_before_writing_its_journal_and_resumes_from_it(orphaned):
    work, pid, out = orphaned["work"], orphaned["pid"], orphaned["out"]
    rerun = _snakemake(work)
    # the orphan still held its output's writer lock: had it run on, the rerun's superres
    # would have been refused (exit 2) and the campaign would not have finished
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    said = rerun.stderr.index("orphaned process(es)")
    assert str(pid) in rerun.stderr[said : said + 400]
    assert said < rerun.stderr.index("rule superres")  # stopped before any superres started
    assert not Path(f"/proc/{pid}").exists()
    tile, date = Path(out).parent.parent.name, Path(out).parent.name
    log = (work / "logs" / "superres" / tile / f"{date}.log").read_text()
    assert "resuming after" in log and "being written by" not in log
    assert not Path(work / f"{out}.parts").exists()


def test_after_the_rerun_status_and_snakemake_agree_nothing_is_left(orphaned):
    work = orphaned["work"]
    if Path(f"/proc/{orphaned['pid']}").exists():
        pytest.skip("needs the rerun of the test before")
    assert _status_todo(work) == set() == _planned(work)
    assert all(s.state == "done" and not s.leftover_bytes for s in campaign_status(work))
    assert not list((work / "results").rglob(".*.tmp-*"))
