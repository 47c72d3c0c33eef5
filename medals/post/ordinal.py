"""Ordinal grades from a continuous prediction: cut-points between grades, fitted on OOF predictions to
maximise quadratic weighted kappa (the "optimised rounder" of the APTOS and diabetic-retinopathy winners).

A prediction is in class-index units (grade k at k); grade = the number of cut-points at or below it,
so the midpoints 0.5, 1.5, ... give plain rounding. The search starts at the midpoints and moves one
cut-point at a time to the candidate (quantiles of the predictions between its neighbours) with the
highest QWK, sweep after sweep until none improves: cut-points stay strictly increasing throughout.
"""

from __future__ import annotations

import numpy as np

from medals.errors import MedalsError
from medals.post.competition_metrics import qwk

CANDIDATES = 64  # quantiles tried per cut-point and sweep
MAX_SWEEPS = 20


def midpoints(num_grades: int) -> np.ndarray:
    """Cut-points of plain rounding: 0.5, 1.5, ..., K - 1.5."""
    return np.arange(num_grades - 1, dtype=np.float64) + 0.5


def expected_grade(probs: np.ndarray) -> np.ndarray:
    """sum_k k p_k of class probabilities [N, K]: a multiclass model's prediction in grade units."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs @ np.arange(probs.shape[1], dtype=np.float64)


def apply_cutpoints(pred: np.ndarray, cutpoints: np.ndarray) -> np.ndarray:
    """Integer grades 0..K-1 (K = len(cutpoints) + 1): how many cut-points lie at or below each value."""
    cuts = np.asarray(cutpoints, dtype=np.float64)
    if cuts.ndim != 1 or (np.diff(cuts) <= 0).any():
        raise MedalsError(f"cut-points must be strictly increasing numbers, got {cuts.tolist()}")
    return np.searchsorted(cuts, np.asarray(pred, dtype=np.float64).ravel(), side="right")


def fit_cutpoints(truth: np.ndarray, pred: np.ndarray, num_grades: int) -> np.ndarray:
    """Cut-points [K-1] maximising QWK of apply_cutpoints(pred) against integer grades ``truth``.

    Coordinate-wise search from the midpoints; a cut-point moves only on a strict improvement, so on
    data where rounding is already best the midpoints come back unchanged.
    """
    truth = np.asarray(truth).ravel().astype(np.int64)
    pred = np.asarray(pred, dtype=np.float64).ravel()
    if len(truth) != len(pred) or len(truth) == 0:
        raise MedalsError(f"{len(truth)} true grades and {len(pred)} predictions: cannot fit cut-points")
    if num_grades < 2:
        raise MedalsError(f"an ordinal target needs at least 2 grades, got {num_grades}")
    cuts = midpoints(num_grades)

    def score(candidate: np.ndarray) -> float:
        value = qwk(truth, apply_cutpoints(pred, candidate), num_grades)
        return -np.inf if np.isnan(value) else value

    best = score(cuts)
    for _ in range(MAX_SWEEPS):
        improved = False
        for i in range(len(cuts)):
            low = cuts[i - 1] if i > 0 else -np.inf
            high = cuts[i + 1] if i + 1 < len(cuts) else np.inf
            inside = pred[(pred > low) & (pred < high)]
            if not len(inside):
                continue
            for value in np.unique(np.quantile(inside, np.linspace(0, 1, CANDIDATES))):
                if not low < value < high or value == cuts[i]:
                    continue
                trial = cuts.copy()
                trial[i] = value
                trial_score = score(trial)
                if trial_score > best + 1e-12:
                    best, cuts, improved = trial_score, trial, True
        if not improved:
            break
    return cuts
