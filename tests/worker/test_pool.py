"""A pool of GPU workers (config ``workers``): scenes' jobs hand their step to workers that a
starter (a thread of the Snakemake process) starts when scenes ask, found through a spool.

Real processes and real TCP over loopback: the starter thread here, the ``tilepipe`` command as
the scene's client, the worker it is served by, real superres with the demo model on the CPU.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tilepipe.worker import spool as pool
from tilepipe.worker.starter import Starter

from .conftest import TILEPIPE, env_without_worker, superres_argv


@pytest.fixture
def spool(tmp_path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def starter(spool):
    """The starter of a local pool of one worker (idle 3 s), stopped after the test."""
    thread = Starter(spool, 1, 3.0, "", 60.0, say=lambda _: None, poll=0.1)
    thread.start()
    yield thread
    thread.stopped.set()
    deadline = time.monotonic() + 30
    while pool.live_workers(spool) and time.monotonic() < deadline:
        time.sleep(0.2)  # the worker idles out


def _client(argv: list[str], spool: Path, wait: str = "120") -> subprocess.CompletedProcess:
    env = env_without_worker(TILEPIPE_WORKER=f"spool:{spool}", TILEPIPE_WORKER_WAIT=wait)
    return subprocess.run([TILEPIPE, *argv], env=env, capture_output=True, text=True, timeout=300)


def test_a_scene_is_run_by_a_worker_the_starter_started_and_gets_the_same_file(
    starter, spool, scene, tmp_path
):
    run = _client(superres_argv(scene, str(tmp_path / "pool.tif")), spool)
    # counted at once: the step run alone below may outlast the worker's 3 s idle time
    workers = pool.live_workers(spool)
    alone = subprocess.run(
        [TILEPIPE, *superres_argv(scene, str(tmp_path / "alone.tif"))],
        env=env_without_worker(), capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == alone.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "pool.tif").read_bytes() == (tmp_path / "alone.tif").read_bytes()
    assert len(workers) == 1


def test_the_next_scene_finds_the_worker_warm(starter, spool, scene, tmp_path):
    _client(superres_argv(scene, str(tmp_path / "a.tif")), spool)
    second = _client(superres_argv(scene, str(tmp_path / "b.tif")), spool)
    assert "already loaded in this worker" in second.stderr


def test_a_request_without_the_spools_token_is_refused(starter, spool, scene, tmp_path):
    _client(superres_argv(scene, str(tmp_path / "a.tif")), spool)  # a worker is up
    worker = pool.live_workers(spool)[0]
    argv = superres_argv(scene, str(tmp_path / "intruder.tif"))
    with socket.create_connection((worker["host"], worker["port"]), timeout=10) as sock:
        sock.sendall(json.dumps({"argv": argv, "cwd": os.getcwd(), "token": "x"}).encode() + b"\n")
        assert sock.makefile("rb").read() == b""  # closed, no answer
    assert not (tmp_path / "intruder.tif").exists()


def test_the_token_is_readable_by_its_owner_only(spool):
    pool.ensure_token(spool)
    assert (spool / "token").stat().st_mode & 0o777 == 0o600


def test_a_registration_without_a_recent_heartbeat_is_no_live_worker(spool):
    path = pool.register(spool, "w1", "localhost", 1)
    assert [w["name"] for w in pool.live_workers(spool)] == ["w1"]
    old = time.time() - pool.STALE_S - 1
    os.utime(path, (old, old))
    assert pool.live_workers(spool) == []


def _with_starter(thread: Starter, argv: list[str], spool: Path) -> subprocess.CompletedProcess:
    """One scene's client while ``thread`` watches the spool."""
    thread.start()
    try:
        return _client(argv, spool)
    finally:
        thread.stopped.set()


def test_a_start_command_that_fails_fails_the_waiting_scene_with_its_cause(spool, scene, tmp_path):
    thread = Starter(spool, 1, 3.0, "exit 3", 60.0, say=lambda _: None, poll=0.1)
    run = _with_starter(thread, superres_argv(scene, str(tmp_path / "a.tif")), spool)
    assert run.returncode == 1
    assert "could not be started" in run.stderr and "exit 3" in run.stderr


def test_a_scene_with_no_worker_and_no_starter_fails_after_its_wait(spool, scene, tmp_path):
    run = _client(superres_argv(scene, str(tmp_path / "a.tif")), spool, wait="2")
    assert run.returncode == 1
    assert "no GPU worker" in run.stderr and "tilepipe-worker --spool" in run.stderr


def test_a_worker_that_dies_before_it_registers_fails_the_waiting_scene(spool, scene, tmp_path):
    thread = Starter(spool, 1, 3.0, "", 60.0, say=lambda _: None, poll=0.1)
    thread.template, thread.local = "exit 0", True  # a worker that ends at once, quietly
    run = _with_starter(thread, superres_argv(scene, str(tmp_path / "a.tif")), spool)
    assert run.returncode == 1
    assert "before it registered" in run.stderr


def test_scenes_that_start_together_get_the_same_whole_token(spool):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as run:
        tokens = set(run.map(lambda _: pool.ensure_token(spool), range(32)))
    assert len(tokens) == 1 and len(tokens.pop()) == 32
    assert sorted(p.name for p in spool.iterdir()) == ["token"]


def test_a_worker_stopped_by_sigterm_mid_scene_exits_and_the_retry_resumes_on_a_new_one(
    starter, spool, tmp_path
):
    import signal

    from .conftest import write_scene

    big = write_scene(tmp_path / "big.tif", 320)
    out = tmp_path / "big_dr.tif"
    env = env_without_worker(TILEPIPE_WORKER=f"spool:{spool}", TILEPIPE_WORKER_WAIT="120")
    client = subprocess.Popen([TILEPIPE, *superres_argv(big, str(out))], env=env,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    for line in client.stderr:
        if "14/49 windows" in line:
            break  # two rows of windows are in the journal
    worker = pool.live_workers(spool)[0]
    os.kill(worker["pid"], signal.SIGTERM)  # as Slurm does at the time limit
    client.wait(timeout=120)
    assert client.returncode == 128 + signal.SIGTERM  # the job's status: Slurm requeues it
    assert not out.exists()
    retry = _client(superres_argv(big, str(out)), spool)  # the retry starts a new worker
    assert retry.returncode == 0, retry.stderr[-2000:]
    assert "resuming after" in retry.stderr
    assert pool.live_workers(spool)[0]["pid"] != worker["pid"]
