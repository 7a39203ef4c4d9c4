"""Atomic outputs: one output, or a set of them published together (all or nothing)."""

from __future__ import annotations

import pytest

from tilepipe.core.raster import atomic_output, atomic_outputs


def test_a_set_of_outputs_appears_together_when_the_block_succeeds(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "sub" / "b.json"
    with atomic_outputs(a, b) as (ta, tb):
        ta.write_text("a")
        tb.write_text("b")
        assert not a.exists() and not b.exists()
    assert a.read_text() == "a" and b.read_text() == "b"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.txt", "b.json"]


def test_a_failure_in_the_block_leaves_no_output_and_no_temporary(tmp_path):
    with pytest.raises(RuntimeError), atomic_outputs(tmp_path / "a.txt", tmp_path / "b.txt") as t:
        t[0].write_text("a")
        raise RuntimeError("the second output could not be made")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_in_the_block_keeps_the_outputs_of_an_earlier_run(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")
    with pytest.raises(RuntimeError), atomic_outputs(a, b) as (ta, _):
        ta.write_text("new a")
        raise RuntimeError
    assert (a.read_text(), b.read_text()) == ("old a", "old b")


def test_a_rename_failing_half_way_leaves_none_of_the_set(tmp_path):
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    c.write_text("old c")
    b.mkdir()  # a is renamed into place, then b cannot be
    with pytest.raises(OSError), atomic_outputs(a, b, c) as temps:
        for tmp in temps:
            tmp.write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"] and b.is_dir()


def test_a_single_output_whose_rename_fails_keeps_nothing_beside_it(tmp_path):
    out = tmp_path / "out.txt"
    out.mkdir()
    with pytest.raises(OSError), atomic_output(out) as tmp:
        tmp.write_text("new")
    assert list(tmp_path.iterdir()) == [out]
