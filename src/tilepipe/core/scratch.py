"""Temporaries that name their owner, and the one-writer lock of an output.

Every temporary tilepipe writes beside an output is hidden and named
``.<output>.<kind>-o<pid>_<start>_<host>-<random><suffix>``: the writing process's PID, its
start time (clock ticks since boot, which tells a reused PID apart) and a short hash of the
host's name. A killed step (SIGKILL, the OOM killer, a lost node) cannot remove its
temporaries; the next step that writes the same output removes those whose owner provably no
longer runs (same host, PID gone or another process under it) before it writes, and
``tilepipe status`` sums their bytes. Temporaries of a live process, or of a process on
another host, are never touched.

:class:`WriterLock` is an exclusive POSIX lock on ``.<output>.lock``, held by the one process
that writes an output's resume state; a second writer (the orphan of a killed Snakemake and the
rerun's job) is refused instead of writing the same journal at once. The kernel drops the lock
when its holder dies, however it dies.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
import socket
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

from tilepipe.core.errors import InputError, context

log = logging.getLogger(__name__)

#: The owner field of a temporary's name: ``-o<pid>_<start ticks>_<host hash>-``.
OWNER_FIELD = re.compile(r"-o(\d+)_(\d+)_([0-9a-f]{8})-")


@dataclass(frozen=True)
class Owner:
    """The process that created a temporary: PID, start time (0: unknown) and host hash."""

    pid: int
    start: int
    host: str

    @property
    def tag(self) -> str:
        """The owner field as it stands in a temporary's name."""
        return f"o{self.pid}_{self.start}_{self.host}"


def process_start(pid: int) -> str | None:
    """Start time of a live process in clock ticks since boot (None when it does not exist or
    has exited and waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # from field 3 of proc(5), after the command name
    return None if fields[0] in ("Z", "X") else fields[19]


def host_hash(host: str | None = None) -> str:
    """Eight hex digits naming a host (names may hold characters unfit for file names)."""
    return hashlib.sha256((host or socket.gethostname()).encode()).hexdigest()[:8]


def this_process() -> Owner:
    """The owner record of the calling process."""
    pid = os.getpid()
    return Owner(pid, int(process_start(pid) or 0), host_hash())


def owner_of(path: str | os.PathLike) -> Owner | None:
    """The owner named in a temporary's file name (None: not a temporary with an owner)."""
    found = OWNER_FIELD.search(Path(path).name)
    if not found or not Path(path).name.startswith("."):
        return None
    return Owner(int(found[1]), int(found[2]), found[3])


def owner_gone(owner: Owner) -> bool:
    """True only when the owner provably no longer runs: same host, and its PID is gone or
    belongs to a process started at another time."""
    if owner.host != host_hash():
        return False
    start = process_start(owner.pid)
    if start is None:  # gone, where /proc tells; elsewhere ask the kernel
        return Path("/proc/self/stat").exists() or not _pid_exists(owner.pid)
    return owner.start != 0 and int(start) != owner.start


def _pid_exists(pid: int) -> bool:
    """Whether a PID exists (for systems without /proc)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_leftover(path: str | os.PathLike) -> bool:
    """True for a temporary whose owner provably no longer runs."""
    owner = owner_of(path)
    return owner is not None and owner_gone(owner)


def belongs_to(name: str, dest: Path) -> bool:
    """Whether a hidden file name is a temporary of ``dest`` (or a temporary of one of those)."""
    return name.startswith(".") and name.lstrip(".").startswith(f"{dest.name}.")


def remove_leftovers(dest: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``dest`` left by processes that no longer run; return them."""
    dest = Path(dest)
    removed = []
    try:
        entries = list(os.scandir(dest.parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if belongs_to(entry.name, dest) and entry.is_file() and is_leftover(entry.path):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    if removed:
        log.info("%s: removed %d leftover temporaries of killed steps", dest, len(removed))
    return removed


def temp_beside(dest: str | os.PathLike, kind: str = "tmp", suffix: str = "") -> Path:
    """A new, owner-named temporary path beside ``dest`` (the file is not created).

    Leftovers of ``dest`` from killed processes are removed first, so a rerun does not pay
    twice for the space.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(dest)
    prefix = f".{dest.name}.{kind}-{this_process().tag}-"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=dest.parent)
    os.close(fd)
    os.unlink(tmp)  # writers (GDAL, SQLite) create the file themselves
    return Path(tmp)


def leftovers(root: str | os.PathLike) -> dict[Path, int]:
    """Every leftover temporary under ``root`` with its size in bytes."""
    found: dict[Path, int] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if name.startswith(".") and is_leftover(path):
                try:
                    found[path] = path.stat().st_size
                except FileNotFoundError:
                    continue
    return found


def lock_path(dest: str | os.PathLike) -> Path:
    """The lock file of an output: ``.<output>.lock`` beside it."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.lock")


class WriterLock:
    """Exclusive POSIX lock of one output's writer (see the module docstring).

    Taken again by the same process it succeeds (POSIX locks belong to the process), so a step
    that retries in-process is not refused by itself; for the same reason, a lock of the process
    that is released or garbage-collected lets go of the file for all of the process's locks.
    """

    def __init__(self, dest: str | os.PathLike) -> None:
        """Take the lock of ``dest`` or raise InputError naming the process that holds it."""
        self.path = lock_path(dest)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._close: weakref.finalize | None = None  # closes the descriptor, also when collected
        for _ in range(5):  # the holder may remove the file between our open and our lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not self._lock(fd, Path(dest)):
                return
            if _same_file(fd, self.path):
                self._close = weakref.finalize(self, os.close, fd)
                os.ftruncate(fd, 0)
                os.write(fd, f"process {os.getpid()} on {socket.gethostname()}".encode())
                return
            os.close(fd)
        raise InputError(f"{context(path=dest)}cannot take its writer lock {self.path}")

    def _lock(self, fd: int, dest: Path) -> bool:
        """Lock ``fd``; False where the filesystem has no locks (then the step goes unlocked)."""
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                log.warning("%s: no file locks here (%s); writing unguarded", self.path, exc)
                return False
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise InputError(
                f"{context(path=dest)}being written by {holder}, which holds its writer "
                "lock: a second writer would corrupt its resume journal; "
                "wait for that process or stop it, then rerun"
            ) from exc
        return True

    def release(self) -> None:
        """Remove the lock file and drop the lock (after the output is in place)."""
        if self._close is None or not self._close.alive:
            return
        self.path.unlink(missing_ok=True)
        self._close()


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed or replaced since)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
