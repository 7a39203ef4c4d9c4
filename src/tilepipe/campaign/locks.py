"""A killed Snakemake's leftovers: its stale locks and its orphaned jobs, found by owner record.

Snakemake locks a working directory while it runs and removes the lock when it exits; a
SIGKILLed Snakemake (OOM killer, lost login session, node reboot) leaves it behind, and the
rerun then refuses to start until `--unlock`. The workflow records which process holds the lock
(host, PID and the PID's start time, which guards against PID reuse) once it has it; a later run
on the same host removes the locks only if that process no longer exists. Locks of a live
Snakemake, of another host, or without a record are left for Snakemake to report as usual.

Its running jobs outlive it: they are not its process group's alone (a login shell, a test
runner) and keep writing. So the workflow also hands its jobs a run id in their environment
(``TILEPIPE_RUN``: host, PID and start of the Snakemake process); before the rerun starts any
job it finds the processes of this host that carry the dead run's id and stops them with
SIGTERM (a `tilepipe` step then removes its temporaries, keeps its resume journal and exits
143), SIGKILL after a grace period. Their outputs are redone; journaled ones resume.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

from tilepipe.core.scratch import process_start

OWNER = Path(".snakemake") / "tilepipe-lock-owner.json"
LOCKS = Path(".snakemake") / "locks"
#: Environment variable naming the Snakemake run a job belongs to (set by the workflow).
RUN_ENV = "TILEPIPE_RUN"
#: Seconds an orphan has to unwind after SIGTERM before it is killed.
ORPHAN_GRACE_S = 60.0


def run_id(record: dict) -> str:
    """The id of the run a lock-holder record describes: ``host:pid:start``."""
    return f"{record['host']}:{record['pid']}:{record['start']}"


def write_owner(workdir: str | Path, pid: int | None = None) -> str:
    """Record this process as the holder of the working directory's lock; return its run id."""
    pid = pid or os.getpid()
    path = Path(workdir) / OWNER
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"host": socket.gethostname(), "pid": pid, "start": process_start(pid)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)
    return run_id(record)


def read_owner(workdir: str | Path) -> dict | None:
    """The recorded lock holder of a working directory (None without a readable record)."""
    try:
        record = json.loads((Path(workdir) / OWNER).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and {"host", "pid", "start"} <= set(record) else None


def holder_gone(record: dict) -> bool:
    """True when the recorded holder provably no longer runs (same host, PID gone or reused)."""
    if record.get("host") != socket.gethostname():
        return False
    start = process_start(int(record["pid"]))
    return start is None or start != record.get("start")


def stale_owner(workdir: str | Path) -> dict | None:
    """The recorded lock holder if it left locks and is provably gone."""
    if not any((Path(workdir) / LOCKS).glob("*.lock")):
        return None
    record = read_owner(workdir)  # no record: we cannot know, leave it to the user
    return record if record is not None and holder_gone(record) else None


def snakemake_running(workdir: str | Path) -> bool:
    """Whether a Snakemake may be running in ``workdir`` now: locks not provably stale."""
    return any((Path(workdir) / LOCKS).glob("*.lock")) and stale_owner(workdir) is None


def clear_stale_locks(workdir: str | Path) -> str:
    """Remove the locks of a dead Snakemake of this host; say what was done (or nothing).

    The owner record stays, so that the run's start can find the dead run's orphans.
    """
    record = stale_owner(workdir)
    if record is None:
        return ""
    locks = sorted((Path(workdir) / LOCKS).glob("*.lock"))
    for lock in locks:
        lock.unlink(missing_ok=True)
    return (
        f"removed {len(locks)} stale lock(s) of Snakemake process {record['pid']} on "
        f"{record['host']}, which no longer runs (killed?); its unfinished jobs are redone"
    )


def processes_of_run(run: str) -> dict[int, str]:
    """PID → start of this host's processes whose environment carries run id ``run``."""
    wanted = f"{RUN_ENV}={run}".encode()
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # gone, or another user's
        start = process_start(int(proc.name))
        if wanted in environ and start is not None:
            found[int(proc.name)] = start
    return found


def orphans(workdir: str | Path) -> dict[int, str]:
    """PID → start of the still-running jobs of the recorded, dead Snakemake of ``workdir``."""
    record = read_owner(workdir)
    if record is None or not holder_gone(record):
        return {}
    return processes_of_run(run_id(record))


def _signal_all(procs: dict[int, str], sig: int) -> None:
    """Send ``sig`` to each process still running under its recorded start time."""
    for pid, start in procs.items():
        if process_start(pid) == start:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue


def _wait_gone(procs: dict[int, str], seconds: float) -> dict[int, str]:
    """Wait up to ``seconds`` for the processes to end; return those still running."""
    deadline = time.monotonic() + seconds
    while True:
        left = {pid: start for pid, start in procs.items() if process_start(pid) == start}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def stop_orphans(workdir: str | Path, grace: float = ORPHAN_GRACE_S) -> str:
    """Stop the orphaned jobs of a dead Snakemake of ``workdir``; say what was done (or nothing).

    SIGTERM (and SIGCONT, for a stopped one) first, so a step keeps its journal; SIGKILL after
    ``grace`` seconds. Returns only once none of them runs.
    """
    procs = orphans(workdir)
    if not procs:
        return ""
    _signal_all(procs, signal.SIGTERM)
    _signal_all(procs, signal.SIGCONT)
    killed = _wait_gone(procs, grace)
    _signal_all(killed, signal.SIGKILL)
    _wait_gone(killed, 30.0)
    record = read_owner(workdir) or {}
    return (
        f"stopped {len(procs)} orphaned process(es) of Snakemake process {record.get('pid')} "
        f"(killed?) that were still running its jobs ({len(killed)} needed SIGKILL): "
        f"PIDs {', '.join(map(str, sorted(procs)))}; their outputs are redone"
    )
