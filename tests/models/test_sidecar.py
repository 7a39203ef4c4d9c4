"""The sidecar parsed in one place: what a model needs and gives, each bad key a named error."""

from __future__ import annotations

import pytest
import torch

from tilepipe.models.loading import load_model, save_model
from tilepipe.models.nets import SRNet
from tilepipe.models.sidecar import SidecarError, field_roles, parse_sidecar

from ..byo import RGBN, export_x4, script_three_class

BASE = {"id": "m", "bands_in": RGBN, "bands_out": RGBN, "scale": 4}


def test_a_sidecar_declares_bands_scale_normalisation_outputs_window_and_determinism():
    sc = parse_sidecar(
        {
            **BASE,
            "normalise": {"divide": 10000, "mean": [0.1] * 4, "std": [0.2] * 4, "clip": [0, 1]},
            "patch": {"max": 128, "multiple": 4},
            "deterministic": False,
        }
    )
    assert (sc.bands_in, sc.scale, sc.dates, sc.deterministic) == (tuple(RGBN), 4, 1, False)
    assert sc.normalise.mean == (0.1,) * 4 and sc.normalise.clip == (0.0, 1.0)
    assert sc.patch == {"max": 128, "multiple": 4}


def test_defaults_are_divide_10000_one_date_deterministic_and_no_window_rule():
    sc = parse_sidecar(BASE)
    assert (sc.normalise.divide, sc.dates, sc.deterministic, sc.patch) == (10000.0, 1, True, {})


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"bands_in": ["B02", "B10"]}, "'bands_in' names ['B10'], not Sentinel-2 L2A bands"),
        ({"bands_in": ["B02", "B02"]}, "'bands_in' repeats a band"),
        ({"bands_out": []}, "'bands_out' must be a list"),
        ({"scale": 2.5}, "'scale' must be an integer >= 1, found 2.5"),
        ({"scale": 0}, "'scale' must be an integer >= 1, found 0"),
        ({"dates": 3}, "'dates' must be 1 or 2"),
        ({"activation": "relu"}, "'activation' must be one of"),
        ({"deterministic": "no"}, "'deterministic' must be true or false"),
        ({"normalise": {"divide": 0}}, "'normalise.divide' must be a number > 0"),
        ({"normalise": {"scale": 2}}, "'normalise' has unknown keys ['scale']"),
        ({"normalise": {"mean": [0.1] * 4}}, "'normalise' needs mean and std together"),
        (
            {"normalise": {"mean": [0.1], "std": [1.0]}},
            "'normalise.mean' needs one number per band",
        ),
        ({"normalise": {"mean": [0] * 4, "std": [1, 1, 0, 1]}}, "'normalise.std' must be > 0"),
        ({"normalise": {"clip": [1, 0]}}, "'normalise.clip' needs low < high"),
        ({"patch": {"max": 0}}, "'patch' needs positive integers"),
        ({"patch": {"min": 64, "max": 32}}, "'patch' has min 64 > max 32"),
        ({"patch": {"size": 64}}, "'patch' has unknown keys ['size']"),
        ({"roles": {"field": "B02"}}, "'roles' has unknown roles ['field']"),
        ({"roles": {"boundary": "B02"}}, "'roles' needs an 'extent' output"),
        ({"roles": {"extent": "x"}}, "'roles' names outputs ['x'] not in bands_out"),
    ],
)
def test_a_bad_sidecar_key_is_a_sidecar_error_naming_model_and_key(over, words):
    with pytest.raises(SidecarError, match=r"model m: sidecar key ") as err:
        parse_sidecar({**BASE, **over}, "file m.json: ")
    assert words in str(err.value) and str(err.value).startswith("file m.json: ")


def test_field_roles_come_from_the_sidecar_or_tilepipes_output_names():
    named = parse_sidecar({**BASE, "bands_out": ["extent_logit", "boundary_logit"], "scale": 1})
    assert field_roles(named, "") == {"extent": 0, "boundary": 1}
    ftw = {"bands_out": ["background", "field", "boundary"], "scale": 1}
    roles = {"extent": "field", "boundary": "boundary"}
    assert field_roles(parse_sidecar({**BASE, **ftw, "roles": roles}), "") == {
        "extent": 1,
        "boundary": 2,
    }
    with pytest.raises(SidecarError, match="name each output's role"):
        field_roles(parse_sidecar({**BASE, **ftw}), "")


def class_model(tmp_path, net, **meta):
    """A built-in net saved by the class route with ``meta`` as its sidecar."""
    path = tmp_path / "m.pt"
    save_model(net, path, {"id": "m", "architecture": "srnet", **meta})
    return path


def test_a_sidecar_whose_bands_contradict_the_class_arguments_is_refused_at_load(tmp_path):
    path = class_model(
        tmp_path, SRNet(bands=4, scale=4, features=8, depth=2),
        arch_kwargs={"bands": 4, "scale": 4, "features": 8, "depth": 2},
        bands_in=["B04", "B03", "B02"], bands_out=["B04", "B03", "B02"], scale=4,
    )  # fmt: skip
    with pytest.raises(SidecarError, match=r"declares 3 input channels .* but arch_kwargs bands=4"):
        load_model(path)


def test_a_sidecar_whose_bands_contradict_the_first_convolution_is_refused_at_load(tmp_path):
    three = ["B04", "B03", "B02"]
    path = class_model(
        tmp_path, SRNet(scale=4, features=8, depth=2),
        arch_kwargs={"scale": 4, "features": 8, "depth": 2},  # bands left to the default 4
        bands_in=three, bands_out=three, scale=4,
    )  # fmt: skip
    with pytest.raises(SidecarError, match="the first convolution takes 4 channels"):
        load_model(path)


def test_a_sidecar_scale_that_contradicts_the_class_arguments_is_refused_at_load(tmp_path):
    path = class_model(
        tmp_path, SRNet(scale=4, features=8, depth=2),
        arch_kwargs={"scale": 4, "features": 8, "depth": 2},
        bands_in=RGBN, bands_out=RGBN, scale=10,
    )  # fmt: skip
    with pytest.raises(SidecarError, match="declares scale 10 but arch_kwargs scale=4"):
        load_model(path)


def test_an_export_program_traced_with_other_channels_than_the_sidecar_is_refused(tmp_path):
    path = export_x4(tmp_path / "sr4.pt2", bands_in=["B04", "B03", "B02"])
    with pytest.raises(SidecarError, match="traced with 4 channels"):
        load_model(path)


def test_the_small_user_models_load_by_their_routes(tmp_path):
    sr = load_model(export_x4(tmp_path / "sr4.pt2"))
    ftw = load_model(script_three_class(tmp_path / "ftw.pt"))
    assert sr.spec.scale == 4 and sr.spec.bands_in == tuple(RGBN)
    assert ftw.spec.activation == "softmax" and ftw.spec.roles == {"extent": 1, "boundary": 2}
    with torch.inference_mode():
        assert ftw.module(torch.rand(1, 4, 8, 8)).shape == (1, 3, 8, 8)


def test_model_check_prints_the_activation_roles_and_determinism(tmp_path):
    from tilepipe.models.check import check_model

    report = check_model(str(script_three_class(tmp_path / "ftw.pt")), "cpu", batch=1, patch=8)
    assert "activation    softmax" in report and "'extent': 'field'" in report
    assert "deterministic true" in report and "(1, 4, 8, 8) -> (1, 3, 8, 8), finite" in report
