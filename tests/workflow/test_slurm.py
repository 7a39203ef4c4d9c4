"""The cluster profiles, run for real: the demo campaign through Slurm, checked with `sacct`.

A real single-node Slurm 22.05 (slurmctld, slurmd, slurmdbd on MariaDB; fake GPUs; partitions
named as on Saga, Betzy, LUMI and Eagle) is installed and started by `tests/slurm/slurm-up.sh`
and stopped by `tests/slurm/slurm-down.sh` (as root, with apt; elsewhere these tests skip). The
workflow's files are copied into a temporary directory and `snakemake --profile profiles/saga`
and `--profile profiles/lumi` run there through snakemake-executor-plugin-slurm, with only
these documented overrides:

- `--config "containers={cpu: null, gpu: null}"`: Apptainer cannot be installed here;
- `--config "demo={... size: 64 ...}" "window={... width: 64, height: 64}"`: the demo at 64 px
  (as in tests/conftest.py) instead of 160 px: the same jobs, each a few seconds shorter;
- `--slurm-init-seconds-before-status-checks 1`: otherwise the plugin waits 40 s after every
  finished job before it polls again;
- `--slurm-keep-successful-logs`: each array task's Slurm log names its wildcards (all tasks
  of an array share one `--comment`), which is how the checks below tell the tasks apart;
- LUMI only, `--resources network=2`: at most two downloads at once, so that fewer jobs of a
  rule are handed to the plugin than the DAG has ready: the case in which plugin 2.8.0 drops
  array jobs and Snakemake waits forever (fixed by tilepipe.campaign.slurm_arrays);
- `TILEPIPE_ACCOUNT` is the test cluster's account (associations are enforced, so a wrong or
  unexpanded account is rejected by sbatch); `USERWORK` and `TILEPIPE_SCRATCH` point into the
  temporary directory;
- a command-line `--config` replaces the profile's whole `config:`, so the profile's `cluster`
  settings are repeated in it as the profile has them, except that the `cluster.env`
  directories a profile fixes outside the temporary directory (LUMI's `/scratch/...`) point
  into it; likewise the `tmpdir` resource (then `--default-resources` repeats the profile's
  other default resources unchanged) and `apptainer-prefix`.

Partitions, GPUs, CPUs, memory, runtimes, retries and keep-going are the profile's own.
Saga runs the campaign clean. LUMI runs it with one scene's B04 asset truncated, so that
scene's download (a Slurm job on LUMI, whose compute nodes have internet) fails on every
attempt, deterministically: the failure must be reported, retried as the profile says, leave no
output, and not stop the other scenes.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

SLURM_DIR = REPO / "tests" / "slurm"
ACCOUNT = os.environ.get("SLURM_CI_ACCOUNT", "tilepipe-ci")
BIN = Path(sys.executable).parent
TILES = ("33UXP", "31UFS")
DATES = ("2022-01-12", "2022-06-21")
SCENES = [(t, d) for t in TILES for d in DATES]
DEMO_OVERRIDES = (
    "demo={generate: true, out: demo_data, size: 64, seed: 0}",
    "tiles=[33UXP, 31UFS]",
    "window={col_off: 5000, row_off: 5000, width: 64, height: 64}",
)
GPU_RULES = {"superres", "fields"}
NETWORK_RULES = {"search_scenes", "download", "embeddings"}
ALWAYS_LOCAL = {"all", "demo_campaign", "qc_summary"}
PATH_VARS = ("TMPDIR", "APPTAINER_CACHEDIR", "SINGULARITY_CACHEDIR")
#: The scene whose download is made to fail in the LUMI run, and how: a truncated COG asset.
BROKEN = ("31UFS", "2022-06-21")
BROKEN_ASSET = "demo_data/stac/sentinel-2-l2a/S2B_31UFS_20220621_0_L2A/B04.tif"
FAKE_SECRET = "fake-secret-7f3a9c"
SEP = "<#>"  # sacct's field separator here: submit lines may hold `|`
#: The job name the profiles give a pool's GPU workers (workers.start).
WORKER_JOB = "tilepipe-worker"
#: Hard limit for one campaign run: a lost job must not hang CI.
RUN_TIMEOUT_S = 600


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the Slurm tests install and start Slurm with apt: they need root"
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        return "the Slurm tests install Debian's Slurm packages: apt-get/dpkg not found"
    return None


@pytest.fixture(scope="module")
def cluster():
    """A running single-node Slurm with accounting; stopped (by PID) after the module."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "SLURM_CI_ACCOUNT": ACCOUNT}
    up = subprocess.run(
        ["bash", str(SLURM_DIR / "slurm-up.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    try:
        assert up.returncode == 0, f"slurm-up.sh failed:\n{up.stdout[-4000:]}\n{up.stderr[-4000:]}"
        yield ACCOUNT
    finally:
        subprocess.run(
            ["bash", str(SLURM_DIR / "slurm-down.sh")], env=env, capture_output=True, timeout=300
        )


# ---------------------------------------------------------------- profile expectations


def profile(name: str) -> dict:
    """The profile's settings, with its workflow config (`config:` and `configfiles:`)."""
    prof = yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())
    config: dict = {}
    for path in prof.get("configfiles", []):
        _merge(config, yaml.safe_load((REPO / path).read_text()))
    _merge(config, prof.get("config", {}))
    return {**prof, "workflow_config": config}


def _merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def resource(prof: dict, rule: str, key: str, attempt: int = 1):
    """A rule's resource as the profile sets it (Python expressions, as Snakemake reads them)."""
    value = prof.get("set-resources", {}).get(rule, {}).get(key)
    if value is None:
        value = prof["default-resources"].get(key)
    return None if value is None else eval(str(value), {}, {"attempt": attempt})


def gpus(prof: dict, rule: str) -> int:
    """GPUs the profile requests for a rule (`gpu: N` or `gres: gpu[:type]:N`)."""
    gpu = resource(prof, rule, "gpu")
    gres = resource(prof, rule, "gres")
    if gres and gres.startswith("gpu"):
        return int(gres.rsplit(":", 1)[1])
    return int(gpu or 0)


def local_rules(prof: dict) -> set[str]:
    """Rules the profile keeps off Slurm."""
    network_local = prof["workflow_config"]["cluster"]["network_local"]
    return ALWAYS_LOCAL | (NETWORK_RULES if network_local else set())


# ---------------------------------------------------------------- running a campaign


@dataclass
class Campaign:
    name: str
    work: Path
    run: subprocess.CompletedProcess
    jobs: list[dict]
    args: list[str]
    dirs: dict[str, str]

    @property
    def output(self) -> str:
        return self.run.stdout + self.run.stderr

    def explain(self) -> str:
        logs = "\n".join(
            f"== {p}\n{p.read_text(errors='replace')[-1500:]}"
            for p in sorted((self.work / "logs").rglob("*.log"))
        )
        return f"snakemake exit {self.run.returncode}:\n{self.output[-6000:]}\n{logs[-6000:]}"


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), value)


def _env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # jobs call `tilepipe`
        "TILEPIPE_ACCOUNT": ACCOUNT,
        "USER": os.environ.get("USER") or getpass.getuser(),
        "USERWORK": str(work / "userwork"),
        "TILEPIPE_SCRATCH": str(work / "scratch"),
        # credentials as a user would export them: they must reach no job script or log
        "CDSE_S3_SECRET_KEY": FAKE_SECRET,
        "PC_SDK_SUBSCRIPTION_KEY": FAKE_SECRET,
    }


def _outside(value: str, work: Path, env: dict[str, str]) -> bool:
    return not _expand(value, env).strip("'\"").startswith(str(work))


def _overrides(
    prof: dict, work: Path, env: dict[str, str], demo: tuple[str, ...] = DEMO_OVERRIDES
) -> tuple[list[str], dict[str, str]]:
    """Command-line arguments for the test run, and the directories the run must create.

    `--config` on the command line replaces the profile's whole `config:`, so its `cluster`
    settings are repeated there as they are in the profile; like the `tmpdir` resource, the
    cluster.env directories a profile fixes outside the test directory are redirected into it
    (`--default-resources` then repeats the profile's other default resources unchanged).
    """
    cluster = json.loads(json.dumps(prof["workflow_config"]["cluster"]))
    dirs = {}
    for key in PATH_VARS:
        value = cluster.get("env", {}).get(key)
        if value and _outside(value, work, env):
            cluster["env"][key] = str(work / "cluster-env" / key.lower())
        if value:
            dirs[key] = _expand(cluster["env"][key], env)
    config = [
        "containers={cpu: null, gpu: null}",
        *demo,
        f"cluster={json.dumps(cluster)}",
    ]
    args = ["--config", *config, "--slurm-init-seconds-before-status-checks", "1"]
    args += ["--slurm-keep-successful-logs"]
    if not prof["workflow_config"]["cluster"]["network_local"]:
        args += ["--resources", "network=2"]
    defaults = prof["default-resources"]
    tmpdir = str(defaults.get("tmpdir", ""))
    if tmpdir and _outside(tmpdir, work, env):
        tmpdir = repr(str(work / "job-tmpdir"))
        kept = [f"{k}={_expand(str(v), env)}" for k, v in defaults.items() if k != "tmpdir"]
        args += ["--default-resources", *kept, f"tmpdir={tmpdir}"]
    if tmpdir:
        dirs["tmpdir resource"] = _expand(tmpdir, env).strip("'\"")
    prefix = prof.get("apptainer-prefix", "")
    if prefix and _outside(prefix, work, env):
        args += ["--apptainer-prefix", str(work / "apptainer")]
    return args, dirs


def _sacct(work: Path, since: datetime) -> list[dict]:
    fields = ("JobID", "Account", "Partition", "AllocTRES", "Timelimit", "State", "Comment")
    fields += ("WorkDir", "Submit", "SubmitLine", "JobName", "ElapsedRaw")
    since_arg = f"{since:%Y-%m-%dT%H:%M:%S}"
    query = ["sacct", "-a", "-X", "-n", "-P", "--delimiter", SEP, "-S", since_arg]
    out = subprocess.run(
        [*query, "--format", ",".join(fields)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    jobs = [dict(zip(fields, line.split(SEP), strict=True)) for line in out.splitlines()]
    # `-S` also lists older jobs still known to slurmdbd: keep this run's submissions only
    ours = [j for j in jobs if j["WorkDir"] == str(work) and j["Submit"] >= since_arg]
    return sorted(ours, key=lambda j: int(j["JobID"].split("_")[0]))


def run_campaign(
    name: str, work: Path, prepare=None, config=DEMO_OVERRIDES, configfiles: tuple[str, ...] = ()
) -> Campaign:
    """Copy the workflow into `work`, run `snakemake --profile profiles/<name>` through Slurm
    (with `configfiles` after the workflow's own, as a user adds a campaign's settings)."""
    for item in ("Snakefile", "workflow", "config", "profiles", "models", "envs"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    if prepare:
        prepare(work)
    prof = profile(name)
    env = _env(work)
    args, dirs = _overrides(prof, work, env, config)
    if configfiles:
        args += ["--configfile", "config/config.yaml", *configfiles]
    since = datetime.now() - timedelta(minutes=1)
    guard = ["timeout", "-k", "30", str(RUN_TIMEOUT_S)]  # a lost job must not hang CI
    run = subprocess.run(
        [*guard, sys.executable, "-m", "snakemake", "--profile", f"profiles/{name}", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S + 60,
    )
    return Campaign(name, work, run, _sacct(work, since), args, dirs)


def _break_one_scene(work: Path) -> None:
    """Generate the demo as the workflow would, then truncate one scene's B04 asset."""
    demo = [str(BIN / "tilepipe"), "demo", "--out", "demo_data", "--tiles", *TILES]
    subprocess.run([*demo, "--size", "64", "--seed", "0"], cwd=work, check=True, timeout=300)
    asset = work / BROKEN_ASSET
    asset.write_bytes(asset.read_bytes()[:2000])


@pytest.fixture(scope="module")
def saga(cluster, tmp_path_factory) -> Campaign:
    """The demo campaign run clean through Slurm with profiles/saga."""
    return run_campaign("saga", tmp_path_factory.mktemp("saga"))


@pytest.fixture(scope="module")
def lumi(cluster, tmp_path_factory) -> Campaign:
    """The demo campaign run through Slurm with profiles/lumi, one scene's input corrupt."""
    return run_campaign("lumi", tmp_path_factory.mktemp("lumi"), prepare=_break_one_scene)


def _pool_config(work: Path) -> None:
    """A campaign config that turns on a pool of one GPU worker, started as saga starts them
    (a configfile: the profile's `config:` is replaced by the test's `--config`)."""
    workers = {**profile("saga")["workflow_config"]["workers"], "count": 1, "idle_s": 10}
    (work / "pool.yaml").write_text(yaml.safe_dump({"workers": workers}))


@pytest.fixture(scope="module")
def pool(cluster, tmp_path_factory) -> Campaign:
    """The demo campaign through Slurm with profiles/saga and a pool of one GPU worker."""
    work = tmp_path_factory.mktemp("pool")
    return run_campaign("saga", work, prepare=_pool_config, configfiles=("pool.yaml",))


@pytest.fixture(params=["saga", "lumi"])
def campaign(request) -> Campaign:
    return request.getfixturevalue(request.param)


# ---------------------------------------------------------------- reading sacct


def tres(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)


def mem_mb(value: str) -> float:
    scale = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    return float(value[:-1]) * scale[value[-1]] if value[-1] in scale else float(value) / 2**20


def minutes(timelimit: str) -> int:
    days, _, hms = timelimit.rpartition("-")
    h, m, _ = (int(x) for x in hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m


def job_rules(job: dict, prof: dict) -> tuple[str, list[str], str]:
    """(job name, rules it ran, wildcards) from the comment the plugin gives every job."""
    # `--comment rule_<name>[_wildcards_<w1>_<w2>]`; a group job's name is `<group>_<rules>`
    m = re.fullmatch(r"rule_(.+?)(?:_wildcards_(.+))?", job["Comment"])
    assert m, f"job {job['JobID']} has no rule comment: {job}"
    name, wildcards = m.group(1), m.group(2) or ""
    groups = prof.get("groups", {})
    for group in set(groups.values()):
        if name.startswith(f"{group}_"):
            return name, [r for r, g in groups.items() if g == group], wildcards
    return name, [name], wildcards


def task_wildcards(campaign: Campaign, job: dict) -> str:
    """An array task's wildcards (`v1_v2`, as in comments), from its Slurm log."""
    logs = list((campaign.work / ".snakemake" / "slurm_logs").rglob(f"{job['JobID']}.log"))
    assert len(logs) == 1, (job, logs)
    # the task first logs the array's first job, then the one it runs: the last one counts
    found = re.findall(r"^\s*wildcards: (.+)$", logs[0].read_text(errors="replace"), re.M)
    assert found, (job, logs[0].read_text(errors="replace")[-2000:])
    return "_".join(kv.split("=", 1)[1] for kv in found[-1].split(", "))


def by_name(campaign: Campaign, prof: dict) -> dict[tuple[str, str], list[dict]]:
    """sacct jobs per (rule or group job, wildcards), in submission order (= attempts); the
    GPU workers of a pool are not Snakemake's jobs (see worker_jobs)."""
    out: dict[tuple[str, str], list[dict]] = {}
    for job in campaign.jobs:
        if job["JobName"] == WORKER_JOB:
            continue
        name, _, wildcards = job_rules(job, prof)
        if "_" in job["JobID"]:  # all tasks of an array share the first task's comment
            wildcards = task_wildcards(campaign, job)
        out.setdefault((name, wildcards), []).append(job)
    return out


# ---------------------------------------------------------------- the tests


def test_saga_runs_the_whole_campaign_through_slurm(saga):
    assert saga.run.returncode == 0, saga.explain()
    for tile, date in SCENES:
        scene = saga.work / "results" / tile / date
        report = json.loads((scene / "qc.json").read_text())
        assert (report["tile"], report["date"]) == (tile, date)
        assert report["status"] in {"pass", "warn"}, report
        assert (scene / "fields_classified.gpkg").stat().st_size > 0
    assert (saga.work / "results/qc_summary.html").stat().st_size > 0
    assert (saga.work / "results/models/classifier.cbm").stat().st_size > 0


def test_every_job_ran_in_the_partition_with_the_gpus_cpus_memory_and_runtime_of_its_rule(
    campaign,
):
    prof = profile(campaign.name)
    assert campaign.jobs, campaign.explain()
    for attempts in by_name(campaign, prof).values():
        for attempt, job in enumerate(attempts, start=1):
            _, rules, _ = job_rules(job, prof)
            alloc = tres(job["AllocTRES"])
            why = (campaign.name, attempt, attempts)
            assert job["Account"] == ACCOUNT, why
            for rule in rules:
                assert job["Partition"] == resource(prof, rule, "slurm_partition"), why
                assert int(alloc.get("gres/gpu", 0)) == gpus(prof, rule), why
            if len(rules) == 1:  # a group job's size is Snakemake's sum over its members
                rule = rules[0]
                assert int(alloc["cpu"]) == resource(prof, rule, "cpus_per_task"), why
                # array tasks carry a megabyte more: the plugin's margin for their payload
                extra = mem_mb(alloc["mem"]) - resource(prof, rule, "mem_mb", attempt)
                assert 0 <= extra <= 16, why
                assert minutes(job["Timelimit"]) == resource(prof, rule, "runtime", attempt), why


def test_gpu_rules_ran_on_slurm_once_per_scene_and_local_rules_never(campaign):
    prof = profile(campaign.name)
    ran: dict[str, set[str]] = {}
    for (name, wildcards), attempts in by_name(campaign, prof).items():
        assert len(attempts) == 1 or name == "download", (name, wildcards, attempts)
        for rule in job_rules(attempts[0], prof)[1]:
            ran.setdefault(rule, set()).add(wildcards)
    assert not set(ran) & local_rules(prof), (campaign.name, sorted(ran))
    scenes = {f"{t}_{d}" for t, d in SCENES}
    if campaign.name == "lumi":
        scenes.discard("_".join(BROKEN))
    for rule in GPU_RULES:
        assert ran.get(rule) == scenes, (campaign.name, rule, ran.get(rule))
    assert "train_classifier" in ran, (campaign.name, sorted(ran))


def test_the_cluster_environment_of_the_profile_reached_the_run(campaign):
    # TMPDIR and the image caches (cluster.env) are made before submission, each job's TMPDIR
    # (the tmpdir resource) when it starts: neither exists unless the profile's settings applied
    assert campaign.dirs, campaign.args
    for what, path in campaign.dirs.items():
        assert Path(path).is_dir(), (campaign.name, what, path, campaign.args)


def test_a_failing_scene_is_reported_retried_and_leaves_no_output(lumi):
    prof = profile("lumi")
    tile, date = BROKEN
    assert lumi.run.returncode != 0, lumi.explain()
    assert re.search(r"Error in rule download:", lumi.output), lumi.explain()
    assert f"tile {tile}, date {date}" in lumi.output, lumi.explain()
    attempts = by_name(lumi, prof)[("download", f"{tile}_{date}")]
    assert len(attempts) == prof["retries"] + 1, attempts
    assert [j["State"] for j in attempts] == ["FAILED"] * len(attempts), attempts
    runtimes = [minutes(j["Timelimit"]) for j in attempts]
    assert runtimes == [resource(prof, "download", "runtime", a + 1) for a in range(len(attempts))]
    assert runtimes == sorted(set(runtimes)), runtimes  # each attempt gets more time
    scene = lumi.work / "results" / tile / date
    assert not scene.exists() or not any(p.is_file() for p in scene.rglob("*")), list(
        scene.rglob("*")
    )


def test_the_other_scenes_complete_despite_the_failure(lumi):
    for tile, date in SCENES:
        if (tile, date) == BROKEN:
            continue
        scene = lumi.work / "results" / tile / date
        assert (scene / "qc.json").is_file(), (tile, date, lumi.explain())
        assert (scene / "fields_classified.gpkg").is_file(), (tile, date)
    assert (lumi.work / "results/models/classifier.cbm").is_file()


def test_per_scene_steps_went_to_slurm_as_arrays_with_fewer_submissions_than_jobs(campaign):
    prof = profile(campaign.name)
    arrayed = set(prof["slurm-array-jobs"].split(","))
    submissions: dict[str, set[str]] = {}  # sbatch calls: one per array or lone job
    for job in campaign.jobs:
        name = job_rules(job, prof)[0]
        submissions.setdefault(job["JobID"].split("_")[0], set()).add(name)
    arrays = [job for job in campaign.jobs if "_" in job["JobID"]]
    assert arrays, campaign.explain()
    assert {job_rules(job, prof)[0] for job in arrays} <= arrayed
    assert all(len(names) == 1 for names in submissions.values())  # an array is one rule
    assert len(submissions) < len(campaign.jobs), (len(submissions), len(campaign.jobs))


# ---------------------------------------------------------------- preemption: requeue


#: One scene at 160 px with small super-resolution windows, so its superres job runs long
#: enough (a few seconds, many journaled window rows) to be requeued in the middle.
REQUEUE_SCENE = ("33UXP", "2022-06-21")
REQUEUE_CONFIG = (
    "demo={generate: true, out: demo_data, size: 160, seed: 0}",
    "window={col_off: 5000, row_off: 5000, width: 160, height: 160}",
    "tiles=[33UXP]",
    "superres={patch: 16, overlap: 4, batch: 1}",
)


def _requeue_when_journaled(work: Path, done: dict, stop: threading.Event) -> None:
    """Freeze the superres step once its journal holds a slab, then `scontrol requeue` its job."""
    tile, date = REQUEUE_SCENE
    journal = work / "results" / tile / date / "dr.tif.parts" / "journal.jsonl"
    while not stop.is_set():
        lines = journal.read_text().splitlines() if journal.is_file() else []
        slabs = [line for line in lines[1:] if '"file": "' in line]  # line 1: the fingerprint
        steps = _steps(work, b"superres", date.encode()) if slabs else []
        if steps:
            for pid, _ in steps:
                os.kill(pid, signal.SIGSTOP)  # no more progress until Slurm kills it
            done["slabs"], done["job"] = len(slabs), steps[0][1]
            subprocess.run(["scontrol", "requeue", done["job"]], check=True, timeout=60)
            return
        time.sleep(0.02)


def _steps(work: Path, step: bytes, date: bytes) -> list[tuple[int, str]]:
    """(PID, Slurm job id) of the `tilepipe <step>` processes for `date` running in `work`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if os.readlink(proc / "cwd") != str(work) or step not in cmd[1:3] or date not in cmd:
                continue
            env = dict(
                item.split(b"=", 1)
                for item in (proc / "environ").read_bytes().split(b"\0")
                if b"=" in item
            )
        except (OSError, ValueError):
            continue
        array = env.get(b"SLURM_ARRAY_JOB_ID"), env.get(b"SLURM_ARRAY_TASK_ID")
        job = f"{array[0].decode()}_{array[1].decode()}" if all(array) else None
        job = job or env.get(b"SLURM_JOB_ID", b"").decode()
        if job:
            found.append((int(proc.name), job))
    return found


@pytest.fixture(scope="module")
def requeued(cluster, tmp_path_factory) -> dict:
    """The Saga profile on one scene whose superres job is requeued after its first slabs."""
    work = tmp_path_factory.mktemp("requeue")
    done: dict = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_requeue_when_journaled, args=(work, done, stop))
    watcher.start()
    try:
        campaign = run_campaign("saga", work, config=REQUEUE_CONFIG)
    finally:
        stop.set()
        watcher.join()
    return {"campaign": campaign, **done}


def test_a_requeued_superres_job_resumes_from_its_journal_and_the_campaign_completes(requeued):
    campaign = requeued["campaign"]
    assert "job" in requeued, "the superres job was never caught running with a journal"
    assert campaign.run.returncode == 0, campaign.explain()
    states = subprocess.run(
        ["sacct", "-D", "-X", "-n", "-P", "-j", requeued["job"], "--format", "JobID,State"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "REQUEUED" in states and "COMPLETED" in states, states
    tile, date = REQUEUE_SCENE
    log = (campaign.work / "logs" / "superres" / tile / f"{date}.log").read_text()
    assert "resuming after" in log, log[-3000:]
    scene = campaign.work / "results" / tile / date
    assert not (scene / "dr.tif.parts").exists()  # the journal goes once the output is whole
    report = json.loads((scene / "qc.json").read_text())
    checks = {c["name"]: c["status"] for c in report["checks"]}
    assert checks["dr_consistency"] == "pass", report


def test_no_credential_reaches_a_job_script_or_a_slurm_log(campaign):
    # sbatch passes the environment (--export=ALL); the job's command line and logs must not
    # carry it: Slurm stores submit lines in its accounting database for every admin to read
    assert campaign.jobs
    for job in campaign.jobs:
        assert FAKE_SECRET not in job["SubmitLine"], job["JobID"]
    for path in (campaign.work / ".snakemake").rglob("*"):
        if path.is_file():
            assert FAKE_SECRET.encode() not in path.read_bytes(), path
    for path in (campaign.work / "logs").rglob("*.log"):
        assert FAKE_SECRET not in path.read_text(errors="replace"), path


def worker_jobs(campaign: Campaign) -> list[dict]:
    return [j for j in campaign.jobs if j["JobName"] == WORKER_JOB]


def test_with_a_worker_pool_no_gpu_step_is_a_slurm_job_of_its_own(pool):
    assert pool.run.returncode == 0, pool.explain()
    prof = profile("saga")
    ran = {
        r for (name, _), jobs in by_name(pool, prof).items() for r in job_rules(jobs[0], prof)[1]
    }
    assert not ran & GPU_RULES, sorted(ran)
    for tile, date in SCENES:
        log = (pool.work / "logs" / "superres" / tile / f"{date}.log").read_text()
        assert "superres done" in log, log[-2000:]  # the worker's output, relayed to the job
        assert (pool.work / "results" / tile / date / "fields.gpkg").exists()


def test_the_pool_workers_ran_as_gpu_jobs_of_the_profiles_partition(pool):
    workers = worker_jobs(pool)
    assert workers, [j["JobName"] for j in pool.jobs]
    for job in workers:
        assert job["Partition"] == "a100", job
        assert tres(job["AllocTRES"]).get("gres/gpu") == "1", job
        assert job["State"] == "COMPLETED", job  # each exited when idle, not killed


def test_the_pool_ran_fewer_gpu_jobs_than_the_campaign_has_gpu_steps(pool):
    """And prints what they were billed against the engine's seconds (not a speed limit)."""
    billed = sum(int(j["ElapsedRaw"]) for j in worker_jobs(pool))
    engine = 0.0
    for rule in GPU_RULES:
        for log in (pool.work / "logs" / rule).rglob("*.log"):
            text = log.read_text()
            engine += sum(
                float(s) for s in re.findall(r'superres done: .*?"seconds": ([0-9.]+)', text)
            )
            engine += sum(float(s) for s in re.findall(r"probabilities in ([0-9.]+) s", text))
    print(f"pool: {len(worker_jobs(pool))} GPU job(s), {billed} s billed, {engine:.1f} s engine")
    assert len(worker_jobs(pool)) < len(SCENES) * len(GPU_RULES)
