"""SR consistency as opensr-test computes it (issue 15): its degradation, windowed; the check."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from rasterio.windows import Window

from tilepipe.core.settings import section_defaults
from tilepipe.qc.opensr import degrade, degraded_window

from .test_qc import check_of, make_set, qc

THRESHOLDS = section_defaults("qc")["sr_opensr"]


def triangle_weights(n_in: int, scale: int) -> np.ndarray:
    """(n_out, n_in) weights of antialiased bilinear downsampling by ``scale``, by its definition.

    A triangle of half-width ``scale`` input pixels centred on each output pixel's centre
    (``scale * (i + 0.5)``), cut at the image edge and normalised to sum 1 (PyTorch's
    ``antialias=True``, which opensr-test calls).
    """
    n_out = n_in // scale
    w = np.zeros((n_out, n_in))
    centres = np.arange(n_in) + 0.5
    for i in range(n_out):
        w[i] = np.clip(1 - np.abs(centres - scale * (i + 0.5)) / scale, 0, None)
        w[i] /= w[i].sum()
    return w


def dr_file(path, hr: np.ndarray) -> str:
    """A uint16 raster on a 1 m grid holding ``hr`` (bands, H, W)."""
    prof = dict(driver="GTiff", width=hr.shape[2], height=hr.shape[1], count=hr.shape[0])
    prof.update(dtype="uint16", crs="EPSG:32633", nodata=0)
    prof["transform"] = rasterio.Affine(1, 0, 600000, 0, -1, 5300000)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(hr)
    return str(path)


def test_the_torch_call_is_the_antialiased_triangle_filter_opensr_test_defines():
    hr = np.random.default_rng(0).random((2, 60, 80)) * 5000
    wy, wx = triangle_weights(60, 10), triangle_weights(80, 10)
    expected = np.einsum("ij,bjk,lk->bil", wy, hr, wx)
    np.testing.assert_allclose(degrade(hr, 10), expected, rtol=1e-5)


def test_degraded_windows_equal_the_whole_image_degraded_at_once(tmp_path):
    """opensr-test degrades the whole image in one call; tilepipe reads windows with margins."""
    hr = np.random.default_rng(1).integers(1, 5000, (4, 230, 170)).astype(np.uint16)
    path = dr_file(tmp_path / "dr.tif", hr)
    whole = F.interpolate(
        torch.from_numpy(hr.astype(np.float32))[None],
        scale_factor=1 / 10,
        mode="bilinear",
        antialias=True,
    )[0].numpy()
    with rasterio.open(path) as dr:
        for win in (Window(0, 0, 5, 4), Window(3, 7, 9, 11), Window(12, 19, 5, 4)):
            got, free = degraded_window(dr, win, 23, 17)
            np.testing.assert_allclose(
                got, whole[:, win.toslices()[0], win.toslices()[1]], rtol=1e-5
            )
            assert free.all()


def test_dr_nodata_under_the_kernel_keeps_the_pixel_out(tmp_path):
    hr = np.full((4, 50, 50), 1000, dtype=np.uint16)
    hr[:, 24, 24] = 0  # one 1 m nodata pixel in 10 m pixel (2, 2); the kernel reaches (1..3)
    with rasterio.open(dr_file(tmp_path / "dr.tif", hr)) as dr:
        _, free = degraded_window(dr, Window(0, 0, 5, 5), 5, 5)
    assert not free[1:3, 1:3].any() and free[0].all() and free[4].all()


def test_a_bright_pixel_spreads_to_its_neighbours_unlike_a_block_mean():
    hr = np.zeros((1, 50, 50))
    hr[:, 20:30, 20:30] = 1.0  # one 10 m pixel, nearest-upsampled
    lr = degrade(hr, 10)[0]
    # 3/4 of each axis' weight stays in the pixel, 1/8 goes to each neighbour
    assert lr[2, 2] == pytest.approx(0.75**2, rel=1e-5)
    assert lr[1, 2] == pytest.approx(0.125 * 0.75, rel=1e-5) and lr[1, 1] > 0


def test_consistent_smooth_set_passes_opensr_consistency(tmp_path):
    check = check_of(qc(make_set(tmp_path)), "sr_opensr")
    assert check["status"] == "pass", check
    assert check["value"]["reflectance"] < THRESHOLDS["reflectance_warn"]


def test_dr_shifted_half_a_pixel_fails_opensr_spatial_consistency(tmp_path):
    check = check_of(qc(make_set(tmp_path, dr_shift=5)), "sr_opensr")  # 5 m = 0.5 px at 10 m
    assert check["value"]["spatial"] == pytest.approx(0.5, abs=0.08)
    assert check["status"] == "fail"


def test_dr_with_a_halved_band_fails_opensr_spectral_consistency(tmp_path):
    paths = make_set(tmp_path)
    with rasterio.open(paths["dr"], "r+") as dst:
        dst.write(dst.read(4) // 2, 4)
    check = check_of(qc(paths), "sr_opensr")
    assert check["value"]["spectral"] > THRESHOLDS["spectral_fail"] and check["status"] == "fail"


def test_pixel_noise_copied_block_by_block_passes_block_means_but_not_opensr(tmp_path):
    """Block-mean consistency holds by construction for a copy; opensr-test's does not."""
    paths = make_set(tmp_path)
    noise = np.random.default_rng(0).integers(300, 4000, (4, 40, 40)).astype(np.uint16)
    with rasterio.open(paths["s2"], "r+") as dst:
        dst.write(noise)
    with rasterio.open(paths["dr"], "r+") as dst:
        dst.write(np.repeat(np.repeat(noise, 10, axis=1), 10, axis=2))
    report = qc(paths)
    assert check_of(report, "dr_consistency")["status"] == "pass"
    assert check_of(report, "sr_opensr")["value"]["reflectance"] > THRESHOLDS["reflectance_warn"]
