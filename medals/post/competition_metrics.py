"""Competition metrics beyond AUC, F1 and Dice, each as its competition defines it: quadratic weighted
kappa (APTOS, diabetic retinopathy), partial AUC above a TPR floor (ISIC 2024), the weighted multilabel
log loss (RSNA intracranial haemorrhage), probabilistic F1 (RSNA breast cancer), and the regression
errors RMSE, MAE and R2.

Plain numpy and sklearn on arrays; tests/test_competition_metrics.py checks each against sklearn or the
competition's published formula.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from medals.errors import MedalsError

EPS = 1e-15  # log loss clips probabilities to [EPS, 1 - EPS], as sklearn and the Kaggle scorers do


def _pair(truth, pred) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth, dtype=np.float64).ravel()
    pred = np.asarray(pred, dtype=np.float64).ravel()
    if len(truth) != len(pred):
        raise MedalsError(f"{len(truth)} true values but {len(pred)} predictions")
    if len(truth) == 0:
        raise MedalsError("no rows to score")
    return truth, pred


def rmse(truth, pred) -> float:
    truth, pred = _pair(truth, pred)
    return float(np.sqrt(np.mean((truth - pred) ** 2)))


def mae(truth, pred) -> float:
    truth, pred = _pair(truth, pred)
    return float(np.mean(np.abs(truth - pred)))


def r2(truth, pred) -> float:
    """1 - SS_res / SS_tot; nan when the truth is constant (R2 is undefined there)."""
    truth, pred = _pair(truth, pred)
    total = np.sum((truth - truth.mean()) ** 2)
    if total == 0:
        return float("nan")
    return float(1.0 - np.sum((truth - pred) ** 2) / total)


def qwk(truth, grades, num_grades: int | None = None) -> float:
    """Quadratic weighted kappa of integer grades 0..K-1: 1 - sum(W O) / sum(W E), W_ij = (i - j)^2,
    O the confusion counts and E the outer product of the two histograms over N.

    Grades absent from both sides add nothing to either sum, so K only has to cover the grades seen.
    Counted with bincount (no sklearn call): the cut-point search scores thousands of candidates.
    """
    truth = np.asarray(truth).ravel().astype(np.int64)
    grades = np.asarray(grades).ravel().astype(np.int64)
    if len(truth) != len(grades):
        raise MedalsError(f"{len(truth)} true grades but {len(grades)} predicted grades")
    if len(truth) == 0:
        raise MedalsError("no rows to score")
    k = int(max(truth.max(), grades.max(), (num_grades or 1) - 1)) + 1
    if min(truth.min(), grades.min()) < 0:
        raise MedalsError("grades must be integers from 0")
    observed = np.bincount(truth * k + grades, minlength=k * k).reshape(k, k).astype(np.float64)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / len(truth)
    index = np.arange(k)
    weights = (index[:, None] - index[None, :]) ** 2
    denominator = float((weights * expected).sum())
    if denominator == 0:
        return float("nan")  # one grade on both sides: agreement by chance is perfect, kappa undefined
    return float(1.0 - (weights * observed).sum() / denominator)


def _above_floor(fpr: np.ndarray, tpr: np.ndarray, floor: float) -> float:
    """Area between the piecewise-linear ROC curve and the line TPR = floor, where the curve is above it."""
    area = 0.0
    for f0, f1, t0, t1 in zip(fpr[:-1], fpr[1:], tpr[:-1], tpr[1:], strict=True):
        width = f1 - f0
        if width <= 0 or max(t0, t1) <= floor:
            continue
        if min(t0, t1) >= floor:
            area += width * ((t0 + t1) / 2 - floor)
        else:  # the segment crosses the floor: only the triangle above it counts
            high = max(t0, t1)
            area += 0.5 * width * (high - floor) / (high - min(t0, t1)) * (high - floor)
    return float(area)


def pauc(truth, score, min_tpr: float = 0.8) -> float:
    """Partial ROC AUC above a TPR floor (ISIC 2024: min_tpr 0.8): the area of the ROC curve's part above
    TPR = min_tpr, in 0..(1 - min_tpr); 0.2 is perfect there. nan when the truth holds one class.

    ISIC 2024 computed the same area through sklearn's max_fpr on flipped labels and scores; here it is
    integrated on the ROC curve directly (the test checks that both agree).
    """
    truth, score = _pair(truth, score)
    positive = truth > 0.5
    if positive.all() or not positive.any():
        return float("nan")
    if not 0.0 <= min_tpr < 1.0:
        raise MedalsError(f"metrics.pauc_min_tpr must be in [0, 1), got {min_tpr}")
    fpr, tpr, _ = roc_curve(positive, score, drop_intermediate=False)
    return _above_floor(fpr, tpr, min_tpr)


def binary_logloss(truth, prob) -> float:
    truth, prob = _pair(truth, prob)
    p = np.clip(prob, EPS, 1 - EPS)
    return float(-np.mean(truth * np.log(p) + (1 - truth) * np.log(1 - p)))


def multiclass_logloss(truth, probs) -> float:
    """Mean -log p(true class), each row's probabilities clipped and renormalised (as sklearn's log_loss)."""
    truth = np.asarray(truth).ravel().astype(np.int64)
    probs = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    probs = probs / probs.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(probs[np.arange(len(truth)), truth])))


def weighted_logloss(truth, probs, weights=None) -> float:
    """Weighted multilabel log loss (RSNA ICH): sum_ij w_j l_ij / sum_ij w_j, l_ij the binary log loss of
    row i, column j; with every row scored on every column that is sum_j w_j mean_i(l_ij) / sum_j w_j."""
    truth = np.asarray(truth, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if truth.shape != probs.shape or truth.ndim != 2:
        raise MedalsError(f"labels {truth.shape} and probabilities {probs.shape} must both be [N, K]")
    w = np.ones(truth.shape[1]) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if len(w) != truth.shape[1]:
        raise MedalsError(f"{len(w)} log loss weights for {truth.shape[1]} classes")
    p = np.clip(probs, EPS, 1 - EPS)
    losses = -(truth * np.log(p) + (1 - truth) * np.log(1 - p))
    return float((losses * w).sum() / (w.sum() * len(truth)))


def probabilistic_f1(truth, prob, beta: float = 1.0) -> float:
    """pF1 (RSNA screening mammography): F-beta with each probability a soft count. True positives
    sum(p y), false positives sum(p (1 - y)); precision over their sum, recall over the positives.
    0 when nothing is predicted or there is no positive."""
    truth, prob = _pair(truth, prob)
    tp = float(np.sum(prob * truth))
    fp = float(np.sum(prob * (1 - truth)))
    positives = float(np.sum(truth))
    if tp + fp == 0 or positives == 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / positives
    if precision + recall == 0:
        return 0.0
    b2 = beta * beta
    return float((1 + b2) * precision * recall / (b2 * precision + recall))


def mean_column_auc(truth, probs) -> float:
    """Mean over columns of each column's ROC AUC (RANZCR CLiP); columns with one class are skipped."""
    truth = np.asarray(truth)
    probs = np.asarray(probs, dtype=np.float64)
    scores = [
        roc_auc_score(truth[:, k], probs[:, k])
        for k in range(truth.shape[1])
        if 0 < np.asarray(truth[:, k]).astype(bool).sum() < len(truth)
    ]
    return float(np.mean(scores)) if scores else float("nan")
