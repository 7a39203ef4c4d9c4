"""The output side of the tiling engine: finished rows, block-row writes, journal, writer thread.

Per column panel, a window row's accumulated strip is normalised by the summed blend weights,
converted to the output dtype, masked with nodata, journaled (when resuming) and written to the
output, in the writer thread while the next window row is being predicted. The output gets one
write per block row, so the calls are the same however rows arrive.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from tilepipe.engine.journal import SlabJournal
from tilepipe.engine.overviews import Reducer
from tilepipe.engine.pixels import to_dtype, upsample_mask
from tilepipe.engine.windows import Grid, Panel


def rows_to_write(written: int, queued: int, block_h: int, out_h: int) -> int:
    """How many queued rows to write now: whole block rows, or all of them at the output's end."""
    if written + queued == out_h:
        return queued
    return queued // block_h * block_h


def new_rows(row0: int, n: int, done: int, out_h: int) -> tuple[int, int]:
    """Output rows [lo, hi) of ``n`` rows from ``row0`` not yet finished and inside the output."""
    lo = max(row0, 0, done)
    return lo, max(min(row0 + n, out_h), lo)


class BlockRowWriter:
    """Writes a panel's finished rows into the output in row order, one block row per write."""

    def __init__(
        self,
        dst: rasterio.io.DatasetWriter,
        b0: int,
        b1: int,
        block_h: int,
        out_h: int,
        overviews: Reducer | None = None,
    ) -> None:
        """Write output columns [b0, b1) of ``dst`` (block rows of ``block_h``, ``out_h`` rows);
        every finished row also goes to the ``overviews`` reducer of the panel."""
        self.dst, self.b0, self.b1 = dst, b0, b1
        self.overviews = overviews
        self.block_h, self.out_h = block_h, out_h
        self.written = 0  # rows in the output
        self.pending: list[np.ndarray] = []  # finished rows waiting for a whole block row

    @property
    def queued(self) -> int:
        """Finished rows not yet in the output."""
        return sum(p.shape[1] for p in self.pending)

    def put(self, vals: np.ndarray) -> None:
        """Queue the next finished rows (bands, rows, cols); write every whole block row."""
        if self.overviews is not None:
            self.overviews.put(vals)
        self.pending.append(vals)
        queued = self.queued
        n = rows_to_write(self.written, queued, self.block_h, self.out_h)
        if n == 0:
            return
        rows = np.concatenate(self.pending, axis=1) if len(self.pending) > 1 else vals
        for r in range(0, n, self.block_h):
            h = min(self.block_h, n - r)
            win = Window(self.b0, self.written + r, self.b1 - self.b0, h)
            self.dst.write(rows[:, r : r + h], window=win)
        self.written += n
        self.pending = [rows[:, n:]] if n < queued else []

    def check_flushed(self) -> None:
        """Fail loudly if a panel ended with finished rows that never reached the output."""
        if self.pending:
            raise AssertionError(f"panel at column {self.b0} ended with rows unwritten")


class PanelWriter:
    """Turns a panel's accumulated strips into output rows: normalise, convert, journal, write."""

    def __init__(
        self,
        grid: Grid,
        panel: Panel,
        blocks: BlockRowWriter,
        journal: SlabJournal | None,
        dtype: str,
        nodata: float | None,
    ) -> None:
        """Write ``panel`` of ``grid`` through ``blocks`` (and ``journal``) as ``dtype``."""
        self.grid, self.panel, self.blocks, self.journal = grid, panel, blocks, journal
        self.dtype, self.nodata = dtype, nodata
        self.inv_x = grid.inv_col_weights(panel.b0, panel.b1)
        self.done = 0  # output rows finished, journaled or not

    def resume(self) -> tuple[int, int]:
        """Put the panel's journaled rows into the output; return (rows done, next window row)."""
        if self.journal is None:
            return 0, 0
        for _, rows in self.journal.read_rows(self.panel.b0):
            self.blocks.put(rows)  # rows journaled by an earlier run go into the output
        self.done = self.journal.rows_done(self.panel.b0)
        return self.done, self.journal.next_row(self.panel.b0)

    def values(
        self, rows: np.ndarray, bad_src: np.ndarray, row0: int, lo: int, hi: int
    ) -> np.ndarray:
        """Output rows [lo, hi) of a strip starting at output row ``row0``, as final values."""
        inv = np.outer(self.grid.inv_row_weights(lo, hi), self.inv_x)
        blended = rows[:, lo - row0 : hi - row0, self.panel.own] * inv
        vals = to_dtype(blended, self.dtype, self.nodata)
        if self.nodata is not None and bad_src.any():
            bad = upsample_mask(bad_src, self.grid.scale)
            vals[:, bad[lo - row0 : hi - row0]] = self.nodata
        return vals

    def emit(self, rows: np.ndarray, bad_src: np.ndarray, row0: int, next_row: int) -> None:
        """Finish the strip's new rows from output row ``row0`` on: journal them and write them.

        ``next_row`` is the window row that continues after them (journaled for resume).
        """
        lo, hi = new_rows(row0, rows.shape[1], self.done, self.grid.out_h)
        vals = self.values(rows, bad_src, row0, lo, hi)
        journal, b0 = self.journal, self.panel.b0
        if journal is not None and (hi > lo or next_row > journal.next_row(b0)):
            journal.add(vals, lo, b0, next_row=next_row)
        self.done = hi
        if hi > lo:
            self.blocks.put(vals)


class StripAccumulators:
    """Two strip accumulators in turn: the writer reads one while the next window row fills the
    other."""

    def __init__(self, shape: tuple[int, int, int], weights: np.ndarray) -> None:
        """Accumulators (bands, window rows, panel cols); windows are blended with the outer
        product of the 1-D ``weights``."""
        self.bufs = [torch.zeros(shape, dtype=torch.float32) for _ in range(2)]
        self.current = self.bufs[0]
        self.weights = torch.from_numpy(np.outer(weights, weights))

    def add(self, out: torch.Tensor, x0: int) -> None:
        """Add one window's output, weighted, at accumulator column ``x0`` (in torch's threads)."""
        self.current[:, :, x0 : x0 + out.shape[-1]].addcmul_(out, self.weights)

    def rows(self, n: int) -> np.ndarray:
        """The first ``n`` rows of the current accumulator (a view, for the writer)."""
        return self.current[:, :n].numpy()

    def advance(self, shift: int) -> None:
        """Move on by ``shift`` rows: the other accumulator gets the rows below, zeros after."""
        nxt = self.bufs[1] if self.current is self.bufs[0] else self.bufs[0]
        keep = self.current.shape[1] - shift
        nxt[:, :keep] = self.current[:, shift:]
        nxt[:, keep:] = 0.0
        self.current = nxt


class WriterThread:
    """One background writer with at most one job in flight: a new job waits for the last."""

    def __init__(self) -> None:
        """Start the writer thread."""
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.job: Future | None = None

    def submit(self, fn: Callable[..., None], *args: object) -> None:
        """Wait for the job in flight (raising its error), then run ``fn(*args)`` in the thread."""
        self.wait()
        self.job = self.pool.submit(fn, *args)

    def wait(self) -> None:
        """Wait for the job in flight, if any, and raise its error."""
        if self.job is not None:
            self.job.result()
            self.job = None

    def __enter__(self) -> WriterThread:
        """The writer; leaving the block waits for its job."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Wait for the job in flight and stop the thread."""
        self.pool.shutdown(wait=True)
