"""The warm worker (``TILEPIPE_WORKER``): a scene's ``tilepipe`` process hands its step to one
process that keeps torch imported and the model loaded, and gets the same result.

Real processes: the ``tilepipe`` command as a client, the worker it starts, real superres with
the demo model on the CPU. Each test names its own worker and waits for it to exit.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tilepipe.worker.client import worker_log

from .conftest import TILEPIPE, env_without_worker, superres_argv, write_scene


@pytest.fixture
def worker(request, tmp_path):
    """A worker name of this test, its environment, and its log (read after it exits)."""
    name = f"test-{request.node.name[:40]}-{time.monotonic_ns()}"
    env = env_without_worker(TILEPIPE_WORKER=name, TILEPIPE_WORKER_IDLE="3", TMPDIR=str(tmp_path))
    yield name, env
    log = tmp_path / worker_log(name).name
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "exiting" not in (
        log.read_text() if log.exists() else ""
    ):
        time.sleep(0.2)


def _run(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([TILEPIPE, *argv], env=env, capture_output=True, text=True, timeout=300)


def test_a_step_through_the_worker_writes_the_file_the_step_alone_writes(worker, scene, tmp_path):
    _name, env = worker
    warm = _run(superres_argv(scene, str(tmp_path / "warm.tif")), env)
    alone = _run(superres_argv(scene, str(tmp_path / "alone.tif")), env_without_worker())
    assert warm.returncode == alone.returncode == 0, warm.stderr[-2000:]
    assert (tmp_path / "warm.tif").read_bytes() == (tmp_path / "alone.tif").read_bytes()
    assert "superres done" in warm.stderr  # the step's own log reaches the job's


def test_the_second_scene_finds_the_model_loaded(worker, scene, tmp_path):
    _name, env = worker
    first = _run(superres_argv(scene, str(tmp_path / "a.tif")), env)
    second = _run(superres_argv(scene, str(tmp_path / "b.tif")), env)
    assert "already loaded" not in first.stderr
    assert "already loaded in this worker" in second.stderr


def test_a_failing_scene_gets_its_status_and_message_and_the_next_scene_runs(
    worker, scene, tmp_path
):
    _name, env = worker
    broken = tmp_path / "broken.tif"
    broken.write_bytes(Path(scene).read_bytes()[:3000])
    bad = _run(superres_argv(str(broken), str(tmp_path / "bad.tif")), env)
    good = _run(superres_argv(scene, str(tmp_path / "good.tif")), env)
    assert bad.returncode == 2
    assert "cannot open s2.tif" in bad.stderr
    assert good.returncode == 0 and (tmp_path / "good.tif").exists()
    assert not (tmp_path / "bad.tif").exists()


def test_a_killed_client_stops_its_scene_which_leaves_no_output(worker, tmp_path):
    name, env = worker
    big = write_scene(tmp_path / "big.tif", 320)
    out = tmp_path / "big_dr.tif"
    client = subprocess.Popen([TILEPIPE, *superres_argv(big, str(out))], env=env,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    for line in client.stderr:
        if "superres 33UXP 2022-06-21: " in line and "windows" in line:
            break  # the engine has started on the scene
    client.send_signal(signal.SIGKILL)
    client.wait()
    after = _run(
        superres_argv(write_scene(tmp_path / "s.tif", 30), str(tmp_path / "s_dr.tif")), env
    )
    assert after.returncode == 0  # the worker survived and served the next scene
    log = (tmp_path / worker_log(name).name).read_text()
    assert f"exit {128 + signal.SIGTERM}" in log  # the scene stopped as on SIGTERM
    assert not out.exists()


def test_the_worker_exits_when_idle(worker, scene, tmp_path):
    name, env = worker
    _run(superres_argv(scene, str(tmp_path / "a.tif")), env)
    log = tmp_path / worker_log(name).name
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "exiting" not in log.read_text():
        time.sleep(0.2)
    assert "1 requests served, idle 3 s, exiting" in log.read_text()


def test_the_client_imports_neither_torch_nor_the_steps():
    code = (
        "import sys, tilepipe.worker.client; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'rasterio', 'numpy') or m.startswith('tilepipe.cli'))))"
    )
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert json.loads(out.stdout) == []
