"""evaluate: out-of-fold predictions with TTA, metrics per fold and pooled -> oof.parquet, metrics.json.

Under torchrun every rank predicts its share of the rows and computes the same metrics; rank 0 writes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.data.dataset import meta_columns
from medals.data.splits import HOLDOUT
from medals.files import write_json, write_npy, write_parquet
from medals.infer.rows import predict_rows
from medals.post.groups import group_rows
from medals.post.metrics import score, score_pooled
from medals.runtime.distributed import is_main
from medals.stages.common import (
    fold_ids,
    load_fold_model,
    positive_index,
    prob_frame,
    read_labels,
    say,
    train_rows_with_folds,
)
from medals.stages.layout import RunLayout
from medals.stages.truth import class_truth, mask_truth


def run_evaluate(recipe: Recipe, layout: RunLayout, device) -> dict:
    rows = train_rows_with_folds(layout)
    labels = read_labels(layout)
    num_classes = labels["num_classes"]
    positive = positive_index(recipe, labels["classes"])
    n_meta = len(meta_columns(rows))
    holdout = rows[rows["fold"] == HOLDOUT].reset_index(drop=True)
    with_holdout = len(holdout) > 0 and recipe.task != "segmentation"
    frames, masks, truths, vals, per_fold, holdout_probs = [], [], [], [], {}, []
    # With TTA, the identity view alone is scored too (report: the TTA gain); it costs no forward pass.
    with_plain = recipe.infer.tta > 1 and recipe.infer.crop_seeds == 0
    plains = []
    for fold in fold_ids(recipe):
        val = rows[rows["fold"] == fold].reset_index(drop=True)
        # Each fold's model is loaded once: its OOF rows and, if any, the hold-out rows none saw.
        model = load_fold_model(recipe, layout, fold, num_classes, n_meta, device)
        probs, cls_probs, *plain = predict_rows(
            recipe, model, val, num_classes, device, with_target=True, identity=with_plain
        )
        plains += plain
        if with_holdout:
            holdout_probs.append(
                predict_rows(recipe, model, holdout, num_classes, device, with_target=True)[0]
            )
        truth = _truth(recipe, val, num_classes)
        truths.append(truth)
        vals.append(val)
        # With data.prediction_id the metrics are on the submission's rows, each image group combined.
        per_fold[fold] = score(recipe, *group_rows(recipe, val, truth, probs), positive, cls_probs)
        say(f"evaluate: fold {fold}: {_fmt(per_fold[fold])}")
        frame = _oof_frame(recipe, val, probs, num_classes)
        frame.insert(1, "fold", fold)
        if cls_probs is not None:
            frame["p_cls"] = cls_probs
        frames.append(frame)
        if recipe.task == "segmentation":
            masks.append(probs.astype(np.float16))
    oof = pd.concat(frames, ignore_index=True)
    pooled = _pooled_metrics(
        recipe, pd.concat(vals, ignore_index=True), np.concatenate(truths), oof, masks, num_classes, positive
    )
    say(f"evaluate: pooled OOF ({len(oof)} images, tta {recipe.infer.tta}): {_fmt(pooled)}")
    plain_pooled = None
    if with_plain:
        plain_pooled = _plain_pooled(recipe, vals, truths, oof, plains, num_classes, positive)
        say(f"evaluate: pooled OOF without TTA (identity view): {_fmt(plain_pooled)}")
    if is_main():
        write_parquet(layout.oof, oof)
        if masks:
            write_npy(layout.oof_masks, np.concatenate(masks))
    report = {"folds": {str(k): v for k, v in per_fold.items()}, "pooled": pooled}
    if plain_pooled is not None:
        report["pooled_no_tta"] = plain_pooled
    if with_holdout:
        report["holdout"] = _score_holdout(recipe, layout, holdout, holdout_probs, num_classes, positive)
    if is_main():
        write_json(layout.metrics, report)
    return report


def _score_holdout(recipe, layout, rows, outputs, num_classes, positive) -> dict:
    """Mean over the folds' models on rows none of them saw: holdout.parquet and its metrics."""
    probs = np.mean(outputs, axis=0)
    if is_main():
        write_parquet(layout.holdout, prob_frame(rows["id"], probs, num_classes))
    metrics = score(recipe, *group_rows(recipe, rows, _truth(recipe, rows, num_classes), probs), positive)
    say(f"evaluate: hold-out ({len(rows)} images, mean of {len(outputs)} folds): {_fmt(metrics)}")
    return metrics


def _truth(recipe: Recipe, rows: pd.DataFrame, num_classes: int) -> np.ndarray:
    if recipe.task == "segmentation":
        return mask_truth(recipe, rows, num_classes)
    return class_truth(recipe, rows, num_classes)


def _oof_frame(recipe: Recipe, rows: pd.DataFrame, probs: np.ndarray, num_classes: int) -> pd.DataFrame:
    if recipe.task != "segmentation":
        return prob_frame(rows["id"], probs, num_classes)
    frame = pd.DataFrame({"id": rows["id"].astype(str), "p_max": probs.reshape(len(probs), -1).max(axis=1)})
    if probs.ndim == 4:  # C mask classes: each class's highest pixel probability too
        for k in range(probs.shape[1]):
            frame[f"p_max_{k}"] = probs[:, k].reshape(len(probs), -1).max(axis=1)
    return frame


def _pooled_metrics(recipe, rows, truth, oof, masks, num_classes, positive) -> dict:
    """Metrics over all folds' OOF rows; rows, truth, oof and masks are in the same (fold) order."""
    if recipe.task == "segmentation":
        probs = np.concatenate(masks).astype(np.float32)
    else:
        probs = oof[[f"p_{k}" for k in range(num_classes)]].to_numpy()
    cls_probs = oof["p_cls"].to_numpy() if "p_cls" in oof else None
    rows, truth, probs = group_rows(recipe, rows.assign(fold=oof["fold"].to_numpy()), truth, probs)
    return score_pooled(recipe, rows, truth, probs, rows["fold"].to_numpy(), positive, cls_probs)


def _plain_pooled(recipe, vals, truths, oof, plains, num_classes, positive) -> dict:
    """Pooled OOF metrics of the identity view's predictions (same rows and order as the TTA ones)."""
    plain = oof.copy()
    masks = []
    if recipe.task == "segmentation":
        masks = [p.astype(np.float16) for p in plains]
    else:
        plain[[f"p_{k}" for k in range(num_classes)]] = np.concatenate(plains)
    rows = pd.concat(vals, ignore_index=True)
    return _pooled_metrics(recipe, rows, np.concatenate(truths), plain, masks, num_classes, positive)


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in metrics.items())
