"""Competition metrics on numpy arrays: AUC, accuracy, macro F1 with threshold search, Dice.

One convention throughout: a probability is a positive decision when it is strictly above the
threshold (``p > t``), the same rule medals.postprocess applies when writing a submission.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from medals.errors import MedalsError

DEFAULT_GRID = np.round(np.arange(0.05, 0.96, 0.01), 2)


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """Binary ROC AUC; nan when the truth holds only one class (AUC is undefined there)."""
    truth = np.asarray(truth).astype(bool).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, score))


def auc_one_vs_rest(truth: np.ndarray, probs: np.ndarray) -> float:
    """Macro mean over classes of the AUC of class k against the rest (classes absent from truth skipped)."""
    truth = np.asarray(truth).ravel()
    probs = np.asarray(probs)
    scores = [roc_auc(truth == k, probs[:, k]) for k in range(probs.shape[1])]
    defined = [value for value in scores if not np.isnan(value)]
    return float(np.mean(defined)) if defined else float("nan")


def accuracy(truth: np.ndarray, probs: np.ndarray) -> float:
    return float(np.mean(np.asarray(probs).argmax(axis=1) == np.asarray(truth).ravel()))


def _f1(tp: np.ndarray, n_true: np.ndarray, n_pred: np.ndarray) -> np.ndarray:
    """F1 = 2TP / (#true + #predicted), taken as 0 when both counts are 0 (as sklearn does)."""
    denominator = n_true + n_pred
    return np.where(denominator > 0, 2.0 * tp / np.maximum(denominator, 1), 0.0)


def f1_per_class(truth: np.ndarray, probs: np.ndarray, thresholds: float | np.ndarray) -> np.ndarray:
    truth = np.asarray(truth).astype(bool)
    pred = np.asarray(probs) > np.asarray(thresholds, dtype=np.float64)
    tp = (truth & pred).sum(axis=0)
    return _f1(tp, truth.sum(axis=0), pred.sum(axis=0))


def f1_macro(truth_multi_hot: np.ndarray, probs: np.ndarray, thresholds: float | np.ndarray = 0.5) -> float:
    """Macro F1 over the K columns; ``thresholds`` is one value or one per class."""
    return float(np.mean(f1_per_class(truth_multi_hot, probs, thresholds)))


def f1_curves(truth: np.ndarray, probs: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """F1 of every class at every threshold in ``grid``: array [K, G].

    Each class's scores are sorted once; the number of scores (and of positives) above each threshold
    then comes from a binary search, so the cost is O(N log N) per class, not O(N * G).
    """
    truth = np.asarray(truth).astype(bool)
    probs = np.asarray(probs, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    n_rows, n_classes = probs.shape
    order = np.argsort(probs, axis=0, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, axis=0)
    sorted_truth = np.take_along_axis(truth, order, axis=0)
    # positives_below[i, k]: positives among the i smallest scores of class k.
    positives_below = np.concatenate(
        [np.zeros((1, n_classes), dtype=np.int64), np.cumsum(sorted_truth, axis=0)], axis=0
    )
    n_true = positives_below[-1]
    curves = np.empty((n_classes, len(grid)))
    for k in range(n_classes):
        at_or_below = np.searchsorted(sorted_probs[:, k], grid, side="right")  # scores <= t
        n_pred = n_rows - at_or_below
        tp = n_true[k] - positives_below[at_or_below, k]
        curves[k] = _f1(tp, n_true[k], n_pred)
    return curves


def search_thresholds(truth: np.ndarray, probs: np.ndarray, grid: np.ndarray | None = None) -> np.ndarray:
    """Per-class threshold from ``grid`` maximising that class's F1 on (truth, probs).

    Ties (a flat optimum, or a class without positives) go to the grid value nearest 0.5, so a class
    the data says nothing about keeps a neutral threshold instead of the lowest one.
    """
    grid = DEFAULT_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    if len(grid) == 0:
        raise MedalsError("the threshold grid is empty")
    curves = f1_curves(truth, probs, grid)
    best = curves.max(axis=1, keepdims=True)
    at_best = curves >= best - 1e-12
    distance = np.where(at_best, np.abs(grid - 0.5)[None, :], np.inf)
    return grid[distance.argmin(axis=1)]


def dice_per_image(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice of each image of bool stacks [N, ...]: both empty = 1, exactly one empty = 0."""
    pred = np.asarray(pred).astype(bool)
    truth = np.asarray(truth).astype(bool)
    if pred.shape != truth.shape:
        raise MedalsError(f"predicted masks {pred.shape} and true masks {truth.shape} differ in shape")
    pred = pred.reshape(len(pred), -1)
    truth = truth.reshape(len(truth), -1)
    intersection = (pred & truth).sum(axis=1)
    total = pred.sum(axis=1) + truth.sum(axis=1)
    # With one mask empty the intersection is 0 while the total is not, so the formula gives 0 there.
    return np.where(total > 0, 2.0 * intersection / np.maximum(total, 1), 1.0)


def mean_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(dice_per_image(pred, truth)))


def percentile_rank(x: np.ndarray) -> np.ndarray:
    """Average ranks scaled to [0, 1] (smallest 0, largest 1; ties share a rank; one value -> 0.5)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size <= 1:
        return np.full(x.shape, 0.5)
    return (rankdata(x) - 1.0) / (x.size - 1)


def task_metrics(
    task: str, truth: np.ndarray, probs: np.ndarray, positive: int | None = None
) -> dict[str, float]:
    """The metrics a task reports; the keys are what checkpoint rules and main_metric name."""
    truth = np.asarray(truth)
    probs = np.asarray(probs)
    if len(truth) != len(probs):
        raise MedalsError(f"{len(truth)} true values but {len(probs)} predictions")
    if task == "multiclass":
        if positive is not None:
            auc = roc_auc(truth == positive, probs[:, positive])
        elif probs.shape[1] == 2:
            auc = roc_auc(truth == 1, probs[:, 1])
        else:
            auc = auc_one_vs_rest(truth, probs)
        return {"auc": auc, "accuracy": accuracy(truth, probs)}
    if task == "multilabel":
        thresholds = search_thresholds(truth, probs)
        return {"f1_macro": f1_macro(truth, probs, thresholds), "f1_macro_05": f1_macro(truth, probs, 0.5)}
    if task == "segmentation":
        return {"dice": mean_dice(probs > 0.5, truth)}
    raise MedalsError(f"unknown task '{task}': use multiclass, multilabel or segmentation")
