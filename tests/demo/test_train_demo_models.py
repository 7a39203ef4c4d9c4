"""The demo-model training script runs end to end and writes loadable, registered models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tilepipe.core.checksum import sha256_file
from tilepipe.models.loading import BANDS, load_model

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_demo_models.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_demo_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_steps_produce_loadable_models_with_their_recipe(tmp_path, capsys):
    script = load_script()
    argv = ["--out", str(tmp_path), "--steps", "2", "--scenes", "1", "--eval-scenes", "1"]
    assert script.main([*argv, "--scene-size", "32", "--device", "cpu"]) == 0
    sr = load_model(tmp_path / "dr_demo.pt", expect_bands=BANDS, expect_scale=10)
    fd = load_model(tmp_path / "fields_demo.pt", expect_bands=BANDS, expect_scale=1)
    assert sr.meta["architecture"] == "srnet" and fd.meta["architecture"] == "fieldnet"
    assert sr.sha256 == sha256_file(tmp_path / "dr_demo.pt")
    for m in (sr, fd):
        assert "--steps 2" in m.meta["trained_by"]
        assert m.meta["train_config"]["steps"] == 2
    assert {"l1_model", "l1_bicubic", "psnr_model_db", "psnr_bicubic_db"} <= set(sr.meta["eval"])
    assert "iou_sr" in fd.meta["eval"]
    printed = capsys.readouterr().out
    assert "bicubic" in printed and "IoU" in printed


def test_a_given_dr_model_is_reused_and_only_the_multitask_fields_model_written(tmp_path):
    script = load_script()
    argv = ["--out", str(tmp_path), "--steps", "2", "--scenes", "1", "--eval-scenes", "1"]
    sr_model = Path(__file__).resolve().parents[2] / "models" / "dr_demo.pt"
    assert script.main([*argv, "--scene-size", "32", "--sr-model", str(sr_model)]) == 0
    assert not (tmp_path / "dr_demo.pt").exists()
    fd = load_model(tmp_path / "fields_demo.pt", expect_bands=BANDS, expect_scale=1)
    assert fd.meta["bands_out"] == ["extent_logit", "boundary_logit", "distance_logit"]
    assert fd.meta["gsd_m"] == 1.0 and "dr_demo" in fd.meta["train_config"]["sr_model"]
    assert {"mean_iou_sr", "over_segmentation_sr", "under_segmentation_sr"} <= set(fd.meta["eval"])
