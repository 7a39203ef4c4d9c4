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


def run_local(scenes: list[tuple[Path, Path]]) -> list[tuple[float, float]]:
    """(billed s, engine s) of each scene run as its own process, one after another."""
    results = []
    for s2, dr in scenes:
        started = time.perf_counter()
        run = subprocess.run(superres_args(s2, dr), capture_output=True, text=True, check=True)
        results.append((time.perf_counter() - started, engine_seconds(run.stderr)))
    return results


def run_slurm(
    scenes: list[tuple[Path, Path]], partition: str, account: str
) -> list[tuple[float, float]]:
    """(billed s, engine s) of each scene as its own sbatch job: sacct's ElapsedRaw."""
    jobs = []
    for s2, dr in scenes:
        log = dr.with_suffix(".log")
        wrap = " ".join(superres_args(s2, dr)) + f" 2> {log}"
        cmd = ["sbatch", "--parsable", "--partition", partition, "--account", account]
        # one at a time (singleton): jobs side by side on a small node would share its cores
        cmd += ["--job-name", "bench_campaign", "--dependency", "singleton"]
        cmd += ["--cpus-per-task", "2", "--mem", "4000", "--wrap", wrap]
        job = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        jobs.append((job.split(";")[0], log))
    elapsed = wait_for_jobs([job for job, _ in jobs])
    return [(elapsed[job], engine_seconds(log.read_text())) for job, log in jobs]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 200, 500])
    parser.add_argument("--scenes", type=int, default=4, help="scenes per size")
    parser.add_argument("--repeats", type=int, default=3, help="runs per fixed-cost step")
    parser.add_argument("--executor", choices=["local", "slurm"], default="local")
    parser.add_argument("--partition", default="accel")
    parser.add_argument("--account", default="tilepipe-ci")
    args = parser.parse_args()

    steps = fixed_costs(args.repeats)
    print("== fixed cost of one superres process (median wall s, each step alone)")
    for name, seconds in steps.items():
        print(f"  {name:<12} {seconds:6.2f}")
    print(f"  {'total':<12} {sum(steps.values()):6.2f}")
    print(f"== one job per scene, executor {args.executor}, model {MODEL.name}, CPU")
    print(f"{'input':>8} {'output':>10} {'scenes':>7} {'billed s':>9} {'engine s':>9} {'ratio':>6}")
    with tempfile.TemporaryDirectory(prefix="bench_campaign_", dir="/tmp") as tmp:
        for size in args.sizes:
            s2 = make_input(Path(tmp) / f"s2_{size}.tif", size)
            scenes = [(s2, Path(tmp) / f"dr_{size}_{i}.tif") for i in range(args.scenes)]
            if args.executor == "slurm":
                results = run_slurm(scenes, args.partition, args.account)
            else:
                results = run_local(scenes)
            billed = sum(b for b, _ in results)
            engine = sum(e for _, e in results)
            out = f"{size * 10}²"
            print(
                f"{size:>7}² {out:>10} {len(results):>7} {billed:>9.1f} {engine:>9.1f} "
                f"{engine / billed:>6.2f}"
            )


if __name__ == "__main__":
    main()
