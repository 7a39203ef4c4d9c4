"""Progress and statistics of a tiling run: windows computed, skipped and resumed, batches."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

#: progress(windows accounted for, windows in the grid)
Progress = Callable[[int, int], None]


class ProgressLogger:
    """A progress callback that logs about every 10 % of windows (for long tiles)."""

    def __init__(self, logger: logging.Logger, label: str) -> None:
        """Log to ``logger``, each line starting with ``label``."""
        self.logger, self.label = logger, label
        self.next = 0.1  # fraction of windows at which the next line is logged

    def __call__(self, done: int, total: int) -> None:
        """Log when another 10 % of ``total`` windows is done, and at the end."""
        frac = done / max(total, 1)
        if frac >= self.next or done == total:
            self.logger.info("%s: %d/%d windows (%.0f%%)", self.label, done, total, 100 * frac)
            self.next = frac + 0.1


def progress_logger(logger: logging.Logger, label: str) -> Progress:
    """Return a progress callback that logs about every 10 % of windows (for long tiles)."""
    return ProgressLogger(logger, label)


@dataclass
class RunStats:
    """Window and batch counts of one run; progress is reported as windows are accounted for."""

    total: int
    progress: Progress | None = None
    panels: int = 0
    windows: int = 0
    windows_skipped: int = 0
    windows_resumed: int = 0
    batches: int = 0
    #: Windows of the grid accounted for (computed, skipped or resumed).
    counted: int = 0

    def tick(self, n: int) -> None:
        """Account for ``n`` more windows of the grid and report progress."""
        self.counted += n
        if self.progress is not None:
            self.progress(min(self.counted, self.total), self.total)

    def resumed(self, n: int) -> None:
        """Account for ``n`` windows whose output an earlier run journaled."""
        self.windows_resumed += n
        self.tick(n)

    def counts(self) -> dict[str, object]:
        """The counts, as the first entries of run_tiled's statistics."""
        return {
            "windows": self.windows,
            "windows_skipped": self.windows_skipped,
            "windows_resumed": self.windows_resumed,
            "batches": self.batches,
            "panels": self.panels,
        }
