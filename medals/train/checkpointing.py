"""The fold's files: resuming from last.pt, checkpoint rules, SWA weights and log.csv."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from torch import nn

from medals.config import Recipe
from medals.errors import MedalsError
from medals.files import write_csv
from medals.infer.batches import batch_source
from medals.runtime import distributed, sharding
from medals.runtime.checkpoint import load_checkpoint, restore_training_state, save_checkpoint, unwrap
from medals.train.phases import before_restore
from medals.train.setup import Run, device_generator, epoch_seed, fold_loader
from medals.train.validation import validate

# Log columns about the run's speed, not its results: not printed, and no checkpoint rule can use them.
SPEED_COLUMNS = ("seconds", "images_per_s", "data_wait")

# Under DDP every rank computes the same log rows and checkpoints; rank 0 alone writes them.
save_checkpoint = distributed.on_main(save_checkpoint)
write_csv = distributed.on_main(write_csv)


def resume(run: Run) -> int:
    """Restore last.pt when present; returns the first epoch (0-based) still to run."""
    path = run.fold_dir / "last.pt"
    if not path.exists():
        return 0
    payload = load_checkpoint(path)
    check_hash(payload, run.config_hash, path)
    before_restore(run, int(payload["epoch"]))  # train.phases: the saved phase's optimizer
    restore_training_state(payload, run.model, run.optimizer, run.scaler)
    run.best = {name: dict(entry) for name, entry in payload.get("best", {}).items()}
    run.log = [dict(row) for row in payload.get("log", [])]
    write_log(run)
    return int(payload["epoch"])


def average_weights(run: Run) -> None:
    """swa.pt: the mean of the chosen epochs' weights with BatchNorm statistics recomputed, validated."""
    import copy

    from medals.train.averaging import average_checkpoints, recompute_batchnorm

    epochs = run.recipe.swa_epochs
    paths = [run.fold_dir / f"epoch{epoch}.pt" for epoch in epochs]
    averaged = copy.deepcopy(unwrap(run.model))
    averaged.load_state_dict(average_checkpoints(paths))
    averaged.to(run.device)
    seed = epoch_seed(run, run.recipe.train.epochs)
    dataset, prepare = bn_source(run)
    loader = fold_loader(run.recipe, dataset, shuffle=True, seed=seed)
    generator = device_generator(seed)
    batches = (prepare(batch, generator) for batch in loader)
    recompute_batchnorm(averaged, batches, run.device, run.runtime.channels_last)
    sharding.average_buffers(averaged)  # each rank measured its share of the batches
    model, run.model = run.model, averaged
    try:
        val_loss, metrics = validate(run)
    finally:
        run.model = model
    row = {"epoch": run.recipe.train.epochs, "val_loss": val_loss, **metrics}
    save_weights(run, run.fold_dir / "swa.pt", run.recipe.train.epochs, row, model=averaged)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch")
    if distributed.is_main():
        print(f"fold {run.fold} swa of epochs {epochs}: {shown}", flush=True)


def bn_source(run: Run):
    """(dataset, prepare) of the BatchNorm pass: the training fold as trained, or (train.swa.bn_data
    "plain") the same rows through the validation pipeline, without augmentation."""
    if run.recipe.train.swa.bn_data == "train":
        return run.train_set, run.prepare_train
    num_classes = run.info["num_classes"]
    return batch_source(run.recipe, run.runtime, run.train_rows, num_classes, False, run.device)


def drop_resume_files(fold_dir: Path, recipe: Recipe) -> None:
    """Delete last.pt and the epoch<k>.pt files once final.pt (and swa.pt) exist.

    Both are bound to the fold's config hash, so nothing can resume from them or re-average them after
    the fold is done; last.pt alone is about three models (weights plus optimizer moments). Kept, a
    five-fold run of a 1024-pixel segmentation recipe carries gigabytes of dead files (nnU-Net drops its
    latest checkpoint the same way when training ends).
    """
    if not distributed.is_main():
        return
    for path in [fold_dir / "last.pt", *(fold_dir / f"epoch{e}.pt" for e in recipe.swa_epochs)]:
        path.unlink(missing_ok=True)


def save_weights(run: Run, path: Path, epoch: int, row: dict, model: nn.Module | None = None) -> None:
    save_checkpoint(
        path,
        model if model is not None else run.model,
        None,
        None,
        epoch,
        {},
        config_hash=run.config_hash,
        metrics=row,
        info=run.info,
    )


def is_improvement(value: float, previous: float | None, mode: str) -> bool:
    """Strictly better than the best so far (ties keep the earlier epoch); NaN never is."""
    if math.isnan(value):
        return False
    if previous is None:
        return True
    return value > previous if mode == "max" else value < previous


def save_improved(run: Run, row: dict[str, float]) -> None:
    """Save <rule>.pt for each rule whose metric improved; a NaN value never counts as improved."""
    known = [k for k in row if k not in ("epoch", "lr", *SPEED_COLUMNS)]
    rules = []
    for i, rule in enumerate(run.recipe.train.checkpoints):
        metric = rule.metric or run.recipe.main_metric
        if metric not in known:
            raise MedalsError(
                f"train.checkpoints[{i}].metric '{metric}' is not computed for task "
                f"'{run.recipe.task}': choose one of {', '.join(known)}"
            )
        rules.append((rule, metric))
    for rule, metric in rules:
        value = float(row[metric])
        previous = run.best.get(rule.name)
        if not is_improvement(value, previous["value"] if previous else None, rule.mode):
            continue
        run.best[rule.name] = {"value": value, "epoch": int(row["epoch"]), "metric": metric}
        save_checkpoint(
            run.fold_dir / f"{rule.name}.pt",
            run.model,
            None,
            None,
            int(row["epoch"]),
            {rule.name: run.best[rule.name]},
            config_hash=run.config_hash,
            metrics=row,
            info=run.info,
        )


def write_log(run: Run) -> None:
    if run.log:
        write_csv(run.fold_dir / "log.csv", pd.DataFrame(run.log))


def check_hash(payload: dict, config_hash: str, path: Path) -> None:
    if payload.get("config_hash") != config_hash:
        raise MedalsError(
            f"{path} was trained with another recipe or other folds (model, loss, train, data or split "
            f"changed): delete {path.parent} to train this fold again"
        )
