"""The partner date of each scene for a two-date field model (``fields.pairing``).

A two-date model (sidecar ``dates: 2``, Fields of The World's released ones) takes window A's
bands, then window B's: planting and harvest. Each scene is delineated with one partner, so
every scene keeps its own fields, QC and classification:

- ``windows``: two windows of the year by month and day; a scene in window A is paired with
  the clearest scene of the same tile and year in window B (least ``cloud_cover``, then
  ``nodata_pct``, then the earlier date), and a scene in B with the clearest in A, as FTW
  picks one scene per window;
- ``pairs``: explicit ``{tile, a, b}``; both dates are delineated with the other.

Light on purpose (no raster or torch imports): the workflow plans its DAG from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Partner:
    """A scene's partner date and the window the partner is in (``a`` or ``b``)."""

    date: str
    window: str


def window_problems(pairing: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``fields.pairing.windows`` beyond the schema: a window that runs
    backwards (across the new year) or windows that overlap."""
    windows = pairing.get("windows") or {}
    if not windows:
        return []
    problems = [
        f"window {name} runs from {w['start']} back to {w['end']}: windows are within one year"
        for name, w in windows.items()
        if w["start"] > w["end"]
    ]
    a, b = windows["a"], windows["b"]
    if not problems and a["start"] <= b["end"] and b["start"] <= a["end"]:
        problems.append(
            f"windows a {a['start']}..{a['end']} and b {b['start']}..{b['end']} overlap"
        )
    return problems


def _in_window(date: str, window: Mapping[str, str]) -> bool:
    """Whether ``YYYY-MM-DD`` falls in a ``{start, end}`` window of ``MM-DD`` days."""
    return window["start"] <= date[5:] <= window["end"]


def _clearest(rows: list[Mapping[str, Any]]) -> str | None:
    """The date of the clearest row: least cloud, then least nodata, then the earliest."""
    if not rows:
        return None
    key = lambda r: (float(r["cloud_cover"]), float(r["nodata_pct"]), r["date"])  # noqa: E731
    return min(rows, key=key)["date"]


def partners(
    scenes: Iterable[Mapping[str, Any]], pairing: Mapping[str, Any]
) -> dict[tuple[str, str], Partner]:
    """(tile, date) -> its partner, for each scene (manifest rows: tile, date, cloud_cover,
    nodata_pct) that has one under ``pairing``; a scene without a partner is left out."""
    rows = list(scenes)
    found: dict[tuple[str, str], Partner] = {}
    for pair in pairing.get("pairs") or ():
        found[(pair["tile"], str(pair["a"]))] = Partner(str(pair["b"]), "b")
        found[(pair["tile"], str(pair["b"]))] = Partner(str(pair["a"]), "a")
    windows = pairing.get("windows") or {}
    if not windows:
        return found
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["tile"], str(row["date"])[:4]), []).append(row)
    for (tile, _), members in groups.items():
        inside = {w: [r for r in members if _in_window(str(r["date"]), windows[w])] for w in "ab"}
        best = {w: _clearest(inside[w]) for w in "ab"}
        for own, other in (("a", "b"), ("b", "a")):
            for row in inside[own]:
                key = (tile, str(row["date"]))
                if best[other] is not None and key not in found:
                    found[key] = Partner(best[other], other)
    return found


def unpaired_reason(tile: str, date: str, pairing: Mapping[str, Any]) -> str:
    """Why a scene has no partner, in words, for its fields job's error."""
    windows = pairing.get("windows") or {}
    if not windows:
        return f"no entry of fields.pairing.pairs names tile {tile} and date {date}"
    inside = [w for w in "ab" if _in_window(date, windows[w])]
    if not inside:
        spans = ", ".join(f"{w} {windows[w]['start']}..{windows[w]['end']}" for w in "ab")
        return f"the date is in neither pairing window ({spans})"
    other = "b" if inside[0] == "a" else "a"
    w = windows[other]
    return f"tile {tile} has no scene of {date[:4]} in window {other} ({w['start']}..{w['end']})"
