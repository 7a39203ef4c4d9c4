"""Errors tilepipe raises on purpose: each names what failed and why, for a one-line log."""

from __future__ import annotations


class TilepipeError(Exception):
    """Base of every error tilepipe raises deliberately (the CLI prints these without traceback)."""


class InputError(TilepipeError):
    """An input file is missing, unreadable or not what the step expects."""


class ConfigError(TilepipeError):
    """A configuration value is invalid."""


class ModelError(TilepipeError):
    """A model file is unreadable or does not match the data it is asked to process."""


def context(tile: str | None = None, date: str | None = None, path: object = None) -> str:
    """Format the tile/date/file prefix that every error message starts with."""
    parts = []
    if tile:
        parts.append(f"tile {tile}")
    if date:
        parts.append(f"date {date}")
    if path is not None:
        parts.append(f"file {path}")
    return ", ".join(parts) + ": " if parts else ""


class Terminated(BaseException):
    """SIGTERM arrived (Slurm preemption or time limit): unwind, keep resume state, exit non-zero.

    A BaseException, so that no ``except Exception`` on the way swallows it.
    """
