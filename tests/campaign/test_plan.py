"""`tilepipe plan`: jobs, sbatch calls, GPU-hours, billing and storage before anything runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tilepipe.campaign.plan import (
    assumptions,
    billing_units,
    configured_dr_scale,
    count_jobs,
    load_profile,
    plan,
    profile_value,
)

from ..byo import export_x4
from ..conftest import REPO

CLUSTERS = ("saga", "betzy", "lumi", "poznan")


def _plan_json(*args: str, cwd: Path = REPO) -> dict:
    run = subprocess.run(
        [sys.executable, "-m", "tilepipe.cli", "plan", "--json", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _rules(result: dict) -> dict[str, dict]:
    return {r["rule"]: r for r in result["rules"]}


def test_profile_values_are_read_as_snakemake_reads_them():
    assert profile_value("120 * attempt", attempt=3) == 360
    assert profile_value("'small-g'") == "small-g"
    assert profile_value(7) == 7
    # arithmetic on `attempt` only: anything else is kept as text, never evaluated
    assert profile_value("__import__('os')") == "__import__('os')"


def test_job_counts_follow_the_dag_shape():
    scenes = [("33UXP", "2022-01-12"), ("33UXP", "2022-06-21"), ("31UFS", "2023-06-21")]
    counts = count_jobs(scenes, ["33UXP", "31UFS"], 2022, demo=False)
    assert counts["superres"] == counts["download"] == counts["classify"] == 3
    # tile-years: the classifier's year for every tile, plus each scene's own year
    assert counts["embeddings"] == 3
    assert counts["train_classifier"] == 1 and "demo_campaign" not in counts


def test_lumi_gpu_billing_follows_the_gcd_rule():
    # 0.5 GPU-h per GCD-hour × max(GCDs, cores/8, mem/64 GB)
    assert billing_units("lumi", "small-g", 1, 7, 60 * 1024, 2.0) == pytest.approx(1.0)
    assert billing_units("lumi", "small-g", 1, 16, 60 * 1024, 2.0) == pytest.approx(2.0)
    assert billing_units("betzy", "accel", 1, 16, 60000, 1.0) == 16
    assert billing_units("poznan", "proxima", 1, 8, 60000, 1.0) is None


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_plan_puts_gpu_rules_on_gpus_and_network_rules_where_the_profile_says(cluster):
    profile = load_profile(REPO / "profiles" / cluster)
    config = {"tiles": ["33UXP"], "window": {"width": 160, "height": 160}}
    plans = {p.rule: p for p in plan(config, profile, [("33UXP", "2022-06-21")])}
    assert plans["superres"].gpus == plans["fields"].gpus == 1
    assert plans["qc"].gpus == 0 and plans["all"].where == "local"
    local = profile["config"]["cluster"]["network_local"]
    assert (plans["download"].where == "local") == local


def test_ten_thousand_small_scenes_are_far_fewer_sbatch_calls_within_queue_limits():
    result = _plan_json(
        "--profile", "profiles/lumi", "--tiles-count", "1000", "--dates-per-tile", "10",
        "--window", "200,200",
    )  # fmt: skip
    rules = _rules(result)
    assert rules["superres"]["jobs"] == 10_000
    total_sbatch = sum(r["submissions"] for r in result["rules"])
    assert total_sbatch <= 500, total_sbatch
    # each sbatch of an array carries at most `jobs` (150 < LUMI's 200 per user) tasks
    assert rules["download"]["submissions"] == -(-10_000 // 150)


def test_full_tile_plan_states_storage_and_gpu_hours_and_its_assumptions():
    result = _plan_json("--profile", "profiles/saga", "--window", "full", "--tiles-count", "1")
    rules = _rules(result)
    # one 10x full tile is ~100 GB of DR output (4 bands, uint16, uncompressed)
    assert 90e9 < rules["superres"]["storage_bytes"] < 110e9
    assert rules["superres"]["gpu_hours"] > 0 and rules["qc"]["gpu_hours"] == 0
    assert rules["superres"]["billing"] > 0
    assert any("runtimes" in a for a in result["assumptions"])
    assert any("billing" in a and "NRIS" in a for a in result["assumptions"])


@pytest.mark.workflow
def test_plan_job_counts_match_a_snakemake_dry_run(tmp_path):
    for name in ("Snakefile", "workflow", "config", "profiles", "models", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    config_path = tmp_path / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["tiles"] = ["33UXP", "31UFS"]  # `tilepipe plan` reads the tiles from the file
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    demo = [
        "demo={generate: true, out: demo_data, size: 64, seed: 0}",
        "window={col_off: 5000, row_off: 5000, width: 64, height: 64}",
    ]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    smk = [sys.executable, "-m", "snakemake", "--cores", "1"]
    search = subprocess.run(
        [*smk, "search_scenes", "--config", *demo],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert search.returncode == 0, search.stderr[-3000:]
    dry = subprocess.run(
        [*smk, "-n", "--config", *demo], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr[-3000:]
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", dry.stdout, re.M))
    planned = _rules(_plan_json(cwd=tmp_path))
    for rule, count in stats.items():
        if rule == "total":
            continue
        # rules already run (demo_campaign, search_scenes) are not in the dry-run's stats
        assert planned[rule]["jobs"] == int(count), (rule, count, planned[rule])


# issue 14: the plan follows the configured DR model's scale


def test_storage_and_runtime_of_dr_follow_the_models_scale():
    config = {"tiles": ["33UXP"], "window": "full", "superres": {"method": "model"}}
    scenes = [("33UXP", "2022-06-21")]
    at = {s: {p.rule: p for p in plan(config, {}, scenes, dr_scale=s)} for s in (4, 10)}
    assert at[10]["superres"].storage_bytes == pytest.approx(4 * 2 * 10980**2 * 100)
    assert at[4]["superres"].storage_bytes == pytest.approx(at[10]["superres"].storage_bytes * 0.16)
    assert at[4]["fields"].hours < at[10]["fields"].hours  # fields run on the 2.5 m dr.tif
    assert at[4]["download"].storage_bytes == at[10]["download"].storage_bytes


def test_the_dr_scale_is_read_from_the_configured_models_sidecar(tmp_path):
    model = export_x4(tmp_path / "sr4.pt2")
    assert configured_dr_scale({"superres": {"model": str(model)}}) == 4
    assert configured_dr_scale({"superres": {"model": "models/dr_demo.pt"}}, REPO) == 10
    assert configured_dr_scale({"superres": {"method": "bicubic", "model": "nope.pt"}}) == 10


def test_the_plan_names_the_dr_scale_among_its_assumptions():
    result = _plan_json("--window", "full", "--tiles-count", "1")
    assert any("DR scale x10 (1 m dr.tif pixels" in a for a in result["assumptions"])


def test_s2_storage_grows_with_the_further_bands_the_models_take():
    config = {"tiles": ["33UXP"], "window": "full"}
    scenes = [("33UXP", "2022-06-21")]
    by = {n: {p.rule: p for p in plan(config, {}, scenes, more_bands=n)} for n in (0, 2)}
    grown = by[2]["download"].storage_bytes - by[0]["download"].storage_bytes
    assert grown == pytest.approx(2 * 2 * 10980**2)  # two more uint16 bands on the 10 m grid
    notes = assumptions({}, config, "test", 10, ("B8A", "B11"))
    assert "s2.tif bands: B02 B03 B04 B08 B8A B11" in " ".join(notes)


def test_the_plan_says_how_a_two_date_model_pairs_the_scenes():
    windows = {"a": {"start": "04-01", "end": "05-31"}, "b": {"start": "08-01", "end": "09-30"}}
    config = {"tiles": ["33UXP"], "fields": {"pairing": {"windows": windows}}}
    notes = " ".join(assumptions({}, config, "test"))
    assert "a two-date model, each fields job also reads its partner's image" in notes
    assert "windows a 04-01..05-31, b 08-01..09-30" in notes
    assert "two-date" not in " ".join(assumptions({}, {"tiles": ["33UXP"]}, "test"))


def _layouts(result: dict) -> dict[str, dict]:
    return {lay["layout"].split(" of ")[0]: lay for lay in result["gpu_layouts"]}


def test_the_plan_shows_the_gpu_steps_fixed_and_engine_time_in_both_layouts():
    result = _plan_json(
        "--profile", "profiles/lumi", "--tiles-count", "1000", "--dates-per-tile", "10",
        "--window", "200,200",
    )  # fmt: skip
    old, pool = _layouts(result)["a GPU job per scene"], _layouts(result)["pool"]
    assert old["gpu_jobs"] == 20_000 and pool["gpu_jobs"] == 4  # superres and fields per scene
    assert old["engine_s"] == pool["engine_s"]  # the same work, billed differently
    assert pool["gpu_hours"] < old["gpu_hours"] / 10
    assert pool["engine_share"] > 0.5 > old["engine_share"]
    assert pool["billing"] < old["billing"]


def test_on_full_tiles_the_pool_bills_what_a_job_per_scene_does_but_its_idle_tails():
    result = _plan_json("--profile", "profiles/saga", "--window", "full", "--tiles-count", "4")
    old, pool = _layouts(result)["a GPU job per scene"], _layouts(result)["pool"]
    idle_h = pool["gpu_jobs"] * 60 / 3600  # workers.idle_s's default, once per worker
    assert pool["gpu_hours"] <= old["gpu_hours"] + idle_h


def test_with_a_pool_the_gpu_steps_are_local_clients_and_the_workers_the_gpu_jobs(tmp_path):
    config = yaml_config(tmp_path, {"workers": {"count": 3}})
    result = _plan_json(
        "--profile", "profiles/saga", "--configfile", str(config), "--tiles-count", "10",
        "--dates-per-tile", "4", "--window", "200,200",
    )  # fmt: skip
    rules = _rules(result)
    assert rules["superres"]["where"] == rules["fields"]["where"] == "local"
    assert rules["superres"]["gpus"] == rules["fields"]["gpus"] == 0
    assert rules["gpu_worker"]["jobs"] == 3 and rules["gpu_worker"]["gpus"] == 1
    assert rules["gpu_worker"]["partition"] == "a100"


def yaml_config(tmp_path: Path, extra: dict) -> Path:
    """The workflow's config with ``extra`` merged in, as a campaign's configfile."""
    import yaml

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump({**config, **extra}))
    return path


def test_a_tiles_own_window_sizes_its_scenes_in_the_plan():
    from tilepipe.campaign.plan import scenes_mpx

    config = {
        "window": {"col_off": 0, "row_off": 0, "width": 200, "height": 200},
        "windows": {"34UBU": {"col_off": 0, "row_off": 0, "width": 100, "height": 100}},
    }
    scenes = [("33UXP", "2022-01-12"), ("34UBU", "2022-01-12")]
    assert scenes_mpx(config, scenes) == pytest.approx((0.04 + 0.01) / 2)
    assert scenes_mpx({**config, "windows": {}}, scenes) == pytest.approx(0.04)
