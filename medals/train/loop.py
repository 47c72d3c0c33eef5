"""Train one fold: epochs of optimisation and validation, checkpoints, a log, and resuming after a kill.

Files in fold_dir:
- log.csv: one row per completed epoch (epoch, lr, train_loss, val_loss, the task's metrics, seconds).
- <rule>.pt for each train.checkpoints rule: the weights of the epoch with the best value of its metric.
- last.pt: the full resume point after the latest completed epoch (weights, optimizer, scaler, RNG
  states, best values and the log rows); log.csv is rewritten from it on resume, so the two agree.
- final.pt: the weights after the last epoch; its presence means the fold is done.
- epoch<k>.pt for the train.swa epochs, and swa.pt: their average (BatchNorm recomputed).

Once final.pt is written, last.pt and epoch<k>.pt are deleted: the fold keeps log.csv, final.pt, the
rule checkpoints and swa.pt.

Per epoch the order of writes is rule checkpoints, log.csv, last.pt: a kill at any point leaves last.pt
at the previous epoch, and that epoch is simply redone (the same way, since RNG states are restored).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medals.config import Recipe, digest_train
from medals.config.data import digest_data
from medals.errors import MedalsError
from medals.runtime import distributed
from medals.runtime.checkpoint import load_checkpoint
from medals.train.checkpointing import (
    average_weights,
    check_hash,
    drop_resume_files,
    resume,
    save_checkpoint,
)
from medals.train.epoch import run_epoch
from medals.train.setup import build_run, open_tensorboard


def train_fold(
    recipe: Recipe,
    table: pd.DataFrame,
    fold: int,
    fold_dir: str | Path,
    device: str | torch.device = "cpu",
    *,
    num_classes: int | None = None,
    positive: int | None = None,
) -> dict[str, float]:
    """Train on rows with fold != ``fold``, validate on fold == ``fold``; return the last epoch's log row.

    num_classes defaults to data.num_classes or len(data.classes) (1 for segmentation); positive is the
    class index whose AUC the multiclass metric reports (submit.target_class). A fold whose final.pt
    exists is not trained again: its stored metrics are returned.
    """
    fold_dir = Path(fold_dir)
    device = distributed.device_for_rank(device)
    train_rows, val_rows = _split(table, fold)
    config_hash = training_hash(recipe, table, fold)
    final_path = fold_dir / "final.pt"
    if final_path.exists():
        payload = load_checkpoint(final_path)
        check_hash(payload, config_hash, final_path)
        drop_resume_files(fold_dir, recipe)  # left behind when a run was killed just after final.pt
        return dict(payload.get("metrics") or {})

    _seed_everything(recipe.seed + fold, recipe.train.deterministic)
    run = build_run(recipe, train_rows, val_rows, fold, fold_dir, device, num_classes, positive, config_hash)
    open_tensorboard(run)
    start = resume(run)
    for epoch in range(start, recipe.train.epochs):
        run_epoch(run, epoch)
    if run.tensorboard is not None:
        run.tensorboard.close()
    distributed.barrier()  # rank 0's epoch<k>.pt are written before any rank averages them
    if recipe.train.swa is not None:
        average_weights(run)
    save_checkpoint(
        final_path,
        run.model,
        None,
        None,
        recipe.train.epochs,
        run.best,
        config_hash=config_hash,
        metrics=run.log[-1],
        info=run.info,
    )
    drop_resume_files(fold_dir, recipe)  # after final.pt: a kill before this line leaves a finished fold
    distributed.barrier()  # later folds and stages read what rank 0 wrote
    return dict(run.log[-1])


# ---- the fold's identity and its checks ---------------------------------------------------------------------------------------


def training_hash(recipe: Recipe, table: pd.DataFrame, fold: int) -> str:
    """Digest of what a fold's checkpoints depend on: the recipe's training sections and the fold's rows."""
    dumped = recipe.model_dump(mode="json")
    train = digest_train(dumped["train"], "folds")
    # npy and png caches hold the same pixels, and the root may move with the data.
    data = {k: v for k, v in digest_data(dumped["data"]).items() if k not in ("root", "cache_format")}
    rows = sorted(f"{i}:{f}" for i, f in zip(table["id"].astype(str), table["fold"].astype(int), strict=True))
    payload = {
        "task": recipe.task,
        "seed": recipe.seed,
        "data": data,
        "model": dumped["model"],
        "loss": dumped["loss"],
        "train": train,
        "metrics": dumped["metrics"],
        "augment_files": augment_files_digest(recipe),
        "fold": int(fold),
        "rows": hashlib.sha256("\n".join(rows).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def augment_files_digest(recipe: Recipe) -> str:
    from medals.augment.cpu import recipe_augment, referenced_files_digest

    return referenced_files_digest(recipe_augment(recipe))


def check_training_setup(
    recipe: Recipe,
    table: pd.DataFrame,
    fold: int,
    device,
    *,
    num_classes: int | None = None,
    positive: int | None = None,
) -> None:
    """Build what train_fold builds before its first step (model, runtime and data path, datasets and
    their transforms, loaders, optimizer, schedule, loss) for one fold, and drop it: a recipe that cannot
    train stops here with its sentence, before a stale train stage clears the folds it would replace."""
    train_rows, val_rows = _split(table, fold)
    device = distributed.device_for_rank(device)
    # fold_dir and config_hash only matter once training writes; nothing is written here.
    build_run(recipe, train_rows, val_rows, fold, Path(os.devnull), device, num_classes, positive, "")


def _split(table: pd.DataFrame, fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    if "fold" not in table.columns:
        raise MedalsError("the training table has no 'fold' column: run `medals split` first")
    from medals.data.splits import HOLDOUT

    # Hold-out rows (fold -2) are never trained on; train-only rows (fold -1) are in every fold.
    train_rows = table[(table["fold"] != fold) & (table["fold"] != HOLDOUT)].reset_index(drop=True)
    val_rows = table[table["fold"] == fold].reset_index(drop=True)
    if val_rows.empty or train_rows.empty:
        folds = sorted(table["fold"].unique().tolist())
        raise MedalsError(
            f"fold {fold} leaves no training or no validation rows (folds in the table: {folds})"
        )
    return train_rows, val_rows


def _seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this before its first use to be deterministic; harmless when already set.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an op without a deterministic kernel warns instead of stopping a long run.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
