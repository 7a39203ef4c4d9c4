"""Progress logging and run counts of the engine."""

from __future__ import annotations

import logging

from tilepipe.engine.progress import RunStats, progress_logger

log = logging.getLogger("test_progress")


def test_progress_logger_logs_about_every_tenth_of_the_windows(caplog):
    report = progress_logger(log, "dr")
    with caplog.at_level(logging.INFO, logger="test_progress"):
        for done in range(0, 101):
            report(done, 100)
    assert len(caplog.records) == 10
    assert caplog.records[0].getMessage() == "dr: 10/100 windows (10%)"


def test_progress_logger_always_logs_the_last_window(caplog):
    report = progress_logger(log, "dr")
    with caplog.at_level(logging.INFO, logger="test_progress"):
        report(1, 3)
        report(3, 3)
    assert [r.getMessage() for r in caplog.records][-1] == "dr: 3/3 windows (100%)"


def test_two_progress_loggers_keep_their_own_state(caplog):
    a, b = progress_logger(log, "a"), progress_logger(log, "b")
    with caplog.at_level(logging.INFO, logger="test_progress"):
        a(50, 100)
        b(50, 100)
    assert [r.getMessage()[0] for r in caplog.records] == ["a", "b"]


def test_run_stats_report_progress_never_past_the_total():
    calls = []
    stats = RunStats(total=5, progress=lambda d, t: calls.append((d, t)))
    stats.tick(3)
    stats.tick(4)  # windows where panels meet are computed twice
    assert calls == [(3, 5), (5, 5)]


def test_resumed_windows_are_counted_and_reported_as_progress():
    calls = []
    stats = RunStats(total=10, progress=lambda d, t: calls.append(d))
    stats.resumed(4)
    assert stats.windows_resumed == 4 and calls == [4]


def test_run_stats_counts_come_in_the_order_of_run_tiled_statistics():
    stats = RunStats(total=1, panels=2)
    assert list(stats.counts()) == [
        "windows",
        "windows_skipped",
        "windows_resumed",
        "batches",
        "panels",
    ]
