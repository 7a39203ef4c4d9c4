"""Season windows, the season jobs `tilepipe plan` counts and the states `tilepipe status` shows."""

from __future__ import annotations

from tilepipe.campaign.plan import count_jobs
from tilepipe.campaign.seasons import season_of, season_windows
from tilepipe.campaign.status import season_status

SCENES = [("33UXP", "2022-01-12"), ("33UXP", "2022-06-21"), ("31UFS", "2023-06-21")]


def test_without_windows_each_calendar_year_of_the_dates_is_a_season():
    assert season_windows([], "2022-01-01", "2023-12-31") == {
        "2022": ("2022-01-01", "2022-12-31"),
        "2023": ("2023-01-01", "2023-12-31"),
    }


def test_configured_windows_are_the_seasons_and_a_day_may_lie_in_several():
    windows = [
        {"name": "winter", "start": "2021-10-01", "end": "2022-03-31"},
        {"name": "y2022", "start": "2022-01-01", "end": "2022-12-31"},
    ]
    seasons = season_windows(windows, "2022-01-01", "2022-12-31")
    assert season_of("2022-01-12", seasons) == ["winter", "y2022"]
    assert season_of("2022-06-21", seasons) == ["y2022"]


def test_plan_counts_one_season_job_per_tile_season_holding_a_scene():
    seasons = season_windows([], "2022-01-01", "2023-12-31")
    counts = count_jobs(SCENES, ["33UXP", "31UFS"], 2022, demo=False, seasons=seasons)
    assert counts["season_fields"] == 2  # 33UXP 2022 (two dates) and 31UFS 2023
    assert counts["season_classify"] == counts["season_qc_classification"] == 2


def test_status_shows_each_tile_season_with_its_dates_and_state(tmp_path):
    done = tmp_path / "results/33UXP/season/2022/fields.gpkg"
    done.parent.mkdir(parents=True)
    done.write_bytes(b"x")
    seasons = season_windows([], "2022-01-01", "2023-12-31")
    states = [s for s in season_status(tmp_path, SCENES, seasons) if s.tile != "campaign"]
    assert [(s.tile, s.season, s.state, s.step, s.dates) for s in states] == [
        ("31UFS", "2023", "pending", "season_fields", ["2023-06-21"]),
        ("33UXP", "2022", "pending", "season_classify", ["2022-01-12", "2022-06-21"]),
    ]


def test_plan_counts_one_campaign_layer_per_season():
    seasons = season_windows([], "2022-01-01", "2023-12-31")
    counts = count_jobs(SCENES, ["33UXP", "31UFS"], 2022, demo=False, seasons=seasons)
    assert counts["campaign_fields"] == 2  # seasons 2022 and 2023


def test_status_shows_each_seasons_campaign_layer_with_its_tiles(tmp_path):
    scenes = [*SCENES, ("34UBU", "2022-06-21")]
    for name in ("fields.gpkg", "dedupe.json"):
        done = tmp_path / "results/campaign/season/2023" / name
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_bytes(b"x")
    seasons = season_windows([], "2022-01-01", "2023-12-31")
    states = [s for s in season_status(tmp_path, scenes, seasons) if s.tile == "campaign"]
    assert [(s.season, s.state, s.step, s.tiles) for s in states] == [
        ("2022", "pending", "campaign_fields", ["33UXP", "34UBU"]),
        ("2023", "done", "", ["31UFS"]),
    ]
