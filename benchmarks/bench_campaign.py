"""What a campaign of small scenes pays for: billed GPU-job seconds against the engine's seconds.

    python benchmarks/bench_campaign.py --sizes 100 200 500 --scenes 10
    python benchmarks/bench_campaign.py --sizes 200 --scenes 20 --executor slurm --partition a100

Two layouts of the superres step (issue 17), each on the same demo scenes, one after another:

- ``old``: a process per scene, and on Slurm an ``sbatch`` job per scene, as the profiles
  submit a GPU step: each starts an interpreter, imports torch, loads the model and sets up the
  device before the engine runs; billed: the process's wall time, or ``sacct``'s ``ElapsedRaw``
  of its job (Slurm's start and end included);
- ``pool``: a pool of one GPU worker (config ``workers``), started by the workflow's own starter
  (:class:`tilepipe.worker.starter.Starter`): locally a background process, on Slurm an
  ``sbatch`` job; each scene is a thin ``tilepipe superres`` client on this machine, as the
  workflow's scene jobs are then. Billed: the worker's lifetime (``ElapsedRaw`` on Slurm), its
  start, the scenes and its ``--idle`` tail included.

Per layout and input size it prints the billed and engine seconds and their ratio as measured;
``steady``, the ratio over the scenes after the first (the worker up, the machine warm);
``beyond``, the median billed seconds of those scenes beyond their engine seconds; ``job``,
what a job pays once (start-up, the idle tail); and ``@N/job``, the ratio of a job serving
``--batch`` scenes (what a campaign of 10,000 scenes over a few workers gets). Before that, the
fixed cost of one ``old`` process, step by step (median of ``--repeats`` fresh processes).
``--clients`` scene clients run at a time (default 2, as the workflow runs several scene jobs
at once, so the worker never waits for the next scene); here they share the machine's cores with
a local worker, or a Slurm worker on this single node, which they do not on a cluster (clients on
the login node, the worker on a GPU node): ``--clients 1`` measures the worker alone. Inputs are
demo scenes (``bench_engine.make_input``), the model ``models/dr_demo.pt`` (or
``--model``), on the CPU (or ``--device``); all under a temporary directory, removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_engine import MODEL, make_input

from tilepipe.worker import spool as pool
from tilepipe.worker.starter import Starter

TILEPIPE = Path(sys.executable).parent / "tilepipe"
#: the `tilepipe` command: the installed entry point, or this interpreter running its module
#: (a GPU machine with the package on PYTHONPATH, not installed: benchmarks/gpu/run.sh)
MODULE = [sys.executable, "-m", "tilepipe.worker.client"]
TILEPIPE_CMD = [str(TILEPIPE)] if TILEPIPE.exists() else MODULE
#: the model and device every scene's command runs with (set once from the command line)
SCENE: dict = {"model": str(MODEL), "device": "cpu", "clients": 2}
IDLE_S = 5.0  # the pool worker's idle tail in this benchmark (the workflow's default is 60)
#: each fixed-cost step as a program, cumulative: interpreter, + imports, + model on the device
STEPS = {
    "interpreter": "pass",
    "imports": "import torch, tilepipe.superres",
    "model load": (
        "from tilepipe.superres import load_dr; "
        "load_dr('model', {model!r}, {device!r}, 'auto', False, 64, 16, '33UXP', '2022-06-21')"
    ),
}


def wall(args: list[str]) -> float:
    """Wall seconds of one run of a command (which must succeed)."""
    started = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - started


def medians(programs: dict[str, str], repeats: int) -> dict[str, float]:
    """Median wall seconds of each Python program, each run in a fresh interpreter."""
    return {
        name: statistics.median(wall([sys.executable, "-c", code]) for _ in range(repeats))
        for name, code in programs.items()
    }


def step_costs(totals: dict[str, float]) -> dict[str, float]:
    """Each step alone, from the medians of cumulative programs (each does all before it)."""
    steps, previous = {}, 0.0
    for name, total in totals.items():
        steps[name], previous = max(total - previous, 0.0), total
    return steps


def fixed_costs(repeats: int) -> dict[str, float]:
    """Median wall seconds of each fixed-cost step alone (not cumulative)."""
    programs = {
        name: code.format(model=SCENE["model"], device=SCENE["device"])
        for name, code in STEPS.items()
    }
    return step_costs(medians(programs, repeats))


def superres_args(s2: Path, dr: Path) -> list[str]:
    """The command the workflow's superres rule runs on one scene (``--model``, ``--device``)."""
    args = ["superres", "--tile", "33UXP", "--date", "2022-06-21", "--s2", str(s2)]
    args += ["--out", str(dr), "--model", str(SCENE["model"]), "--device", SCENE["device"]]
    return [*TILEPIPE_CMD, *args]


def engine_seconds(stderr: str) -> float:
    """The engine's own seconds, from the ``superres done`` stats line."""
    line = next(ln for ln in stderr.splitlines() if "superres done: " in ln)
    return float(json.loads(line.split("superres done: ", 1)[1])["seconds"])


def plain_env(**extra: str) -> dict[str, str]:
    """This environment without a worker, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILEPIPE_WORKER")}
    return {**env, **extra}


def run_one(s2: Path, dr: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """(wall s, engine s, when it ended) of one scene's command."""
    started = time.perf_counter()
    run = subprocess.run(superres_args(s2, dr), capture_output=True, text=True, env=env)
    if run.returncode:
        raise SystemExit(f"scene {dr.name} failed:\n{run.stderr[-3000:]}")
    ended = time.perf_counter()
    return ended - started, engine_seconds(run.stderr), ended


def run_scenes(
    scenes: list[tuple[Path, Path]], env: dict[str, str], clients: int = 1
) -> list[tuple[float, float]]:
    """(wall s, engine s) of each scene's command, ``clients`` at a time (the workflow runs
    several scene jobs at once: with a pool, the next scene waits at the worker while the
    current one runs, so the worker never idles between scenes), in the order they ended: a
    worker serves one scene at a time, so that is the order of its log."""
    with ThreadPoolExecutor(max_workers=clients) as run:
        done = list(run.map(lambda scene: run_one(*scene, env), scenes))
    return [(wall_s, engine_s) for wall_s, engine_s, _ in sorted(done, key=lambda r: r[2])]


def sbatch(wrap: str, partition: str, account: str, out_dir: Path) -> str:
    """Submit ``wrap`` as one job (singleton: one at a time, as the node has few cores)."""
    cmd = ["sbatch", "--parsable", "--partition", partition, "--account", account]
    cmd += ["--job-name", "bench_campaign", "--dependency", "singleton"]
    cmd += ["--output", str(out_dir / "slurm-%j.out")]
    cmd += ["--cpus-per-task", "2", "--mem", "4000", "--wrap", wrap]
    job = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    return job.split(";")[0]


def wait_for_jobs(jobs: list[str], timeout_s: float = 3600) -> dict[str, float]:
    """Wait until sacct reports every job ended; return each job's ElapsedRaw (s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-j", ",".join(jobs), "-o", "JobID,State,ElapsedRaw"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = {r.split("|")[0]: r.split("|")[1:] for r in out.splitlines() if r}
        done = {j: r for j, r in rows.items() if r[0] not in ("PENDING", "RUNNING", "")}
        if len(done) == len(jobs):
            failed = {j: r[0] for j, r in done.items() if r[0] != "COMPLETED"}
            if failed:
                raise SystemExit(f"jobs did not complete: {failed}")
            return {j: float(r[1]) for j, r in done.items()}
        time.sleep(2)
    raise SystemExit(f"jobs {jobs} still running after {timeout_s} s")


def run_old(scenes: list[tuple[Path, Path]], executor: str, partition: str, account: str):
    """Each scene its own process (local) or its own job (Slurm): (billed, engine) per scene."""
    if executor == "local":
        return run_scenes(scenes, plain_env()), 0.0
    logs = [dr.with_suffix(".log") for _, dr in scenes]
    jobs = [
        sbatch(f"unset TILEPIPE_WORKER; {' '.join(superres_args(s2, dr))} 2> {log}",
               partition, account, scenes[0][1].parent)
        for (s2, dr), log in zip(scenes, logs, strict=True)
    ]  # fmt: skip
    elapsed = wait_for_jobs(jobs)
    pairs = zip(jobs, logs, strict=True)
    return [(elapsed[j], engine_seconds(log.read_text())) for j, log in pairs], 0.0


def worker_seconds(spool: Path) -> list[float]:
    """The seconds the workers spent on each scene (their log's ``exit 0 in X s``)."""
    text = "".join(p.read_text() for p in (spool / "logs").glob("*.log"))
    return [float(s) for s in re.findall(r" exit 0 in ([0-9.]+) s", text)]


def run_pool(scenes: list[tuple[Path, Path]], executor: str, partition: str, account: str):
    """The scenes as thin clients of a pool of one worker the starter starts: (per-scene
    billed, engine) and what the worker's job paid beyond its scenes (start, idle tail)."""
    spool = scenes[0][1].parent / "spool"
    template = ""
    if executor == "slurm":
        template = (
            f"sbatch --parsable --account={account} --partition={partition} --gpus=1"
            " --cpus-per-task=2 --mem=4000 --job-name=tilepipe-worker"
            " --output={spool}/logs/worker-%j.log --wrap '{worker}'"
        )
    starter = Starter(spool, 1, IDLE_S, template, 3600.0, say=lambda _: None, poll=0.1)
    starter.start()
    began = time.perf_counter()
    try:
        env = plain_env(TILEPIPE_WORKER=f"spool:{spool}")
        results = run_scenes(scenes, env, clients=SCENE["clients"])
    finally:
        starter.stopped.set()
    deadline = time.monotonic() + 120
    while pool.live_workers(spool) and time.monotonic() < deadline:
        time.sleep(0.2)  # the worker's idle tail, which is billed too
    if executor == "slurm":
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "--name", "tilepipe-worker", "-S", "now-2hours",
             "-o", "JobID,WorkDir"], capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        jobs = [r.split("|")[0] for r in out.splitlines() if r]
        logs = {p.stem.removeprefix("worker-") for p in (spool / "logs").glob("worker-*.log")}
        billed = sum(wait_for_jobs([j for j in jobs if j in logs]).values())
    else:
        billed = time.perf_counter() - began
    per_scene = worker_seconds(spool)
    billed_scenes = [(s, e) for s, (_, e) in zip(per_scene, results, strict=True)]
    return billed_scenes, max(billed - sum(per_scene), 0.0)


def summarise(results: list[tuple[float, float]], job_s: float, batch: int) -> dict[str, float]:
    """The figures of one layout (see the module's docstring)."""
    billed = sum(b for b, _ in results) + job_s
    engine = sum(e for _, e in results)
    rest = results[1:] or results
    per_scene = sum(b for b, _ in rest) / len(rest)
    once = job_s + max(results[0][0] - per_scene, 0.0)
    rest_engine = sum(e for _, e in rest) / len(rest)
    return {
        "beyond": statistics.median(b - e for b, e in rest),
        "billed": billed,
        "engine": engine,
        "ratio": engine / billed,
        "steady": sum(e for _, e in rest) / sum(b for b, _ in rest),
        "job": once,
        "at_batch": rest_engine / (per_scene + once / batch) if job_s else engine / billed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 200, 500])
    parser.add_argument("--scenes", type=int, default=10, help="scenes per size and layout")
    parser.add_argument("--repeats", type=int, default=3, help="runs per fixed-cost step")
    parser.add_argument("--executor", choices=["local", "slurm"], default="local")
    parser.add_argument("--layout", nargs="+", choices=["old", "pool"], default=["old", "pool"])
    parser.add_argument("--batch", type=int, default=2500, help="scenes per worker, projected")
    parser.add_argument("--partition", default="a100")
    parser.add_argument("--account", default="tilepipe-ci")
    parser.add_argument("--model", default=str(MODEL), help="the DR model (default: the demo's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (superres --device)")
    parser.add_argument(
        "--clients", type=int, default=2,
        help="pool: scene clients at a time (they share this machine's cores with a local worker)",
    )  # fmt: skip
    args = parser.parse_args()
    SCENE.update(model=args.model, device=args.device, clients=args.clients)
    # a worker job runs `tilepipe` from PATH (sbatch passes this environment), as the workflow's
    os.environ["PATH"] = f"{TILEPIPE.parent}{os.pathsep}{os.environ.get('PATH', '')}"

    steps = fixed_costs(args.repeats)
    print("== fixed cost of one superres process (median wall s, each step alone)")
    for name, seconds in steps.items():
        print(f"  {name:<12} {seconds:6.2f}")
    print(f"  {'total':<12} {sum(steps.values()):6.2f}")
    print(f"== superres per scene, executor {args.executor}, model {args.model}, {args.device}")
    print(
        f"{'layout':>6} {'input':>7} {'scenes':>6} {'billed s':>9} {'engine s':>9} {'ratio':>6}"
        f" {'steady':>7} {'beyond':>7} {'job s':>6} {f'@{args.batch}/job':>10}"
    )
    ratios: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="bench_campaign_", dir="/tmp") as tmp:
        for size in args.sizes:
            s2 = make_input(Path(tmp) / f"s2_{size}.tif", size)
            for layout in args.layout:
                out = Path(tmp) / f"{size}_{layout}"
                out.mkdir()
                scenes = [(s2, out / f"dr_{i}.tif") for i in range(args.scenes)]
                run = run_old if layout == "old" else run_pool
                results, job_s = run(scenes, args.executor, args.partition, args.account)
                row = summarise(results, job_s, args.batch)
                ratios[layout, size] = row["at_batch"]
                print(
                    f"{layout:>6} {size:>6}² {len(results):>6} {row['billed']:>9.1f}"
                    f" {row['engine']:>9.1f} {row['ratio']:>6.2f} {row['steady']:>7.2f}"
                    f" {row['beyond']:>7.3f} {row['job']:>6.1f} {row['at_batch']:>10.2f}"
                )
    if {"old", "pool"} <= set(args.layout):
        for size in args.sizes:
            gain = ratios["pool", size] / ratios["old", size]
            print(f"  {size}²: engine share of the billed time, pool over old: {gain:.2f}x")


if __name__ == "__main__":
    main()
