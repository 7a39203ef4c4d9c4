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
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tilepipe.worker import spool as pool


def worker_command(spool: Path, idle: float, program: list[str]) -> str:
    """The command line of one pool worker (what ``workers.start`` runs as {worker})."""
    return shlex.join([*program, "worker", "--spool", str(spool), "--idle", f"{idle:g}"])


def start_command(spool: Path, idle: float, template: str) -> str:
    """The shell command that starts one worker: the template filled in; with no template,
    the worker itself, with this interpreter (its ``tilepipe`` is this one)."""
    if not template.strip():
        return worker_command(spool, idle, [sys.executable, "-m", "tilepipe.cli"])
    return template.format(worker=worker_command(spool, idle, ["tilepipe"]), spool=spool)


def start_workers(spool: Path, command: str, count: int, local: bool) -> list[subprocess.Popen]:
    """Run the start command ``count`` times; a submission that fails raises RuntimeError."""
    logs = spool / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = []
    for _ in range(count):
        with open(logs / "start.log", "ab") as log:
            proc = subprocess.Popen(
                command, shell=True, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        if local:
            started.append(proc)
        elif proc.wait() != 0:  # a submission returns at once
            raise RuntimeError(
                f"`{command}` failed (exit {proc.returncode}); its output: {logs / 'start.log'}"
            )
    return started


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

    def step(self) -> None:
        """One look at the spool."""
        if not pool.wanted(self.spool) or pool.live_workers(self.spool):
            return
        if self.children and all(p.poll() not in (None, 0) for p in self.children):
            self.children = []
            pool.fail_start(self.spool, f"the local worker exited; see {self.spool / 'logs'}")
            return
        if not pool.claim_start(self.spool, stale_after_s=self.wait):
            return
        command = start_command(self.spool, self.idle, self.template)
        self.say(f"tilepipe: starting {self.count} GPU worker(s): {command}")
        try:
            self.children = start_workers(self.spool, command, self.count, self.local)
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
