"""The sliding-window engine: grid, blending, nodata, borders, atomicity, dtype conversion."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine

from tilepipe.core.errors import ModelError, TilepipeError
from tilepipe.core.raster import gtiff_profile
from tilepipe.engine.tiling import prefetch, run_tiled
from tilepipe.engine.windows import window_origins

TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5300000.0)
CRS = "EPSG:32633"


def write_tif(path, data: np.ndarray, nodata=None, transform=TRANSFORM) -> str:
    """Write a (C, H, W) array as a small GeoTIFF."""
    c, h, w = data.shape
    profile = gtiff_profile(
        width=w,
        height=h,
        count=c,
        dtype=str(data.dtype),
        crs=CRS,
        transform=transform,
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return str(path)


def read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def smooth_image(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Random but spatially smooth float32 test image."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(1, *shape)).astype(np.float32))
    return F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)[0].numpy() + 2.0


def upsample_predict(scale: int, factor: float = 2.0):
    """Pointwise model: nearest upsampling times ``factor`` (every output depends on one input)."""

    def predict(x: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(x * factor, scale, axis=2), scale, axis=3)

    return predict


def conv_predict(weight: torch.Tensor):
    """Translation-invariant model: a fixed 3x3 convolution with reflect padding."""

    def predict(x: np.ndarray) -> np.ndarray:
        t = F.pad(torch.from_numpy(x), (1, 1, 1, 1), mode="reflect")
        return F.conv2d(t, weight).numpy()

    return predict


def run(src, dst, predict, **kw):
    args = dict(scale=1, out_bands=1, out_dtype="float32", patch=16, overlap=4, batch=3)
    args.update(nodata_out=None)
    args.update(kw)
    return run_tiled(src, dst, predict, **args)


def test_output_grid_is_source_grid_refined_by_scale(tmp_path):
    src = write_tif(tmp_path / "s.tif", smooth_image((2, 20, 30)))
    run(
        src,
        tmp_path / "o.tif",
        upsample_predict(3),
        scale=3,
        out_bands=2,
        out_dtype="uint16",
        band_descriptions=["a", "b"],
        tags={"K": "v"},
    )
    with rasterio.open(tmp_path / "o.tif") as out:
        assert out.transform == TRANSFORM * Affine.scale(1 / 3)
        assert out.crs.to_epsg() == 32633
        assert (out.width, out.height, out.count) == (90, 60, 2)
        assert out.dtypes == ("uint16", "uint16")
        assert out.descriptions == ("a", "b")
        assert out.tags()["K"] == "v"


def test_pointwise_model_is_exact_everywhere(tmp_path):
    img = smooth_image((3, 37, 41))
    src = write_tif(tmp_path / "s.tif", img)
    run(src, tmp_path / "o.tif", upsample_predict(2), scale=2, out_bands=3)
    expected = np.repeat(np.repeat(img * 2, 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(read(tmp_path / "o.tif"), expected, rtol=1e-5)


def test_tiled_conv_matches_whole_image_inference(tmp_path):
    img = smooth_image((2, 70, 90), seed=1)
    weight = torch.from_numpy(np.random.default_rng(2).normal(size=(1, 2, 3, 3)).astype(np.float32))
    src = write_tif(tmp_path / "s.tif", img)
    run(src, tmp_path / "o.tif", conv_predict(weight), patch=32, overlap=16)
    whole = conv_predict(weight)(img[None])[0]
    tiled = read(tmp_path / "o.tif")
    assert np.abs(tiled - whole).max() < 0.02 * np.abs(whole).mean()


def test_seams_are_no_worse_than_window_interiors(tmp_path):
    img = smooth_image((1, 64, 64), seed=3)
    src = write_tif(tmp_path / "s.tif", img)

    def bicubic(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x)
        return F.interpolate(t, scale_factor=4, mode="bicubic", align_corners=False).numpy()

    run(src, tmp_path / "o.tif", bicubic, scale=4, patch=16, overlap=4)
    err = np.abs(read(tmp_path / "o.tif")[0] - bicubic(img[None])[0, 0])
    origins = window_origins(64, 16, 4)
    seam_cols = sorted({(o + k) * 4 for o in origins[1:] for k in (0, 4)} - {256})
    seam_err = err[:, [c for c in seam_cols if 0 <= c < 256]].mean()
    assert seam_err <= 1.5 * err.mean() + 1e-4


def test_nodata_pixels_come_out_as_nodata_and_neighbours_are_unchanged(tmp_path):
    img = smooth_image((2, 30, 30))
    holed = img.copy()
    holed[:, 10:14, 5:9] = -9999.0
    write_tif(tmp_path / "a.tif", img, nodata=-9999.0)
    write_tif(tmp_path / "b.tif", holed, nodata=-9999.0)
    run(tmp_path / "a.tif", tmp_path / "oa.tif", upsample_predict(2), scale=2, out_bands=2)
    run(
        tmp_path / "b.tif",
        tmp_path / "ob.tif",
        upsample_predict(2),
        scale=2,
        out_bands=2,
        nodata_out=-1.0,
    )
    a, b = read(tmp_path / "oa.tif"), read(tmp_path / "ob.tif")
    hole = np.zeros((60, 60), dtype=bool)
    hole[20:28, 10:18] = True
    assert (b[:, hole] == -1.0).all()
    np.testing.assert_array_equal(a[:, ~hole], b[:, ~hole])


def test_predict_never_sees_nodata_or_nan(tmp_path):
    img = smooth_image((2, 40, 40))
    img[:, :, :25] = np.nan  # whole windows of nodata, plus partial ones
    src = write_tif(tmp_path / "s.tif", img, nodata=float("nan"))
    seen = []

    def predict(x: np.ndarray) -> np.ndarray:
        seen.append(np.isfinite(x).all())
        return x.copy()

    stats = run(src, tmp_path / "o.tif", predict, out_bands=2, nodata_out=float("nan"))
    out = read(tmp_path / "o.tif")
    assert all(seen) and stats["windows_skipped"] > 0
    assert np.isnan(out[:, :, :25]).all() and np.isfinite(out[:, :, 25:]).all()


def test_sizes_not_multiple_of_stride_and_smaller_than_patch_work(tmp_path):
    for h, w in ((150, 23), (5, 7)):
        img = smooth_image((1, h, w))
        src = write_tif(tmp_path / f"s{h}.tif", img)
        shapes = set()

        def predict(x: np.ndarray, shapes=shapes) -> np.ndarray:
            shapes.add(x.shape[1:])
            return np.repeat(np.repeat(x, 2, axis=2), 2, axis=3)

        run(src, tmp_path / f"o{h}.tif", predict, scale=2)
        assert shapes == {(1, 16, 16)}
        np.testing.assert_allclose(
            read(tmp_path / f"o{h}.tif")[0], np.repeat(np.repeat(img[0], 2, 0), 2, 1), rtol=1e-5
        )


def test_failing_predict_is_a_model_error_and_leaves_no_output_and_no_temporary(tmp_path):
    src = write_tif(tmp_path / "s.tif", smooth_image((1, 20, 20)))

    def predict(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    with pytest.raises(ModelError, match="RuntimeError: boom") as caught:
        run(src, tmp_path / "out" / "o.tif", predict)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert list((tmp_path / "out").iterdir()) == []


def test_integer_output_is_rounded_clipped_and_never_equals_nodata(tmp_path):
    src = write_tif(tmp_path / "s.tif", np.ones((1, 4, 4), dtype=np.float32))
    values = np.array([[-5.0, 0.4, 1.6, 70000.0]], dtype=np.float32)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.tile(values, (1, 2)), x.shape).copy()

    run(src, tmp_path / "o.tif", predict, out_dtype="uint16", nodata_out=0, patch=8, overlap=0)
    assert read(tmp_path / "o.tif")[0, 0].tolist() == [1, 1, 2, 65535]


def test_progress_reaches_total_and_stats_count_windows(tmp_path):
    src = write_tif(tmp_path / "s.tif", smooth_image((1, 40, 40)))
    calls = []
    stats = run(
        src, tmp_path / "o.tif", upsample_predict(1), progress=lambda d, t: calls.append((d, t))
    )
    n = len(window_origins(40, 16, 4))
    assert calls[-1][0] == calls[-1][1] == stats["windows"] == n * n
    assert stats["batches"] == n * -(-n // 3) and stats["mpx_per_s"] > 0


def test_predict_returning_the_wrong_shape_is_an_error(tmp_path):
    src = write_tif(tmp_path / "s.tif", smooth_image((1, 20, 20)))
    with pytest.raises(TilepipeError, match="predict returned shape"):
        run(src, tmp_path / "o.tif", upsample_predict(1), scale=2)


def test_prefetch_yields_every_result_in_order():
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert list(prefetch(pool, lambda x: 2 * x, [3, 1, 2])) == [6, 2, 4]
        assert list(prefetch(pool, lambda x: x, [])) == []


def test_prefetch_computes_the_next_item_while_the_caller_works():
    started = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        items = prefetch(pool, started.append, [1, 2, 3])
        next(items)
        pool.submit(lambda: None).result()  # the pool has run what was submitted before
        assert started == [1, 2]


def test_overlap_not_smaller_than_patch_is_rejected(tmp_path):
    src = write_tif(tmp_path / "s.tif", smooth_image((1, 8, 8)))
    with pytest.raises(TilepipeError, match="overlap"):
        run(src, tmp_path / "o.tif", upsample_predict(1), patch=8, overlap=8)


def zero_padded_cnn(scale: int, seed: int = 4):
    """A model with strong window-edge effects: two zero-padded 3x3 convs, nearest upsampling."""
    g = torch.Generator().manual_seed(seed)
    w1, w2 = torch.randn(4, 1, 3, 3, generator=g), torch.randn(1, 4, 3, 3, generator=g)

    def predict(x: np.ndarray) -> np.ndarray:
        h = F.leaky_relu(F.conv2d(torch.from_numpy(x), w1, padding=1), 0.1)
        out = F.conv2d(h, w2, padding=1)
        return F.interpolate(out, scale_factor=scale, mode="nearest").numpy()

    return predict


def seam_ratio(img: np.ndarray, origins: list[int], patch: int, scale: int) -> float:
    """Mean |column jump| at window edges over the mean jump between all source-pixel blocks."""
    jump = np.abs(np.diff(img, axis=-1)).mean(axis=(0, 1))
    edges = {(o + k) * scale - 1 for o in origins for k in (0, patch)}
    cols = [c for c in sorted(edges) if 0 <= c < jump.size]
    return float(jump[cols].mean() / jump[scale - 1 :: scale].mean())


def test_blended_seams_of_an_edge_sensitive_model_are_no_worse_than_interiors(tmp_path):
    img = smooth_image((1, 48, 96), seed=5)
    src = write_tif(tmp_path / "s.tif", img)
    ratios = {}
    for overlap in (0, 8):
        dst = tmp_path / f"o{overlap}.tif"
        run(src, dst, zero_padded_cnn(2), scale=2, patch=24, overlap=overlap)
        ratios[overlap] = seam_ratio(read(dst), window_origins(96, 24, overlap), 24, 2)
    assert ratios[8] <= 1.1  # seams indistinguishable from the image's own structure
    assert ratios[0] > 1.5 * ratios[8]  # the metric does see hard-stitched seams


class Crash(BaseException):
    """Stands in for a job killed mid-run (the CLI tests use a real kill -9).

    A BaseException, like SIGTERM's Terminated: the engine names an Exception from the model as
    a ModelError, but a kill is not the model's error.
    """


def crashing(predict, after: int):
    """Wrap ``predict`` so that it raises on call number ``after`` + 1."""
    calls = {"n": 0}

    def wrapped(x: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] > after:
            raise Crash
        return predict(x)

    return wrapped


@pytest.mark.parametrize(("overlap", "panel_px"), [(4, 8192), (10, 8192), (4, 50)])
def test_resumed_run_equals_an_uninterrupted_run_and_recomputes_less(tmp_path, overlap, panel_px):
    img = smooth_image((1, 100, 40), seed=6)
    src = write_tif(tmp_path / "s.tif", img, nodata=-9999.0)
    kw = dict(scale=3, patch=16, overlap=overlap, batch=2, nodata_out=-9999.0, panel_px=panel_px)
    full = run(src, tmp_path / "full.tif", zero_padded_cnn(3), **kw)
    dst = tmp_path / "dr.tif"
    with pytest.raises(Crash):
        run(src, dst, crashing(zero_padded_cnn(3), full["batches"] // 2), resume=True, **kw)
    assert not dst.exists() and (tmp_path / "dr.tif.parts" / "journal.jsonl").is_file()
    again = run(src, dst, zero_padded_cnn(3), resume=True, **kw)
    assert 0 < again["windows"] < 0.8 * full["windows"] and again["windows_resumed"] > 0
    np.testing.assert_array_equal(read(dst), read(tmp_path / "full.tif"))
    assert not (tmp_path / "dr.tif.parts").exists()


def test_column_panels_give_exactly_the_full_width_result(tmp_path):
    """batch=1 so both runs make the same forward calls: batches of other windows may round
    differently in the last float bit, which is the only difference panels can make."""
    img = smooth_image((1, 40, 100), seed=10)
    img[:, 5:9, 30:70] = np.nan  # nodata across panel borders
    src = write_tif(tmp_path / "s.tif", img, nodata=float("nan"))
    kw = dict(scale=2, patch=16, overlap=6, batch=1, nodata_out=float("nan"))
    one = run(src, tmp_path / "one.tif", zero_padded_cnn(2), **kw)
    many = run(src, tmp_path / "many.tif", zero_padded_cnn(2), panel_px=40, **kw)
    assert one["panels"] == 1 and many["panels"] > 4
    np.testing.assert_array_equal(read(tmp_path / "many.tif"), read(tmp_path / "one.tif"))


def test_a_journal_line_cut_by_a_kill_is_dropped_and_journaling_goes_on(tmp_path):
    src = write_tif(tmp_path / "s.tif", smooth_image((1, 100, 40), seed=6))
    dst, journal = tmp_path / "dr.tif", tmp_path / "dr.tif.parts" / "journal.jsonl"
    kw = dict(scale=2, batch=2, resume=True)
    with pytest.raises(Crash):
        run(src, dst, crashing(zero_padded_cnn(2), 4), **kw)
    with journal.open("a") as fh:
        fh.write('{"col0": 0, "col1": 80, "ro')  # the kill came in the middle of a write
    with pytest.raises(Crash):
        run(src, dst, crashing(zero_padded_cnn(2), 8), **kw)
    done_twice = len(journal.read_text().splitlines())
    last = run(src, dst, zero_padded_cnn(2), **kw)
    full = run(src, tmp_path / "full.tif", zero_padded_cnn(2), scale=2, batch=2)
    # Every journaled window row was kept but the last, computed again to rebuild the accumulator
    # (overlap 4 < stride 12: one window row reaches below the next one's origin).
    assert last["windows_resumed"] == (done_twice - 1 - 1) * 4
    np.testing.assert_array_equal(read(dst), read(tmp_path / "full.tif"))
    assert last["windows"] + last["windows_resumed"] == full["windows"]


def test_resume_state_of_other_settings_is_discarded(tmp_path):
    src = write_tif(tmp_path / "s.tif", smooth_image((1, 100, 40), seed=6))
    dst = tmp_path / "dr.tif"
    with pytest.raises(Crash):
        run(src, dst, crashing(upsample_predict(2), 10), scale=2, resume=True)
    assert len((tmp_path / "dr.tif.parts" / "journal.jsonl").read_text().splitlines()) > 1
    stats = run(src, dst, upsample_predict(2, factor=3.0), scale=2, resume=True, tags={"M": "b"})
    assert stats["windows_resumed"] == 0
    np.testing.assert_allclose(read(dst)[0, ::2, ::2], 3 * read(src)[0], rtol=1e-5)


def test_aoi_run_computes_only_its_windows_and_matches_the_full_run_inside(tmp_path):
    img = smooth_image((1, 80, 80), seed=7)
    src = write_tif(tmp_path / "s.tif", img)
    kw = dict(scale=2, nodata_out=-1.0)
    full = run(src, tmp_path / "full.tif", zero_padded_cnn(2), **kw)
    # AOI: source cols 20..40, rows 30..50 (10 m pixels), margin 2 px
    x0, y0 = TRANSFORM * (20, 50)
    x1, y1 = TRANSFORM * (40, 30)
    part = run(
        src, tmp_path / "aoi.tif", zero_padded_cnn(2), aoi=(x0, y0, x1, y1), aoi_margin=2, **kw
    )
    assert 0 < part["windows"] < full["windows"] / 3
    a, f = read(tmp_path / "aoi.tif")[0], read(tmp_path / "full.tif")[0]
    inside = np.zeros_like(a, dtype=bool)
    inside[56:104, 36:84] = True  # rows 28..52, cols 18..42 at scale 2
    np.testing.assert_array_equal(a[inside], f[inside])
    assert (a[~inside] == -1.0).all()


def tiff_layout(path) -> list[dict]:
    """Per IFD (full resolution first): its file offset, size, tiling and data offsets."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return [
            {
                "ifd": page.offset,
                "shape": page.shape,
                "tiled": page.is_tiled,
                "data": [o for o in page.dataoffsets if o],
            }
            for page in tif.pages
        ]


def test_cog_output_has_a_cloud_optimised_layout(tmp_path):
    """COG rules checked with tifffile, independently of GDAL, as rio-cogeo's validator does."""
    src = write_tif(tmp_path / "s.tif", smooth_image((2, 120, 100), seed=8))
    dst = tmp_path / "cog.tif"
    run(src, dst, upsample_predict(10), scale=10, out_bands=2, cog=True, overviews=True)
    layout = tiff_layout(dst)
    assert len(layout) >= 3 and all(p["tiled"] for p in layout)  # overviews down to one tile
    sizes = [p["shape"][0] for p in layout]
    assert sizes == sorted(sizes, reverse=True)
    first_data = min(min(p["data"]) for p in layout)
    assert max(p["ifd"] for p in layout) < first_data  # every IFD before any image data
    # data of the smallest overview first, full resolution last
    starts = [min(p["data"]) for p in layout]
    assert starts == sorted(starts, reverse=True)
    assert b"LAYOUT=IFDS_BEFORE_DATA" in dst.read_bytes()[:1000]
    with rasterio.open(dst) as out:
        assert out.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert out.profile["compress"] == "deflate" and out.overviews(1)


def test_plain_output_can_have_overviews(tmp_path):
    src = write_tif(tmp_path / "s.tif", smooth_image((1, 60, 60), seed=9))
    run(src, tmp_path / "o.tif", upsample_predict(10), scale=10, overviews=True)
    with rasterio.open(tmp_path / "o.tif") as out:
        assert out.overviews(1) == [2, 4]  # 600 px: the 1/4 overview fits one 256 px block


# issue 18, classes 1 and 3: the engine's guarded call of the model


def poison_window(value: float, col: int):
    """Identity model whose output is ``value`` in the window starting at source column ``col``
    (on ``column_image``, a window's first pixel is its column origin)."""

    def predict(x: np.ndarray) -> np.ndarray:
        y = x.copy()
        y[x[:, 0, 0, 0] == col] = value
        return y

    return predict


def column_image(h: int, w: int) -> np.ndarray:
    """A one-band image whose value is its column index (so a window tells its origin)."""
    return np.broadcast_to(np.arange(w, dtype=np.float32), (1, h, w)).copy()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_output_is_refused_naming_the_window_before_any_cast(tmp_path, value):
    src = write_tif(tmp_path / "s.tif", column_image(30, 30))
    out = tmp_path / "out" / "o.tif"
    kw = dict(out_dtype="uint8", nodata_out=255, overlap=0, model_name="m", where="tile T: ")
    with pytest.raises(ModelError, match=r"^tile T: model m returned non-finite .* column 16"):
        run(src, out, poison_window(value, 16), **kw)
    assert list(out.parent.iterdir()) == []


def test_predict_raising_a_type_error_names_the_model_and_chains_the_cause(tmp_path):
    src = write_tif(tmp_path / "s.tif", smooth_image((1, 20, 20)))

    def predict(x: np.ndarray) -> np.ndarray:
        return x + "1"  # a bug in user code

    with pytest.raises(ModelError, match=r"^tile T: model m failed on the windows") as err:
        run(src, tmp_path / "o.tif", predict, model_name="m", where="tile T: ")
    assert isinstance(err.value.__cause__, TypeError)
