"""A fold's training run, built once: model, optimizer, data, loaders and the seeds of each epoch."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from medals.config import Recipe
from medals.errors import MedalsError
from medals.infer.batches import batch_source
from medals.runtime import distributed, sharding
from medals.runtime.settings import Runtime, resolve_runtime
from medals.train.optim import build_optimizer
from medals.train.schedules import LrSchedule, build_schedule

# Test hook, not a feature: with MEDALS_KILL_AT_STEP=N in the environment the process SIGKILLs itself
# right after global optimizer step N (1-based, counted from the fold's first epoch), so tests can check
# that a hard kill in mid-epoch resumes correctly.
KILL_ENV = "MEDALS_KILL_AT_STEP"


@dataclass
class Run:
    """Everything one fold's training needs, built once."""

    recipe: Recipe
    fold: int
    fold_dir: Path
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    runtime: Runtime
    # The model's training forward: torch.compile'd when runtime.compile, else the model itself.
    train_forward: Any
    # (collated loader batch, torch.Generator or None) -> batch on the device, ready for the model.
    prepare_train: Any
    prepare_val: Any
    loss_fn: Any
    train_set: Any
    val_rows: pd.DataFrame
    val_loader: Any
    schedule: LrSchedule
    steps_per_epoch: int
    positive: int | None
    config_hash: str
    info: dict[str, Any]
    kill_at: int | None
    best: dict[str, dict[str, float]] = field(default_factory=dict)
    tensorboard: Any = None  # a SummaryWriter on rank 0 with train.tensorboard, else None
    log: list[dict[str, float]] = field(default_factory=list)
    # train.sampler's weight of each training row (medals.data.sampling), None: a plain shuffle.
    sample_weights: Any = None
    phase: int | None = None  # index of the train.phases entry the optimizer was built for
    train_rows: pd.DataFrame | None = None  # the fold's training rows (train.swa.bn_data "plain")


def _resolve_num_classes(recipe: Recipe, num_classes: int | None) -> int:
    if recipe.task == "segmentation":
        return 1 if num_classes is None else int(num_classes)  # mask classes (labels.json)
    if num_classes is not None:
        return int(num_classes)
    if recipe.data.num_classes is not None:
        return recipe.data.num_classes
    if recipe.data.classes:
        return len(recipe.data.classes)
    raise MedalsError("the number of classes is unknown: set data.num_classes or data.classes")


def build_run(
    recipe: Recipe,
    train_rows: pd.DataFrame,
    val_rows: pd.DataFrame,
    fold: int,
    fold_dir: Path,
    device: torch.device,
    num_classes: int | None,
    positive: int | None,
    config_hash: str,
) -> Run:
    from medals.data.dataset import meta_columns
    from medals.data.sampling import sampling_weights
    from medals.models.factory import create_model
    from medals.train.losses import build_loss

    cfg = recipe.train
    if cfg.tensorboard:
        tensorboard_class()  # missing tensorboard is an error before the model is built
    num_classes = _resolve_num_classes(recipe, num_classes)
    metas = list(meta_columns(train_rows))
    model = create_model(recipe, num_classes, n_meta=len(metas))
    target_std = set_target_scale(recipe, model, train_rows)
    model = model.to(device)
    runtime = resolve_runtime(recipe, device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = sharding.wrap_model(model, recipe, device)
    train_set, prepare_train = batch_source(recipe, runtime, train_rows, num_classes, True, device)
    val_set, prepare_val = batch_source(recipe, runtime, val_rows, num_classes, False, device)
    weights = sampling_weights(train_rows, recipe.task, num_classes, cfg.sampler)
    # Building a loader starts no workers; it only tells how many batches an epoch has.
    batches = len(fold_loader(recipe, train_set, shuffle=True, seed=recipe.seed, weights=weights))
    steps_per_epoch = math.ceil(batches / cfg.accumulate)
    info = {
        "task": recipe.task,
        "fold": fold,
        "num_classes": num_classes,
        "n_meta": len(metas),
        "meta_columns": metas,
        "in_chans": recipe.model.in_chans,
        "image_size": cfg.image_size,
    }
    kill_at = os.environ.get(KILL_ENV)
    return Run(
        recipe=recipe,
        fold=fold,
        fold_dir=fold_dir,
        device=device,
        model=model,
        optimizer=build_optimizer(model, cfg),
        scaler=torch.amp.GradScaler(device.type, enabled=runtime.use_scaler),
        runtime=runtime,
        # Only the training forward is compiled: its batches all have one shape (drop_last), while
        # validation's ragged last batch would cost a recompile for a pass that is short anyway.
        train_forward=torch.compile(model) if runtime.compile else model,
        prepare_train=prepare_train,
        prepare_val=prepare_val,
        loss_fn=build_loss(recipe.loss, recipe.task, target_std=target_std),
        train_set=train_set,
        val_rows=val_rows,
        val_loader=fold_loader(recipe, val_set, shuffle=False, seed=recipe.seed + fold),
        schedule=build_schedule(cfg, steps_per_epoch),
        steps_per_epoch=steps_per_epoch,
        positive=positive,
        config_hash=config_hash,
        info=info,
        kill_at=int(kill_at) if kill_at else None,
        sample_weights=weights,
        train_rows=train_rows,
    )


def set_target_scale(recipe: Recipe, model: nn.Module, train_rows: pd.DataFrame) -> float:
    """Regression and ordinal: standardise by the fold's training targets (mean, std kept in the model's
    buffers, so its outputs are in the target's units); returns the std the losses divide errors by
    (1.0 for the other tasks)."""
    if recipe.task not in ("regression", "ordinal"):
        return 1.0
    values = train_rows["target"].to_numpy(dtype=float)
    mean, std = float(values.mean()), float(values.std())
    std = std if std > 0 else 1.0  # one value only: nothing to scale
    model.set_target_scale(mean, std)
    return std


def fold_loader(recipe: Recipe, dataset, shuffle: bool, seed: int, weights=None):
    """The fold's loader; ``weights`` (train.sampler's row weights) draw the epoch's rows by weight."""
    from medals.data.dataset import make_loader
    from medals.data.sampling import EpochSampler

    cfg = recipe.train
    sampler = None
    if shuffle and weights is not None and cfg.sampler is not None:
        sampler = EpochSampler(weights, cfg.sampler.mode, seed, cfg.sampler.num_samples)
    rows = len(sampler) if sampler is not None else len(dataset)
    # Training drops the ragged last batch (a batch of 1 breaks BatchNorm) unless it is the only one.
    drop_last = shuffle and rows > cfg.batch_size
    collate = getattr(dataset, "collate_fn", None)
    loader = make_loader(
        dataset, cfg.batch_size, shuffle, cfg.num_workers, seed, drop_last, collate, sampler=sampler
    )
    # Under DDP: this rank's slice of every global batch, or its chunk of the validation rows.
    return sharding.shard_batches(loader) if shuffle else sharding.shard_rows(loader)


def device_generator(seed: int) -> torch.Generator:
    """The GPU data path's augmentation stream, seeded like the loader, so a resumed epoch repeats.

    Under DDP each rank draws its own stream, so the shares of one global batch are not augmented alike;
    the offset per rank is the CPU path's (sharding.rank_seed), so both paths seed ranks by one rule.
    """
    # On the host: the ops draw their parameters and choices there and copy them to the device, so the
    # augmentation step never waits for the device to read a value back.
    generator = torch.Generator()
    generator.manual_seed(sharding.rank_seed(seed, distributed.rank()))
    return generator


def epoch_seed(run: Run, epoch: int) -> int:
    # Shuffling and augmentation of each epoch depend on (seed, fold, epoch) only, so a resumed run
    # sees the same batches as one that never stopped.
    return (run.recipe.seed * 1_000_003 + run.fold * 10_007 + epoch) % 2**31


def tensorboard_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MedalsError(
            "train.tensorboard needs the tensorboard package: pip install tensorboard"
        ) from None
    return SummaryWriter


def open_tensorboard(run: Run) -> None:
    """With train.tensorboard, rank 0 writes each epoch's log row to <fold dir>/tensorboard."""
    if run.recipe.train.tensorboard and distributed.is_main():
        run.tensorboard = tensorboard_class()(log_dir=str(run.fold_dir / "tensorboard"))
