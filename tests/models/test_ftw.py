"""Fields of The World checkpoints load as ftw-tools writes them, and model check runs them.

The checkpoints are written by ``tests/oracles/ftw_checkpoint.py`` in ``.venv-ftw`` (``make test``
builds it from ``tests/oracles/ftw.txt``): a real Lightning training step of a randomly
initialised segmentation-models-pytorch Unet, saved by Lightning, as ftw-tools trains and saves
its released models. tilepipe runs in that interpreter too (this tree's ``src`` first on the
path), since segmentation-models-pytorch is the optional extra ``tilepipe[ftw]``. The tests that
need no network build run here, on checkpoints written with ``torch.save`` of the same keys.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pyogrio
import pytest
import torch

from tilepipe.acquire.download import download_scene
from tilepipe.acquire.stac import read_manifest
from tilepipe.core.errors import ModelError
from tilepipe.models.ftw import checkpoint_sidecar
from tilepipe.models.loading import load_model

from ..conftest import REPO

FTW_PYTHON = Path(os.environ.get("TILEPIPE_FTW_PYTHON") or REPO / ".venv-ftw/bin/python")
WRITER = REPO / "tests" / "oracles" / "ftw_checkpoint.py"


def lightning_dict(in_channels: int = 8, num_classes: int = 3, **hp) -> dict:
    """The keys of a Lightning checkpoint of ftw-tools' task, with a stand-in state_dict."""
    hyper = {"model": "unet", "backbone": "efficientnet-b3", "weights": True}
    hyper |= {"in_channels": in_channels, "num_classes": num_classes, "loss": "logcoshdice"}
    hyper |= {"class_weights": [0.05, 0.2, 0.75], "ignore_index": 3, "model_kwargs": {}, **hp}
    return {
        "epoch": 99,
        "global_step": 1000,
        "pytorch-lightning_version": "2.5.6",
        "state_dict": {"model.encoder._conv_stem.weight": torch.zeros(40, in_channels, 3, 3)},
        "loops": {},
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": hyper,
    }


def save_ckpt(path: Path, ckpt: dict) -> Path:
    """``torch.save`` the dict, as Lightning's checkpoint writer does."""
    torch.save(ckpt, path)
    return path


def test_checkpoint_without_sidecar_reads_as_ftw_tools_infers(tmp_path):
    meta = checkpoint_sidecar(save_ckpt(tmp_path / "ftw.ckpt", lightning_dict()), "")
    assert meta["bands_in"] == ["B04", "B03", "B02", "B08"] and meta["dates"] == 2
    assert meta["normalise"] == {"divide": 3000.0} and meta["activation"] == "softmax"
    assert meta["bands_out"] == ["background", "field", "boundary"]
    assert meta["roles"] == {"extent": "field", "boundary": "boundary"}
    assert meta["patch"] == {"multiple": 32} and meta["scale"] == 1


def test_single_window_checkpoint_is_one_date(tmp_path):
    meta = checkpoint_sidecar(save_ckpt(tmp_path / "one.ckpt", lightning_dict(4)), "")
    assert meta["dates"] == 1 and meta["bands_in"] == ["B04", "B03", "B02", "B08"]


@pytest.mark.skipif(
    importlib.util.find_spec("segmentation_models_pytorch") is not None,
    reason="segmentation-models-pytorch is installed here",
)
def test_ftw_checkpoint_without_smp_names_the_extra(tmp_path):
    path = save_ckpt(tmp_path / "ftw.ckpt", lightning_dict())
    with pytest.raises(ModelError, match=r"need segmentation-models-pytorch.*tilepipe\[ftw\]"):
        load_model(path)


def test_siamese_ftw_model_is_named_unsupported(tmp_path):
    path = save_ckpt(tmp_path / "siam.ckpt", lightning_dict(model="fcsiamdiff"))
    with pytest.raises(ModelError, match=r"FTW model 'fcsiamdiff' is not supported"):
        load_model(path)


def test_sidecar_contradicting_hyper_parameters_is_named(tmp_path):
    path = save_ckpt(tmp_path / "ftw.ckpt", lightning_dict(8))
    meta = {**checkpoint_sidecar(path, ""), "dates": 1}
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"declares 4 input channels.*in_channels=8"):
        load_model(path)


def test_checkpoint_with_pickled_objects_needs_allow_pickle(tmp_path):
    path = save_ckpt(tmp_path / "obj.ckpt", lightning_dict(args=argparse.Namespace(lr=1e-3)))
    with pytest.raises(ModelError, match=r'"allow_pickle": true'):
        load_model(path)


# --- in .venv-ftw: real smp networks, Lightning-written checkpoints ------------------------------

#: Run in .venv-ftw: each case's ``tilepipe`` command (status, stdout, stderr) and the largest
#: difference of tilepipe's logits from ftw-tools' on each reference, as JSON.
DRIVER = """
import contextlib, io, json, sys
import numpy as np, torch
from tilepipe.cli import main
from tilepipe.models.loading import load_model
cases, refs, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), {}
for name, argv in cases.items():
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        rc = main(argv)
    out[name] = {"rc": rc, "out": o.getvalue(), "err": e.getvalue()}
for ckpt, ref in refs.items():
    model, r = load_model(ckpt), np.load(ref)
    with torch.inference_mode():
        y = model.module(torch.from_numpy(r["image"]) / model.divide).numpy()
    out[ckpt] = float(np.abs(y - r["logits"]).max())
print(json.dumps(out))
"""


def in_ftw_env(*args: str | Path) -> subprocess.CompletedProcess:
    """Run ``args`` with .venv-ftw's interpreter and this tree's tilepipe."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [str(FTW_PYTHON), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def edited(src: Path, dst: Path, **hp) -> Path:
    """A copy of a checkpoint with some hyper_parameters changed."""
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"] |= hp
    return save_ckpt(dst, ckpt)


@pytest.fixture(scope="module")
def ftw(tmp_path_factory, demo) -> dict:
    """Two Lightning-written checkpoints (a released-shape two-window Unet on efficientnet-b3,
    a single-window one on efficientnet-b0) and what tilepipe did with each case in .venv-ftw."""
    if not FTW_PYTHON.is_file():
        pytest.skip(
            f"{FTW_PYTHON} missing: `make .venv-ftw/.installed` builds it; `make test` does"
        )
    tmp = tmp_path_factory.mktemp("ftw")
    run = in_ftw_env(WRITER, tmp, "b3:8:3:efficientnet-b3", "b0:4:3:efficientnet-b0")
    assert run.returncode == 0, run.stderr[-3000:]
    b3, b0 = tmp / "b3.ckpt", tmp / "b0.ckpt"
    check = ["model", "check", "--device", "cpu", "--batch", "2"]
    cases = {
        "two_window": [*check, str(b3), "--patch", "64"],
        "single_window": [*check, str(b0), "--patch", "32"],
        "off_multiple": [*check, str(b0), "--patch", "48"],
        "backbone": [*check, str(edited(b0, tmp / "b99.ckpt", backbone="efficientnet-b99"))],
        "contradiction": [*check, str(edited(b0, tmp / "eight.ckpt", in_channels=8))],
    }
    # the fields step on a demo scene's s2.tif with the single-window checkpoint, no sidecar
    row = next(r for r in read_manifest(demo["manifest"]) if r["date"] == "2022-06-21")
    s2, scl = tmp / "s2.tif", tmp / "scl.tif"
    download_scene(row, s2, scl, window=demo["window"])
    scene = ["--tile", row["tile"], "--date", row["date"], "--image", str(s2), "--scl", str(scl)]
    cases["fields"] = ["fields", *scene, "--out", str(tmp / "fields.gpkg"), "--model", str(b0)]
    cases["fields"] += ["--patch", "32", "--overlap", "8", "--device", "cpu"]
    # the released shape, two windows: the same tile's January scene as window A's partner
    first = next(r for r in read_manifest(demo["manifest"]) if r["date"] == "2022-01-12")
    partner = tmp / "s2_a.tif"
    download_scene(first, partner, tmp / "scl_a.tif", window=demo["window"])
    cases["fields_pair"] = ["fields", *scene, "--out", str(tmp / "pair.gpkg"), "--model", str(b3)]
    cases["fields_pair"] += ["--partner", str(partner), "--partner-window", "a"]
    cases["fields_pair"] += ["--patch", "32", "--overlap", "8", "--device", "cpu"]
    refs = {str(b3): str(tmp / "b3.npz"), str(b0): str(tmp / "b0.npz")}
    run = in_ftw_env("-c", DRIVER, json.dumps(cases), json.dumps(refs))
    assert run.returncode == 0, run.stderr[-3000:]
    found = {**json.loads(run.stdout.splitlines()[-1]), "b3": str(b3), "b0": str(b0)}
    return {**found, "fields.gpkg": tmp / "fields.gpkg", "pair.gpkg": tmp / "pair.gpkg"}


def test_lightning_checkpoints_give_ftw_tools_logits(ftw):
    assert ftw[ftw["b3"]] == 0.0 and ftw[ftw["b0"]] == 0.0


def test_model_check_runs_a_two_window_checkpoint(ftw):
    case = ftw["two_window"]
    assert case["rc"] == 0, case["err"]
    assert "(2, 8, 64, 64) -> (2, 3, 64, 64), finite" in case["out"]
    assert "softmax" in case["out"] and "{'divide': 3000.0}" in case["out"]


def test_model_check_runs_a_single_window_checkpoint(ftw):
    case = ftw["single_window"]
    assert case["rc"] == 0, case["err"]
    assert "(2, 4, 32, 32) -> (2, 3, 32, 32), finite" in case["out"]


def test_window_off_the_multiple_of_32_is_named(ftw):
    case = ftw["off_multiple"]
    assert case["rc"] == 2 and "multiple of 32, got patch 48" in case["err"]


def test_unknown_backbone_is_named(ftw):
    case = ftw["backbone"]
    assert case["rc"] == 2
    assert "unknown backbone 'efficientnet-b99' for segmentation-models-pytorch" in case["err"]


def test_hyper_parameters_contradicting_the_state_dict_are_named(ftw):
    err = ftw["contradiction"]["err"]
    assert "in_channels 8, num_classes 3) contradict its state_dict" in err
    assert "encoder._conv_stem.weight: checkpoint (32, 4, 3, 3), network (32, 8, 3, 3)" in err


def test_the_fields_step_runs_an_ftw_checkpoint_as_it_is_on_s2(ftw):
    """issue 14: a single-window FTW checkpoint, no sidecar, delineates a demo scene's s2.tif."""
    case = ftw["fields"]
    assert case["rc"] == 0, case["err"]
    meta = pyogrio.read_info(ftw["fields.gpkg"], layer="fields")["layer_metadata"]
    assert meta["FIELDS_MODEL_ID"] == "ftw-b0" and meta["HEADS"] == "extent,boundary"


def test_the_fields_step_runs_a_two_window_ftw_checkpoint_with_its_partner(ftw):
    """issue 14: the released shape (8 channels) on window A's scene, then window B's."""
    case = ftw["fields_pair"]
    assert case["rc"] == 0, case["err"]
    meta = pyogrio.read_info(ftw["pair.gpkg"], layer="fields")["layer_metadata"]
    assert meta["FIELDS_DATES"] == "2022-01-12,2022-06-21" and meta["FIELDS_MODEL_ID"] == "ftw-b3"
