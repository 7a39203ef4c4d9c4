"""The pool's starter: a thread of the Snakemake process that starts GPU workers when scenes
ask for them (config ``workers``).

It runs where Snakemake runs (the login node), outside any container, so it can submit: when a
scene has found no live worker, it runs the ``workers.start`` command ``count`` times (e.g.
``sbatch ... --wrap '{worker}'``; by default the worker starts here, in the background). Workers
register in the spool when they are up and exit after ``idle_s`` without a scene, so the pool
follows the campaign: none while downloads run, ``count`` while scenes come, none at the end.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tilepipe.worker import spool as pool


def worker_command(spool: Path, idle: float, program: list[str]) -> str:
    """The command line of one pool worker (what ``workers.start`` runs as {worker})."""
    return shlex.join([*program, "--spool", str(spool), "--idle", f"{idle:g}"])


def start_command(spool: Path, idle: float, template: str) -> str:
    """The shell command that starts one worker: the template filled in; with no template,
    the worker itself, with this interpreter."""
    if not template.strip():
        return worker_command(spool, idle, [sys.executable, "-m", "tilepipe.worker.server"])
    return template.format(worker=worker_command(spool, idle, ["tilepipe-worker"]), spool=spool)


def start_workers(
    spool: Path, command: str, count: int, local: bool
) -> tuple[list[subprocess.Popen], list[str]]:
    """Run the start command ``count`` times: the local workers' processes, and the Slurm job
    ids a submission printed (``sbatch --parsable``); a submission that fails raises."""
    logs = spool / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started, jobs = [], []
    for _ in range(count):
        if local:
            with open(logs / "start.log", "ab") as log:
                started.append(
                    subprocess.Popen(
                        command,
                        shell=True,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        start_new_session=True,
                    )
                )
            continue
        run = subprocess.run(command, shell=True, capture_output=True, text=True)
        with open(logs / "start.log", "a") as log:
            log.write(run.stdout + run.stderr)
        if run.returncode != 0:
            raise RuntimeError(
                f"`{command}` failed (exit {run.returncode}): {run.stderr.strip()[-500:]}"
            )
        job = run.stdout.strip().split(";")[0]
        if job.isdigit():
            jobs.append(job)
    return started, jobs


def jobs_alive(jobs: list[str]) -> bool | None:
    """Whether any of the Slurm jobs is still queued or running (None: cannot tell)."""
    if not jobs or not shutil.which("squeue"):
        return None
    run = subprocess.run(
        ["squeue", "-h", "-o", "%i", "-j", ",".join(jobs)], capture_output=True, text=True
    )
    if run.returncode != 0 and "Invalid job id" not in run.stderr:
        return None
    return bool(run.stdout.split())


class Starter(threading.Thread):
    """Watch the spool; start workers when scenes want one and none is alive or starting."""

    def __init__(
        self,
        spool: Path,
        count: int,
        idle: float,
        template: str,
        wait: float,
        say: Callable[[str], None] = print,
        poll: float = 1.0,
    ) -> None:
        super().__init__(name="tilepipe-worker-starter", daemon=True)
        self.spool, self.count, self.idle, self.wait = spool, count, idle, wait
        self.template, self.say, self.poll = template, say, poll
        self.local = not template.strip()
        self.stopped = threading.Event()
        self.children: list[subprocess.Popen] = []
        self.jobs: list[str] = []

    def step(self) -> None:
        """One look at the spool."""
        if pool.live_workers(self.spool):
            self.children, self.jobs = [], []  # they came up: nothing more to watch
            return
        if not pool.wanted(self.spool):
            return
        if self.children and all(p.poll() is not None for p in self.children):
            self.children = []
            pool.fail_start(
                self.spool, f"the worker exited before it registered; see {self.spool / 'logs'}"
            )
            return
        if self.jobs and jobs_alive(self.jobs) is False:
            ended, self.jobs = ", ".join(self.jobs), []
            pool.fail_start(
                self.spool,
                f"the worker job(s) {ended} ended before registering; see {self.spool / 'logs'}",
            )
            return
        if not pool.claim_start(self.spool, stale_after_s=self.wait):
            return
        command = start_command(self.spool, self.idle, self.template)
        self.say(f"tilepipe: starting {self.count} GPU worker(s): {command}")
        try:
            self.children, self.jobs = start_workers(self.spool, command, self.count, self.local)
        except RuntimeError as exc:
            pool.fail_start(self.spool, str(exc))
            self.say(f"tilepipe: cannot start GPU workers: {exc}")

    def run(self) -> None:
        """Look at the spool every ``poll`` seconds until stopped."""
        while not self.stopped.wait(self.poll):
            try:
                self.step()
            except OSError as exc:  # the spool's file system: say it, keep watching
                self.say(f"tilepipe: GPU worker starter: {exc}")
