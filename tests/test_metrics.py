from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from medals.errors import MedalsError
from medals.post.metrics import (
    DEFAULT_GRID,
    accuracy,
    auc_one_vs_rest,
    dice_at_size,
    dice_per_image,
    downsample,
    f1_macro,
    f1_per_class,
    mean_dice,
    percentile_rank,
    roc_auc,
    search_thresholds,
    sweep_f1,
    sweep_pixel_threshold,
    task_metrics,
)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---- AUC ------------------------------------------------------------------------------------


def test_auc_by_hand():
    # Positive/negative pairs: 0.35 > 0.1 yes, 0.35 > 0.4 no, 0.8 > both yes: 3 of 4.
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # A tie counts half.
    assert roc_auc([0, 1, 1], [0.5, 0.5, 0.9]) == pytest.approx(0.75)


def test_auc_matches_sklearn():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 500)
    score = truth * 0.3 + rng.random(500)
    assert roc_auc(truth, score) == pytest.approx(roc_auc_score(truth, score))
    assert 0.6 < roc_auc(truth, score) < 0.95


def test_auc_one_class_is_nan():
    assert math.isnan(roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert math.isnan(roc_auc([0, 0], [0.2, 0.5]))


def test_one_vs_rest_matches_sklearn():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, 400)
    probs = softmax(rng.normal(size=(400, 4)) + 1.5 * np.eye(4)[truth])
    expected = roc_auc_score(truth, probs, multi_class="ovr", average="macro")
    assert auc_one_vs_rest(truth, probs) == pytest.approx(expected)


def test_one_vs_rest_skips_absent_classes():
    truth = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.4, 0.5, 0.1], [0.1, 0.8, 0.1]])
    # class 0: positives 0.8, 0.3 vs negatives 0.4, 0.1 -> 3/4; class 1: 0.5, 0.8 vs 0.1, 0.6 -> 3/4.
    assert auc_one_vs_rest(truth, probs) == pytest.approx(0.75)


def test_accuracy():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert accuracy([0, 1, 1, 1], probs) == pytest.approx(0.75)


# ---- F1 and threshold search -----------------------------------------------------------------


def test_f1_macro_matches_sklearn():
    rng = np.random.default_rng(2)
    truth = (rng.random((300, 6)) < [0.02, 0.1, 0.3, 0.5, 0.0, 0.2]).astype(np.uint8)
    probs = np.clip(0.35 * truth + rng.random((300, 6)) * 0.7, 0, 1)
    thresholds = np.array([0.3, 0.4, 0.5, 0.5, 0.6, 0.45])
    expected = f1_score(truth, probs > thresholds, average="macro", zero_division=0)
    assert f1_macro(truth, probs, thresholds) == pytest.approx(expected)
    assert f1_macro(truth, probs, 0.5) == pytest.approx(
        f1_score(truth, probs > 0.5, average="macro", zero_division=0)
    )


def test_f1_by_hand_and_strict_threshold():
    truth = np.array([[1], [1], [0], [0]])
    probs = np.array([[0.9], [0.5], [0.7], [0.1]])
    # p > 0.5: predictions 1,0,1,0 -> TP 1, FP 1, FN 1 -> F1 = 2 / 4 (0.5 itself is not above 0.5).
    assert f1_macro(truth, probs, 0.5) == pytest.approx(0.5)
    # p > 0.4: predictions 1,1,1,0 -> TP 2, FP 1 -> F1 = 4 / 5.
    assert f1_macro(truth, probs, 0.4) == pytest.approx(0.8)
    # No positives and no predictions: 0, as sklearn's default.
    assert f1_per_class(np.zeros((3, 1)), np.zeros((3, 1)), 0.5).tolist() == [0.0]


def test_search_finds_known_optimum():
    # Class 0: negatives 0.1 0.2 0.31 0.8, positives 0.33 0.6 0.7.
    #   0.31 <= t < 0.33 -> TP 3 FP 1: F1 = 6/7 (best); 0.2 <= t < 0.31 -> 6/8; 0.33 <= t < 0.6 -> 4/6.
    #   Grid values 0.31 and 0.32 both reach 6/7; the tie goes to the one nearer 0.5: 0.32.
    # Class 1: perfectly separated at any 0.40 <= t < 0.70; ties -> 0.5.
    # Class 2: no positives at all: F1 is 0 everywhere -> neutral 0.5.
    c0_truth = [0, 0, 0, 0, 1, 1, 1]
    c0_probs = [0.1, 0.2, 0.31, 0.8, 0.33, 0.6, 0.7]
    c1_truth = [0, 0, 0, 1, 1, 1, 1]
    c1_probs = [0.1, 0.3, 0.4, 0.7, 0.8, 0.9, 0.95]
    truth = np.array([c0_truth, c1_truth, [0] * 7]).T
    probs = np.array([c0_probs, c1_probs, [0.2, 0.4, 0.6, 0.8, 0.1, 0.3, 0.5]]).T
    thresholds = search_thresholds(truth, probs)
    assert thresholds.tolist() == pytest.approx([0.32, 0.5, 0.5])
    per_class = f1_per_class(truth, probs, thresholds)
    assert per_class.tolist() == pytest.approx([6 / 7, 1.0, 0.0])


def test_search_equals_brute_force():
    rng = np.random.default_rng(3)
    truth = (rng.random((400, 5)) < [0.05, 0.2, 0.4, 0.6, 0.1]).astype(np.uint8)
    probs = np.clip(0.3 * truth + 0.8 * rng.random((400, 5)), 0, 1)
    thresholds = search_thresholds(truth, probs)
    assert set(np.round(thresholds, 2)) <= set(np.round(DEFAULT_GRID, 2))
    brute = np.array([f1_per_class(truth, probs, t) for t in DEFAULT_GRID])  # [G, K]
    assert f1_per_class(truth, probs, thresholds) == pytest.approx(brute.max(axis=0))
    # The searched thresholds beat one fixed threshold.
    assert f1_macro(truth, probs, thresholds) > f1_macro(truth, probs, 0.5)


def test_search_with_custom_grid():
    truth = np.array([[0], [1], [1]])
    probs = np.array([[0.2], [0.3], [0.9]])
    assert search_thresholds(truth, probs, grid=[0.1, 0.25, 0.5]).tolist() == [0.25]
    with pytest.raises(MedalsError, match="grid is empty"):
        search_thresholds(truth, probs, grid=[])


# ---- Dice ---------------------------------------------------------------------------------------


def test_dice_empty_rules_and_overlap():
    pred = np.zeros((4, 3, 3), dtype=bool)
    truth = np.zeros((4, 3, 3), dtype=bool)
    # image 0: both empty -> 1
    pred[1, 0, 0] = True  # image 1: truth empty, prediction not -> 0
    truth[2, 1, 1] = True  # image 2: prediction empty, truth not -> 0
    pred[3, 0, :] = True  # image 3: 3 + 1 predicted, 2 true, 2 shared -> 2*2/(4+2)
    pred[3, 1, 0] = True
    truth[3, 0, 0:2] = True
    assert dice_per_image(pred, truth).tolist() == pytest.approx([1.0, 0.0, 0.0, 2 / 3])
    assert mean_dice(pred, truth) == pytest.approx((1 + 2 / 3) / 4)
    with pytest.raises(MedalsError, match="differ in shape"):
        dice_per_image(pred, truth[:, :2])


def test_percentile_rank():
    # r / n with tied values sharing their mean rank (pandas rank(pct=True)): ranks 1, 4, 2.5, 2.5.
    assert percentile_rank([10, 30, 20, 20]).tolist() == pytest.approx([0.25, 1, 0.625, 0.625])
    assert percentile_rank([5.0]).tolist() == [1.0]
    assert percentile_rank([]).tolist() == []


# ---- task_metrics ---------------------------------------------------------------------------------


def test_task_metrics_multiclass():
    truth = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    out = task_metrics("multiclass", truth, probs)
    assert set(out) == {"auc", "accuracy"}
    assert out["auc"] == pytest.approx(0.75) and out["accuracy"] == pytest.approx(0.75)

    rng = np.random.default_rng(4)
    truth3 = rng.integers(0, 3, 200)
    probs3 = softmax(rng.normal(size=(200, 3)) + np.eye(3)[truth3])
    positive = task_metrics("multiclass", truth3, probs3, positive=2)["auc"]
    assert positive == pytest.approx(roc_auc_score(truth3 == 2, probs3[:, 2]))
    macro = task_metrics("multiclass", truth3, probs3)["auc"]
    assert macro == pytest.approx(roc_auc_score(truth3, probs3, multi_class="ovr"))
    assert macro != pytest.approx(positive)


def test_task_metrics_multilabel():
    rng = np.random.default_rng(5)
    truth = (rng.random((200, 4)) < 0.3).astype(np.uint8)
    probs = np.clip(0.25 * truth + 0.6 * rng.random((200, 4)), 0, 1)
    out = task_metrics("multilabel", truth, probs)
    assert set(out) == {"f1_macro", "f1_macro_05", "auc_macro"}
    # RANZCR CLiP's score: the mean of the columns' AUCs (sklearn's macro average)
    assert out["auc_macro"] == pytest.approx(roc_auc_score(truth, probs, average="macro"))
    assert out["f1_macro_05"] == pytest.approx(f1_score(truth, probs > 0.5, average="macro", zero_division=0))
    assert out["f1_macro"] > out["f1_macro_05"]


def test_task_metrics_segmentation():
    truth = np.zeros((2, 4, 4), dtype=bool)
    truth[1, :2, :2] = True
    probs = np.zeros((2, 4, 4), dtype=np.float32)
    probs[0, 0, 0] = 0.5  # exactly 0.5 is not above the threshold: image 0 stays empty -> 1
    probs[1, :2, :] = 0.9  # 8 predicted, 4 true, 4 shared -> 8 / 12
    assert task_metrics("segmentation", truth, probs) == {"dice": pytest.approx((1 + 8 / 12) / 2)}


def test_task_metrics_errors():
    with pytest.raises(MedalsError, match="unknown task 'detection'"):
        task_metrics("detection", np.zeros(2), np.zeros((2, 2)))
    with pytest.raises(MedalsError, match="3 true values but 2 predictions"):
        task_metrics("multiclass", np.zeros(3), np.zeros((2, 2)))


# ---- Dice at a reduced size, threshold sweeps (SIIM-ACR pneumothorax) -------------------------


def _block_masks(n: int, seed: int, side: int = 1024, block: int = 8) -> np.ndarray:
    """Random bool masks [n, side, side] made of whole block x block squares."""
    small = np.random.default_rng(seed).random((n, side // block, side // block)) < 0.02
    return np.kron(small, np.ones((block, block), dtype=bool)).astype(bool)


def test_downsample_matches_torch_bilinear():
    import torch
    import torch.nn.functional as F

    images = np.random.default_rng(0).random((3, 96, 96)).astype(np.float32)
    ours = downsample(images, 40)
    theirs = F.interpolate(
        torch.from_numpy(images)[:, None], size=(40, 40), mode="bilinear", align_corners=False
    )
    assert ours.shape == (3, 40, 40) and ours.dtype == np.float32
    np.testing.assert_allclose(
        ours, theirs[:, 0].numpy(), atol=2e-5
    )  # rounding differs at non-integer factors
    # Half-pixel centres, factor 8: output pixel (0, 0) averages source pixels 3 and 4 of each axis.
    one = np.zeros((1, 16, 16), dtype=np.float32)
    one[0, 3, 3] = 1.0
    assert downsample(one, 2)[0].tolist() == [[0.25, 0.0], [0.0, 0.0]]
    np.testing.assert_array_equal(downsample(images.astype(np.float16), 96), images.astype(np.float16))
    with pytest.raises(MedalsError, match=r"\[N, H, W\]"):
        downsample(images[0])
    with pytest.raises(MedalsError, match="positive integer, got 0"):
        downsample(images, 0)


def test_dice_at_size_equals_full_size_dice_for_8x8_blocks():
    truth = _block_masks(4, seed=1)
    pred = _block_masks(4, seed=2) | truth & _block_masks(4, seed=3)  # partial overlap
    truth[0] = False
    pred[0] = False  # both empty: 1
    truth[1] = False  # truth empty, prediction not: 0
    probs = np.where(pred, 0.9, 0.1).astype(np.float32)
    full = mean_dice(probs > 0.5, truth)
    assert dice_per_image(probs > 0.5, truth)[:2].tolist() == [1.0, 0.0]
    assert dice_at_size(probs, truth, size=128) == pytest.approx(full, abs=1e-12)
    assert 0.2 < full < 0.9


def test_dice_at_size_drops_details_below_the_grid():
    # One true pixel at (0, 0) is lost at 128 (it falls between sample points), so an empty
    # prediction scores 1 there while it scores 0 at full size.
    truth = np.zeros((1, 1024, 1024), dtype=bool)
    truth[0, 0, 0] = True
    probs = np.zeros((1, 1024, 1024), dtype=np.float32)
    assert mean_dice(probs > 0.5, truth) == 0.0
    assert dice_at_size(probs, truth) == 1.0
    with pytest.raises(MedalsError, match="differ in shape"):
        dice_at_size(probs, truth[:, :512])


def test_sweep_pixel_threshold_finds_planted_optimum():
    truth = _block_masks(3, seed=4, side=256)
    truth[:, :8, :8] = True
    noise = _block_masks(3, seed=5, side=256) & ~truth
    # Lesion pixels at 0.6 and background specks at 0.45: any threshold in [0.45, 0.6) is perfect.
    probs = np.where(truth, 0.6, np.where(noise, 0.45, 0.05)).astype(np.float32)
    best, scores = sweep_pixel_threshold(probs, truth, [0.3, 0.4, 0.5, 0.7], size=64)
    assert best == 0.5
    assert scores[0.5] == 1.0 and scores[0.7] == 0.0
    assert scores[0.3] == scores[0.4] < 1.0
    assert scores[0.4] == pytest.approx(dice_at_size(probs, truth, size=64, threshold=0.4))
    best_full, scores_full = sweep_pixel_threshold(probs, truth, [0.4, 0.5], size=None)
    assert best_full == 0.5 and scores_full[0.4] == pytest.approx(mean_dice(probs > 0.4, truth))
    with pytest.raises(MedalsError, match="grid is empty"):
        sweep_pixel_threshold(probs, truth, [])


def test_sweep_f1_finds_planted_optimum():
    truth = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    probs = np.array([0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.66, 0.62])
    grid = [0.2, 0.4, 0.6, 0.65, 0.7]
    best, scores = sweep_f1(truth, probs, grid)
    for t in grid:
        assert scores[t] == pytest.approx(f1_score(truth, probs > t))
    assert best == 0.6 and scores[0.6] == pytest.approx(8 / 9)
    # A flat optimum goes to the threshold nearest 0.5, as search_thresholds does.
    assert sweep_f1([0, 1], [0.1, 0.9], [0.2, 0.45, 0.8])[0] == 0.45
    with pytest.raises(MedalsError, match="3 true labels but 2"):
        sweep_f1([0, 1, 1], [0.1, 0.9], [0.5])


def test_binary_metrics_read_the_one_sigmoid_as_p_of_the_second_class():
    from medals.post.metrics import task_metrics

    truth = np.array([0, 1, 1, 0, 1])
    probs = np.array([[0.1], [0.9], [0.4], [0.3], [0.8]])  # [N, 1]: the model's one output
    out = task_metrics("binary", truth, probs)
    assert out["auc"] == 1.0  # every positive above every negative
    assert out["accuracy"] == 0.8  # 0.4 is a positive at or below 0.5
    assert task_metrics("binary", truth, probs[:, 0]) == out
