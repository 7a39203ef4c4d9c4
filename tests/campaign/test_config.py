"""Bad configuration fails before any job with a line naming the key and what is allowed."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import yaml

from tilepipe.campaign.config import (
    apply_cluster_env,
    campaign_tiles,
    cluster_problems,
    coerce_types,
    config_problems,
    download_bands,
    load_schema,
    tile_window_arg,
    window_arg,
)
from tilepipe.core.settings import schema_path

from ..byo import export_x4, script_three_class, script_two_date
from ..conftest import REPO

SCHEMA = load_schema(schema_path())
DEMO_CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())


def problems(**changes):
    config = copy.deepcopy(DEMO_CONFIG)
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return config_problems(config, SCHEMA, base=REPO)


def test_the_demo_config_is_valid():
    assert problems() == []


def test_unknown_key_is_named_with_the_allowed_keys():
    (msg,) = problems(superres__modle="x.pt")
    assert "unknown config key 'superres.modle'" in msg and "model" in msg


def test_bad_tile_id_is_named():
    (msg,) = problems(tiles=["33UXP", "33ZZZ"])
    assert "tiles[1]" in msg and "'33ZZZ'" in msg and "MGRS" in msg


def test_bad_date_is_named():
    (msg,) = problems(dates__start="2022-13-45")
    assert "dates.start" in msg and "2022-13-45" in msg


def test_enum_value_lists_the_allowed_values():
    (msg,) = problems(superres__method="bilinear")
    assert "superres.method" in msg and "model, bicubic" in msg


def test_missing_model_file_is_named():
    found = problems(fields__model="models/nope.pt")
    assert any("fields.model" in m and "models/nope.pt" in m for m in found)


def test_a_window_outside_the_generated_demo_is_named():
    msgs = problems(window="full")  # 34UBU keeps its own window (`windows`)
    assert [m.split("covers ")[1][:5] for m in msgs] == ["33UXP", "31UFS"]
    assert all("config key 'window'" in m and "5000..5160" in m for m in msgs)


def test_a_tiles_own_window_outside_the_generated_demo_is_named():
    (msg,) = problems(windows={"34UBU": {"col_off": 0, "row_off": 0, "width": 96, "height": 96}})
    assert "config key 'windows.34UBU'" in msg and "546..642" in msg


def test_a_window_for_a_tile_not_in_the_campaign_is_ignored():
    # a campaign may keep one table of windows and run a subset of its tiles
    windows = {
        **DEMO_CONFIG["windows"],
        "32UPU": {"col_off": 0, "row_off": 0, "width": 96, "height": 96},
    }
    assert problems(windows=windows) == []


def test_a_neighbour_tile_of_the_demo_needs_its_source():
    msgs = problems(tiles=["31UFS", "34UBU"])
    assert any("34UBU sees 33UXP's world" in m for m in msgs)


def test_a_tile_with_its_own_window_gets_it_as_its_cli_argument():
    config = {
        "window": "full",
        "windows": {"34UBU": {"col_off": 1, "row_off": 2, "width": 30, "height": 40}},
    }
    assert tile_window_arg(config, "34UBU") == "1,2,30,40"
    assert tile_window_arg(config, "33UXP") == "full"


def test_bicubic_needs_no_superres_model():
    assert problems(superres__method="bicubic", superres__model="models/nope.pt") == []


@pytest.mark.parametrize(
    ("window", "arg"),
    [("full", "full"), ({"col_off": 1, "row_off": 2, "width": 30, "height": 40}, "1,2,30,40")],
)
def test_window_becomes_the_cli_argument(window, arg):
    assert window_arg(window) == arg


def test_snakemake_stops_at_parse_time_with_the_message_and_no_traceback(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(tmp_path),
            "--configfile",
            str(REPO / "config/config.yaml"),
            "--dry-run",
            "--config",
            "tiles=[33UXP, 33ZZZ]",
            "superres={method: bilinear}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "config key 'tiles[1]': '33ZZZ' is not an MGRS tile id" in out
    assert "'bilinear' is not allowed; allowed values: model, bicubic" in out
    assert "Traceback" not in out
    assert not (tmp_path / "results").exists()


def test_nested_command_line_values_get_the_types_the_schema_expects():
    given = {
        "cluster": {"network_local": "true", "env": {"A": "1"}},
        "containers": {"cpu": "null", "gpu": "x.sif"},
        "demo": {"size": "64", "generate": "False"},
        "window": {"col_off": "5000", "row_off": "5000", "width": "64", "height": "64"},
    }
    got = coerce_types(given, SCHEMA)
    assert got["cluster"] == {"network_local": True, "env": {"A": "1"}}
    assert got["containers"] == {"cpu": None, "gpu": "x.sif"}
    assert got["demo"] == {"size": 64, "generate": False}
    assert got["window"]["width"] == 64


def test_cluster_env_is_exported_with_variables_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKSPACE", str(tmp_path))
    monkeypatch.setenv("TMPDIR", os.environ.get("TMPDIR", "/tmp"))  # restored after the test
    monkeypatch.delenv("APPTAINER_CACHEDIR", raising=False)
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    unresolved = apply_cluster_env(
        {"TMPDIR": "$WORKSPACE/tmp", "APPTAINER_CACHEDIR": "$NOT_SET_ANYWHERE/cache"}
    )
    assert os.environ["TMPDIR"] == f"{tmp_path}/tmp" and (tmp_path / "tmp").is_dir()
    assert unresolved == ["APPTAINER_CACHEDIR=$NOT_SET_ANYWHERE/cache"]


def test_a_cluster_run_names_the_missing_account_variable():
    (msg,) = cluster_problems({"name": "saga", "account_env": "TILEPIPE_ACCOUNT"}, {})
    assert "export TILEPIPE_ACCOUNT=" in msg
    assert cluster_problems({"name": "saga"}, {"TILEPIPE_ACCOUNT": "nn1234k"}) == []
    assert cluster_problems({"name": "local"}, {}) == []


def test_an_aoi_replaces_the_tile_list_and_gives_every_download_its_window():
    config = copy.deepcopy(DEMO_CONFIG)
    del config["tiles"]
    config["aoi"] = {"bbox": [11.9, 48.1, 12.1, 48.2], "margin_m": 320}
    assert config_problems(config, SCHEMA, base=REPO) == []
    assert campaign_tiles(config) == ["32UQU", "33UTP"]
    assert window_arg(config["window"], config["aoi"]) == "aoi:320:11.9,48.1,12.1,48.2"


def test_a_config_without_tiles_or_aoi_is_refused():
    config = copy.deepcopy(DEMO_CONFIG)
    del config["tiles"]
    assert config_problems(config, SCHEMA, base=REPO)


def test_an_unknown_source_provider_is_named_with_the_allowed_ones():
    (line,) = problems(source__provider="sentinelhub")
    assert "source.provider" in line and "planetary_computer" in line and "cdse" in line


# issue 14: the configured models' sidecars are checked at parse time


def test_a_window_the_superres_model_cannot_take_is_named_at_parse_time(tmp_path):
    model = export_x4(tmp_path / "sr4.pt2")  # traced on 16 px windows, patch exact 16
    (msg,) = problems(superres__model=str(model), superres__patch=64)
    assert msg.startswith("config key 'superres.model': file ")
    assert "model sr-x4 takes windows of exactly 16 px, got patch 64" in msg


def test_a_band_dr_lacks_is_named_at_parse_time(tmp_path):
    """dr.tif holds the core four bands: a fields model on it cannot take a 20 m band."""
    model = script_three_class(tmp_path / "ftw.pt", bands_in=["B04", "B03", "B02", "B11"])
    (msg,) = problems(fields__model=str(model))
    assert "needs bands B11 (20 m) that dr.tif lacks" in msg


def test_download_fetches_the_further_bands_the_dr_model_takes(tmp_path):
    bands = ["B04", "B03", "B02", "B08", "B8A", "B11"]
    model = export_x4(tmp_path / "sr4.pt2", bands_in=bands)
    config = {**DEMO_CONFIG, "superres": {**DEMO_CONFIG["superres"], "model": str(model)}}
    assert download_bands(config) == ("B8A", "B11")
    assert download_bands(DEMO_CONFIG) == ()


def test_a_fields_model_on_s2_has_its_further_bands_downloaded_too(tmp_path):
    model = script_three_class(tmp_path / "ftw.pt", bands_in=["B04", "B03", "B02", "B12"])
    fields = {**DEMO_CONFIG["fields"], "model": str(model), "input": "s2"}
    source = {**DEMO_CONFIG["source"], "bands": ["B05"]}
    assert download_bands({**DEMO_CONFIG, "fields": fields, "source": source}) == ("B05", "B12")


def test_a_malformed_sidecar_key_is_named_at_parse_time(tmp_path):
    model = export_x4(tmp_path / "sr4.pt2", normalise={"divide": -1})
    (msg,) = problems(superres__model=str(model), superres__patch=16)
    assert "sidecar key 'normalise.divide' must be a number > 0" in msg


def test_a_dr_model_configured_as_the_fields_model_is_named_at_parse_time(tmp_path):
    (msg,) = problems(fields__model=str(export_x4(tmp_path / "sr4.pt2")))
    assert "config key 'fields.model'" in msg and "name each output's role" in msg


def test_a_two_date_fields_model_without_pairing_is_named_at_parse_time(tmp_path):
    model = script_two_date(tmp_path / "ftw2.pt")
    (msg,) = problems(fields__model=str(model), fields__input="s2")
    assert "takes two dates (window A, then B): set fields.pairing" in msg


def test_a_two_date_fields_model_with_windows_is_valid(tmp_path):
    model = script_two_date(tmp_path / "ftw2.pt")
    windows = {"a": {"start": "01-01", "end": "03-31"}, "b": {"start": "06-01", "end": "07-31"}}
    pairing = {"windows": windows}
    assert problems(fields__model=str(model), fields__input="s2", fields__pairing=pairing) == []


def test_pairing_for_a_one_date_model_is_named_at_parse_time():
    pairing = {"pairs": [{"tile": "33UXP", "a": "2022-01-12", "b": "2022-06-21"}]}
    (msg,) = problems(fields__pairing=pairing)
    assert "takes one date, but fields.pairing is set" in msg
