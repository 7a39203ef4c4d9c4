"""Object-based field accuracy: matched IoU, over/under-segmentation, splits and merges."""

from __future__ import annotations

import numpy as np
import pytest

from tilepipe.fields.metrics import instance_scores


def two_fields() -> np.ndarray:
    truth = np.zeros((20, 40), dtype=np.int32)
    truth[2:18, 2:19] = 1
    truth[2:18, 21:38] = 2
    return truth


def test_perfect_prediction_matches_every_field_with_iou_one():
    truth = two_fields()
    s = instance_scores(truth * 7, truth)  # ids need not agree
    assert s["matched"] == s["n_true"] == s["n_pred"] == 2
    assert s["mean_iou"] == 1.0 and s["recall"] == s["precision"] == 1.0
    assert s["over_segmentation"] == s["under_segmentation"] == 0.0
    assert s["split_rate"] == s["merge_rate"] == 0.0


def test_one_prediction_over_two_fields_is_a_merge_and_under_segmentation():
    truth = two_fields()
    pred = (truth > 0).astype(np.int32)
    pred[2:18, 19:21] = 1  # bridges the gap: one polygon for both fields
    s = instance_scores(pred, truth)
    assert s["n_pred"] == 1 and s["matched"] == 0
    assert s["merge_rate"] == 1.0
    assert s["under_segmentation"] == pytest.approx(1 - 272 / 576)
    assert s["over_segmentation"] == 0.0


def test_a_field_cut_in_half_is_a_split_and_over_segmentation():
    truth = two_fields()
    pred = truth.copy()
    pred[2:18, 2:10] = 3  # field 1 in two pieces of 8 and 9 columns
    s = instance_scores(pred, truth)
    assert s["split_rate"] == 0.5
    assert s["over_segmentation"] == pytest.approx((1 - 9 / 17) / 2)
    assert s["matched"] == 2  # 9/17 of field 1 still has IoU > 0.5


def test_small_true_fragments_can_be_left_out():
    truth = two_fields()
    truth[0, 0] = 3
    assert instance_scores(truth, truth, min_truth_px=10)["n_true"] == 2


def test_field_ious_give_each_true_field_its_best_overlap_and_pairing_keeps_common_ones():
    from tilepipe.fields.metrics import field_ious, paired_iou

    truth = np.zeros((10, 20), dtype=np.int32)
    truth[:, :10], truth[:, 10:] = 1, 2
    a = truth.copy()  # both fields exactly
    b = np.zeros_like(truth)
    b[:, :5] = 7  # half of field 1, none of field 2
    ious_a, ious_b = field_ious(a, truth), field_ious(b, truth)
    assert ious_a == {1: 1.0, 2: 1.0} and ious_b == {1: 0.5, 2: 0.0}
    assert paired_iou(ious_a, ious_b) == (1, 1.0, 0.5)
    assert paired_iou(ious_a, ious_b, iou_min=0.6)[0] == 0
