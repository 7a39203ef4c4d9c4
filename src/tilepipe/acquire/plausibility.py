"""Metadata can lie: check from the pixels that the reflectance offset download will subtract is
really in them, before any harmonised reflectance is written.

Two named checks on the raw blue band (B02) of the window, with the scene classification (SCL):

``dark-surfaces``
    Vegetation, water, cloud shadow and dark-area pixels (SCL 4, 6, 3, 2) reflect little blue
    light: their surface reflectance sits around 0.01-0.06, seldom above 0.08. A scene from
    baseline 04.00 on with the offset still in carries +1000 DN on every valid pixel, so the
    10th percentile of their B02 DN sits near 1100-1600; with the offset out (or before 04.00)
    it sits near 100-600. The split, ``DARK_SPLIT_DN`` = 800 DN, leaves a wide margin on both
    sides (blue reflectance 0.08 without the offset, -0.02 with it). The 10th percentile, not
    the minimum or the median, so that a few noisy or negative pixels do not decide, and a
    window that is mostly turbid water or senescent crop (blue above 0.08) still has dark
    pixels enough. It needs ``MIN_DARK_PIXELS`` = 64 such pixels (under 1 % of a 100 x 100
    window, and enough that the 10th percentile rests on 6 pixels or more).
``offset-floor``
    When an offset is to be subtracted: the share of clear pixels whose B02 DN is at or below
    it, i.e. that the subtraction would clip to the floor (DN 1), must stay at or under
    ``FLOOR_SHARE_MAX`` = 5 %. With the offset really in, only pixels of negative blue
    reflectance fall there (well under 1 % in Sen2Cor output); subtracting an offset that is not
    there collapses every reflectance under 0.1 (most land in the blue band) to the floor.

A window of bright surfaces only (snow, cloud, desert, fewer than ``MIN_DARK_PIXELS`` dark
pixels) looks the same with and without the offset: then no check can tell, the metadata is
kept and a log line says so. ``MIN_CLEAR_PIXELS`` = 64 is the least number of clear pixels the
floor check is computed on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tilepipe.core.errors import InputError

log = logging.getLogger(__name__)

SCL_DARK = (2, 3, 4, 6)  # dark area, cloud shadow, vegetation, water: low blue reflectance
SCL_NOT_CLEAR = (0, 1, 8, 9, 10, 11)  # nodata, defective, cloud, cirrus, snow: not judged


@dataclass(frozen=True)
class PixelCheck:
    """Thresholds of the harmonisation checks (defaults justified in the module docstring)."""

    dark_split_dn: int = 800
    dark_percentile: float = 10.0
    min_dark_pixels: int = 64
    floor_share_max: float = 0.05
    min_clear_pixels: int = 64


DEFAULT_CHECK = PixelCheck()


@dataclass(frozen=True)
class Verdict:
    """What one check found: the check's name if it failed, the measurement, and whether it
    could tell at all (a passed floor check cannot: a bright scene passes it either way)."""

    failed: str | None
    detail: str
    decided: bool


def _dark_surfaces(blue: np.ndarray, dark: np.ndarray, offset: int, check: PixelCheck) -> Verdict:
    """The ``dark-surfaces`` check; undecided with fewer than ``min_dark_pixels`` dark pixels."""
    n = int(dark.sum())
    if n < check.min_dark_pixels:
        return Verdict(None, f"dark-surfaces: {n} dark pixels (< {check.min_dark_pixels})", False)
    level = float(np.percentile(blue[dark], check.dark_percentile))
    offset_seen = level >= check.dark_split_dn
    detail = (
        f"dark-surfaces: P{check.dark_percentile:g} of B02 over {n} vegetation/water/shadow "
        f"pixels = {level:.0f} DN ({'>=' if offset_seen else '<'} {check.dark_split_dn}: "
        f"offset {'in' if offset_seen else 'not in'} the pixels)"
    )
    return Verdict("dark-surfaces" if offset_seen != (offset > 0) else None, detail, True)


def _offset_floor(blue: np.ndarray, clear: np.ndarray, offset: int, check: PixelCheck) -> Verdict:
    """The ``offset-floor`` check: runs only when an offset is to be subtracted."""
    n = int(clear.sum())
    if offset <= 0 or n < check.min_clear_pixels:
        return Verdict(None, "", False)
    share = float((blue[clear] <= offset).mean())
    failed = share > check.floor_share_max
    detail = (
        f"offset-floor: {100 * share:.1f} % of {n} clear B02 pixels at or below {offset} DN "
        f"(max {100 * check.floor_share_max:g} %)"
    )
    return Verdict("offset-floor" if failed else None, detail, failed)


def judge_offset(
    raw: Mapping[str, np.ndarray], offset: int, check: PixelCheck = DEFAULT_CHECK
) -> Verdict:
    """Whether the raw B02 DN and the SCL of a window agree with subtracting ``offset`` DN."""
    blue, scl = raw["B02"], raw["SCL"]
    valid = (blue > 0) & (scl > 0)
    dark = valid & np.isin(scl, SCL_DARK)
    clear = valid & ~np.isin(scl, SCL_NOT_CLEAR)
    verdicts = (
        _dark_surfaces(blue, dark, offset, check),
        _offset_floor(blue, clear, offset, check),
    )
    return Verdict(
        failed=next((v.failed for v in verdicts if v.failed), None),
        detail="; ".join(v.detail for v in verdicts if v.detail),
        decided=any(v.decided for v in verdicts),
    )


def check_harmonisation(
    raw: Mapping[str, np.ndarray],
    offset: int,
    origin: str,
    *,
    where: str,
    check: PixelCheck = DEFAULT_CHECK,
) -> str:
    """The pixels' verdict on ``offset`` (from ``origin``) as one line for the raster tags;
    InputError naming the failed check when they contradict it, a log line when they cannot
    tell."""
    verdict = judge_offset(raw, offset, check)
    if verdict.failed:
        raise InputError(
            f"{where}harmonisation check {verdict.failed!r} failed: the metadata ({origin}) says "
            f"subtract {offset} DN but the pixels disagree: {verdict.detail}; nothing written"
        )
    if not verdict.decided:
        log.warning(
            "%spixels cannot tell whether the offset is in them (too few dark, clear pixels): "
            "keeping %d DN from %s; %s",
            where,
            offset,
            origin,
            verdict.detail,
        )
        return f"undecided, kept the metadata: {verdict.detail}"
    return f"consistent: {verdict.detail}"
