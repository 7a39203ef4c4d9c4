"""A killed Snakemake's leftovers: stale locks go, and its orphaned jobs are stopped.

The Snakemake of each test is a real process whose record the workflow would have written; its
"jobs" are real child processes carrying its run id in their environment, as the workflow's
jobs inherit it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tilepipe.campaign.locks import (
    LOCKS,
    OWNER,
    RUN_ENV,
    clear_stale_locks,
    orphans,
    run_id,
    stop_orphans,
    write_owner,
)

from ..core.test_scratch import dead_owner

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def _dead_run(work: Path) -> str:
    """Record a Snakemake that has exited since (killed) as the lock holder; its run id."""
    owner = dead_owner()
    record = {"host": socket.gethostname(), "pid": owner.pid, "start": str(owner.start)}
    (work / LOCKS).mkdir(parents=True)
    (work / LOCKS / "0.input.lock").write_text("")
    (work / OWNER).write_text(json.dumps(record))
    return run_id(record)


def _job(run: str, code: str = "import time; time.sleep(60)") -> subprocess.Popen:
    """A job of run ``run``: a process with the run id in its environment."""
    env = {**os.environ, RUN_ENV: run}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE)


def _stopped_job(run: str) -> subprocess.Popen:
    """A job that stopped itself (SIGSTOP), as a step at its fault hook does."""
    job = _job(run, "import os, signal, time; os.kill(os.getpid(), signal.SIGSTOP); time.sleep(60)")
    _, status = os.waitpid(job.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status)
    return job


def test_the_jobs_of_a_dead_run_are_its_orphans(tmp_path):
    job, other = _job(_dead_run(tmp_path)), _job("another-host:1:2")
    try:
        assert set(orphans(tmp_path)) == {job.pid}
    finally:
        for proc in (job, other):
            proc.kill()
            proc.wait()


def test_the_jobs_of_a_live_run_are_no_orphans(tmp_path):
    run = write_owner(tmp_path)  # this process: a Snakemake that still runs
    job = _job(run)
    try:
        assert orphans(tmp_path) == {}
    finally:
        job.kill()
        job.wait()


def test_stopping_orphans_terminates_even_a_stopped_one_and_returns_once_it_is_gone(tmp_path):
    job = _stopped_job(_dead_run(tmp_path))
    said = stop_orphans(tmp_path)
    assert "stopped 1 orphaned process(es)" in said and str(job.pid) in said
    assert job.wait(timeout=5) == -signal.SIGTERM
    assert orphans(tmp_path) == {}


def test_an_orphan_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    job = _job(_dead_run(tmp_path), IGNORES_SIGTERM)
    assert job.stdout.readline() == b"ready\n"  # its SIGTERM handler is in place
    said = stop_orphans(tmp_path, grace=1.0)
    assert "1 needed SIGKILL" in said
    assert job.wait(timeout=5) == -signal.SIGKILL


def test_clearing_stale_locks_keeps_the_record_that_finds_the_orphans(tmp_path):
    run = _dead_run(tmp_path)
    job = _job(run)
    try:
        assert "removed 1 stale lock(s)" in clear_stale_locks(tmp_path)
        assert not list((tmp_path / LOCKS).glob("*.lock"))
        assert set(orphans(tmp_path)) == {job.pid}
    finally:
        job.kill()
        job.wait()
