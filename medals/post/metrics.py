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

import cv2
import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from medals.config import Recipe
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


def class_pairs(masks: np.ndarray) -> np.ndarray:
    """[N, C, H, W] masks of C classes -> [N * C, H, W], one mask per (image, class) pair (image-major)."""
    masks = np.asarray(masks)
    return masks.reshape(-1, *masks.shape[2:]) if masks.ndim == 4 else masks


def dice_per_class(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[N, C] Dice of every (image, class) pair of [N, C, H, W] stacks; their mean is Severstal's metric."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.ndim != 4:
        raise MedalsError(f"masks of several classes must be [N, C, H, W], got shape {pred.shape}")
    return dice_per_image(class_pairs(pred), class_pairs(truth)).reshape(pred.shape[:2])


def downsample(images: np.ndarray, size: int = 128) -> np.ndarray:
    """Bilinear resize of a stack [N, H, W] to float32 [N, size, size] (half-pixel centres, no antialias).

    cv2.resize (INTER_LINEAR) one image at a time rather than one batched torch interpolate: both
    sample the same points as torch's align_corners=False (agreeing to ~1e-7 at 1024 -> 128, ~1e-5 at
    non-integer factors), but only one image at a time is converted to float32, so memory-mapped float16
    stacks of thousands of 1024x1024 masks never get a full float32 copy, and this module stays
    free of torch.
    """
    images = np.asarray(images)  # a memory map stays a view, not a copy
    if images.ndim != 3:
        raise MedalsError(f"images to downsample must be an [N, H, W] stack, got shape {images.shape}")
    if int(size) != size or size < 1:
        raise MedalsError(f"downsample size must be a positive integer, got {size}")
    size = int(size)
    out = np.empty((len(images), size, size), dtype=np.float32)
    for i in range(len(images)):
        image = np.asarray(images[i], dtype=np.float32)
        # dsize is (width, height); a same-size resize returns the image unchanged.
        out[i] = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return out


def _small_truth(truth: np.ndarray, size: int | None) -> np.ndarray:
    """Truth masks at ``size``: bilinear on 0/1 floats, then on where strictly above 0.5."""
    if size is None:
        return np.asarray(truth).astype(bool)
    return downsample(truth, size) > 0.5


def _check_pair(probs: np.ndarray, truth: np.ndarray) -> None:
    if np.shape(probs) != np.shape(truth):
        raise MedalsError(
            f"mask probabilities {np.shape(probs)} and true masks {np.shape(truth)} differ in shape"
        )


def dice_at_size(probs: np.ndarray, truth: np.ndarray, size: int = 128, threshold: float = 0.5) -> float:
    """Mean per-image Dice after downsampling probabilities and truth [N, H, W] to ``size`` (PTX's metric).

    Pixels are on where the downsampled probability is above ``threshold`` and the downsampled truth
    above 0.5; both empty = 1, exactly one empty = 0 (dice_per_image).
    """
    _check_pair(probs, truth)
    return mean_dice(downsample(probs, size) > threshold, _small_truth(truth, size))


def _best_threshold(scores: dict[float, float]) -> float:
    """The threshold with the highest score; ties go to the one nearest 0.5 (as search_thresholds)."""
    best = max(scores.values())
    tied = [t for t, value in scores.items() if value >= best - 1e-12]
    return min(tied, key=lambda t: abs(t - 0.5))


def _grid(thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    grid = np.asarray(thresholds, dtype=np.float64).ravel()
    if len(grid) == 0:
        raise MedalsError("the threshold grid is empty")
    return grid


def sweep_pixel_threshold(
    probs: np.ndarray,
    truth: np.ndarray,
    thresholds: Sequence[float] | np.ndarray,
    size: int | None = 128,
) -> tuple[float, dict[float, float]]:
    """Mean Dice at each pixel threshold: (best threshold, {threshold: dice}).

    Both stacks are downsampled to ``size`` once (None keeps the full size), then every threshold is
    scored on the small stacks, so the sweep costs one resize, not one per threshold.
    """
    _check_pair(probs, truth)
    grid = _grid(thresholds)
    small = np.asarray(probs, dtype=np.float32) if size is None else downsample(probs, size)
    small_truth = _small_truth(truth, size)
    scores = {float(t): mean_dice(small > t, small_truth) for t in grid}
    return _best_threshold(scores), scores


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
    grid = _grid(thresholds)
    curve = f1_curves(truth_binary[:, None], probs[:, None], grid)[0]
    scores = {float(t): float(value) for t, value in zip(grid, curve, strict=True)}
    return _best_threshold(scores), scores


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
        return {"f1_macro": f1_macro(truth, probs, thresholds), "f1_macro_05": f1_macro(truth, probs, 0.5)}
    if task == "segmentation" and probs.ndim == 4:  # C mask classes: mean over (image, class) pairs
        per = dice_per_class(probs > 0.5, truth)
        return {
            "dice": float(per.mean()),
            **{f"dice_c{k}": float(per[:, k].mean()) for k in range(per.shape[1])},
        }
    if task == "segmentation":
        return {"dice": mean_dice(probs > 0.5, truth)}
    raise MedalsError(f"unknown task '{task}': use binary, multiclass, multilabel or segmentation")


_COARSE_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


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
        out["dice"] = dice_at_size(class_pairs(probs), class_pairs(truth), recipe.metrics.dice_size)
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
    if recipe.metrics.rank and recipe.task != "segmentation":
        ranked = np.empty_like(probs, dtype=np.float64)
        for fold in np.unique(folds):
            inside = folds == fold
            ranked[inside] = np.apply_along_axis(percentile_rank, 0, probs[inside])
        on_ranks = score(recipe, rows, truth, ranked, positive)
        out.update({f"{key}_rank": value for key, value in on_ranks.items() if key.startswith("auc")})
    return out
