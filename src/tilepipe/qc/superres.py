"""Checks of the super-resolved dr.tif against s2: radiometry, spectra and alignment.

dr is block-averaged k x k back onto s2's 10 m grid and compared there (k the dr.tif's own
scale, its ``DR_SCALE`` tag or pixel size, never a constant): per-band L1 and PSNR
(``dr_consistency``), the spectral angle (``sr_spectral``) and the sub-pixel shift by phase
correlation (``sr_spatial``). ``dr_coverage`` compares dr's valid area with s2's inside the area
DR was computed for (its ``DR_AOI`` tag, else the whole raster): a DR model that returned NaN
leaves nodata where s2 has data, which the block comparisons would only skip.
"""

from __future__ import annotations

import numpy as np
from rasterio.windows import Window

from tilepipe.core.errors import InputError
from tilepipe.core.inputs import CORE_INDEXES, dr_scale
from tilepipe.engine.windows import Box, aoi_window
from tilepipe.qc.checks import RANK, above, below, check

PSNR_CAP = 100.0  # dB reported for an exact match (JSON has no infinity)


def spectral_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between band vectors a[:, i] and b[:, i]; NaN where one is all zero."""
    dot = np.sum(a * b, axis=0)
    norm = np.sqrt(np.sum(a * a, axis=0) * np.sum(b * b, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norm > 0, dot / norm, np.nan)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def dr_area(s2, dr) -> Box:
    """Rows and columns of s2 (r0, r1, c0, c1) that DR was computed for: its AOI or all of it.

    An AOI tag that does not parse, or misses the raster, counts as the whole raster (stricter).
    """
    tags = dr.tags() if dr is not None else {}
    try:
        aoi = tuple(float(v) for v in tags["DR_AOI"].split(","))
        return aoi_window(s2, aoi, int(tags.get("DR_AOI_MARGIN", 0)))
    except (KeyError, ValueError, InputError):
        return 0, s2.height, 0, s2.width


def strip_inside(box: Box, r0: int, h: int, width: int) -> np.ndarray:
    """The pixels of the s2 strip of ``h`` rows from ``r0`` that lie inside ``box``: (h, width)."""
    b_r0, b_r1, b_c0, b_c1 = box
    inside = np.zeros((h, width), dtype=bool)
    inside[max(b_r0 - r0, 0) : max(b_r1 - r0, 0), b_c0:b_c1] = True
    return inside


def new_dr_stats(bands: int) -> dict:
    """Empty accumulators of ``add_dr_strip``: per-band errors, the spectral angle sum, coverage.

    ``dr_expected`` counts the valid s2 pixels DR should cover; ``dr_covered`` the valid dr
    pixels (no band nodata) inside them, in dr pixels (``dr_block`` = k² per s2 pixel).
    """
    return {
        "dr_block": 100,
        "dr_expected": 0,
        "dr_covered": 0,
        "dr_n": np.zeros(bands, np.int64),
        "dr_abs": np.zeros(bands, np.float64),
        "dr_sq": np.zeros(bands, np.float64),
        "angle_n": 0,
        "angle_sum": 0.0,
    }


def add_dr_strip(stats: dict, dr, data: np.ndarray, valid: np.ndarray, r0: int) -> None:
    """Accumulate dr block means vs one s2 strip ``data`` (B, h, W) over its valid pixels.

    A 10 m pixel whose k x k dr block holds a nodata (0) value is left out of that band's
    errors and of the spectral angle; the dr pixels valid in every band count as covered.
    """
    nb, h, width = data.shape
    k = dr_scale(dr)
    stats["dr_block"] = k * k
    means = np.empty((nb, h, width), dtype=np.float64)
    complete = np.ones((h, width), dtype=bool)
    filled = np.ones((h, k, width, k), dtype=bool)
    for b in range(nb):
        hr = dr.read(b + 1, window=Window(0, r0 * k, width * k, h * k))
        blocks = hr.reshape(h, k, width, k)
        means[b] = blocks.sum(axis=(1, 3), dtype=np.float64) / float(k * k)
        filled &= blocks != 0
        complete_b = ~np.any(blocks == 0, axis=(1, 3))  # dr nodata inside the block
        complete &= complete_b
        both = valid & complete_b
        diff = (means[b][both] - data[b][both].astype(np.float64)) / 10000.0
        stats["dr_n"][b] += diff.size
        stats["dr_abs"][b] += np.abs(diff).sum()
        stats["dr_sq"][b] += np.square(diff).sum()
    stats["dr_expected"] += int(valid.sum())
    stats["dr_covered"] += int(filled.sum(axis=(1, 3))[valid].sum())
    both = valid & complete
    angles = spectral_angle(means[:, both], data[:, both].astype(np.float64))
    stats["angle_n"] += int(np.isfinite(angles).sum())
    stats["angle_sum"] += float(np.nansum(angles))


def dr_check(s2, dr_ok: bool, reasons: dict, stats: dict, thr: dict) -> dict:
    """Worst band's L1 and PSNR (peak 1.0) of dr block means against s2, in reflectance."""
    name = "dr_consistency"
    if not dr_ok:
        why = reasons.get("dr") or "dr grid is inconsistent with s2 (see grid_consistent)"
        return check(name, "fail", None, thr, f"not compared: {why}")
    n = stats["dr_n"]
    if not n.any():
        return check(name, "fail", None, thr, "no valid pixel shared by s2 and dr")
    with np.errstate(divide="ignore", invalid="ignore"):
        l1 = stats["dr_abs"] / n
        mse = stats["dr_sq"] / n
        psnr = np.minimum(10 * np.log10(1.0 / mse), PSNR_CAP)
    bands = [s2.descriptions[b] or f"band{b + 1}" for b in range(len(CORE_INDEXES))]
    worst_l1, worst_psnr = float(np.nanmax(l1)), float(np.nanmin(psnr))
    # Blocks holding dr nodata are skipped: judged on a few, the errors speak for little.
    compared = int(n.min()) / stats["dr_expected"]
    status = max(
        above(worst_l1, thr["l1_warn"], thr["l1_fail"]),
        below(worst_psnr, thr["psnr_warn"], thr["psnr_fail"]),
        below(compared, thr["compared_warn"], thr["compared_fail"]),
        key=RANK.get,
    )
    value = {
        "bands": bands,
        "l1": l1.tolist(),
        "psnr": psnr.tolist(),
        "worst_l1": worst_l1,
        "worst_psnr": worst_psnr,
        "pixels": int(n.max()),
        "compared_fraction": compared,
    }
    message = (
        f"dr block means vs s2: worst band L1 {worst_l1:.4f}, worst PSNR {worst_psnr:.1f} dB "
        f"over {int(n.max())} pixels, {compared:.1%} of s2's valid pixels compared"
    )
    return check(name, status, value, thr, message)


def coverage_check(dr_ok: bool, reasons: dict, stats: dict, thr: dict) -> dict:
    """dr's valid area against s2's, in 10 m pixels, inside the area DR was computed for."""
    name = "dr_coverage"
    if not dr_ok:
        why = reasons.get("dr") or "dr grid is inconsistent with s2 (see grid_consistent)"
        return check(name, "fail", None, thr, f"not compared: {why}")
    expected = stats["dr_expected"]
    if expected == 0:
        return check(name, "fail", None, thr, "no valid s2 pixel where DR was computed")
    covered = stats["dr_covered"] / float(stats["dr_block"])
    ratio = covered / expected
    value = {"ratio": ratio, "dr_valid_px": covered, "s2_valid_px": expected}
    message = (
        f"dr is valid over {covered:.0f} of s2's {expected} valid 10 m pixels ({ratio:.2%})"
        + ("" if ratio >= 1.0 else ": the rest is nodata in dr (a model that returned NaN?)")
    )
    return check(name, below(ratio, thr["warn"], thr["fail"]), value, thr, message)


def spectral_check(dr_ok: bool, stats: dict, thr: dict) -> dict:
    """Mean spectral angle between dr block means and s2 over their shared valid pixels."""
    name = "sr_spectral"
    if not dr_ok:
        return check(name, "fail", None, thr, "not compared: dr unusable (see grid_consistent)")
    if stats["angle_n"] == 0:
        return check(name, "fail", None, thr, "no valid pixel shared by s2 and dr")
    angle = stats["angle_sum"] / stats["angle_n"]
    return check(
        name,
        above(angle, thr["warn"], thr["fail"]),
        angle,
        thr,
        f"mean spectral angle of dr block means vs s2 {angle:.2f}° over {stats['angle_n']} pixels",
    )


def spatial_windows(height: int, width: int, size: int, limit: int) -> list[Window]:
    """Up to ``limit`` windows of ``size`` pixels spread evenly over the raster."""
    size_r, size_c = min(size, height), min(size, width)
    grid = [
        Window(c0, r0, size_c, size_r)
        for r0 in range(0, height - size_r + 1, size_r)
        for c0 in range(0, width - size_c + 1, size_c)
    ]
    if len(grid) <= limit:
        return grid
    picks = np.linspace(0, len(grid) - 1, limit).round().astype(int)
    return [grid[i] for i in sorted(set(picks.tolist()))]


def _window_shift(s2, dr, win: Window) -> np.ndarray | None:
    """(dy, dx) shift of dr against s2 in one window, or None without enough structure."""
    from skimage.registration import phase_cross_correlation

    lr = s2.read(CORE_INDEXES, window=win).astype(np.float64)  # (4, h, w)
    h, w = lr.shape[1:]
    k = dr_scale(dr)
    hr = dr.read(window=Window(win.col_off * k, win.row_off * k, w * k, h * k))
    blocks = hr.reshape(hr.shape[0], h, k, w, k)
    back = blocks.mean(axis=(2, 4))
    valid = np.any(lr != 0, axis=0) & ~np.any(blocks == 0, axis=(0, 2, 4))
    if valid.mean() < 0.9 or min(h, w) < 8:
        return None  # too much nodata (or too small) for a meaningful correlation
    ref, mov = lr.mean(axis=0), back.mean(axis=0)
    ref[~valid], mov[~valid] = ref[valid].mean(), mov[valid].mean()
    if ref.std() == 0 or mov.std() == 0:
        return None  # flat window: no structure to register
    shift, _, _ = phase_cross_correlation(ref, mov, upsample_factor=20)
    return shift


def spatial_check(s2, dr, dr_ok: bool, thr: dict) -> dict:
    """Sub-pixel shift of dr (block-averaged to 10 m) against s2 by phase correlation."""
    name = "sr_spatial"
    if not dr_ok:
        return check(name, "fail", None, thr, "not compared: dr unusable (see grid_consistent)")
    windows = spatial_windows(s2.height, s2.width, int(thr["window"]), int(thr["windows"]))
    shifts = [s for s in (_window_shift(s2, dr, win) for win in windows) if s is not None]
    if not shifts:
        return check(name, "warn", None, thr, "no window with enough valid structure to register")
    arr = np.asarray(shifts)
    magnitude = float(np.median(np.hypot(arr[:, 0], arr[:, 1])))
    value = {
        "shift_px": magnitude,
        "median_dy_px": float(np.median(arr[:, 0])),
        "median_dx_px": float(np.median(arr[:, 1])),
        "windows": len(shifts),
    }
    return check(
        name,
        above(magnitude, thr["warn"], thr["fail"]),
        value,
        thr,
        f"dr is shifted {magnitude:.2f} px (10 m pixels) from s2, median of {len(shifts)} "
        f"phase-correlation windows",
    )
