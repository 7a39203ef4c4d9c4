"""The rules a JSON schema cannot express (dates in order, a window inside its tile, minimum
below maximum) are written once and run by both the workflow's config check and every step's
settings, so a value Snakemake refuses is refused by `tilepipe STEP` by hand too."""

from __future__ import annotations

import copy

import pytest
import yaml

from tilepipe.campaign.config import config_problems
from tilepipe.cli import main
from tilepipe.core.errors import ConfigError
from tilepipe.core.settings import config_schema, section_settings

from ..conftest import REPO

DEMO = yaml.safe_load((REPO / "config/config.yaml").read_text())


def _problems(**changes) -> list[str]:
    """The workflow's config check of the demo config with ``changes`` (section -> mapping)."""
    config = copy.deepcopy(DEMO)
    for key, value in changes.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config_problems(config, config_schema(), base=REPO)


def test_search_with_end_before_start_is_refused_and_writes_no_manifest(tmp_path, capsys):
    out = tmp_path / "scenes.csv"
    args = ["search", "--catalog", "nowhere", "--tiles", "33UXP"]
    assert main([*args, "--start", "2022-06-30", "--end", "2022-06-01", "--out", str(out)]) == 2
    assert "start 2022-06-30 is after end 2022-06-01" in capsys.readouterr().err
    assert not out.exists()


def test_the_config_check_refuses_end_before_start_in_the_same_words():
    problems = _problems(dates={"start": "2022-06-30", "end": "2022-06-01"})
    assert problems == [
        "config key 'dates': start 2022-06-30 is after end 2022-06-01: nothing can be found"
    ]


def test_a_window_running_past_the_tile_edge_is_refused_by_the_cli_and_the_config_check(
    tmp_path, capsys
):
    args = ["search", "--catalog", "x", "--tiles", "33UXP", "--start", "2022-06-01"]
    args += ["--end", "2022-06-30", "--window", "10900,0,200,200", "--out", str(tmp_path / "m")]
    assert main(args) == 2
    assert "col_off 10900 + width 200 runs past the tile's 10980 pixels" in capsys.readouterr().err
    window = {"col_off": 10900, "row_off": 0, "width": 200, "height": 200}
    problems = _problems(window=window, demo={"generate": False})
    assert any("col_off 10900 + width 200 runs past" in p for p in problems)


def test_a_cli_window_smaller_than_the_schema_allows_is_refused(tmp_path, capsys):
    args = ["search", "--catalog", "x", "--tiles", "33UXP", "--start", "2022-06-01"]
    args += ["--end", "2022-06-30", "--window", "5000,5000,8,8", "--out", str(tmp_path / "m")]
    assert main(args) == 2
    assert "setting 'window.width': 8 is less than the minimum of 16" in capsys.readouterr().err


def test_min_area_above_max_area_is_refused_by_the_settings_and_the_config_check():
    with pytest.raises(ConfigError, match=r"'fields\.max_area_m2': 1000 must exceed min_area_m2"):
        section_settings("fields", {"min_area_m2": 5000, "max_area_m2": 1000})
    problems = _problems(fields={"min_area_m2": 5000, "max_area_m2": 1000})
    assert problems == ["config key 'fields.max_area_m2': 1000 must exceed min_area_m2 5000"]


def test_an_upside_down_qc_area_range_is_refused_by_the_settings_and_the_config_check():
    qc = {"field_area": {"warn": [5000.0, 100.0]}}
    with pytest.raises(ConfigError, match=r"'qc\.field_area\.warn': \[5000\.0, 100\.0\]"):
        section_settings("qc", qc)
    assert _problems(qc=qc) == [
        "config key 'qc.field_area.warn': [5000.0, 100.0]: minimum above maximum"
    ]


def test_a_cloud_cover_limit_outside_0_to_100_is_refused_by_the_cli(tmp_path, capsys):
    args = ["search", "--catalog", "x", "--tiles", "33UXP", "--start", "2022-06-01"]
    args += ["--end", "2022-06-30", "--max-cloud", "150", "--out", str(tmp_path / "m")]
    assert main(args) == 2
    assert "setting 'source.max_cloud': 150.0 is greater than the maximum of 100" in (
        capsys.readouterr().err
    )
