"""Season windows of a campaign: the configured ones, or one per calendar year of its dates.

Light on purpose (no raster or torch imports): the workflow plans from it at parse time, and
``tilepipe plan`` counts the season jobs with it.
"""

from __future__ import annotations


def season_windows(windows: list[dict], start: str, end: str) -> dict[str, tuple[str, str]]:
    """Season name -> (first, last day): the configured windows, or one per calendar year of
    the campaign's ``start``..``end`` (named by the year)."""
    if windows:
        return {w["name"]: (str(w["start"]), str(w["end"])) for w in windows}
    if not start or not end:
        return {}
    years = range(int(str(start)[:4]), int(str(end)[:4]) + 1)
    return {str(y): (f"{y}-01-01", f"{y}-12-31") for y in years}


def season_of(day: str, seasons: dict[str, tuple[str, str]]) -> list[str]:
    """The seasons whose window holds the day ``YYYY-MM-DD``."""
    return [name for name, (lo, hi) in seasons.items() if lo <= day <= hi]
