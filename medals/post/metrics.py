"""Competition metrics on numpy arrays: AUC, accuracy, macro F1 with threshold search, Dice
(also at a reduced size, as SIIM-ACR pneumothorax scores it), threshold sweeps.

One convention throughout: a probability is a positive decision when it is strictly above the
threshold (``p > t``), the same rule medals.post.decisions applies when writing a submission.

`score` and `score_pooled` apply a recipe's metrics to validation rows: the task's metrics, on the
named subsets (metrics.subsets), and on ranks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from medals.config import Recipe
from medals.config.metric_names import METRIC_NAMES, default_metrics
from medals.errors import MedalsError
from medals.post.dice import (  # noqa: F401 - the Dice functions are scored and imported from here too
    best_threshold,
    class_pairs,
    dice_at_size,
    dice_per_class,
    dice_per_image,
    downsample,
    mean_dice,
    sweep_pixel_threshold,
    threshold_grid,
)
from medals.post.metric_registry import MetricContext, compute, numeric_metrics

DEFAULT_GRID = np.round(np.arange(0.05, 0.96, 0.01), 2)

# The keys task_metrics returns for each task (a recipe's checkpoint rules are checked against them).
TASK_METRICS = {
    "binary": ("auc", "accuracy"),
    "multiclass": ("auc", "accuracy"),
    "multilabel": ("f1_macro", "f1_macro_05", "auc_macro"),
    "segmentation": ("dice",),
}
# What cls_metrics adds for a segmentation model's image-level head.
CLS_METRICS = ("cls_auc", "cls_f1", "cls_threshold")


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


def auc_macro(truth_multi_hot: np.ndarray, probs: np.ndarray) -> float:
    """Mean column-wise ROC AUC (RANZCR CLiP's score): the AUC of each column of a multi-hot truth [N, K]
    against its probabilities, averaged over the columns whose truth holds both values."""
    truth = np.asarray(truth_multi_hot).astype(bool)
    probs = np.asarray(probs, dtype=np.float64)
    if truth.shape != probs.shape or truth.ndim != 2:
        raise MedalsError(
            f"auc_macro needs truth and probabilities of one shape [N, K], got {truth.shape}, {probs.shape}"
        )
    scores = [roc_auc(truth[:, k], probs[:, k]) for k in range(truth.shape[1])]
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


def sweep_f1(
    truth_binary: np.ndarray, probs: np.ndarray, thresholds: Sequence[float] | np.ndarray
) -> tuple[float, dict[float, float]]:
    """Binary F1 (positive where prob > t) at each threshold: (best threshold, {threshold: f1}).

    For the image-level gate that decides whether a predicted mask is kept at all.
    """
    truth_binary = np.asarray(truth_binary).astype(bool).ravel()
    probs = np.asarray(probs, dtype=np.float64).ravel()
    if len(truth_binary) != len(probs):
        raise MedalsError(f"{len(truth_binary)} true labels but {len(probs)} probabilities")
    grid = threshold_grid(thresholds)
    curve = f1_curves(truth_binary[:, None], probs[:, None], grid)[0]
    scores = {float(t): float(value) for t, value in zip(grid, curve, strict=True)}
    return best_threshold(scores), scores


def percentile_rank(x: np.ndarray) -> np.ndarray:
    """Average ranks over the count, r / n in (0, 1] (ties share their mean rank): pandas'
    ``rank(pct=True)``, which the melanoma solution ranked its folds and its ensemble members with."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    return rankdata(x) / x.size


def task_metrics(
    task: str,
    truth: np.ndarray,
    probs: np.ndarray,
    positive: int | None = None,
    context: MetricContext | None = None,
) -> dict[str, float]:
    """The metrics a task reports; the keys are what checkpoint rules and main_metric name."""
    truth = np.asarray(truth)
    probs = np.asarray(probs)
    if len(truth) != len(probs):
        raise MedalsError(f"{len(truth)} true values but {len(probs)} predictions")
    if task in ("regression", "ordinal"):
        return numeric_metrics(task, truth, probs, context or MetricContext(positive=positive))
    if task == "binary":
        p = probs.reshape(len(probs), -1)[:, -1]  # the one sigmoid: P(second class)
        return {"auc": roc_auc(truth == 1, p), "accuracy": float(np.mean((p > 0.5) == (truth == 1)))}
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
        return {
            "f1_macro": f1_macro(truth, probs, thresholds),
            "f1_macro_05": f1_macro(truth, probs, 0.5),
            "auc_macro": auc_macro(truth, probs),
        }
    if task == "segmentation" and probs.ndim == 4:  # C mask classes: mean over (image, class) pairs
        per = dice_per_class(probs > 0.5, truth)
        return {
            "dice": float(per.mean()),
            **{f"dice_c{k}": float(per[:, k].mean()) for k in range(per.shape[1])},
        }
    if task == "segmentation":
        return {"dice": mean_dice(probs > 0.5, truth)}
    raise MedalsError(
        f"unknown task '{task}': use binary, multiclass, multilabel, segmentation, regression or ordinal"
    )


_COARSE_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def subset_mask(rows: pd.DataFrame, name: str, query: str) -> np.ndarray:
    try:
        mask = rows.eval(query)
    except Exception as exc:  # pandas raises NameError, SyntaxError, ValueError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedalsError(f"metrics.subsets.{name} '{query}' cannot be evaluated: {reason}") from None
    return np.asarray(mask, dtype=bool)


def metric_context(recipe: Recipe, positive: int | None) -> MetricContext:
    """What the recipe's metrics need beside truth and predictions (medals.post.metric_registry)."""
    classes = [str(c) for c in recipe.data.classes] if recipe.data.classes else None
    weights = None
    if recipe.metrics.logloss_weights and recipe.task == "multilabel":
        names = classes or [str(i) for i in range(recipe.data.num_classes or 0)]
        unknown = sorted(set(recipe.metrics.logloss_weights) - set(names))
        if unknown:
            raise MedalsError(f"metrics.logloss_weights names '{unknown[0]}', which is not a class ({names})")
        weights = np.array([recipe.metrics.logloss_weights.get(name, 1.0) for name in names])
    return MetricContext(
        positive=positive,
        pauc_min_tpr=recipe.metrics.pauc_min_tpr,
        logloss_weights=weights,
        num_grades=len(classes) if classes and recipe.task == "ordinal" else None,
    )


def _metrics(recipe: Recipe, truth, probs, positive: int | None) -> dict[str, float]:
    context = metric_context(recipe, positive)
    out = task_metrics(recipe.task, truth, probs, positive=positive, context=context)
    if recipe.task == "segmentation" and recipe.metrics.dice_size:
        out["dice"] = dice_at_size(class_pairs(probs), class_pairs(truth), recipe.metrics.dice_size)
    # Asked for: metrics.extra, the main metric, and any registry metric a checkpoint rule names.
    rules = [rule.metric for rule in recipe.train.checkpoints if rule.metric in METRIC_NAMES]
    asked = [*recipe.metrics.extra, recipe.main_metric, *rules]
    wanted = [name for name in asked if name not in out and name not in default_metrics(recipe.task)]
    out.update(compute(wanted, recipe.task, truth, probs, context))
    names = recipe.data.classes
    if names and np.ndim(probs) == 4 and len(names) == np.shape(probs)[1]:
        # per-class Dice under the classes' names (dice_large_bowel), else their index (dice_c0)
        out = {_class_key(key, names): value for key, value in out.items()}
    return out


def _class_key(key: str, names: Sequence[str]) -> str:
    if not key.startswith("dice_c") or not key[6:].isdigit():
        return key
    return "dice_" + re.sub(r"[^0-9A-Za-z]+", "_", str(names[int(key[6:])]))


def cls_metrics(rows: pd.DataFrame, cls_probs: np.ndarray) -> dict[str, float]:
    """AUC and best-threshold F1 of a segmentation model's image-level head against 'mask not empty'."""
    truth = rows["has_mask"].to_numpy(dtype=np.int64)
    if len(np.unique(truth)) < 2:
        return {}  # e.g. a model validated on positive images only: nothing to separate
    best, f1 = sweep_f1(truth, cls_probs, _COARSE_GRID)
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
        best, dice = sweep_pixel_threshold(
            class_pairs(probs), class_pairs(truth), _COARSE_GRID, size=recipe.metrics.dice_size
        )
        out.update({"dice_best": dice[best], "pixel_threshold_best": best})
    if recipe.submit_kind == "ordinal":
        out.update(fitted_qwk(recipe, truth, probs))
    if recipe.metrics.rank and recipe.task != "segmentation":
        out.update(rank_metrics(recipe, rows, truth, probs, folds, positive))
    return out


def fold_ranks(probs: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each column's percentile_rank within each fold's rows."""
    probs = np.asarray(probs, dtype=np.float64)
    folds = np.asarray(folds)
    ranked = np.empty_like(probs)
    for fold in np.unique(folds):
        inside = folds == fold
        ranked[inside] = np.apply_along_axis(percentile_rank, 0, probs[inside])
    return ranked


def rank_metrics(
    recipe: Recipe, rows: pd.DataFrame, truth, probs, folds: np.ndarray, positive: int | None
) -> dict[str, float]:
    """AUCs on per-fold ranks: auc_rank over all rows, auc_<subset>_rank for each metrics.subsets entry.

    A subset is ranked within its own rows of each fold (the melanoma solution's auc_20_rank ranks the
    2020 rows of a fold among themselves), not cut out of the whole fold's ranks.
    """
    truth, probs, folds = np.asarray(truth), np.asarray(probs), np.asarray(folds)
    whole = _metrics(recipe, truth, fold_ranks(probs, folds), positive)
    out = {f"{key}_rank": value for key, value in whole.items() if key.startswith("auc")}
    for name, query in recipe.metrics.subsets.items():
        mask = subset_mask(rows, name, query)
        if mask.any():
            sub = _metrics(recipe, truth[mask], fold_ranks(probs[mask], folds[mask]), positive)
        else:
            sub = dict.fromkeys(whole, float("nan"))
        out.update({f"{key}_{name}_rank": float(v) for key, v in sub.items() if key.startswith("auc")})
    return out


def fitted_qwk(recipe: Recipe, truth, probs) -> dict[str, float]:
    """QWK of the pooled OOF predictions cut at cut-points fitted on those same rows (what submit does
    with submit.cutpoints 'oof'): an optimistic CV, reported beside the rounded qwk as qwk_oof_cuts."""
    from medals.post.ordinal import apply_cutpoints, expected_grade, fit_cutpoints

    if recipe.task == "ordinal":
        k = len(recipe.data.classes) if recipe.data.classes else int(np.max(truth)) + 1
        pred = np.asarray(probs, dtype=np.float64).reshape(len(probs), -1)[:, 0]
    else:  # a multiclass model submitted as grades: its expected grade
        k, pred = np.asarray(probs).shape[1], expected_grade(probs)
    grades = apply_cutpoints(pred, fit_cutpoints(truth, pred, k))
    return {
        "qwk_oof_cuts": compute(["qwk"], "ordinal", truth, grades[:, None], MetricContext(num_grades=k))[
            "qwk"
        ]
    }
