"""The DR step: dr.tif contract, block-mean consistency, nodata and model checks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from tilepipe.core.checksum import sha256_file
from tilepipe.core.errors import ConfigError, InputError, ModelError
from tilepipe.core.raster import gtiff_profile
from tilepipe.core.scratch import host_hash, process_start, remove_leftovers
from tilepipe.demo.world import render_scene
from tilepipe.engine.journal import STOP_AFTER_SLABS_ENV
from tilepipe.models.loading import BANDS, save_model
from tilepipe.models.nets import FieldNet, SRNet
from tilepipe.models.sidecar import SidecarError, parse_sidecar
from tilepipe.superres import bicubic_forward, dr_tags, load_dr, model_forward, run_superres

from .byo import RGBN, export_x4, write_sidecar, x4_net
from .cog import assert_valid_cog
from .core.test_scratch import killed_writer_leaves
from .scripted import Poisoned, broken_forwards, save_scripted, sr_meta

TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5300000.0)
W, H = 30, 24


def write_s2(path, dn: np.ndarray, tags: dict | None = None) -> str:
    profile = gtiff_profile(
        width=dn.shape[2],
        height=dn.shape[1],
        count=dn.shape[0],
        dtype="uint16",
        crs="EPSG:32633",
        transform=TRANSFORM,
        nodata=0,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn)
        if dn.shape[0] == len(BANDS):
            dst.descriptions = BANDS
        dst.update_tags(**(tags or {}))
    return str(path)


@pytest.fixture
def s2(tmp_path) -> tuple[str, np.ndarray]:
    """A demo scene as s2.tif with a nodata corner; returns (path, DN array)."""
    scene = render_scene(7, W, H, 1, cloud=False)
    dn = np.clip(np.rint(scene.lr * 10000), 1, 65535).astype(np.uint16)
    dn[:, :5, :6] = 0
    tags = {"TILE": "33UXP", "DATE": "2022-06-21", "SOURCE_ITEM": "S2B_33UXP_20220621_0_L2A"}
    return write_s2(tmp_path / "s2.tif", dn, tags), dn


@pytest.fixture
def sr_model(tmp_path) -> str:
    net = SRNet(features=8, depth=2)
    torch.nn.init.normal_(net.body[-1].weight, std=0.002)
    path = tmp_path / "sr.pt"
    meta = {
        "id": "sr-tiny",
        "architecture": "srnet",
        "arch_kwargs": {"features": 8, "depth": 2},
        "bands_in": list(BANDS),
        "bands_out": list(BANDS),
        "scale": 10,
        "normalise": {"divide": 10000.0},
    }
    save_model(net, path, meta)
    return str(path)


def block_means(dr: np.ndarray) -> np.ndarray:
    c, h, w = dr.shape
    return dr.astype(np.float64).reshape(c, h // 10, 10, w // 10, 10).mean(axis=(2, 4))


def test_dr_follows_the_contract_grid_bands_and_tags(tmp_path, s2, sr_model):
    path, _ = s2
    stats = run_superres(path, tmp_path / "dr.tif", model_path=sr_model, patch=16, overlap=4)
    with rasterio.open(tmp_path / "dr.tif") as dr:
        assert dr.transform == TRANSFORM * Affine.scale(0.1)
        assert (dr.width, dr.height, dr.count) == (W * 10, H * 10, 4)
        assert dr.dtypes[0] == "uint16" and dr.nodata == 0
        assert dr.descriptions == BANDS
        tags = dr.tags()
    assert tags["DR_METHOD"] == "model" and tags["DR_MODEL_ID"] == "sr-tiny"
    assert tags["DR_MODEL_SHA256"] == sha256_file(sr_model) == stats["model_sha256"]
    assert (tags["DR_SCALE"], tags["DR_PATCH"], tags["DR_OVERLAP"]) == ("10", "16", "4")
    assert (tags["TILE"], tags["DATE"]) == ("33UXP", "2022-06-21")
    assert tags["SOURCE_ITEM"] == "S2B_33UXP_20220621_0_L2A"


def test_model_dr_block_means_equal_the_input(tmp_path, s2, sr_model):
    path, dn = s2
    run_superres(path, tmp_path / "dr.tif", model_path=sr_model, patch=16, overlap=4)
    with rasterio.open(tmp_path / "dr.tif") as dr:
        means = block_means(dr.read())
    valid = dn[0] > 0
    assert np.abs(means - dn)[:, valid].max() <= 1.0


def test_bicubic_dr_block_means_are_close_to_the_input(tmp_path, s2):
    path, dn = s2
    run_superres(path, tmp_path / "dr.tif", method="bicubic", patch=16, overlap=4)
    with rasterio.open(tmp_path / "dr.tif") as dr:
        out = dr.read()
        assert dr.tags()["DR_METHOD"] == "bicubic"
    valid = dn[0] > 0
    rel = np.abs(block_means(out) - dn)[:, valid] / dn[:, valid]
    assert np.median(rel) < 0.02


def test_nodata_stays_nodata_and_valid_pixels_are_never_zero(tmp_path, s2, sr_model):
    path, dn = s2
    run_superres(path, tmp_path / "dr.tif", model_path=sr_model, patch=16, overlap=4)
    with rasterio.open(tmp_path / "dr.tif") as dr:
        out = dr.read()
    hole = np.repeat(np.repeat(dn[0] == 0, 10, axis=0), 10, axis=1)
    assert (out[:, hole] == 0).all()
    assert (out[:, ~hole] >= 1).all()


def test_model_method_without_model_path_is_a_config_error(tmp_path, s2):
    with pytest.raises(ConfigError, match="model_path"):
        run_superres(s2[0], tmp_path / "dr.tif")


def test_fields_model_is_refused_before_any_output(tmp_path, s2):
    path = tmp_path / "f.pt"
    meta = {
        "id": "f",
        "architecture": "fieldnet",
        "arch_kwargs": {},
        "bands_in": list(BANDS),
        "bands_out": ["logit"],
        "scale": 1,
    }
    save_model(FieldNet(), path, meta)
    with pytest.raises(ModelError, match=r"bands_out must be the dr\.tif bands"):
        run_superres(s2[0], tmp_path / "out" / "dr.tif", model_path=path)
    assert not (tmp_path / "out").exists()


def test_wrong_band_count_is_an_input_error(tmp_path):
    path = write_s2(tmp_path / "s2.tif", np.ones((3, 8, 8), dtype=np.uint16))
    with pytest.raises(InputError, match="expected 4 bands"):
        run_superres(path, tmp_path / "dr.tif", method="bicubic")


def start_superres(s2_path: str, out, model: str, stop_after: int = 0) -> subprocess.Popen:
    """Start ``tilepipe superres`` as its own process, as a Slurm job runs it.

    With ``stop_after`` the step stops itself (SIGSTOP) once that many slabs are journaled.
    """
    exe = Path(sys.executable).parent / "tilepipe"
    args = ["--tile", "33UXP", "--date", "2022-06-21", "--s2", s2_path, "--out", str(out)]
    args += ["--model", model, "--patch", "16", "--overlap", "4", "--batch", "2"]
    env = {k: v for k, v in os.environ.items() if k != STOP_AFTER_SLABS_ENV}
    if stop_after:
        env[STOP_AFTER_SLABS_ENV] = str(stop_after)
    cmd = [str(exe), "superres", *args]
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)


def wait_stopped(proc: subprocess.Popen, out) -> int:
    """Wait until the step has stopped itself; return how many slabs its journal holds."""
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"superres ended before stopping: {proc.stderr.read()}"
    lines = (Path(f"{out}.parts") / "journal.jsonl").read_text().splitlines()
    return len(lines) - 1  # line 1: the fingerprint


@pytest.fixture
def big_s2(tmp_path) -> str:
    """A 96 x 96 demo scene: 9 window rows of 16 px at stride 12, one journal slab each."""
    scene = render_scene(3, 96, 96, 1, cloud=False)
    dn = np.clip(np.rint(scene.lr * 10000), 1, 65535).astype(np.uint16)
    return write_s2(tmp_path / "s2_big.tif", dn, {"TILE": "33UXP", "DATE": "2022-06-21"})


def test_killed_run_resumes_from_its_journal_to_an_identical_file(tmp_path, big_s2, sr_model):
    """A real kill -9 in the middle; the rerun continues and writes the same bytes."""
    whole, dr = tmp_path / "whole" / "dr.tif", tmp_path / "dr.tif"
    assert start_superres(big_s2, whole, sr_model).wait() == 0
    # Three window rows journaled: the rerun computes the last one again and goes on from there.
    proc = start_superres(big_s2, dr, sr_model, stop_after=3)
    slabs = wait_stopped(proc, dr)
    proc.kill()  # SIGKILL: no handler, no cleanup
    proc.wait()
    assert not dr.exists() and slabs == 3
    rerun = start_superres(big_s2, dr, sr_model)
    _, err = rerun.communicate()
    assert rerun.returncode == 0, err
    assert "resuming after" in err
    stats = json.loads(err.split("superres done: ")[1].splitlines()[0])
    assert stats["windows_resumed"] > 0 and stats["windows"] < 81  # 9 x 9 windows in all
    assert dr.read_bytes() == whole.read_bytes()
    assert not Path(f"{dr}.parts").exists()
    assert_valid_cog(dr)  # the resumed COG, overviews included


def test_dr_by_default_is_a_valid_cog_with_overviews(tmp_path, big_s2, sr_model):
    """issue 15: dr.tif opens in QGIS or a tile server as it is (960 px: 1/2 and 1/4)."""
    run_superres(big_s2, tmp_path / "dr.tif", model_path=sr_model, patch=16, overlap=4)
    assert_valid_cog(tmp_path / "dr.tif")
    with rasterio.open(tmp_path / "dr.tif") as dr:
        assert dr.overviews(1) == [2, 4] and dr.tags()["DR_METHOD"] == "model"


def test_sigterm_keeps_the_journal_and_exits_143(tmp_path, big_s2, sr_model):
    """Slurm preemption sends SIGTERM: the step unwinds, keeps its slabs and exits non-zero."""
    dr = tmp_path / "dr.tif"
    proc = start_superres(big_s2, dr, sr_model, stop_after=1)
    wait_stopped(proc, dr)
    proc.send_signal(signal.SIGTERM)  # pending until the step runs again
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated" in err and not dr.exists()
    journal = (Path(f"{dr}.parts") / "journal.jsonl").read_text().splitlines()
    assert len(journal) >= 2 and not list(tmp_path.glob(".dr.tif.tmp-*"))


def test_aoi_outside_the_scene_is_an_input_error_naming_the_file(tmp_path, s2):
    with pytest.raises(InputError, match=r"s2\.tif: AOI .* does not intersect"):
        run_superres(s2[0], tmp_path / "dr.tif", method="bicubic", aoi=(0.0, 0.0, 10.0, 10.0))
    assert not (tmp_path / "dr.tif").exists()


def test_bicubic_dr_needs_no_model():
    dr = load_dr("bicubic", None, "cpu", "auto", False, 16, 4, "33UXP", "2022-06-21")
    assert (dr.forward, dr.model_id, dr.sha256, dr.device.type) == (
        bicubic_forward,
        "bicubic",
        "",
        "cpu",
    )


def test_model_dr_without_a_model_path_is_a_config_error_naming_the_scene():
    with pytest.raises(ConfigError, match=r"33UXP.*needs a model_path"):
        load_dr("model", None, "cpu", "auto", False, 16, 4, "33UXP", "2022-06-21")


def test_dr_tags_keep_the_source_tags_first_then_say_how_dr_was_made():
    dr = load_dr("bicubic", None, "cpu", "auto", False, 16, 4, None, None)
    tags = dr_tags({"CLOUD": "3", "TILE": "old"}, "33UXP", None, dr, 16, 4, None, 0)
    assert list(tags)[:3] == ["CLOUD", "TILE", "DATE"] and tags["TILE"] == "33UXP"
    assert tags["DATE"] == "" and tags["DR_PATCH"] == 16 and tags["DR_OVERLAP"] == 4
    assert "DR_AOI" not in tags


def test_dr_tags_record_the_aoi_and_its_margin():
    dr = load_dr("bicubic", None, "cpu", "auto", False, 16, 4, None, None)
    tags = dr_tags({}, "33UXP", "2022-06-21", dr, 16, 4, (1.0, 2.0, 3.0, 4.5), 2)
    assert tags["DR_AOI"] == "1.0,2.0,3.0,4.5" and tags["DR_AOI_MARGIN"] == 2


# issue 18, classes 1 and 3: non-finite model output and errors raised by user model code

WHERE = "tile 33UXP, date 2022-06-21, file "


def run_scripted(tmp_path, s2_path: str, module: torch.nn.Module, model_id: str = "sr-user"):
    """Run DR with ``module`` as a TorchScript model; return the dr.tif path it was to write."""
    model = save_scripted(module, tmp_path / "models" / f"{model_id}.pt", sr_meta(model_id))
    out = tmp_path / "out" / "dr.tif"
    run_superres(s2_path, out, model_path=model, patch=16, overlap=4, device="cpu")
    return out


@pytest.mark.parametrize(
    ("value", "rows", "kind"),
    [
        (float("nan"), 160, "NaN"),
        (float("inf"), 160, "+Inf"),
        (float("-inf"), 160, "-Inf"),
        (float("nan"), 70, "NaN"),  # part of every window
    ],
    ids=["nan", "plus-inf", "minus-inf", "nan-in-part-of-each-window"],
)
def test_non_finite_model_output_is_a_model_error_naming_scene_model_and_window(
    tmp_path, s2, value, rows, kind
):
    with pytest.raises(ModelError, match=rf"\({re.escape(kind)}\).*window at source row") as err:
        run_scripted(tmp_path, s2[0], Poisoned(10, 4, value, rows))
    assert str(err.value).startswith(WHERE) and "sr-user.pt: model sr-user" in str(err.value)
    assert not (tmp_path / "out" / "dr.tif").exists()


def test_valid_output_beyond_uint16_is_still_clipped_to_valid_reflectance(tmp_path, s2):
    out = run_scripted(tmp_path, s2[0], Poisoned(10, 4, 1e9, 160))
    with rasterio.open(out) as dr:
        data = dr.read()
    assert data.max() == 65535 and data[:, data[0] > 0].min() >= 1


@pytest.mark.parametrize(("module", "words"), broken_forwards(10, 4))
def test_error_inside_the_models_forward_is_a_model_error_naming_scene_and_model(
    tmp_path, s2, module, words
):
    with pytest.raises(ModelError, match=re.escape(words)) as err:
        run_scripted(tmp_path, s2[0], module)
    message = str(err.value)
    assert message.startswith(WHERE) and "model sr-user failed on the first batch" in message
    assert "\n" not in message and err.value.__cause__ is not None  # chained, for -v
    assert not (tmp_path / "out" / "dr.tif").exists()


def test_model_output_of_the_wrong_shape_is_a_model_error_naming_scene_and_model(tmp_path, s2):
    with pytest.raises(ModelError, match=r"model sr-user returned shape \(\d+, 4, 80, 80\)") as err:
        run_scripted(tmp_path, s2[0], Poisoned(5, 4, 0.0, 0))
    assert str(err.value).startswith(WHERE)


# issue 18, classes 5 and 6


def test_a_second_superres_on_an_output_being_written_is_refused_and_leaves_its_journal_alone(
    tmp_path, big_s2, sr_model
):
    """The orphan of a killed Snakemake and the rerun's job never write one journal at once."""
    dr = tmp_path / "dr.tif"
    first = start_superres(big_s2, dr, sr_model, stop_after=2)
    wait_stopped(first, dr)
    journal = Path(f"{dr}.parts") / "journal.jsonl"
    before = journal.read_bytes()
    second = start_superres(big_s2, dr, sr_model)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2, err
    assert f"being written by process {first.pid}" in err and "dr.tif" in err
    assert journal.read_bytes() == before
    first.kill()  # the holder dies: its lock goes with it, the next run resumes
    first.wait()
    rerun = start_superres(big_s2, dr, sr_model)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0 and "resuming after 2 journaled slabs" in err, err
    assert not list(tmp_path.glob(".dr.tif*"))


def test_a_rerun_removes_the_temporary_a_kill_during_the_final_rename_left_before_writing(
    tmp_path, big_s2, sr_model
):
    dr = tmp_path / "dr.tif"
    left = killed_writer_leaves(dr, "tmp", 200_000)  # a whole dr.tif under its temporary name
    proc = start_superres(big_s2, dr, sr_model, stop_after=1)
    wait_stopped(proc, dr)
    assert not left.exists()  # gone before the first slab was written, not only at the end
    proc.kill()
    proc.wait()


def test_a_leftover_of_a_live_superres_is_kept(tmp_path, big_s2, sr_model):
    dr = tmp_path / "dr.tif"
    first = start_superres(big_s2, dr, sr_model, stop_after=1)
    wait_stopped(first, dr)
    mine = tmp_path / f".dr.tif.tmp-o{first.pid}_{process_start(first.pid)}_{host_hash()}-x.tif"
    mine.write_bytes(b"x")
    assert remove_leftovers(dr) == [] and mine.exists()
    first.kill()
    first.wait()
    assert remove_leftovers(dr) == [mine]


# issue 14: the sidecar says what the model needs, and the scale flows into dr.tif


def test_x4_model_on_its_own_band_order_writes_a_scale_4_dr_in_the_dr_band_order(tmp_path, s2):
    path, dn = s2
    model = export_x4(tmp_path / "sr4.pt2")
    run_superres(path, tmp_path / "dr.tif", model_path=model, patch=16, overlap=4, device="cpu")
    with rasterio.open(tmp_path / "dr.tif") as dr:
        assert dr.transform == TRANSFORM * Affine.scale(0.25)
        assert (dr.width, dr.height, dr.descriptions) == (W * 4, H * 4, BANDS)
        assert dr.tags()["DR_SCALE"] == "4" and dr.tags()["DR_DETERMINISTIC"] == "1"
        out = dr.read().astype(np.float64)
    means = out.reshape(4, H, 4, W, 4).mean(axis=(2, 4))  # band by band onto s2's grid
    valid = dn[0] > 0
    assert np.abs(means - dn)[:, valid].max() <= 1.0  # B02 stays B02 although the model's is 3rd


def test_model_input_is_its_band_order_and_normalisation_and_output_maps_back():
    net = x4_net()
    sc = parse_sidecar({"id": "m", "bands_in": RGBN, "bands_out": RGBN, "scale": 4})
    mapping = band_mapping_of(sc)
    x = torch.rand(1, 4, 8, 8) * 5000
    want = net(x[:, [2, 1, 0, 3]] / 10000.0) * 10000.0
    got = model_forward(net, mapping, x)
    assert torch.allclose(got, want[:, [2, 1, 0, 3]])


def band_mapping_of(sc):
    """The BandMap superres builds for a sidecar, without weights."""
    from tilepipe.superres import band_mapping

    class Loaded:
        spec = sc

    return band_mapping(Loaded(), "")


def test_mean_std_offset_and_clip_normalise_in_and_map_back_out():
    sc = parse_sidecar(
        {
            "id": "m",
            "bands_in": list(BANDS),
            "bands_out": list(BANDS),
            "scale": 1,
            "normalise": {
                "divide": 10000,
                "offset": -0.1,
                "mean": [0.1, 0.2, 0.3, 0.4],
                "std": [0.5, 0.5, 0.5, 0.5],
                "clip": [0.0, 1.0],
            },
        }
    )
    x = torch.full((1, 4, 2, 2), 3000.0)
    z = sc.normalise.forward(x)
    assert torch.allclose(z[0, :, 0, 0], torch.tensor([0.2, 0.0, -0.2, -0.4]), atol=1e-6)
    assert torch.allclose(sc.normalise.inverse(z), x)


def test_a_band_the_source_lacks_is_refused_before_any_output(tmp_path, s2):
    model = export_x4(tmp_path / "sr4.pt2", bands_in=["B04", "B03", "B02", "B11"])
    with pytest.raises(SidecarError, match=r"needs bands B11 \(20 m\) that s2.tif lacks"):
        run_superres(s2[0], tmp_path / "out" / "dr.tif", model_path=model, patch=16)
    assert not (tmp_path / "out").exists()


def test_a_window_the_model_cannot_take_is_refused_before_any_output(tmp_path, s2):
    model = export_x4(tmp_path / "sr4.pt2", patch={"max": 128, "multiple": 8})
    with pytest.raises(ModelError, match="exactly 16 px, got patch 24"):
        run_superres(s2[0], tmp_path / "out" / "dr.tif", model_path=model, patch=24)
    assert not (tmp_path / "out").exists()


def test_a_sidecar_scale_the_model_does_not_deliver_stops_on_the_first_batch(tmp_path, s2):
    model = export_x4(tmp_path / "sr4.pt2", scale=2)  # the program gives x4
    with pytest.raises(
        ModelError, match=r"\(1, 4, 64, 64\) on the first batch.*declares \(1, 4, 32, 32\)"
    ):
        run_superres(s2[0], tmp_path / "out" / "dr.tif", model_path=model, patch=16)
    assert not (tmp_path / "out").exists()


class IntegerSR(torch.nn.Module):
    """A x2 model that returns integers (a user's model that rounds to DN itself)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=2.0).round().to(torch.int32)


def test_a_model_returning_integers_stops_on_the_first_batch(tmp_path, s2):
    path = tmp_path / "int.pt"
    torch.jit.save(torch.jit.script(IntegerSR()), str(path))
    write_sidecar(path, id="int", architecture="torchscript", bands_in=list(BANDS),
                  bands_out=list(BANDS), scale=2)  # fmt: skip
    with pytest.raises(
        ModelError, match=r"model int returned dtype torch.int32 on the first batch"
    ):
        run_superres(s2[0], tmp_path / "out" / "dr.tif", model_path=path, patch=16)
    assert not (tmp_path / "out").exists()


def test_a_stochastic_model_switches_resume_off_and_says_so_in_log_and_tags(tmp_path, s2, caplog):
    model = export_x4(tmp_path / "sr4.pt2", deterministic=False)
    caplog.set_level("WARNING", logger="tilepipe.superres")
    run_superres(s2[0], tmp_path / "dr.tif", model_path=model, patch=16, overlap=4, resume=True)
    assert "stochastic" in caplog.text and "resume is off" in caplog.text
    with rasterio.open(tmp_path / "dr.tif") as dr:
        assert dr.tags()["DR_DETERMINISTIC"] == "0"
    assert not Path(f"{tmp_path / 'dr.tif'}.parts").exists()


# issue 14: the further L2A bands download adds reach the model from s2.tif; dr.tif keeps the
# core four


def write_s2_more(path, dn: np.ndarray, more: dict[str, np.ndarray]) -> str:
    """An s2.tif of the core four bands ``dn`` and the further bands ``more`` after them."""
    stack = np.concatenate([dn, *(band[None] for band in more.values())]).astype(np.uint16)
    stack[:, dn[0] == 0] = 0
    write_s2(path, stack, {"TILE": "33UXP", "DATE": "2022-06-21"})
    with rasterio.open(path, "r+") as dst:
        dst.descriptions = (*BANDS, *more)
    return str(path)


def _more_bands(dn: np.ndarray) -> dict[str, np.ndarray]:
    """B05 and B11 unlike any core band, so a model fed the wrong band would show it."""
    return {"B05": dn[2] // 2 + dn[3] // 2, "B11": dn[1] // 3 + 2000}


def test_a_model_on_20_m_bands_takes_them_from_s2_and_writes_the_core_four(tmp_path, s2):
    _, dn = s2
    path = write_s2_more(tmp_path / "s2.tif", dn, _more_bands(dn))
    torch.manual_seed(0)
    net = SRNet(bands=6, scale=4, features=8, depth=2)
    torch.nn.init.normal_(net.body[-1].weight, std=0.002)
    order = ["B11", "B04", "B03", "B02", "B08", "B05"]  # the model's own, 20 m bands included
    meta = {
        "id": "sr-6band",
        "architecture": "srnet",
        "arch_kwargs": {"bands": 6, "scale": 4, "features": 8, "depth": 2},
        "bands_in": order,
        "bands_out": order,
        "scale": 4,
        "normalise": {"divide": 10000.0},
    }
    save_model(net, tmp_path / "sr6.pt", meta)
    dr_path = tmp_path / "dr.tif"
    run_superres(path, dr_path, model_path=tmp_path / "sr6.pt", patch=16, overlap=4, device="cpu")
    with rasterio.open(dr_path) as dr:
        assert dr.descriptions == BANDS and dr.count == 4
        out = dr.read().astype(np.float64)
    means = out.reshape(4, H, 4, W, 4).mean(axis=(2, 4))  # each block mean is its input band's
    valid = dn[0] > 0
    assert np.abs(means - dn)[:, valid].max() <= 1.0


def test_bicubic_on_an_s2_with_further_bands_writes_the_core_four(tmp_path, s2):
    _, dn = s2
    path = write_s2_more(tmp_path / "s2.tif", dn, _more_bands(dn))
    run_superres(path, tmp_path / "dr.tif", method="bicubic", patch=16, overlap=4, device="cpu")
    with rasterio.open(tmp_path / "dr.tif") as dr:
        assert dr.descriptions == BANDS


def test_further_bands_out_of_l2a_order_are_an_input_error(tmp_path, s2):
    _, dn = s2
    more = _more_bands(dn)
    path = write_s2_more(tmp_path / "s2.tif", dn, {"B11": more["B11"], "B05": more["B05"]})
    with pytest.raises(InputError, match=r"then further L2A bands in the order"):
        run_superres(path, tmp_path / "dr.tif", method="bicubic")
