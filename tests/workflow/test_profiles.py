"""Cluster profiles put every rule of the demo campaign where that cluster wants it.

No cluster is needed: each profile dry-runs the demo campaign (`snakemake --profile profiles/X
-n`) and the resources Snakemake would hand to `sbatch` are checked rule by rule against the
table below, written from the centres' documentation (docs/clusters.md). Apptainer is not
installed here: a stand-in that only answers `--version` lets the dry-run plan container jobs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO

CLUSTERS = ("saga", "lumi", "betzy", "poznan")
GPU_RULES = {"superres", "fields"}
NETWORK_RULES = {"search_scenes", "download", "embeddings"}
LOCAL_RULES = {"all", "demo_campaign", "qc_summary"}

#: What each cluster wants (docs/clusters.md): partitions, the GPU request, per-GPU-job limits,
#: queue limits, whether compute nodes reach the internet and whether the GPUs are NVIDIA.
TABLE = {
    "saga": dict(
        cpu="normal",
        gpu="a100",
        gpu_key=("gpu", "1"),
        max_cpus=8,
        max_mem_mb=None,
        max_jobs=50,
        network_local=True,
        nvidia=True,
    ),
    "lumi": dict(
        cpu="small",
        gpu="small-g",
        gpu_key=("gres", "gpu:1"),
        max_cpus=7,
        max_mem_mb=64 * 1024,
        max_jobs=200,
        network_local=False,
        nvidia=False,
    ),
    "betzy": dict(
        cpu="preproc",
        gpu="accel",
        gpu_key=("gpu", "1"),
        max_cpus=16,
        max_mem_mb=None,
        max_jobs=16,
        network_local=True,
        nvidia=True,
    ),
    "poznan": dict(
        cpu="standard",
        gpu="proxima",
        gpu_key=("gpu", "1"),
        max_cpus=None,
        max_mem_mb=None,
        max_jobs=200,
        network_local=True,
        nvidia=True,
    ),
}
ENV = {
    "TILEPIPE_ACCOUNT": "acct_from_env",
    "USERWORK": "/work/u",
    "TILEPIPE_SCRATCH": "/s",
    "USER": "someone",
}


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    standin = bindir / "apptainer"
    standin.write_text("#!/bin/sh\necho 'apptainer version 1.3.4'\n")
    standin.chmod(0o755)
    path = f"{bindir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    # the clusters' scratch variables point into the test's own directory
    scratch = {"USERWORK": str(tmp / "userwork"), "TILEPIPE_SCRATCH": str(tmp / "scratch")}
    return {**os.environ, **ENV, **scratch, "PATH": path, **extra}


def _snakemake(work: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A fresh copy of the workflow whose scene manifest exists (search ran locally)."""
    work = tmp_path_factory.mktemp("profiles")
    for name in ("Snakefile", "workflow", "config", "profiles", "models", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    run = _snakemake(work, _env(work), "--profile", "profiles/local", "manifests/scenes.csv")
    assert run.returncode == 0, run.stderr[-3000:]
    return work


def parse_jobs(text: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job in a dry-run printout, grouped jobs included."""
    jobs, rule = [], None
    for line in text.splitlines():
        m = re.match(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):$", line)
        if m:
            rule = m.group(1)
        elif rule and line.strip().startswith("resources:"):
            pairs = (p.split("=", 1) for p in line.split(":", 1)[1].split(", "))
            jobs.append((rule, {k.strip(): v.strip() for k, v in pairs}))
            rule = None
    return jobs


@pytest.fixture(scope="module")
def planned(workdir) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """The jobs each profile's dry-run would submit (mtime triggers only: the manifest stays)."""
    plans = {}
    for cluster in CLUSTERS:
        run = _snakemake(
            workdir,
            _env(workdir),
            "--profile",
            f"profiles/{cluster}",
            "-n",
            "--rerun-triggers",
            "mtime",
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        plans[cluster] = parse_jobs(run.stdout + run.stderr)
    return plans


def profile(cluster: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / cluster / "config.yaml").read_text())


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_dry_run_plans_every_rule_of_the_campaign(planned, cluster):
    rules = {rule for rule, _ in planned[cluster]}
    assert {
        "download",
        "superres",
        "fields",
        "qc",
        "quicklook",
        "embeddings",
        "train_classifier",
        "classify",
    } <= rules
    assert len(planned[cluster]) >= 29


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_gpu_rules_get_one_gpu_on_the_gpu_partition(planned, cluster):
    want = TABLE[cluster]
    key, value = want["gpu_key"]
    for rule, res in planned[cluster]:
        if rule in GPU_RULES:
            assert res["slurm_partition"] == want["gpu"], (rule, res)
            assert res.get(key) == value, (rule, res)
            if want["max_cpus"]:
                assert int(res["cpus_per_task"]) <= want["max_cpus"], (rule, res)
            if want["max_mem_mb"]:
                assert int(res["mem_mb"]) <= want["max_mem_mb"], (rule, res)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_cpu_rules_get_no_gpu_and_the_cpu_partition(planned, cluster):
    for rule, res in planned[cluster]:
        if rule not in GPU_RULES:
            assert res["slurm_partition"] == TABLE[cluster]["cpu"], (rule, res)
            assert "gpu" not in res and "gres" not in res, (rule, res)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_every_job_states_runtime_memory_cpus_and_the_account_from_the_environment(
    planned, cluster
):
    for rule, res in planned[cluster]:
        assert int(res["runtime"]) > 0 and int(res["mem_mb"]) > 0, (rule, res)
        assert int(res["cpus_per_task"]) >= 1, (rule, res)
        assert res["slurm_account"] == ENV["TILEPIPE_ACCOUNT"], (rule, res)


def test_no_betzy_job_lands_on_normal(planned):
    assert all(res["slurm_partition"] != "normal" for _, res in planned["betzy"])


def test_every_eagle_proxima_job_requests_a_gpu(planned):
    proxima = [res for _, res in planned["poznan"] if res["slurm_partition"] == "proxima"]
    assert proxima and all(res.get("gpu") == "1" for res in proxima)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_runtime_and_memory_grow_with_each_attempt(cluster):
    prof = profile(cluster)
    per_rule = [prof["default-resources"], *prof["set-resources"].values()]
    assert "attempt" in str(prof["default-resources"]["runtime"])
    assert all("attempt" in str(r["runtime"]) for r in per_rule if "runtime" in r)
    assert prof["retries"] >= 1


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_campaign_settings_survive_failures_and_spare_the_scheduler(cluster):
    prof = profile(cluster)
    assert prof["executor"] == "slurm"
    assert prof["keep-going"] and prof["rerun-incomplete"] and prof["slurm-requeue"]
    assert prof["latency-wait"] >= 30
    assert prof["max-status-checks-per-second"] <= 1
    assert prof["jobs"] <= TABLE[cluster]["max_jobs"]


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_per_scene_steps_are_submitted_as_job_arrays_not_groups(cluster):
    # a failed group job discards the outputs of its healthy members; array tasks fail alone
    prof = profile(cluster)
    arrayed = set(prof["slurm-array-jobs"].split(","))
    assert "groups" not in prof and "group-components" not in prof
    per_scene = {"download", "superres", "fields", "qc", "quicklook", "classify"}
    assert per_scene | {"qc_classification"} <= arrayed
    assert "train_classifier" not in arrayed  # one job per campaign: nothing to bundle


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_containers_use_nv_only_on_nvidia_and_never_rocm(cluster):
    prof = profile(cluster)
    text = (REPO / "profiles" / cluster / "config.yaml").read_text()
    args = prof["apptainer-args"]
    assert prof["software-deployment-method"] == "apptainer"
    assert ("--nv" in args.split()) == TABLE[cluster]["nvidia"]
    assert "--rocm" not in re.sub(r"#.*", "", text)
    assert "WANDB_MODE=disabled" in args and "PROJ_DATA=" in args
    assert prof["config"]["containers"]["gpu"] != prof["config"]["containers"]["cpu"]


def test_lumi_binds_through_singularity_bind_and_sets_the_hip_allocator():
    prof = profile("lumi")
    env = prof["config"]["cluster"]["env"]
    assert {"/scratch", "/projappl", "/appl", "/opt/cray"} <= set(
        env["SINGULARITY_BIND"].split(",")
    )
    assert "--bind" not in prof["apptainer-args"]
    assert "PYTORCH_HIP_ALLOC_CONF=expandable_segments:True" in prof["apptainer-args"]


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_temporary_files_and_image_cache_stay_off_home_and_ram_disks(cluster):
    env = profile(cluster)["config"]["cluster"]["env"]
    for key in ("TMPDIR", "APPTAINER_CACHEDIR", "SINGULARITY_CACHEDIR"):
        assert not env[key].startswith(("/tmp", "/dev/shm", "~", "$HOME")), (key, env[key])


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_network_rules_run_where_the_network_is(cluster):
    assert profile(cluster)["config"]["cluster"]["network_local"] == TABLE[cluster]["network_local"]


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_no_account_is_committed(cluster):
    prof = profile(cluster)
    assert prof["default-resources"]["slurm_account"] == "'$TILEPIPE_ACCOUNT'"
    assert "slurm_account" not in str(prof["set-resources"])


def test_the_tmpdir_of_every_job_is_the_clusters_scratch_not_tmp(planned, workdir):
    scratch = {"saga": "userwork", "betzy": "userwork", "poznan": "scratch"}
    for cluster, var in scratch.items():
        for rule, res in planned[cluster]:
            assert res["tmpdir"] == f"{workdir / var}/tilepipe/tmp", (cluster, rule, res)
    for rule, res in planned["lumi"]:
        assert res["tmpdir"] == "/scratch/acct_from_env/someone/tilepipe/tmp", (rule, res)


def test_a_real_run_without_the_account_fails_before_any_submission(workdir, tmp_path):
    env = _env(tmp_path)
    env.pop("TILEPIPE_ACCOUNT")
    calls = tmp_path / "sbatch.calls"
    sbatch = tmp_path / "bin" / "sbatch"
    sbatch.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho 1\n')
    sbatch.chmod(0o755)
    run = _snakemake(workdir, env, "--profile", "profiles/saga", "--rerun-triggers", "mtime")
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "$TILEPIPE_ACCOUNT is not set: export TILEPIPE_ACCOUNT=" in out
    assert not calls.exists()
