"""Resume state of the tiling engine: finished output rows journaled beside the output.

The engine writes the final GeoTIFF directly, block row by block row, in its writer thread. GDAL
cannot make a GeoTIFF that is still being written readable after a ``kill -9`` (its directory is
only written on close, and a reopened file loses its compression level), so for resume each
finished window row of output is also kept as a small scratch GeoTIFF (a *slab*, ZSTD level 1)
in ``<output>.parts/``, and one line is appended to ``<output>.parts/journal.jsonl`` once the
slab is on disk. The directory is not a declared output, so Snakemake's handling of incomplete
outputs never deletes it. A rerun with the same fingerprint (input, model, settings) writes the
journaled rows into a fresh output and recomputes only from the last journaled window rows on;
any other rerun starts over. The slabs go once the output is in place.

One process at a time writes an output's journal: the journal holds the output's writer lock
(:class:`tilepipe.core.scratch.WriterLock`) from opening until the output is in place, so a
second writer, such as the rerun's job beside the still-running orphan of a killed Snakemake,
is refused before it touches the journal. Opening it also removes the output's temporaries left
by killed processes (a ``kill -9`` during the final rename leaves a whole ``.dr.tif.tmp-*``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from tilepipe.core.raster import atomic_output
from tilepipe.core.scratch import WriterLock, remove_leftovers

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
#: Slabs are scratch: a fast codec, recompressed once into the final output.
SLAB_OPTIONS = {"compress": "zstd", "zstd_level": 1}
#: Fault-injection point for tests: a step stops itself (SIGSTOP) once it has journaled this many
#: slabs, so a test kills or signals it at an exact point instead of racing it.
STOP_AFTER_SLABS_ENV = "TILEPIPE_STOP_AFTER_SLABS"


def parts_dir(dst: str | os.PathLike) -> Path:
    """The resume directory of an output: ``<output>.parts`` beside it."""
    dst = Path(dst)
    return dst.with_name(dst.name + ".parts")


def fingerprint(src: str | os.PathLike, settings: dict[str, object]) -> str:
    """SHA-256 over the input's identity (path, size, mtime) and every setting of the run."""
    st = Path(src).stat()
    ident = {"src": str(Path(src).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    blob = json.dumps({**ident, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file, or a directory's entries (renames, new files), to storage.

    A journal line must never name a slab that a node crash could still lose.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SlabJournal:
    """Append-only record of finished output slabs of one run (see module docstring).

    A slab is a block of output rows of one column panel; the slabs of each panel are
    contiguous from row 0.
    """

    def __init__(self, dst: str | os.PathLike, fp: str, profile: dict[str, object]):
        """Open the journal of ``dst``: keep its slabs if ``fp`` matches, otherwise start over.

        Raises InputError when another live process holds the output's writer lock.
        """
        self.lock = WriterLock(dst)
        remove_leftovers(dst)
        self.dir = parts_dir(dst)
        self.profile = profile
        self.fp = fp
        self.slabs: list[dict[str, object]] = []  # {"col0", "col1", "row0", "row1", "file"}
        self._done: dict[int, int] = {}  # panel's first output column -> rows on disk
        self._next: dict[int, int] = {}  # panel's first output column -> next window row
        if self.dir.is_dir():
            self._load()
        if not self.slabs:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True)
            self._append({"fingerprint": fp, "height": profile["height"]})

    def rows_done(self, col0: int = 0) -> int:
        """Output rows already on disk for the panel starting at output column ``col0``."""
        return self._done.get(col0, 0)

    def next_row(self, col0: int = 0) -> int:
        """The window row after the last journaled one of the panel at output column ``col0``."""
        return self._next.get(col0, 0)

    def read_rows(self, col0: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (output row, rows) of the panel's journaled slabs, top to bottom."""
        for slab in self.slabs:
            if slab["col0"] == col0:
                with rasterio.open(self.dir / str(slab["file"])) as src:
                    yield int(slab["row0"]), src.read()

    @property
    def complete(self) -> bool:
        """True when the slabs cover the whole output."""
        width, height = int(self.profile["width"]), int(self.profile["height"])
        covered = sum(
            (int(s["col1"]) - int(s["col0"])) * (int(s["row1"]) - int(s["row0"]))
            for s in self.slabs
        )
        return covered == width * height

    def _load(self) -> None:
        """Read the journal; keep, per panel, the contiguous slabs whose files exist."""
        try:
            lines = (self.dir / JOURNAL).read_text().splitlines()
            head = json.loads(lines[0])
        except (OSError, ValueError, IndexError):
            log.warning("%s: no readable journal, starting over", self.dir)
            return
        if head.get("fingerprint") != self.fp:
            log.warning("%s: input, model or settings changed since, starting over", self.dir)
            return
        kept = [lines[0]]
        for line in lines[1:]:
            try:
                raw = json.loads(line)
                rec = {k: int(raw[k]) for k in ("col0", "col1", "row0", "row1", "next_row")}
                rec["file"] = raw["file"]
            except (ValueError, KeyError, TypeError):
                break  # a line cut by a kill: everything after it is unknown
            slab_lost = rec["file"] and not (self.dir / rec["file"]).is_file()
            if rec["row0"] != self.rows_done(rec["col0"]) or slab_lost:
                break
            kept.append(line)
            if rec["file"]:
                self.slabs.append(rec)
            self._done[rec["col0"]] = rec["row1"]
            self._next[rec["col0"]] = rec["next_row"]
        if len(kept) < len(lines):
            # Drop the unusable tail, so that records appended from now on are read next time.
            with atomic_output(self.dir / JOURNAL) as tmp, open(tmp, "w") as fh:
                fh.write("\n".join(kept) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        if self.slabs:
            log.info("%s: resuming after %d journaled slabs", self.dir, len(self.slabs))

    def _append(self, record: dict[str, object]) -> None:
        """Append one JSON line and fsync it, so a journaled slab is a durable fact."""
        with open(self.dir / JOURNAL, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def add(self, data: np.ndarray, row0: int, col0: int = 0, *, next_row: int = 0) -> None:
        """Write a slab (bands, rows, cols) at output row ``row0``, column ``col0``; journal it.

        ``next_row`` is the window row the panel continues with after this slab.
        """
        if row0 != self.rows_done(col0):
            raise AssertionError(f"slab at row {row0}, journal is at {self.rows_done(col0)}")
        n, w = data.shape[1], data.shape[2]
        name = f"c{col0:09d}_r{row0:09d}_{row0 + n:09d}.tif" if n else None
        if name:
            prof = dict(self.profile)
            for key in ("blockxsize", "blockysize", "zlevel", "sparse_ok"):
                prof.pop(key, None)
            # Untiled 16-row strips: any slab size works and GDAL reads them back row-wise.
            shift = Affine.translation(col0, row0)
            prof.update(SLAB_OPTIONS, tiled=False, blockysize=16, height=n, width=w)
            prof["transform"] = prof["transform"] * shift
            with atomic_output(self.dir / name) as tmp, rasterio.open(tmp, "w", **prof) as dst:
                dst.write(data)
            _fsync(self.dir / name)
            _fsync(self.dir)
        rec = {"col0": col0, "col1": col0 + w, "row0": row0, "row1": row0 + n, "file": name}
        rec["next_row"] = next_row
        self._append(rec)
        if name:
            self.slabs.append(rec)
            _stop_point(len(self.slabs))
        self._done[col0] = row0 + n
        self._next[col0] = next_row

    def close(self) -> None:
        """Let go of the output (its lock file goes too), keeping the resume state for a rerun."""
        self.lock.release()

    def remove(self) -> None:
        """Delete the resume state once the final output is in place; let go of the output."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.lock.release()


def _stop_point(slabs: int) -> None:
    """Stop this process when the test hook asks to be stopped after exactly ``slabs`` slabs."""
    wanted = os.environ.get(STOP_AFTER_SLABS_ENV, "")
    if wanted.isdigit() and int(wanted) == slabs:
        os.kill(os.getpid(), signal.SIGSTOP)
