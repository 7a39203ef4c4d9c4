"""What each GPU job of a finished campaign cost beyond its engine: from sacct and the logs.

    python benchmarks/bench_gpu_jobs.py WORKDIR        # a campaign run with the Slurm executor

For every superres and fields job the Slurm plugin submitted (its Slurm log kept: run with
``--slurm-keep-successful-logs``), it reads ``sacct``'s ``ElapsedRaw`` (what the job was
billed, Slurm's start and end included), the step's own log (``logs/<rule>/<tile>/<date>.log``:
``tilepipe <step> finished in X s``, the process after its argument parsing; the engine's
seconds) and prints, per rule, the medians of: billed; the job around the step (Slurm, the
plugin's Snakemake in the job, the interpreter; billed minus the step's process); the step's
own set-up (imports, model load, checks: the process minus the engine); the engine. The fixed
cost of a GPU job is billed minus engine: what ``plan.runtime.<rule>.base_s`` should be.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
from pathlib import Path

RULES = {
    "superres": r"superres done: (\{.*\})",
    "fields": r"probabilities in ([0-9.]+) s",
}


def engine_seconds(rule: str, text: str) -> float | None:
    """The engine's seconds in a step's log."""
    found = re.search(RULES[rule], text)
    if not found:
        return None
    return (
        float(json.loads(found.group(1))["seconds"])
        if rule == "superres"
        else float(found.group(1))
    )


def jobs_of(work: Path, rule: str) -> dict[str, Path]:
    """Slurm job id -> the scene's step log, from the plugin's kept Slurm logs."""
    out = {}
    for log in (work / ".snakemake" / "slurm_logs").glob(f"rule_{rule}/**/*.log"):
        found = re.findall(r"^\s*wildcards: tile=(\w+), date=([\d-]+)$", log.read_text(), re.M)
        if found:
            tile, date = found[-1]
            out[log.stem] = work / "logs" / rule / tile / f"{date}.log"
    return out


def elapsed(jobs: list[str]) -> dict[str, int]:
    """sacct's ElapsedRaw of each job (array tasks as ``<array>_<task>``)."""
    run = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-j", ",".join(jobs), "-o", "JobID,ElapsedRaw,State"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = [line.split("|") for line in run.stdout.splitlines() if line]
    return {r[0]: int(r[1]) for r in rows if r[2] == "COMPLETED"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="the campaign's working directory")
    args = parser.parse_args()
    print(f"{'rule':<10}{'jobs':>5}{'billed s':>10}{'around s':>10}{'set-up s':>10}{'engine s':>10}"
          f"{'fixed s':>9}")  # fmt: skip
    for rule in RULES:
        logs = jobs_of(args.work, rule)
        billed = elapsed(list(logs)) if logs else {}
        rows = []
        for job, log in logs.items():
            if job not in billed or not log.exists():
                continue
            text = log.read_text()
            engine = engine_seconds(rule, text)
            step = re.search(rf"tilepipe {rule} finished in ([0-9.]+) s", text)
            if engine is None or not step:
                continue
            rows.append(
                (
                    billed[job],
                    billed[job] - float(step.group(1)),
                    float(step.group(1)) - engine,
                    engine,
                )
            )
        if not rows:
            print(f"{rule:<10}{0:>5}")
            continue
        med = [statistics.median(r[i] for r in rows) for i in range(4)]
        print(f"{rule:<10}{len(rows):>5}{med[0]:>10.1f}{med[1]:>10.1f}{med[2]:>10.1f}{med[3]:>10.2f}"
              f"{med[0] - med[3]:>9.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
