"""What a campaign of small scenes pays for: billed job-seconds against the engine's seconds.

    python benchmarks/bench_campaign.py --sizes 100 200 500 --scenes 4
    python benchmarks/bench_campaign.py --sizes 200 --scenes 8 --executor slurm --partition accel

The layout measured is today's (issue 17, "before"): one job per scene, each its own
``tilepipe superres`` process that starts an interpreter, imports torch, loads the model and
initialises the device before the engine runs. Per input size it prints:

- the fixed cost, step by step, each in fresh processes (median of ``--repeats``): interpreter
  start (``python -c pass``), importing tilepipe's superres step and torch, loading the model
  onto the device (``load_dr``);
- per scene: the billed seconds (local: the process's wall time; Slurm: ``sacct``'s
  ``ElapsedRaw`` of the job, its own start-up and epilogue included), the engine's own
  seconds (``superres done`` stats, ``seconds``), and their ratio, the share of the billed time
  that does the work.

With ``--executor slurm`` every scene is an ``sbatch`` job on the cluster of
``tests/slurm/slurm-up.sh`` (or any cluster: ``--partition``, ``--account``), as the workflow's
profiles submit them; the script waits for the jobs and reads ``sacct``. Inputs are demo
scenes (``bench_engine.make_input``), the model ``models/dr_demo.pt``; all under a temporary
directory, removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_engine import MODEL, make_input

TILEPIPE = Path(sys.executable).parent / "tilepipe"
#: each fixed-cost step as a program, cumulative: interpreter, + imports, + model on the device
STEPS = {
    "interpreter": "pass",
    "imports": "import torch, tilepipe.superres",
    "model load": (
        "from tilepipe.superres import load_dr; "
        "load_dr('model', {model!r}, 'cpu', 'auto', False, 64, 16, '33UXP', '2022-06-21')"
    ),
}


def wall(args: list[str]) -> float:
    """Wall seconds of one run of a command (which must succeed)."""
    started = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - started


def fixed_costs(repeats: int) -> dict[str, float]:
    """Median wall seconds of each fixed-cost step alone (not cumulative)."""
    totals = {}
    for name, code in STEPS.items():
        runs = [wall([sys.executable, "-c", code.format(model=str(MODEL))]) for _ in range(repeats)]
        totals[name] = statistics.median(runs)
    steps, previous = {}, 0.0
    for name, total in totals.items():
        steps[name], previous = max(total - previous, 0.0), total
    return steps


def superres_args(s2: Path, dr: Path) -> list[str]:
    """The command the workflow's superres rule runs on one scene (the demo model, CPU)."""
    args = ["superres", "--tile", "33UXP", "--date", "2022-06-21", "--s2", str(s2)]
    return [str(TILEPIPE), *args, "--out", str(dr), "--model", str(MODEL), "--device", "cpu"]


def engine_seconds(stderr: str) -> float:
    """The engine's own seconds, from the ``superres done`` stats line."""
    line = next(ln for ln in stderr.splitlines() if "superres done: " in ln)
    return float(json.loads(line.split("superres done: ", 1)[1])["seconds"])


def worker_env(layout: str, name: str) -> dict[str, str]:
    """The environment of a scene's command: the warm layout names one worker for the run."""
    env = {k: v for k, v in os.environ.items() if k != "TILEPIPE_WORKER"}
    if layout == "warm":
        env.update(TILEPIPE_WORKER=name, TILEPIPE_WORKER_IDLE="30")
    return env


def run_local(scenes: list[tuple[Path, Path]], layout: str) -> list[tuple[float, float]]:
    """(billed s, engine s) of each scene's command, one after another: its own process
    (``old``) or a thin client of one warm worker (``warm``, whose start the first pays)."""
    env = worker_env(layout, f"bench-{os.getpid()}-{time.monotonic_ns()}")
    results = []
    for s2, dr in scenes:
        started = time.perf_counter()
        run = subprocess.run(
            superres_args(s2, dr), capture_output=True, text=True, check=True, env=env
        )
        results.append((time.perf_counter() - started, engine_seconds(run.stderr)))
    return results


def sbatch(wrap: str, partition: str, account: str, out_dir: Path) -> str:
    """Submit ``wrap`` as one job (singleton: one at a time, as the node has few cores)."""
    cmd = ["sbatch", "--parsable", "--partition", partition, "--account", account]
    cmd += ["--job-name", "bench_campaign", "--dependency", "singleton"]
    cmd += ["--output", str(out_dir / "slurm-%j.out")]
    cmd += ["--cpus-per-task", "2", "--mem", "4000", "--wrap", wrap]
    job = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    return job.split(";")[0]


def run_slurm(
    scenes: list[tuple[Path, Path]], partition: str, account: str, layout: str
) -> tuple[list[tuple[float, float]], float]:
    """(billed s, engine s) per scene on Slurm and the job's own share: each scene its own job,
    billed its ``ElapsedRaw`` (``old``); or all of them in one job, each a thin client of the
    job's warm worker (``warm``), each billed its command's wall time and the job the rest of
    its ``ElapsedRaw`` (Slurm's start and end, the worker's start)."""
    logs = [dr.with_suffix(".log") for _, dr in scenes]
    commands = [
        " ".join(superres_args(s2, dr)) + f" 2> {log}"
        for (s2, dr), log in zip(scenes, logs, strict=True)
    ]
    out_dir = scenes[0][1].parent
    if layout == "old":
        jobs = [
            sbatch(f"unset TILEPIPE_WORKER; {c}", partition, account, out_dir) for c in commands
        ]
        elapsed = wait_for_jobs(jobs)
        pairs = zip(jobs, logs, strict=True)
        return [(elapsed[j], engine_seconds(log.read_text())) for j, log in pairs], 0.0
    name = f"bench-{os.getpid()}-{time.monotonic_ns()}"
    timed = [
        f"s=$(date +%s.%N); {c}; echo $s $(date +%s.%N) > {log}.wall"
        for c, log in zip(commands, logs, strict=True)
    ]
    wrap = f"export TILEPIPE_WORKER={name} TILEPIPE_WORKER_IDLE=5; " + "; ".join(timed)
    job = sbatch(wrap, partition, account, out_dir)
    elapsed = wait_for_jobs([job])[job]
    walls = []
    for log in logs:
        start, end = map(float, Path(f"{log}.wall").read_text().split())
        walls.append(end - start)
    results = [(w, engine_seconds(log.read_text())) for w, log in zip(walls, logs, strict=True)]
    return results, max(elapsed - sum(walls), 0.0)


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


def summarise(
    results: list[tuple[float, float]], job_s: float, batch: int, layout: str
) -> dict[str, float]:
    """The figures of one layout: totals and their ratio as measured; ``steady``, the ratio of
    the scenes after the first (the worker started, the machine warm); ``job``, the seconds
    paid once per job (Slurm's start and end; the worker's start, the first scene's excess
    over the steady median); ``at_batch``, the ratio a job of ``batch`` scenes would have."""
    billed = sum(b for b, _ in results) + job_s
    engine = sum(e for _, e in results)
    rest = results[1:] or results
    per_scene = statistics.median(b for b, _ in rest)
    steady = sum(e for _, e in rest) / sum(b for b, _ in rest)
    once = job_s + (max(results[0][0] - per_scene, 0.0) if layout == "warm" else 0.0)
    mean_engine = engine / len(results)
    at_batch = mean_engine / (per_scene + once / batch) if layout == "warm" else engine / billed
    return {
        "billed": billed,
        "engine": engine,
        "ratio": engine / billed,
        "steady": steady,
        "job": once,
        "at_batch": at_batch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 200, 500])
    parser.add_argument("--scenes", type=int, default=4, help="scenes per size")
    parser.add_argument("--repeats", type=int, default=3, help="runs per fixed-cost step")
    parser.add_argument("--executor", choices=["local", "slurm"], default="local")
    parser.add_argument(
        "--layout",
        nargs="+",
        choices=["old", "warm"],
        default=["old", "warm"],
        help="old: a process (and on Slurm a job) per scene; warm: one warm worker, thin clients",
    )
    parser.add_argument(
        "--batch", type=int, default=200, help="scenes per GPU job the warm layout projects to"
    )
    parser.add_argument("--partition", default="accel")
    parser.add_argument("--account", default="tilepipe-ci")
    args = parser.parse_args()

    steps = fixed_costs(args.repeats)
    print("== fixed cost of one superres process (median wall s, each step alone)")
    for name, seconds in steps.items():
        print(f"  {name:<12} {seconds:6.2f}")
    print(f"  {'total':<12} {sum(steps.values()):6.2f}")
    print(f"== superres per scene, executor {args.executor}, model {MODEL.name}, CPU")
    print(
        f"{'layout':>6} {'input':>7} {'scenes':>6} {'billed s':>9} {'engine s':>9} {'ratio':>6}"
        f" {'steady':>7} {'job s':>6} {f'@{args.batch}/job':>9}"
    )
    ratios: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="bench_campaign_", dir="/tmp") as tmp:
        for size in args.sizes:
            s2 = make_input(Path(tmp) / f"s2_{size}.tif", size)
            for layout in args.layout:
                scenes = [
                    (s2, Path(tmp) / f"dr_{size}_{layout}_{i}.tif") for i in range(args.scenes)
                ]
                if args.executor == "slurm":
                    results, job_s = run_slurm(scenes, args.partition, args.account, layout)
                else:
                    results, job_s = run_local(scenes, layout), 0.0
                row = summarise(results, job_s, args.batch, layout)
                ratios[layout, size] = row["at_batch"]
                print(
                    f"{layout:>6} {size:>6}² {len(results):>6} {row['billed']:>9.1f}"
                    f" {row['engine']:>9.1f} {row['ratio']:>6.2f} {row['steady']:>7.2f}"
                    f" {row['job']:>6.1f} {row['at_batch']:>9.2f}"
                )
    if {"old", "warm"} <= set(args.layout):
        for size in args.sizes:
            gain = ratios["warm", size] / ratios["old", size]
            print(f"  {size}²: engine share of billed time, warm over old: {gain:.2f}x")


if __name__ == "__main__":
    main()
