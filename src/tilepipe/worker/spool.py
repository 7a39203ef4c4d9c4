"""The spool of a pool of GPU workers: a directory on the shared file system where workers
register (host, port, heartbeat) and where clients find them, start them and prove who they are.

Layout: ``token`` (a secret, mode 0600: only the campaign's owner can hand work to its
workers), ``workers/<name>.json`` (one per live worker, its mtime the heartbeat), ``wanted``
(touched by scenes that found no worker), ``starting`` (held while workers are being started),
``start-failed`` (why the last start failed), ``logs/`` (the workers' own logs).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

HEARTBEAT_S = 5.0  # a worker touches its registration this often
STALE_S = 30.0  # a registration untouched this long is a dead worker's


def ensure_token(spool: Path) -> str:
    """The spool's secret, created (readable by its owner only) when it has none: written to a
    temporary and linked into place, so that no one ever reads a token half-written."""
    path = spool / "token"
    if not path.exists():
        spool.mkdir(parents=True, exist_ok=True)
        tmp = spool / f".token-{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(16))
        try:
            os.link(tmp, path)  # atomic, and fails if another process was first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def registration(spool: Path, name: str) -> Path:
    """Where worker ``name`` says where it listens."""
    return spool / "workers" / f"{name}.json"


def register(spool: Path, name: str, host: str, port: int) -> Path:
    """Publish a worker's address (atomically: a client never reads half a registration)."""
    path = registration(spool, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "name": name,
        "host": host,
        "port": port,
        "pid": os.getpid(),
        "slurm_job": os.environ.get("SLURM_JOB_ID", ""),
    }
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(entry) + "\n")
    os.replace(tmp, path)
    return path


def live_workers(spool: Path, now: float | None = None) -> list[dict]:
    """The registrations whose heartbeat is fresh."""
    now = time.time() if now is None else now
    found = []
    for path in sorted((spool / "workers").glob("*.json")):
        try:
            if now - path.stat().st_mtime > STALE_S:
                continue
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # gone or being replaced
    return found


def claim_start(spool: Path, stale_after_s: float) -> bool:
    """Whether this client is the one to start workers now (a start in progress blocks others
    until a worker registers or ``stale_after_s`` passes)."""
    path = spool / "starting"
    spool.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            if time.time() - path.stat().st_mtime < stale_after_s:
                return False
        except FileNotFoundError:
            return False
        path.unlink(missing_ok=True)  # a start that never registered: try again
        return claim_start(spool, stale_after_s)
    os.close(fd)
    return True


def end_start(spool: Path) -> None:
    """A worker registered (or the start failed): others may start workers again."""
    (spool / "starting").unlink(missing_ok=True)


def want(spool: Path) -> None:
    """A scene found no live worker: say so (the starter watches this file's mtime)."""
    path = spool / "wanted"
    spool.mkdir(parents=True, exist_ok=True)
    path.touch()


def wanted(spool: Path, within: float = STALE_S) -> bool:
    """Whether some scene asked for a worker within the last ``within`` seconds."""
    try:
        return time.time() - (spool / "wanted").stat().st_mtime < within
    except FileNotFoundError:
        return False


def fail_start(spool: Path, why: str) -> None:
    """Record why workers could not be started: the waiting scenes fail with it."""
    (spool / "start-failed").write_text(why + "\n")
    end_start(spool)


def start_failure(spool: Path, since: float) -> str:
    """Why the last start failed, if it failed after ``since`` (epoch s), else ""."""
    path = spool / "start-failed"
    try:
        if path.stat().st_mtime >= since:
            return path.read_text().strip()
    except FileNotFoundError:
        pass
    return ""
