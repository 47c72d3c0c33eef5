"""Multilabel post-processing of the Human Protein Atlas winners: prevalence-matched thresholds,
averaging of near-duplicate test images, replacement of leaked test labels.

Thresholds follow the medals convention: class k is predicted when p_k > threshold_k (strictly).

- HPA1 matches each class's predicted-positive rate on the test set to its prevalence in training
  (``prevalence_thresholds(test_probs, train_prevalence(train_labels))``) and gives every
  near-duplicate test image its group's mean prediction (``average_duplicates``).
- HPA3 picks, on the hold-out test_val chunk, the threshold whose predicted-positive rate matches
  test_val's true rate (``prevalence_thresholds(test_val_probs, train_prevalence(test_val_labels),
  grid=HPA3_GRID)``), and replaces the labels of test images that hash-match a labelled image
  (``replace_leaks``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medals.errors import MedalsError

# HPA3's threshold grid, 0.05, 0.06, ..., 0.99 (95 values), as its find_best_thres builds it: an arange,
# not rounded, so a probability sitting on a grid value compares as it did there (0.05 + 2 * 0.01 is
# 0.07000000000000001, and a score of exactly 0.07 is not above it).
HPA3_GRID = np.arange(0.05, 1.00, 0.01)


def train_prevalence(multi_hot: np.ndarray) -> np.ndarray:
    """Fraction of rows carrying each class: float [K]."""
    labels = np.asarray(multi_hot)
    if labels.ndim != 2 or len(labels) == 0:
        raise MedalsError(f"labels must be a non-empty multi-hot array [N, K], got shape {labels.shape}")
    return labels.astype(bool).mean(axis=0)


def _exact_threshold(scores: np.ndarray, target: float) -> float:
    """Threshold whose count of scores strictly above it is nearest ``target`` (ties: fewer positives).

    Between two neighbouring distinct scores the threshold is their midpoint, so it does not sit on a
    score; all on is just below the minimum, none on just above the maximum.
    """
    values = np.unique(scores)  # ascending distinct scores
    n = len(scores)
    # candidate c: threshold just below values[c] (c = 0..len(values)); c = len(values) is above the max
    above = n - np.searchsorted(np.sort(scores), values, side="left")  # scores >= values[c]
    counts = np.append(above, 0)
    gap = np.abs(counts - target)
    best = np.flatnonzero(gap == gap.min()).max()  # the largest candidate: fewest positives
    if best == len(values):
        return float(np.nextafter(values[-1], np.inf))
    if best == 0:
        return float(np.nextafter(values[0], -np.inf))
    return float((values[best - 1] + values[best]) / 2.0)


def prevalence_thresholds(probs: np.ndarray, rates: np.ndarray, grid: np.ndarray | None = None) -> np.ndarray:
    """Per-class threshold [K] at which the fraction of ``probs`` [N, K] above it matches ``rates`` [K].

    Without ``grid`` the threshold is exact: the fraction predicted equals the rate whenever tied scores
    allow it, and is otherwise the nearest achievable (ties go to the higher threshold); rate 0 gives a
    threshold above the maximum, rate 1 one below the minimum. With ``grid`` (HPA3: ``HPA3_GRID``) the
    threshold is the first grid value whose predicted fraction is nearest the rate.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0:
        raise MedalsError(f"probabilities must be a non-empty array [N, K], got shape {probs.shape}")
    rates = np.broadcast_to(np.asarray(rates, dtype=np.float64), (probs.shape[1],)).copy()
    if ((rates < 0) | (rates > 1) | ~np.isfinite(rates)).any():
        raise MedalsError("prevalence rates must lie in 0..1")
    n = len(probs)
    if grid is None:
        return np.array([_exact_threshold(probs[:, k], rates[k] * n) for k in range(probs.shape[1])])
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or len(grid) == 0:
        raise MedalsError("the threshold grid must be a non-empty list of values")
    sorted_probs = np.sort(probs, axis=0)
    thresholds = np.empty(probs.shape[1])
    for k in range(probs.shape[1]):
        fraction = (n - np.searchsorted(sorted_probs[:, k], grid, side="right")) / n
        thresholds[k] = grid[np.argmin(np.abs(fraction - rates[k]))]  # argmin: the first of equals
    return thresholds


def average_duplicates(probs: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each row replaced by the mean prediction of its duplicate group (``duplicate_groups`` ids).

    Rows alone in their group are unchanged.
    """
    probs = np.asarray(probs, dtype=np.float64)
    groups = np.asarray(groups)
    if groups.shape != (len(probs),):
        raise MedalsError(f"groups must give one group per row ({len(probs)}), got shape {groups.shape}")
    _, index = np.unique(groups, return_inverse=True)
    index = index.ravel()
    sums = np.zeros((index.max() + 1 if len(index) else 0,) + probs.shape[1:])
    np.add.at(sums, index, probs)
    counts = np.bincount(index).reshape(-1, *([1] * (probs.ndim - 1)))
    return sums[index] / counts[index]


def replace_leaks(
    pred_labels: np.ndarray,
    leaks: pd.DataFrame,
    labelled_labels: np.ndarray,
    max_distance: int | None = None,
) -> np.ndarray:
    """Decisions [N, K] with each leaked test row set to the labels of its nearest labelled match.

    ``leaks`` is ``medals.data.hashing.leaks(test_ids, labelled_ids, pairs)`` (its ``test_index`` rows
    index ``pred_labels``, its ``labelled_index`` rows index ``labelled_labels`` [M, K]). Among equally
    near matches the first labelled row wins, so list competition rows before external ones to prefer
    their labels. ``max_distance`` ignores matches farther than that.
    """
    pred = np.array(pred_labels, copy=True)
    labelled = np.asarray(labelled_labels)
    if pred.ndim != 2 or labelled.ndim != 2 or pred.shape[1] != labelled.shape[1]:
        raise MedalsError(
            f"predicted labels {pred.shape} and labelled labels {labelled.shape} must be [N, K] and [M, K]"
        )
    missing = {"test_index", "labelled_index", "distance"} - set(leaks.columns)
    if missing:
        raise MedalsError(f"the leak table lacks the column(s) {', '.join(sorted(missing))}")
    table = leaks
    if max_distance is not None:
        table = table[table["distance"] <= max_distance]
    if table.empty:
        return pred
    test_index = table["test_index"].to_numpy(np.int64)
    labelled_index = table["labelled_index"].to_numpy(np.int64)
    if test_index.max() >= len(pred) or labelled_index.max() >= len(labelled):
        raise MedalsError("the leak table refers to rows beyond the predicted or labelled labels")
    nearest = (
        table.assign(_order=np.arange(len(table)))
        .sort_values(["test_index", "distance", "labelled_index", "_order"], kind="stable")
        .drop_duplicates("test_index")
    )
    pred[nearest["test_index"].to_numpy(np.int64)] = labelled[nearest["labelled_index"].to_numpy(np.int64)]
    return pred
