"""The thin side of the warm worker: hand one step's command line over and relay the answer.

Used when ``TILEPIPE_WORKER`` is set, to ``auto`` or a name (one machine: the worker's
abstract Unix socket, node-local; the client starts the worker when none answers and sends its
environment too), or to ``spool:DIR`` (a pool of workers on GPU nodes, registered in the spool
``DIR`` of :mod:`.spool`; when none is alive the client asks for one, which the workflow's
:mod:`.starter` starts, and waits up to ``TILEPIPE_WORKER_WAIT`` seconds). The ``tilepipe``
command then sends its arguments and working directory, prints what the step prints and exits
with the step's status. A client killed by Snakemake or Slurm closes
the connection, and the worker stops that scene as it stops on SIGTERM (journal kept).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tilepipe import __version__
from tilepipe.worker import spool as pool

WORKER_ENV = "TILEPIPE_WORKER"
IDLE_ENV = "TILEPIPE_WORKER_IDLE"
WAIT_ENV = "TILEPIPE_WORKER_WAIT"  # how long a scene waits for a pool worker (queue time)
#: the steps a worker runs: the ones that load a model onto the device
STEPS = frozenset({"superres", "fields"})
START_TIMEOUT_S = 600.0  # importing torch on a cold shared file system can take minutes
#: what makes two processes on a node able to share one worker
_SAME = ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")


def worker_name(spec: str) -> str:
    """The worker's name: ``spec`` itself, or for ``auto`` one per user, Slurm job, devices,
    interpreter and tilepipe version (a job never talks to another job's worker)."""
    if spec not in ("auto", "1", "true"):
        return spec
    material = [str(os.getuid()), sys.executable, __version__]
    material += [os.environ.get(k, "") for k in _SAME]
    return hashlib.sha256("\0".join(material).encode()).hexdigest()[:16]


def socket_address(name: str) -> str:
    """The abstract socket address of worker ``name`` (Linux: no file, gone with the worker)."""
    return f"\0tilepipe-worker-{name}"


def worker_log(name: str) -> Path:
    """Where the worker of ``name`` writes its own log (start, models loaded, requests, exit)."""
    return Path(tempfile.gettempdir()) / f"tilepipe-worker-{name}.log"


def wanted(argv: list[str], environ: dict[str, str]) -> bool:
    """Whether this command line goes to a worker: a GPU step, with ``TILEPIPE_WORKER`` set."""
    spec = environ.get(WORKER_ENV, "").strip()
    return bool(spec) and spec not in ("0", "false", "no") and bool(argv) and argv[0] in STEPS


def _connect(address: str) -> socket.socket | None:
    """A connection to the worker at ``address``, or None when none listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address)
    except (ConnectionRefusedError, FileNotFoundError):
        sock.close()
        return None
    return sock


def _start(name: str) -> subprocess.Popen:
    """Start the worker ``name`` in its own session (it outlives this client, not the job)."""
    log = open(worker_log(name), "ab")  # noqa: SIM115 - the worker's, closed with it
    idle = os.environ.get(IDLE_ENV, "120")
    args = [sys.executable, "-m", "tilepipe.worker.server", "--name", name, "--idle", idle]
    return subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
    )


def connect(name: str, timeout: float = START_TIMEOUT_S) -> socket.socket:
    """A connection to worker ``name``, starting it when none answers (several clients may race
    to start one: the first to bind the address wins, the others' exit at once)."""
    address = socket_address(name)
    sock = _connect(address)
    if sock is not None:
        return sock
    started = _start(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock = _connect(address)
        if sock is not None:
            return sock
        if started.poll() not in (None, 0):
            raise RuntimeError(
                f"the warm worker exited with status {started.returncode} before it listened;"
                f" its log: {worker_log(name)}"
            )
        time.sleep(0.02)
    raise RuntimeError(f"no warm worker answered within {timeout:.0f} s; see {worker_log(name)}")


def connect_pool(spool: Path, environ: dict[str, str]) -> socket.socket:
    """A connection to a live worker of the pool. When none is alive, the scene says it wants
    one (``wanted``, which the workflow's starter watches: it starts workers from the host that
    runs Snakemake, e.g. with ``sbatch``), and waits up to ``TILEPIPE_WORKER_WAIT`` seconds
    (a Slurm queue may take a while)."""
    wait = float(environ.get(WAIT_ENV, "3600") or 3600)
    began = time.time()
    deadline = time.monotonic() + wait
    said = time.monotonic()
    pause = 0.2
    while time.monotonic() < deadline:
        workers = pool.live_workers(spool)
        random.shuffle(workers)
        for worker in workers:
            try:
                return socket.create_connection((worker["host"], worker["port"]), timeout=10)
            except OSError:
                continue  # gone since its last heartbeat
        if not workers and not pool.wanted(spool, within=5.0):
            pool.want(spool)  # a touch at most every 5 s per scene: a shared file system
            failed = pool.start_failure(spool, since=began)
            if failed:
                raise RuntimeError(f"the GPU workers could not be started: {failed}")
        if time.monotonic() - said > 60:
            print(f"tilepipe: waiting for a GPU worker of {spool}", file=sys.stderr)
            said = time.monotonic()
        time.sleep(pause)
        pause = min(pause * 1.5, 2.0)  # many scenes may wait through a Slurm queue: poll less
    raise RuntimeError(
        f"no GPU worker of {spool} answered within {wait:.0f} s (the workflow starts them;"
        f" by hand: tilepipe-worker --spool {spool})"
    )


def relay(sock: socket.socket, request: dict, step: str, where: str) -> int:
    """Send the request, print the step's output as it comes, return its exit status."""
    sock.settimeout(None)
    with sock, sock.makefile("rb") as answers:
        sock.sendall(json.dumps(request).encode() + b"\n")
        for line in answers:
            message = json.loads(line)
            if "exit" in message:
                return int(message["exit"])
            stream = sys.stdout if message.get("stream") == "out" else sys.stderr
            stream.write(message["text"])
            stream.flush()
    print(
        f"tilepipe {step}: error: the warm worker ended without an answer (killed, crashed, or"
        f" refused the request); {where}. A retry starts a new one.",
        file=sys.stderr,
    )
    return 1


def forward(argv: list[str], name: str) -> int:
    """Run ``tilepipe <argv>`` in worker ``name``: relay its output, return its exit status."""
    try:
        sock = connect(name)
    except RuntimeError as exc:
        print(f"tilepipe {argv[0]}: error: {exc}", file=sys.stderr)
        return 1
    request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
    return relay(sock, request, argv[0], f"its log: {worker_log(name)}")


def forward_pool(argv: list[str], spool: Path) -> int:
    """Run ``tilepipe <argv>`` in a worker of the pool at ``spool``."""
    environ = dict(os.environ)
    try:
        token = pool.ensure_token(spool)
        sock = connect_pool(spool, environ)
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"tilepipe {argv[0]}: error: {exc}", file=sys.stderr)
        return 1
    request = {"argv": argv, "cwd": os.getcwd(), "token": token}
    return relay(sock, request, argv[0], f"the workers' logs: {spool / 'logs'}")


def main() -> int:
    """The ``tilepipe`` command: a GPU step goes to the warm worker when one is asked for."""
    argv = sys.argv[1:]
    if wanted(argv, dict(os.environ)):
        spec = os.environ[WORKER_ENV].strip()
        if spec.startswith("spool:"):
            return forward_pool(argv, Path(spec.removeprefix("spool:")).resolve())
        return forward(argv, worker_name(spec))
    from tilepipe.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
