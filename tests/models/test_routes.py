"""The three routes a user's model comes in by, and ``tilepipe model check`` on each."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from tilepipe.cli import main
from tilepipe.core.checksum import sha256_file
from tilepipe.core.errors import ModelError
from tilepipe.models.check import check_model
from tilepipe.models.loading import BANDS, EXPORT, TORCHSCRIPT, check_patch, load_model
from tilepipe.models.nets import SRNet


def sidecar(path: Path, architecture: str, scale: int, **over) -> None:
    """Write ``path``'s JSON sidecar (with the weights' SHA-256) the way a user would."""
    meta = {
        "id": f"{path.stem}-test",
        "architecture": architecture,
        "bands_in": list(BANDS),
        "bands_out": list(BANDS),
        "scale": scale,
        "normalise": {"divide": 10000.0},
        "sha256": sha256_file(path),
        **over,
    }
    path.with_suffix(".json").write_text(json.dumps(meta))


def export_sr(path: Path, scale: int = 4, dynamic_batch: bool = True) -> SRNet:
    """A small x``scale`` SRNet saved as a torch.export program (.pt2)."""
    net = SRNet(scale=scale, features=8, depth=2).eval()
    shapes = ({0: torch.export.Dim("batch", min=1, max=64)},) if dynamic_batch else None
    program = torch.export.export(net, (torch.rand(2, 4, 32, 32),), dynamic_shapes=shapes)
    torch.export.save(program, str(path))
    sidecar(path, EXPORT, scale)
    return net


def test_export_program_loads_and_matches_its_eager_module(tmp_path):
    net = export_sr(tmp_path / "sr4.pt2")
    model = load_model(tmp_path / "sr4.pt2", expect_scale=4)
    x = torch.rand(3, 4, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(model.module(x), net(x), atol=1e-5)
    assert model.meta["export_input_shape"] == [None, 4, 32, 32]


def test_export_program_with_a_fixed_batch_is_refused_at_load(tmp_path):
    export_sr(tmp_path / "fixed.pt2", dynamic_batch=False)
    with pytest.raises(ModelError, match=r"fixed batch of 2.*dynamic batch dimension"):
        load_model(tmp_path / "fixed.pt2")


def test_export_program_takes_only_the_window_it_was_traced_with(tmp_path):
    export_sr(tmp_path / "sr4.pt2")
    meta = load_model(tmp_path / "sr4.pt2").meta
    check_patch(meta, 32, 8)
    with pytest.raises(ModelError, match="exactly 32 px, got patch 64"):
        check_patch(meta, 64, 8)


def test_sidecar_window_maximum_is_enforced():
    with pytest.raises(ModelError, match="at most 128 px, got 256"):
        check_patch({"id": "m", "patch": {"max": 128}}, 256, 32)


def test_damaged_export_program_is_a_model_error(tmp_path):
    path = tmp_path / "bad.pt2"
    path.write_bytes(b"not a program")
    sidecar(path, EXPORT, 4)
    with pytest.raises(ModelError, match=r"cannot read torch\.export program"):
        load_model(path)


USER_PACKAGE = '''
import torch
from torch import nn


class TinySR(nn.Module):
    """A user's own architecture: nearest upsampling plus a learned 1x1 correction."""

    def __init__(self, bands=4, scale=2):
        super().__init__()
        self.scale = scale
        self.mix = nn.Conv2d(bands, bands, 1)

    def forward(self, x):
        up = nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")
        return up + self.mix(up)
'''


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """An installed-like package ``usersr`` on sys.path holding the user's class."""
    root = tmp_path / "site"
    (root / "usersr").mkdir(parents=True)
    (root / "usersr" / "__init__.py").write_text("")
    (root / "usersr" / "nets.py").write_text(textwrap.dedent(USER_PACKAGE))
    monkeypatch.syspath_prepend(str(root))
    import importlib

    return importlib.import_module("usersr.nets")


def test_class_route_builds_the_users_class_and_loads_its_state_dict(tmp_path, user_package):
    net = user_package.TinySR(scale=2)
    path = tmp_path / "tiny.pt"
    torch.save(net.state_dict(), path)
    sidecar(path, "usersr.nets:TinySR", 2, arch_kwargs={"bands": 4, "scale": 2})
    model = load_model(path, expect_scale=2)
    assert type(model.module).__name__ == "TinySR"
    x = torch.rand(1, 4, 8, 8)
    with torch.inference_mode():
        assert torch.equal(model.module(x), net.eval()(x))


def test_class_route_names_a_package_that_is_not_installed(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(SRNet(features=8, depth=2).state_dict(), path)
    sidecar(path, "nosuchpkg.nets:Net", 10, arch_kwargs={})
    with pytest.raises(ModelError, match=r"cannot import nosuchpkg\.nets.*install the package"):
        load_model(path)


def test_class_route_refuses_weights_that_contradict_the_class(tmp_path, user_package):
    path = tmp_path / "m.pt"
    torch.save(SRNet(features=8, depth=2).state_dict(), path)
    sidecar(path, "usersr.nets:TinySR", 2, arch_kwargs={"scale": 2})
    with pytest.raises(ModelError, match=r"weights do not fit usersr\.nets:TinySR"):
        load_model(path)


def test_model_check_reports_each_route(tmp_path, user_package):
    export_sr(tmp_path / "sr4.pt2")
    script = tmp_path / "sr10.ts"
    net = SRNet(features=8, depth=2).eval()
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 4, 16, 16)), str(script))
    sidecar(script, TORCHSCRIPT, 10)
    weights = tmp_path / "tiny.pt"
    torch.save(user_package.TinySR(scale=2).state_dict(), weights)
    sidecar(weights, "usersr.nets:TinySR", 2, arch_kwargs={"scale": 2})
    for path, patch, out in ((tmp_path / "sr4.pt2", 32, 128), (script, 16, 160), (weights, 16, 32)):
        report = check_model(str(path), "cpu", batch=2, patch=patch)
        assert f"(2, 4, {patch}, {patch}) -> (2, 4, {out}, {out}), finite" in report
        assert "Mpx/s output" in report and "peak memory" in report


def test_model_check_names_a_scale_the_weights_contradict(tmp_path, user_package):
    weights = tmp_path / "tiny.pt"
    torch.save(user_package.TinySR(scale=2).state_dict(), weights)
    sidecar(weights, "usersr.nets:TinySR", 4, arch_kwargs={"scale": 2})
    with pytest.raises(ModelError, match=r"declares scale 4 but arch_kwargs scale=2"):
        check_model(str(weights), "cpu", batch=2, patch=16)


def test_model_check_command_prints_speed_and_memory(capsys):
    repo = Path(__file__).resolve().parents[2]
    assert main(["model", "check", str(repo / "models/dr_demo.pt"), "--patch", "16"]) == 0
    out = capsys.readouterr().out
    assert "dr_demo-s0" in out and "Mpx/s output" in out and "peak memory" in out
