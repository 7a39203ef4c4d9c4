"""Stale Snakemake locks after a kill: found by owner record, removed only when provably stale.

Snakemake locks a working directory while it runs and removes the lock when it exits; a
SIGKILLed Snakemake (OOM killer, lost login session, node reboot) leaves it behind, and the
rerun then refuses to start until `--unlock`. The workflow records which process holds the lock
(host, PID and the PID's start time, which guards against PID reuse) once it has it; a later run
on the same host removes the locks only if that process no longer exists. Locks of a live
Snakemake, of another host, or without a record are left for Snakemake to report as usual.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

OWNER = Path(".snakemake") / "tilepipe-lock-owner.json"
LOCKS = Path(".snakemake") / "locks"


def process_start(pid: int) -> str | None:
    """Start time of a live process in clock ticks since boot (None when it does not exist)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), after the command name


def write_owner(workdir: str | Path, pid: int | None = None) -> None:
    """Record this process as the holder of the working directory's lock."""
    pid = pid or os.getpid()
    path = Path(workdir) / OWNER
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"host": socket.gethostname(), "pid": pid, "start": process_start(pid)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


def stale_owner(workdir: str | Path) -> dict | None:
    """The recorded lock holder if it is provably gone (same host, process absent or reused)."""
    workdir = Path(workdir)
    if not any((workdir / LOCKS).glob("*.lock")):
        return None
    try:
        record = json.loads((workdir / OWNER).read_text())
    except (OSError, ValueError):
        return None  # no record: we cannot know, leave it to the user
    if record.get("host") != socket.gethostname():
        return None
    start = process_start(int(record["pid"]))
    if start is not None and start == record.get("start"):
        return None  # the holder still runs
    return record


def clear_stale_locks(workdir: str | Path) -> str:
    """Remove the locks of a dead Snakemake of this host; say what was done (or nothing)."""
    record = stale_owner(workdir)
    if record is None:
        return ""
    locks = sorted((Path(workdir) / LOCKS).glob("*.lock"))
    for lock in locks:
        lock.unlink(missing_ok=True)
    (Path(workdir) / OWNER).unlink(missing_ok=True)
    return (
        f"removed {len(locks)} stale lock(s) of Snakemake process {record['pid']} on "
        f"{record['host']}, which no longer runs (killed?); its unfinished jobs are redone"
    )
