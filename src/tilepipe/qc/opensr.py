"""SR consistency as opensr-test computes it: dr degraded to 10 m by antialiased bilinear.

opensr-test (https://github.com/ESAOpenSR/opensr-test, ``opensr_test/utils.py``
``apply_upsampling``) brings SR back to the LR grid with
``torch.nn.functional.interpolate(sr[None], scale_factor=1 / scale, mode="bilinear",
antialias=True)``, then compares it with LR: reflectance (mean L1 over pixels and bands),
spectral (mean spectral angle per pixel, degrees) and spatial (the translation phase
correlation finds between LR and the degraded SR, on the mean of the first three bands, in LR
pixels). This module applies that same call to dr.tif window by window: each window is read
with one 10 m pixel of margin (the kernel reaches 10 dr pixels from a 10 m pixel's centre),
so every window equals the same part of the whole-image result, in bounded memory.

dr nodata has no place in opensr-test; here a 10 m pixel is compared only where the degraded
validity mask is 1 (no dr nodata under its kernel) and s2 is valid.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from rasterio.windows import Window

from tilepipe.core.inputs import CORE_INDEXES, dr_scale
from tilepipe.qc.checks import RANK, above, check
from tilepipe.qc.superres import spatial_windows, spectral_angle

#: 10 m columns per degraded chunk: dr chunks of 4 bands x 340 rows x ~5140 columns (float32).
CHUNK_COLS = 512
#: Phase correlation as opensr-test runs it through satalign's PCC: 1/50 px, shifts > 5 px fail.
UPSAMPLE = 50
MAX_SHIFT = 5.0


def degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """opensr-test's SR -> LR degradation of (bands, H, W): bilinear with antialiasing."""
    x = torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32))[None]
    with torch.inference_mode():
        y = F.interpolate(x, scale_factor=1 / scale, mode="bilinear", antialias=True)
    return y[0].numpy()


def degraded_window(dr, win: Window, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Degraded dr (bands, h, w) over the 10 m window ``win`` and where it is free of nodata.

    ``height`` and ``width`` are s2's; the window is read with a 10 m pixel of margin where the
    raster goes on, so it equals the same part of the whole raster degraded at once.
    """
    k = dr_scale(dr)  # the dr.tif's own scale, never a constant
    r0, c0, h, w = int(win.row_off), int(win.col_off), int(win.height), int(win.width)
    m_r0, m_c0 = max(r0 - 1, 0), max(c0 - 1, 0)
    m_r1, m_c1 = min(r0 + h + 1, height), min(c0 + w + 1, width)
    read = Window(m_c0 * k, m_r0 * k, (m_c1 - m_c0) * k, (m_r1 - m_r0) * k)
    hr = dr.read(window=read).astype(np.float32)
    valid = np.all(hr != 0, axis=0, keepdims=True).astype(np.float32)
    out = degrade(np.concatenate([hr, valid]), k)
    inner = np.s_[:, r0 - m_r0 : r0 - m_r0 + h, c0 - m_c0 : c0 - m_c0 + w]
    return out[inner][:-1], out[inner][-1] >= 1.0 - 1e-6


def new_opensr_stats() -> dict:
    """Empty accumulators of ``add_opensr_strip``."""
    return {"os_n": 0, "os_abs": 0.0, "os_angle_n": 0, "os_angle_sum": 0.0}


def add_opensr_strip(stats: dict, dr, data: np.ndarray, valid: np.ndarray, r0: int) -> None:
    """Accumulate opensr-test's L1 and spectral angle of one s2 strip (B, h, W), in chunks."""
    _, h, width = data.shape
    height = dr.height // dr_scale(dr)
    for c0 in range(0, width, CHUNK_COLS):
        w = min(CHUNK_COLS, width - c0)
        sr, free = degraded_window(dr, Window(c0, r0, w, h), height, width)
        both = valid[:, c0 : c0 + w] & free
        if not both.any():
            continue
        lr = data[:, :, c0 : c0 + w][:, both].astype(np.float64) / 10000.0
        back = sr[:, both].astype(np.float64) / 10000.0
        stats["os_n"] += lr.size
        stats["os_abs"] += float(np.abs(back - lr).sum())
        angles = spectral_angle(back, lr)
        stats["os_angle_n"] += int(np.isfinite(angles).sum())
        stats["os_angle_sum"] += float(np.nansum(angles))


def _window_shift(s2, dr, win: Window) -> float | None:
    """Shift magnitude (10 m px) of s2 against degraded dr in one window, as opensr-test finds it.

    None without enough valid structure, or past ``MAX_SHIFT`` (a failed registration).
    """
    from skimage.registration import phase_cross_correlation

    lr = s2.read(CORE_INDEXES, window=win).astype(np.float64)
    sr, free = degraded_window(dr, win, s2.height, s2.width)
    valid = np.all(lr != 0, axis=0) & free
    if valid.mean() < 0.9 or min(lr.shape[1:]) < 8:
        return None
    ref, mov = sr[:3].mean(axis=0).astype(np.float64), lr[:3].mean(axis=0)
    ref[~valid], mov[~valid] = ref[valid].mean(), mov[valid].mean()
    if ref.std() == 0 or mov.std() == 0:
        return None
    shift, _, _ = phase_cross_correlation(ref, mov, upsample_factor=UPSAMPLE)
    magnitude = float(np.hypot(*shift))
    return magnitude if magnitude <= MAX_SHIFT else None


def opensr_check(s2, dr, dr_ok: bool, stats: dict, thr: dict) -> dict:
    """opensr-test's reflectance, spectral and spatial consistency of dr against s2."""
    name = "sr_opensr"
    if not dr_ok:
        return check(name, "fail", None, thr, "not compared: dr unusable (see grid_consistent)")
    if stats["os_n"] == 0 or stats["os_angle_n"] == 0:
        return check(name, "fail", None, thr, "no valid pixel shared by s2 and degraded dr")
    reflectance = stats["os_abs"] / stats["os_n"]
    spectral = stats["os_angle_sum"] / stats["os_angle_n"]
    windows = spatial_windows(s2.height, s2.width, int(thr["window"]), int(thr["windows"]))
    shifts = [s for s in (_window_shift(s2, dr, win) for win in windows) if s is not None]
    spatial = float(np.median(shifts)) if shifts else None
    statuses = [
        above(reflectance, thr["reflectance_warn"], thr["reflectance_fail"]),
        above(spectral, thr["spectral_warn"], thr["spectral_fail"]),
        "warn" if spatial is None else above(spatial, thr["spatial_warn"], thr["spatial_fail"]),
    ]
    value = {
        "reflectance": reflectance,
        "spectral": spectral,
        "spatial": spatial,
        "pixels": stats["os_n"] // len(CORE_INDEXES),
        "windows": len(shifts),
    }
    where = "no window registered" if spatial is None else f"shift {spatial:.3f} px"
    message = (
        f"dr degraded as opensr-test does (bilinear, antialias) vs s2: reflectance L1 "
        f"{reflectance:.4f}, spectral angle {spectral:.2f}°, {where} (median of {len(shifts)})"
    )
    return check(name, max(statuses, key=RANK.get), value, thr, message)
