"""A recipe's metrics over validation rows: the task's metrics, on named subsets, and on ranks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.errors import MedalsError
from medals.metrics import percentile_rank, task_metrics


def subset_mask(rows: pd.DataFrame, name: str, query: str) -> np.ndarray:
    try:
        mask = rows.eval(query)
    except Exception as exc:  # pandas raises NameError, SyntaxError, ValueError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedalsError(f"metrics.subsets.{name} '{query}' cannot be evaluated: {reason}") from None
    return np.asarray(mask, dtype=bool)


def score(recipe: Recipe, rows: pd.DataFrame, truth, probs, positive: int | None) -> dict[str, float]:
    """Task metrics, then the same on each metrics.subsets entry with its name as suffix (auc_20)."""
    out = task_metrics(recipe.task, truth, probs, positive=positive)
    for name, query in recipe.metrics.subsets.items():
        mask = subset_mask(rows, name, query)
        if mask.any():
            sub = task_metrics(recipe.task, truth[mask], probs[mask], positive=positive)
        else:
            sub = dict.fromkeys(out, float("nan"))
        out.update({f"{key}_{name}": value for key, value in sub.items()})
    return {key: float(value) for key, value in out.items()}


def score_pooled(
    recipe: Recipe, rows: pd.DataFrame, truth, probs, folds: np.ndarray, positive: int | None
) -> dict[str, float]:
    """Pooled OOF metrics; with metrics.rank also AUCs of per-fold percentile ranks (auc_rank, ...).

    Ranking within each fold removes the folds' calibration differences, which is how the melanoma
    solution reported its pooled CV.
    """
    out = score(recipe, rows, truth, probs, positive)
    if recipe.metrics.rank and recipe.task != "segmentation":
        ranked = np.empty_like(probs, dtype=np.float64)
        for fold in np.unique(folds):
            inside = folds == fold
            ranked[inside] = np.apply_along_axis(percentile_rank, 0, probs[inside])
        on_ranks = score(recipe, rows, truth, ranked, positive)
        out.update({f"{key}_rank": value for key, value in on_ranks.items() if key.startswith("auc")})
    return out
