"""The engine's output side: finished rows, block-row writes, journal, accumulators, thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from tilepipe.core.raster import gtiff_profile
from tilepipe.engine.journal import SlabJournal
from tilepipe.engine.windows import Grid, make_panels
from tilepipe.engine.writer import (
    BlockRowWriter,
    PanelWriter,
    StripAccumulators,
    WriterThread,
    new_rows,
    rows_to_write,
)

from .test_tiling import TRANSFORM


class FakeDst:
    """Records the writes a BlockRowWriter makes: (row, rows, col, cols) and the data."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int, int]] = []
        self.data: list[np.ndarray] = []

    def write(self, data: np.ndarray, window) -> None:
        self.calls.append((window.row_off, window.height, window.col_off, window.width))
        self.data.append(data.copy())


def rows(start: int, n: int, cols: int = 3) -> np.ndarray:
    """n rows (1 band) whose values are their output row numbers."""
    return np.repeat(np.arange(start, start + n, dtype=np.float32)[None, :, None], cols, axis=2)


def test_rows_to_write_are_whole_block_rows():
    assert rows_to_write(written=0, queued=10, block_h=4, out_h=100) == 8
    assert rows_to_write(written=0, queued=3, block_h=4, out_h=100) == 0


def test_rows_to_write_are_all_queued_rows_at_the_end_of_the_output():
    assert rows_to_write(written=8, queued=2, block_h=4, out_h=10) == 2


def test_new_rows_skip_rows_above_the_output_and_rows_already_finished():
    assert new_rows(row0=-2, n=4, done=0, out_h=10) == (0, 2)
    assert new_rows(row0=2, n=4, done=4, out_h=10) == (4, 6)


def test_new_rows_stop_at_the_output_end_and_may_be_none():
    assert new_rows(row0=8, n=4, done=0, out_h=10) == (8, 10)
    assert new_rows(row0=2, n=4, done=8, out_h=10) == (8, 8)


def test_block_row_writer_waits_for_a_whole_block_row():
    dst = FakeDst()
    blocks = BlockRowWriter(dst, 0, 3, block_h=4, out_h=8)
    blocks.put(rows(0, 3))
    assert dst.calls == [] and blocks.queued == 3


def test_block_row_writer_writes_one_block_row_per_call_however_rows_arrive():
    whole, pieces = FakeDst(), FakeDst()
    BlockRowWriter(whole, 6, 9, block_h=4, out_h=8).put(rows(0, 8))
    blocks = BlockRowWriter(pieces, 6, 9, block_h=4, out_h=8)
    for start, n in ((0, 3), (3, 3), (6, 2)):
        blocks.put(rows(start, n))
    assert pieces.calls == whole.calls == [(0, 4, 6, 3), (4, 4, 6, 3)]
    for a, b in zip(pieces.data, whole.data, strict=True):
        np.testing.assert_array_equal(a, b)
    assert blocks.written == 8 and blocks.queued == 0


def test_block_row_writer_writes_the_last_short_block_row():
    dst = FakeDst()
    BlockRowWriter(dst, 0, 3, block_h=4, out_h=6).put(rows(0, 6))
    assert dst.calls == [(0, 4, 0, 3), (4, 2, 0, 3)]


def test_a_panel_that_ends_with_rows_unwritten_fails_loudly():
    blocks = BlockRowWriter(FakeDst(), 0, 3, block_h=4, out_h=8)
    blocks.put(rows(0, 3))
    with pytest.raises(AssertionError, match="unwritten"):
        blocks.check_flushed()


def one_panel(overlap: int = 4) -> tuple[Grid, object]:
    """A 10 x 10 source, patch 8, scale 1, in one panel (window columns at -2, 2, 6)."""
    grid = Grid.build(10, 10, patch=8, overlap=overlap, scale=1)
    return grid, make_panels(grid, block_w=16, panel_px=8192)[0]


def first_window_row_of_ones(grid: Grid, panel) -> StripAccumulators:
    """The accumulator after a window row of windows that predicted all ones."""
    accs = StripAccumulators((1, grid.p_out, panel.width), grid.weights)
    for c in panel.cols:
        accs.add(torch.ones(1, grid.p_out, grid.p_out), (c - panel.c0) * grid.scale)
    return accs


def test_panel_writer_turns_blended_ones_back_into_ones():
    grid, panel = one_panel()
    dst = FakeDst()
    writer = PanelWriter(grid, panel, BlockRowWriter(dst, 0, 10, 2, 10), None, "float32", None)
    accs = first_window_row_of_ones(grid, panel)
    writer.emit(accs.rows(grid.stride), np.zeros((4, 10), dtype=bool), -2, 1)
    assert dst.calls == [(0, 2, 0, 10)] and writer.done == 2
    np.testing.assert_allclose(dst.data[0], 1.0, rtol=1e-6)


def test_panel_writer_marks_bad_source_pixels_nodata():
    grid, panel = one_panel()
    dst = FakeDst()
    writer = PanelWriter(grid, panel, BlockRowWriter(dst, 0, 10, 2, 10), None, "float32", -1.0)
    bad = np.zeros((4, 10), dtype=bool)
    bad[2, 3] = True  # source row 0: the strip starts at row -2
    writer.emit(first_window_row_of_ones(grid, panel).rows(4), bad, -2, 1)
    out = dst.data[0][0]
    assert out[0, 3] == -1.0 and (out[bad[2:4]] == -1).all() and (out[~bad[2:4]] != -1).all()


def small_journal(tmp_path) -> SlabJournal:
    """A journal for a 10 x 10 float32 output."""
    profile = gtiff_profile(
        width=10,
        height=10,
        count=1,
        dtype="float32",
        crs="EPSG:32633",
        transform=TRANSFORM,
        nodata=None,
    )
    return SlabJournal(tmp_path / "o.tif", "fp", profile)


def test_panel_writer_journals_each_strip_with_the_window_row_after_it(tmp_path):
    grid, panel = one_panel()
    journal = small_journal(tmp_path)
    blocks = BlockRowWriter(FakeDst(), 0, 10, 2, 10)
    writer = PanelWriter(grid, panel, blocks, journal, "float32", None)
    writer.emit(first_window_row_of_ones(grid, panel).rows(4), np.zeros((4, 10), bool), -2, 1)
    assert (journal.rows_done(0), journal.next_row(0), len(journal.slabs)) == (2, 1, 1)


def test_a_strip_without_new_rows_is_journaled_to_move_the_next_window_row_on(tmp_path):
    grid, panel = one_panel()
    journal = small_journal(tmp_path)
    blocks = BlockRowWriter(FakeDst(), 0, 10, 2, 10)
    writer = PanelWriter(grid, panel, blocks, journal, "float32", None)
    empty = np.zeros((1, 2, panel.width), dtype=np.float32)
    writer.emit(empty, np.zeros((2, 10), bool), -2, 1)  # rows -2, -1: above the output
    assert (journal.rows_done(0), journal.next_row(0), journal.slabs) == (0, 1, [])
    writer.emit(empty, np.zeros((2, 10), bool), -2, 1)  # nothing new at all: not journaled
    assert len((journal.dir / "journal.jsonl").read_text().splitlines()) == 2


def test_panel_writer_resume_puts_journaled_rows_into_the_output(tmp_path):
    grid, panel = one_panel()
    journal = small_journal(tmp_path)
    journal.add(rows(0, 2, cols=10), 0, 0, next_row=1)
    blocks = BlockRowWriter(FakeDst(), 0, 10, 4, 10)
    writer = PanelWriter(grid, panel, blocks, small_journal(tmp_path), "float32", None)
    assert writer.resume() == (2, 1)
    assert blocks.queued == 2 and writer.done == 2


def test_panel_writer_without_a_journal_resumes_from_nothing():
    grid, panel = one_panel()
    writer = PanelWriter(grid, panel, BlockRowWriter(FakeDst(), 0, 10, 4, 10), None, "uint8", None)
    assert writer.resume() == (0, 0)


def test_accumulators_add_windows_weighted_by_the_outer_product_of_the_weights():
    accs = StripAccumulators((1, 2, 4), np.array([1.0, 0.5], dtype=np.float32))
    accs.add(torch.ones(1, 2, 2), 1)
    assert accs.rows(2).tolist() == [[[0, 1, 0.5, 0], [0, 0.5, 0.25, 0]]]


def test_accumulators_advance_into_the_other_buffer_with_the_rows_below_and_zeros():
    accs = StripAccumulators((1, 3, 2), np.ones(3, dtype=np.float32))
    first = accs.current
    first[:] = torch.arange(6, dtype=torch.float32).reshape(1, 3, 2)
    accs.advance(2)
    assert accs.current is not first and accs.rows(3).tolist() == [[[4, 5], [0, 0], [0, 0]]]
    assert first[0, 0].tolist() == [0, 1]  # the writer may still be reading the first


def test_accumulators_alternate_between_two_buffers():
    accs = StripAccumulators((1, 2, 2), np.ones(2, dtype=np.float32))
    first = accs.current
    accs.advance(1)
    accs.advance(1)
    assert accs.current is first


def test_writer_thread_runs_jobs_in_another_thread():
    seen = []
    with WriterThread() as writer:
        writer.submit(lambda: seen.append(threading.get_ident()))
        writer.wait()
    assert seen and seen[0] != threading.get_ident()


def test_writer_thread_waits_for_the_job_in_flight_before_the_next():
    log: list[str] = []
    with WriterThread() as writer:
        writer.submit(lambda: (time.sleep(0.05), log.append("a")))
        writer.submit(log.append, "b")
        assert log[0] == "a"
        writer.wait()
    assert log == ["a", "b"]


def test_writer_thread_raises_a_jobs_error_at_the_next_submit():
    def boom() -> None:
        raise ValueError("boom")

    with WriterThread() as writer:
        writer.submit(boom)
        with pytest.raises(ValueError, match="boom"):
            writer.submit(print)
