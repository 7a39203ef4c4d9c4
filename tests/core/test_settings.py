"""One source per parameter: the config schema's defaults reach the workflow, the CLI and the
dataclasses alike, and a step's flags override the section it is handed."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from tilepipe.cli import build_parser
from tilepipe.cli.options import step_settings
from tilepipe.core.errors import ConfigError
from tilepipe.core.settings import (
    config_schema,
    schema_path,
    section_defaults,
    section_schema,
    section_settings,
)
from tilepipe.fields.polygons import Params
from tilepipe.qc.checks import DEFAULT_THRESHOLDS, merge_thresholds

from ..conftest import REPO

DEMO = yaml.safe_load((REPO / "config/config.yaml").read_text())


def test_the_schema_exists_once_and_ships_with_the_package():
    assert schema_path().is_file()
    assert schema_path().parent == REPO / "src/tilepipe/core"
    assert not (REPO / "workflow/schemas/config.schema.yaml").exists()
    assert '"core/config.schema.yaml"' in (REPO / "pyproject.toml").read_text()  # package data


@pytest.mark.parametrize("section", ["source", "superres", "fields", "qc", "classify", "demo"])
def test_sections_are_filled_as_snakemake_validation_fills_the_config(section):
    from snakemake.utils import validate

    config = copy.deepcopy(DEMO)
    validate(config, str(schema_path()))
    assert section_settings(section, DEMO.get(section, {})) == config[section]


def test_qc_defaults_are_the_schemas():
    assert DEFAULT_THRESHOLDS == section_defaults("qc") == merge_thresholds(None)


def test_polygon_params_default_to_the_schema_and_read_a_section():
    fields = section_defaults("fields")
    params = Params()
    assert all(getattr(params, name) == fields[name] for name in vars(params))
    assert Params.from_settings({**fields, "block": 512}).block == 512


def test_a_bad_setting_names_its_key():
    with pytest.raises(ConfigError, match=r"setting 'fields\.block'"):
        section_settings("fields", {"block": 100})  # not a multiple of 16


def test_required_keys_are_needed_only_where_the_step_reads_them():
    assert "catalog" not in section_settings("source", {})
    with pytest.raises(ConfigError, match="catalog"):
        section_settings("source", {}, need=("catalog",))


def _settings(*argv: str) -> dict:
    return step_settings(build_parser().parse_args(list(argv)))


FIELDS = ["fields", "--tile", "33UXP", "--date", "2022-06-21", "--dr", "dr.tif", "--out", "f"]


def test_a_step_run_by_hand_takes_the_schemas_defaults():
    assert _settings(*FIELDS) == section_defaults("fields")
    superres = ["superres", "--tile", "33UXP", "--date", "2022-06-21", "--s2", "a", "--out", "b"]
    assert _settings(*superres) == section_defaults("superres")


def test_flags_override_the_section_which_overrides_the_defaults():
    section = json.dumps({"threshold": 0.3, "block": 512})
    got = _settings(*FIELDS, "--settings", section, "--block", "256", "--max-area-m2", "1e6")
    assert (got["threshold"], got["block"], got["max_area_m2"]) == (0.3, 256, 1e6)
    assert got["halo"] == section_defaults("fields")["halo"]


def test_boolean_settings_have_on_and_off_flags():
    superres = ["superres", "--tile", "33UXP", "--date", "2022-06-21", "--s2", "a", "--out", "b"]
    got = _settings(*superres, "--settings", '{"resume": true}', "--no-resume", "--compile")
    assert (got["resume"], got["compile"]) == (False, True)


def test_every_step_flag_default_is_left_to_the_schema():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, step in sub.choices.items():
        for action in step._actions:
            if action.dest.startswith("setting_"):
                assert action.default is None, (name, action.dest)
    assert config_schema()["properties"]["qc"]["default"] == {}


def test_a_section_schema_is_a_fresh_copy_each_time():
    first = section_schema("fields")
    first["properties"]["threshold"]["default"] = -1
    first["definitions"].clear()
    again = section_schema("fields")
    assert again["properties"]["threshold"]["default"] != -1
    assert again["definitions"] == config_schema()["definitions"]


def test_the_parser_is_built_once_and_each_parse_starts_afresh():
    # a warm GPU worker parses one scene's command line after another with the same parser
    assert build_parser() is build_parser()
    assert _settings(*FIELDS, "--block", "256")["block"] == 256
    assert _settings(*FIELDS)["block"] == section_defaults("fields")["block"]
