"""A recipe's metrics over validation rows: the task's metrics, on named subsets, and on ranks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.errors import MedalsError
from medals.metrics import (
    dice_at_size,
    percentile_rank,
    roc_auc,
    sweep_f1,
    sweep_pixel_threshold,
    task_metrics,
)

_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def subset_mask(rows: pd.DataFrame, name: str, query: str) -> np.ndarray:
    try:
        mask = rows.eval(query)
    except Exception as exc:  # pandas raises NameError, SyntaxError, ValueError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedalsError(f"metrics.subsets.{name} '{query}' cannot be evaluated: {reason}") from None
    return np.asarray(mask, dtype=bool)


def _metrics(recipe: Recipe, truth, probs, positive: int | None) -> dict[str, float]:
    out = task_metrics(recipe.task, truth, probs, positive=positive)
    if recipe.task == "segmentation" and recipe.metrics.dice_size:
        out["dice"] = dice_at_size(probs, truth, recipe.metrics.dice_size)
    return out


def cls_metrics(rows: pd.DataFrame, cls_probs: np.ndarray) -> dict[str, float]:
    """AUC and best-threshold F1 of a segmentation model's image-level head against 'mask not empty'."""
    truth = rows["has_mask"].to_numpy(dtype=np.int64)
    if len(np.unique(truth)) < 2:
        return {}  # e.g. a model validated on positive images only: nothing to separate
    best, f1 = sweep_f1(truth, cls_probs, _GRID)
    return {"cls_auc": roc_auc(truth, cls_probs), "cls_f1": f1[best], "cls_threshold": best}


def score(
    recipe: Recipe, rows: pd.DataFrame, truth, probs, positive: int | None, cls_probs=None
) -> dict[str, float]:
    """Task metrics, then the same on each metrics.subsets entry with its name as suffix (auc_20);
    with a classification head's probabilities, also cls_auc, cls_f1 and cls_threshold."""
    out = _metrics(recipe, truth, probs, positive)
    for name, query in recipe.metrics.subsets.items():
        mask = subset_mask(rows, name, query)
        if mask.any():
            sub = _metrics(recipe, truth[mask], probs[mask], positive)
        else:
            sub = dict.fromkeys(out, float("nan"))
        out.update({f"{key}_{name}": value for key, value in sub.items()})
    if cls_probs is not None:
        out.update(cls_metrics(rows, cls_probs))
    return {key: float(value) for key, value in out.items()}


def score_pooled(
    recipe: Recipe,
    rows: pd.DataFrame,
    truth,
    probs,
    folds: np.ndarray,
    positive: int | None,
    cls_probs=None,
) -> dict[str, float]:
    """Pooled OOF metrics; with metrics.rank also AUCs of per-fold percentile ranks (auc_rank, ...).

    Ranking within each fold removes the folds' calibration differences, which is how the melanoma
    solution reported its pooled CV.
    """
    out = score(recipe, rows, truth, probs, positive, cls_probs)
    if recipe.task == "segmentation" and recipe.metrics.dice_size:
        best, dice = sweep_pixel_threshold(probs, truth, _GRID, size=recipe.metrics.dice_size)
        out.update({"dice_best": dice[best], "pixel_threshold_best": best})
    if recipe.metrics.rank and recipe.task != "segmentation":
        ranked = np.empty_like(probs, dtype=np.float64)
        for fold in np.unique(folds):
            inside = folds == fold
            ranked[inside] = np.apply_along_axis(percentile_rank, 0, probs[inside])
        on_ranks = score(recipe, rows, truth, ranked, positive)
        out.update({f"{key}_rank": value for key, value in on_ranks.items() if key.startswith("auc")})
    return out
