"""Architectures, the model registry (weights + sidecar) and device selection."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tilepipe.core.checksum import sha256_file
from tilepipe.core.errors import ConfigError, ModelError
from tilepipe.models import loading as models
from tilepipe.models.loading import (
    BANDS,
    check_patch,
    load_model,
    make_predict,
    maybe_compile,
    resolve_device,
    resolve_precision,
    save_model,
)
from tilepipe.models.nets import FieldNet, SRNet

from ..conftest import REPO


def sr_meta(**over) -> dict:
    meta = {
        "id": "sr-test",
        "architecture": "srnet",
        "arch_kwargs": {"features": 8, "depth": 2},
        "bands_in": list(BANDS),
        "bands_out": list(BANDS),
        "scale": 10,
        "normalise": {"divide": 10000.0},
        "trained_by": "tests",
        "train_config": {},
    }
    meta.update(over)
    return meta


@pytest.fixture
def sr_file(tmp_path) -> Path:
    path = tmp_path / "sr.pt"
    save_model(SRNet(features=8, depth=2), path, sr_meta())
    return path


@pytest.fixture
def no_torch_load(monkeypatch):
    """Fail the test if weights get deserialised (checks must come first)."""

    def boom(*a, **k):
        raise AssertionError("torch.load called before the checks")

    monkeypatch.setattr(models.torch, "load", boom)


def test_srnet_block_means_equal_input():
    net = SRNet(features=8, depth=2)
    torch.nn.init.normal_(net.body[-1].weight, std=0.1)  # a non-trivial residual
    lr = torch.rand(2, 4, 7, 9)
    out = net(lr)
    assert out.shape == (2, 4, 70, 90)
    torch.testing.assert_close(F.avg_pool2d(out, 10), lr, atol=1e-5, rtol=0)


def test_fieldnet_keeps_spatial_size_with_one_logit():
    assert FieldNet()(torch.rand(1, 4, 50, 37)).shape == (1, 1, 50, 37)


def test_default_architectures_are_small():
    buf = io.BytesIO()
    torch.save({**SRNet().state_dict(), **FieldNet().state_dict()}, buf)
    assert buf.tell() < 1.5e6


def test_saved_model_loads_in_eval_mode_with_its_sha256(sr_file):
    loaded = load_model(sr_file, expect_bands=BANDS, expect_scale=10)
    assert not loaded.module.training
    assert loaded.model_id == "sr-test"
    assert loaded.sha256 == sha256_file(sr_file) == loaded.meta["sha256"]
    assert loaded.divide == 10000.0


def test_band_mismatch_raises_before_weights_are_read(sr_file, no_torch_load):
    with pytest.raises(ModelError, match=r"sr\.pt.*bands"):
        load_model(sr_file, expect_bands=["B04", "B03", "B02", "B08"])


def test_scale_mismatch_raises_before_weights_are_read(sr_file, no_torch_load):
    with pytest.raises(ModelError, match="scale is 10"):
        load_model(sr_file, expect_scale=1)


def test_unknown_architecture_raises(sr_file, no_torch_load):
    sidecar = sr_file.with_suffix(".json")
    sidecar.write_text(json.dumps(sr_meta(architecture="unet9000")))
    with pytest.raises(ModelError, match="unknown architecture 'unet9000'"):
        load_model(sr_file)


def test_corrupt_weights_raise_model_error_naming_the_file(sr_file):
    sr_file.write_bytes(b"not a torch file")
    sidecar = sr_file.with_suffix(".json")
    sidecar.write_text(json.dumps(sr_meta()))  # no sha256: reach the deserialiser
    with pytest.raises(ModelError, match=r"sr\.pt.*cannot read weights"):
        load_model(sr_file)


def test_weights_differing_from_sidecar_sha256_raise(sr_file, no_torch_load):
    sr_file.write_bytes(sr_file.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="differs from the sidecar"):
        load_model(sr_file)


def test_weights_not_fitting_the_architecture_raise(sr_file):
    sidecar = sr_file.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["arch_kwargs"] = {"features": 16, "depth": 2}
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="do not fit srnet"):
        load_model(sr_file)


def test_missing_weights_or_sidecar_raise(tmp_path, sr_file):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nope.pt")
    sr_file.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match=r"sidecar sr\.json not found"):
        load_model(sr_file)


def test_cpu_device_follows_slurm_cpus(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    try:
        assert resolve_device("cpu").type == "cpu"
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_unknown_or_unavailable_device_raises_config_error():
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            resolve_device("cuda")


def test_make_predict_maps_numpy_to_numpy_without_grad():
    predict = make_predict(lambda t: t * 2, torch.device("cpu"))
    out = predict(np.ones((2, 4, 3, 3), dtype=np.float32))
    assert out.dtype == np.float32 and out.shape == (2, 4, 3, 3) and (out == 2).all()


def test_shipped_demo_models_load_and_stay_small():
    sr = load_model(REPO / "models" / "dr_demo.pt", expect_bands=BANDS, expect_scale=10)
    fd = load_model(REPO / "models" / "fields_demo.pt", expect_bands=BANDS, expect_scale=1)
    assert sr.meta["eval"]["l1_model"] < sr.meta["eval"]["l1_bicubic"]
    assert fd.meta["eval"]["iou_sr"] > 0.8
    assert sr.path.stat().st_size + fd.path.stat().st_size < 1.5e6


def save_torchscript(tmp_path, **over) -> Path:
    """A traced SRNet saved with torch.jit.save plus its sidecar (architecture "torchscript")."""
    net = SRNet(features=8, depth=2).eval()
    torch.nn.init.normal_(net.body[-1].weight, std=0.01)
    path = tmp_path / "sr_ts.pt"
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 4, 8, 8)), str(path))
    meta = {**sr_meta(architecture="torchscript", sha256=sha256_file(path)), **over}
    del meta["arch_kwargs"]
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path, net


def test_torchscript_model_loads_and_matches_its_eager_module(tmp_path):
    path, net = save_torchscript(tmp_path)
    model = load_model(path, expect_bands=BANDS, expect_scale=10)
    x = torch.rand(2, 4, 12, 12) * 0.3
    with torch.inference_mode():
        torch.testing.assert_close(model.module(x), net(x))
    assert model.sha256 == sha256_file(path) and model.model_id == "sr-test"


def test_torchscript_band_mismatch_fails_before_loading(tmp_path, monkeypatch):
    path, _ = save_torchscript(tmp_path, bands_in=["B04", "B03", "B02", "B08"])
    monkeypatch.setattr(models.torch.jit, "load", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(ModelError, match="expects bands"):
        load_model(path, expect_bands=BANDS, expect_scale=10)


def test_patch_constraints_of_the_sidecar_refuse_other_windows():
    meta = {"id": "m", "patch": {"min": 32, "multiple": 8}}
    check_patch(meta, 64, 16)
    with pytest.raises(ModelError, match="patch >= 32 and a multiple of 8, got patch 60"):
        check_patch(meta, 60, 16)
    with pytest.raises(ModelError, match="got patch 16"):
        check_patch(meta, 16, 8)
    with pytest.raises(ModelError, match="overlap a multiple of 8"):
        check_patch(meta, 64, 12)


def test_precision_auto_is_bf16_on_gpu_and_fp32_on_cpu():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"  # type only, no GPU used
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    with pytest.raises(ConfigError, match="unknown precision"):
        resolve_precision("fp16", torch.device("cpu"))


def test_bf16_precision_runs_the_network_under_autocast():
    weight = torch.ones(1, 4, 1, 1)
    seen = []

    def fn(t: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(t, weight)
        seen.append(y.dtype)
        return y

    x = np.full((1, 4, 2, 2), 0.1, dtype=np.float32)
    assert make_predict(fn, torch.device("cpu"), "bf16")(x).dtype == np.float32
    make_predict(fn, torch.device("cpu"), "fp32")(x)
    assert seen == [torch.bfloat16, torch.float32]


def test_compile_is_optional_and_wraps_the_module():
    """Only the wrapping is checked: compiling for real needs minutes of CPU here (or a GPU)."""
    net = SRNet(features=8, depth=2)
    assert maybe_compile(net, False) is net
    assert maybe_compile(net, True)._orig_mod is net
