"""Each scene's partner for a two-date field model (`fields.pairing`), as the DAG reads it."""

from __future__ import annotations

from tilepipe.campaign.pairs import Partner, partners, unpaired_reason, window_problems

WINDOWS = {"a": {"start": "04-01", "end": "05-31"}, "b": {"start": "08-01", "end": "09-30"}}


def _row(tile: str, date: str, cloud: float, nodata: float = 0.0) -> dict:
    return {"tile": tile, "date": date, "cloud_cover": cloud, "nodata_pct": nodata}


def test_a_scene_in_one_window_is_paired_with_the_clearest_of_the_other():
    rows = [
        _row("33UXP", "2022-04-10", 30),
        _row("33UXP", "2022-05-02", 5),
        _row("33UXP", "2022-08-15", 20),
        _row("33UXP", "2022-09-01", 20, nodata=1),
    ]
    found = partners(rows, {"windows": WINDOWS})
    assert found[("33UXP", "2022-04-10")] == Partner("2022-08-15", "b")  # tie: less nodata
    assert found[("33UXP", "2022-09-01")] == Partner("2022-05-02", "a")


def test_partners_stay_within_their_tile_and_year():
    rows = [_row("33UXP", "2022-04-10", 0), _row("31UFS", "2022-08-15", 0)]
    rows += [_row("33UXP", "2023-08-15", 0)]
    assert partners(rows, {"windows": WINDOWS}) == {}


def test_a_scene_outside_both_windows_has_no_partner_and_is_told_why():
    rows = [_row("33UXP", "2022-06-21", 0), _row("33UXP", "2022-08-15", 0)]
    assert ("33UXP", "2022-06-21") not in partners(rows, {"windows": WINDOWS})
    why = unpaired_reason("33UXP", "2022-06-21", {"windows": WINDOWS})
    assert why == "the date is in neither pairing window (a 04-01..05-31, b 08-01..09-30)"
    lonely = unpaired_reason("33UXP", "2022-04-10", {"windows": WINDOWS})
    assert lonely == "tile 33UXP has no scene of 2022 in window b (08-01..09-30)"


def test_explicit_pairs_pair_both_dates_each_with_the_other():
    pairing = {"pairs": [{"tile": "33UXP", "a": "2022-01-12", "b": "2022-06-21"}]}
    found = partners([], pairing)
    assert found == {
        ("33UXP", "2022-01-12"): Partner("2022-06-21", "b"),
        ("33UXP", "2022-06-21"): Partner("2022-01-12", "a"),
    }


def test_windows_that_overlap_or_run_backwards_are_named():
    overlap = {"a": {"start": "04-01", "end": "08-15"}, "b": WINDOWS["b"]}
    assert window_problems({"windows": overlap}) == [
        "windows a 04-01..08-15 and b 08-01..09-30 overlap"
    ]
    backwards = {"a": {"start": "11-01", "end": "02-28"}, "b": WINDOWS["b"]}
    assert "window a runs from 11-01 back to 02-28" in window_problems({"windows": backwards})[0]
