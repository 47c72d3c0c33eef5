"""train: one model per fold, each resumable from its last complete epoch."""

from __future__ import annotations

import shutil

from medals.config import Recipe
from medals.stages.common import fold_ids, positive_index, read_labels, say, train_rows_with_folds
from medals.stages.layout import RunLayout


def run_train(recipe: Recipe, layout: RunLayout, device) -> None:
    from medals.train.loop import train_fold

    rows = train_rows_with_folds(layout)
    labels = read_labels(layout)
    positive = positive_index(recipe, labels["classes"])
    for fold in fold_ids(recipe):
        say(f"train: fold {fold} ({(rows['fold'] != fold).sum()} train / {(rows['fold'] == fold).sum()} val)")
        result = train_fold(
            recipe,
            rows,
            fold,
            layout.fold_dir(fold),
            device=device,
            num_classes=labels["num_classes"],
            positive=positive,
        )
        if result:
            shown = ", ".join(
                f"{key} {value:.4g}" for key, value in result.items() if isinstance(value, float)
            )
            say(f"train: fold {fold} done: {shown}")


def check_train(recipe: Recipe, layout: RunLayout, device) -> None:
    """The first fold's training setup built and dropped (loop.check_training_setup)."""
    from medals.train.loop import check_training_setup

    labels = read_labels(layout)
    check_training_setup(
        recipe,
        train_rows_with_folds(layout),
        fold_ids(recipe)[0],
        device,
        num_classes=labels["num_classes"],
        positive=positive_index(recipe, labels["classes"]),
    )


def clear_train(recipe: Recipe, layout: RunLayout) -> None:
    """Remove fold folders trained under another config, so none of them is trusted."""
    for fold in range(recipe.split.n_folds):
        shutil.rmtree(layout.fold_dir(fold), ignore_errors=True)
