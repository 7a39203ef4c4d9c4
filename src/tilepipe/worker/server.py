"""The warm worker: one process that runs many scenes' GPU steps with torch imported once and
each model loaded once.

Two ways to reach it:

- ``python -m tilepipe.worker.server --name N``: on one machine, an abstract Unix socket
  (only the same user's processes are served, checked with SO_PEERCRED);
- ``tilepipe-worker --spool DIR``: a pool worker, on a GPU node, listening on TCP and
  registered in the spool of :mod:`.spool` (clients prove themselves with the spool's
  token); the clients are the scenes' jobs on the host that runs Snakemake.

It imports the steps and serves one request at a time, in order of arrival (one device, one
scene on it at a time), until no request came for ``--idle`` seconds, or until it is killed
(the end of the Slurm job kills it with the job's other processes). A request runs as
``tilepipe <argv>`` would in a fresh process: the client's working directory (and, on one
machine, its environment), its output relayed, its exit status returned. A scene that fails
fails alone: the worker answers its status and serves the next one. A client that goes away
(Snakemake's or Slurm's kill) stops its scene the way SIGTERM stops a step: the journal is kept
for the retry.
"""

from __future__ import annotations

import argparse
import errno
import hmac
import json
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tilepipe.core.errors import Terminated
from tilepipe.worker import spool as pool
from tilepipe.worker.client import socket_address

log = logging.getLogger("tilepipe.worker")
GONE = signal.SIGUSR1  # the watcher's word to the serving thread: the client went away


class Relay:
    """A text stream that sends what is written to the client, as JSON lines."""

    def __init__(self, conn: socket.socket, stream: str) -> None:
        self.conn, self.stream = conn, stream

    def write(self, text: str) -> int:
        """Send ``text`` (a client that went away loses it; the watcher stops the scene)."""
        if text:
            line = json.dumps({"stream": self.stream, "text": text}).encode() + b"\n"
            with suppress(OSError):
                self.conn.sendall(line)
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""

    def isatty(self) -> bool:
        """Never a terminal: progress is logged as lines."""
        return False


class CurrentStderr:
    """Log records go to whichever stderr the request in progress has (set per request)."""

    def write(self, text: str) -> int:
        """Write to the current ``sys.stderr``."""
        return sys.stderr.write(text)

    def flush(self) -> None:
        """Flush the current ``sys.stderr``."""
        sys.stderr.flush()


def peer_uid(conn: socket.socket) -> int:
    """The user id of the process at the other end (SO_PEERCRED): only ours are served."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class InProgress:
    """Which request is running, and whose client went away (the watchers' word to the serving
    thread): a late word, about a request that has ended, must not stop the next one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: int | None = None
        self.gone: int | None = None


def stop_when_gone(state: InProgress):
    """The handler of GONE: stop the request in progress if its client is no longer there."""

    def handler(signum: int, frame: object) -> None:
        if state.running is not None and state.gone == state.running:
            raise Terminated(
                "the job's client went away (cancelled or timed out); resume state kept"
            )

    return handler


@contextmanager
def as_fresh_process(request: dict, conn: socket.socket) -> Iterator[None]:
    """Run a request in the client's directory and environment with its output relayed."""
    cwd, environ = os.getcwd(), dict(os.environ)
    stdout, stderr = sys.stdout, sys.stderr
    os.chdir(request["cwd"])
    if "env" in request:  # a client on this machine; a pool worker keeps its node's own
        os.environ.clear()
        os.environ.update(request["env"])
    sys.stdout, sys.stderr = Relay(conn, "out"), Relay(conn, "err")
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)


def watch(conn: socket.socket, state: InProgress, request_id: int, main_thread: int) -> None:
    """Wait for the client's end of ``conn`` to close; if its request still runs, stop it."""
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass
    with state.lock:
        if state.running == request_id:
            state.gone = request_id
            signal.pthread_kill(main_thread, GONE)


def run_request(request: dict, conn: socket.socket, state: InProgress, request_id: int) -> int:
    """Run one ``tilepipe <argv>`` in this process; its exit status (crashes print theirs)."""
    from tilepipe.cli import main

    state.running = request_id
    watcher = threading.Thread(
        target=watch, args=(conn, state, request_id, threading.get_ident()), daemon=True
    )
    watcher.start()
    try:
        with as_fresh_process(request, conn):
            try:
                return main(request["argv"])
            except SystemExit as exc:  # argparse's usage errors
                return exc.code if isinstance(exc.code, int) else 2
            except Terminated as exc:  # the client went away between the step's own handlers
                print(f"tilepipe: terminated: {exc}", file=sys.stderr)
                return 128 + signal.SIGTERM
            except Exception:  # a bug in one scene's step must not end the others'
                traceback.print_exc()
                return 1
    finally:
        with state.lock:
            state.running = None
        for handler in logging.getLogger().handlers:
            handler.filters.clear()  # each request's main() adds its own redacting filter


def serve_one(
    conn: socket.socket, state: InProgress, request_id: int, token: str | None
) -> int | None:
    """Answer one connection: the step's exit status, or None when it was refused (another
    user's process; on TCP, a request without the spool's token)."""
    with conn:
        if token is None and peer_uid(conn) != os.getuid():
            log.warning("refused a connection from another user")
            return None
        line = conn.makefile("rb").readline()
        if not line:
            return None
        try:
            request = json.loads(line)
        except ValueError:
            log.warning("refused a request that is not JSON")
            return None
        if token is not None and not hmac.compare_digest(str(request.get("token", "")), token):
            log.warning("refused a request without the spool's token")
            return None
        started = time.perf_counter()
        status = run_request(request, conn, state, request_id)
        log.info(
            "%s exit %d in %.2f s",
            " ".join(request["argv"][:5]),
            status,
            time.perf_counter() - started,
        )
        with suppress(OSError):
            conn.sendall(json.dumps({"exit": status}).encode() + b"\n")
        return status


def _listen_local(name: str) -> socket.socket | None:
    """The abstract socket of worker ``name``; None when another worker already has it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(socket_address(name))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            return None  # another client started this worker first: it serves
        raise
    sock.listen(128)
    return sock


def _heartbeat(path: Path, stop: threading.Event) -> None:
    """Touch the registration until the worker stops: clients know it is alive."""
    while not stop.wait(pool.HEARTBEAT_S):
        with suppress(OSError):
            os.utime(path)


def serve(name: str, idle: float, spool: Path | None = None) -> int:
    """Listen as worker ``name`` and serve until ``idle`` seconds pass with no request: on the
    abstract socket, or with ``spool`` on TCP, registered there."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=CurrentStderr(),
    )
    for handler in logging.getLogger().handlers:  # a caller that set up logging already
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
            handler.setStream(CurrentStderr())
    token = None
    if spool is None:
        sock = _listen_local(name)
        if sock is None:
            return 0
    else:
        token = pool.ensure_token(spool)
        sock = socket.create_server(("", 0), backlog=128)
    started = time.perf_counter()
    import tilepipe.cli  # the steps and torch, once for every scene
    import tilepipe.fields.delineate
    import tilepipe.superres  # noqa: F401
    from tilepipe.models.loading import model_cache

    stop = threading.Event()
    entry = None
    if spool is not None:
        entry = pool.register(spool, name, socket.gethostname(), sock.getsockname()[1])
        pool.end_start(spool)
        threading.Thread(target=_heartbeat, args=(entry, stop), daemon=True).start()
    where = f"{socket.gethostname()}:{sock.getsockname()[1]}" if entry else "local socket"
    log.info(
        "worker %s (pid %d, %s) ready in %.2f s",
        name, os.getpid(), where, time.perf_counter() - started,
    )  # fmt: skip
    sock.settimeout(idle)
    state = InProgress()
    signal.signal(GONE, stop_when_gone(state))
    served = connections = 0
    try:
        with sock, model_cache():
            while True:
                try:
                    conn, _ = sock.accept()
                except TimeoutError:
                    break
                conn.settimeout(None)
                connections += 1  # each request its own id: a watcher's word names one
                status = serve_one(conn, state, connections, token)
                served += status is not None
                if status == 128 + signal.SIGTERM and state.gone != connections:
                    # the worker itself was told to stop (Slurm's time limit or preemption):
                    # the scene kept its journal, its job's retry resumes it on a new worker
                    log.info("worker %s: SIGTERM during a scene, exiting", name)
                    break
    finally:
        stop.set()
        if entry is not None:
            entry.unlink(missing_ok=True)
    log.info("worker %s: %d requests served, idle %.0f s, exiting", name, served, idle)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``tilepipe-worker --spool DIR [--idle S]`` (a pool's worker on a GPU node), or
    ``--name N`` without a spool (one machine's worker on an abstract socket)."""
    parser = argparse.ArgumentParser(prog="tilepipe-worker", description=__doc__.splitlines()[0])
    parser.add_argument("--spool", type=Path, default=None, help="the pool's spool directory")
    parser.add_argument("--name", default=None, help="the worker's name (default: host-pid)")
    parser.add_argument("--idle", type=float, default=60.0, help="exit after this many idle s")
    args = parser.parse_args(argv)
    if args.spool is None and args.name is None:
        parser.error("give --spool (a pool's worker) or --name (one machine's)")
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return serve(name, args.idle, args.spool.resolve() if args.spool else None)
    except Terminated:
        return 128 + signal.SIGTERM  # the job's end: Slurm's SIGTERM between scenes
    finally:
        signal.signal(signal.SIGTERM, previous)


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM between scenes ends the worker (in a scene, the step's own handler stops it)."""
    raise Terminated("SIGTERM")


if __name__ == "__main__":
    sys.exit(main())
