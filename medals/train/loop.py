"""Train one fold: epochs of optimisation and validation, checkpoints, a log, and resuming after a kill.

Files in fold_dir:
- log.csv: one row per completed epoch (epoch, lr, train_loss, val_loss, the task's metrics, seconds).
- <rule>.pt for each train.checkpoints rule: the weights of the epoch with the best value of its metric.
- last.pt: the full resume point after the latest completed epoch (weights, optimizer, scaler, RNG
  states, best values and the log rows); log.csv is rewritten from it on resume, so the two agree.
- final.pt: the weights after the last epoch; its presence means the fold is done.

Per epoch the order of writes is rule checkpoints, log.csv, last.pt: a kill at any point leaves last.pt
at the previous epoch, and that epoch is simply redone (the same way, since RNG states are restored).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from medals.config import Recipe, digest_train
from medals.data.prefetch import prefetched
from medals.errors import MedalsError
from medals.files import write_csv
from medals.train import distributed, parallel
from medals.train.checkpoint import (
    load_checkpoint,
    restore_training_state,
    save_checkpoint,
    unwrap,
)
from medals.train.optim import build_optimizer
from medals.train.runtime import Runtime, resolve_runtime
from medals.train.schedules import LrSchedule, build_schedule

# Under DDP every rank computes the same log rows and checkpoints; rank 0 alone writes them.
save_checkpoint = distributed.on_main(save_checkpoint)
write_csv = distributed.on_main(write_csv)

# Test hook, not a feature: with MEDALS_KILL_AT_STEP=N in the environment the process SIGKILLs itself
# right after global optimizer step N (1-based, counted from the fold's first epoch), so tests can check
# that a hard kill in mid-epoch resumes correctly.
KILL_ENV = "MEDALS_KILL_AT_STEP"
RESERVED_NAMES = ("last", "final", "swa")


@dataclass
class _Run:
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
    log: list[dict[str, float]] = field(default_factory=list)


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
    _check_rules(recipe)
    train_rows, val_rows = _split(table, fold)
    config_hash = training_hash(recipe, table, fold)
    final_path = fold_dir / "final.pt"
    if final_path.exists():
        payload = load_checkpoint(final_path)
        _check_hash(payload, config_hash, final_path)
        return dict(payload.get("metrics") or {})

    _seed_everything(recipe.seed + fold, recipe.train.deterministic)
    run = _build(recipe, train_rows, val_rows, fold, fold_dir, device, num_classes, positive, config_hash)
    start = _resume(run)
    for epoch in range(start, recipe.train.epochs):
        _run_epoch(run, epoch)
    distributed.barrier()  # rank 0's epoch<k>.pt are written before any rank averages them
    if recipe.train.swa is not None:
        _average_weights(run)
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
    distributed.barrier()  # later folds and stages read what rank 0 wrote
    return dict(run.log[-1])


# ---- setup ---------------------------------------------------------------------------------------


def training_hash(recipe: Recipe, table: pd.DataFrame, fold: int) -> str:
    """Digest of what a fold's checkpoints depend on: the recipe's training sections and the fold's rows."""
    dumped = recipe.model_dump(mode="json")
    train = digest_train(dumped["train"], "folds")
    # npy and png caches hold the same pixels, and the root may move with the data.
    data = {k: v for k, v in dumped["data"].items() if k not in ("root", "cache_format")}
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
    from medals.data.augment_cpu import recipe_augment, referenced_files_digest

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
    _check_rules(recipe)
    train_rows, val_rows = _split(table, fold)
    device = distributed.device_for_rank(device)
    # fold_dir and config_hash only matter once training writes; nothing is written here.
    _build(recipe, train_rows, val_rows, fold, Path(os.devnull), device, num_classes, positive, "")


def _check_hash(payload: dict, config_hash: str, path: Path) -> None:
    if payload.get("config_hash") != config_hash:
        raise MedalsError(
            f"{path} was trained with another recipe or other folds (model, loss, train, data or split "
            f"changed): delete {path.parent} to train this fold again"
        )


def _check_rules(recipe: Recipe) -> None:
    names = [rule.name for rule in recipe.train.checkpoints]
    for i, name in enumerate(names):
        reserved = name in RESERVED_NAMES or name.startswith("epoch")
        if reserved or not name or "/" in name or name != name.strip():
            raise MedalsError(
                f"train.checkpoints[{i}].name '{name}' is not allowed "
                f"(reserved: last, final, swa, epoch<k>; no '/')"
            )
        if names.count(name) > 1:
            raise MedalsError(f"train.checkpoints has the name '{name}' twice")


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


def _resolve_num_classes(recipe: Recipe, num_classes: int | None) -> int:
    if recipe.task == "segmentation":
        return 1
    if num_classes is not None:
        return int(num_classes)
    if recipe.data.num_classes is not None:
        return recipe.data.num_classes
    if recipe.data.classes:
        return len(recipe.data.classes)
    raise MedalsError("the number of classes is unknown: set data.num_classes or data.classes")


def _build(
    recipe: Recipe,
    train_rows: pd.DataFrame,
    val_rows: pd.DataFrame,
    fold: int,
    fold_dir: Path,
    device: torch.device,
    num_classes: int | None,
    positive: int | None,
    config_hash: str,
) -> _Run:
    from medals.data.dataset import meta_columns
    from medals.losses import build_loss
    from medals.models.factory import create_model

    cfg = recipe.train
    num_classes = _resolve_num_classes(recipe, num_classes)
    metas = list(meta_columns(train_rows))
    model = create_model(recipe, num_classes, n_meta=len(metas)).to(device)
    runtime = resolve_runtime(recipe, device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = parallel.wrap_model(model, recipe, device)
    train_set, prepare_train = batch_source(recipe, runtime, train_rows, num_classes, True, device)
    val_set, prepare_val = batch_source(recipe, runtime, val_rows, num_classes, False, device)
    # Building a loader starts no workers; it only tells how many batches an epoch has.
    batches = len(_loader(recipe, train_set, shuffle=True, seed=recipe.seed))
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
    return _Run(
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
        loss_fn=build_loss(recipe.loss, recipe.task),
        train_set=train_set,
        val_rows=val_rows,
        val_loader=_loader(recipe, val_set, shuffle=False, seed=recipe.seed + fold),
        schedule=build_schedule(cfg, steps_per_epoch),
        steps_per_epoch=steps_per_epoch,
        positive=positive,
        config_hash=config_hash,
        info=info,
        kill_at=int(kill_at) if kill_at else None,
    )


def batch_source(recipe: Recipe, runtime: Runtime, rows: pd.DataFrame, num_classes: int, train: bool, device):
    """(dataset, prepare): prepare(collated batch, generator) gives the batch on the device, augmented.

    CPU path: the dataset decodes and augments, prepare only moves tensors. GPU path: the dataset reads
    bytes, prepare decodes and augments on the device with the generator's random stream.
    """
    if runtime.data_path == "gpu":
        from medals.data.device_batches import recipe_device_data

        return recipe_device_data(recipe, rows, num_classes, train, device, runtime.channels_last)
    from medals.data.dataset import recipe_dataset

    dataset = recipe_dataset(recipe, rows, num_classes, train=train)

    def prepare(batch: dict, generator: torch.Generator | None = None) -> dict:
        return _to_device(batch, device, runtime.channels_last)

    return dataset, prepare


def _loader(recipe: Recipe, dataset, shuffle: bool, seed: int):
    from medals.data.dataset import make_loader

    cfg = recipe.train
    # Training drops the ragged last batch (a batch of 1 breaks BatchNorm) unless it is the only one.
    drop_last = shuffle and len(dataset) > cfg.batch_size
    collate = getattr(dataset, "collate_fn", None)
    loader = make_loader(dataset, cfg.batch_size, shuffle, cfg.num_workers, seed, drop_last, collate)
    # Under DDP: this rank's slice of every global batch, or its chunk of the validation rows.
    return parallel.shard_batches(loader) if shuffle else parallel.shard_rows(loader)


def _device_generator(run: _Run, seed: int) -> torch.Generator:
    """The GPU data path's augmentation stream, seeded like the loader, so a resumed epoch repeats.

    Under DDP each rank draws its own stream, so the shares of one global batch are not augmented alike.
    """
    generator = torch.Generator(device=run.device)
    generator.manual_seed(seed + 7_919 * distributed.rank())
    return generator


def _epoch_seed(run: _Run, epoch: int) -> int:
    # Shuffling and augmentation of each epoch depend on (seed, fold, epoch) only, so a resumed run
    # sees the same batches as one that never stopped.
    return (run.recipe.seed * 1_000_003 + run.fold * 10_007 + epoch) % 2**31


def _resume(run: _Run) -> int:
    """Restore last.pt when present; returns the first epoch (0-based) still to run."""
    path = run.fold_dir / "last.pt"
    if not path.exists():
        return 0
    payload = load_checkpoint(path)
    _check_hash(payload, run.config_hash, path)
    restore_training_state(payload, run.model, run.optimizer, run.scaler)
    run.best = {name: dict(entry) for name, entry in payload.get("best", {}).items()}
    run.log = [dict(row) for row in payload.get("log", [])]
    _write_log(run)
    return int(payload["epoch"])


# ---- one epoch ---------------------------------------------------------------------------------


def _run_epoch(run: _Run, epoch: int) -> None:
    started = time.perf_counter()
    lr, train_loss = _train_epoch(run, epoch)
    val_loss, metrics = _validate(run)
    row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "val_loss": val_loss, **metrics}
    row["seconds"] = round(time.perf_counter() - started, 3)
    run.log.append(row)
    _save_improved(run, row)
    if epoch + 1 in run.recipe.swa_epochs:
        # Written before last.pt, so a resumed run always finds the epochs it will average.
        _save_weights(run, run.fold_dir / f"epoch{epoch + 1}.pt", epoch + 1, row)
    _write_log(run)
    save_checkpoint(
        run.fold_dir / "last.pt",
        run.model,
        run.optimizer,
        run.scaler,
        epoch + 1,
        run.best,
        rng=True,
        config_hash=run.config_hash,
        log=run.log,
        info=run.info,
    )
    shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "seconds"))
    if distributed.is_main():
        print(
            f"fold {run.fold} epoch {epoch + 1}/{run.recipe.train.epochs}: {shown} ({row['seconds']:.0f} s)",
            flush=True,
        )


def _train_epoch(run: _Run, epoch: int) -> tuple[float, float]:
    """One pass over the training rows; returns (lr at the epoch's first step, mean training loss)."""
    from tqdm.auto import tqdm

    cfg = run.recipe.train
    # A fresh loader per epoch seeded by (seed, fold, epoch): make_loader seeds the shuffling and the
    # augmentation RNGs (in the main process and in each worker) from it.
    seed = _epoch_seed(run, epoch)
    loader = _loader(run.recipe, run.train_set, shuffle=True, seed=seed)
    generator = _device_generator(run, seed)
    n_batches, accumulate = len(loader), cfg.accumulate
    run.model.train()
    run.optimizer.zero_grad(set_to_none=True)
    first_lr = run.schedule.lr_at(epoch, 0)
    loss_sum = torch.zeros((), device=run.device)
    seen = 0
    bar = tqdm(
        prefetched(loader, run.prepare_train, generator, run.device),
        total=n_batches,
        desc=f"fold {run.fold} epoch {epoch + 1}/{cfg.epochs}",
        disable=not cfg.progress or not distributed.is_main(),
        leave=False,
        dynamic_ncols=True,
    )
    for i, batch in enumerate(bar):
        step = i // accumulate
        if i % accumulate == 0:
            _set_lr(run.optimizer, run.schedule.lr_at(epoch, step))
        # The last window of an epoch may be short: average over the batches it really has.
        window = min(accumulate, n_batches - step * accumulate)
        boundary = (i + 1) % accumulate == 0 or i + 1 == n_batches
        # Under DDP the gradients are all-reduced once per window, at its last micro-batch.
        with parallel.no_sync(run.model, not boundary):
            with run.runtime.autocast(run.device):
                logits = run.train_forward(batch["image"], batch.get("meta"))
                loss = run.loss_fn(logits, batch)
            run.scaler.scale(loss / window).backward()
        size = batch["image"].shape[0]
        loss_sum += loss.detach().float() * size
        seen += size
        if boundary:
            _optimizer_step(run)
            _maybe_kill(run, epoch * run.steps_per_epoch + step + 1)
        if cfg.progress and (i % 10 == 0 or i + 1 == n_batches):
            bar.set_postfix(_postfix(run, loss_sum.item() / max(seen, 1)), refresh=False)
    bar.close()
    train_loss = parallel.global_mean(loss_sum, seen)  # over every rank's rows
    if not math.isfinite(train_loss):
        raise MedalsError(
            f"fold {run.fold} epoch {epoch + 1}: the training loss is {train_loss}, training diverged "
            f"(lower train.lr or set train.clip_grad)"
        )
    return first_lr, train_loss


def _optimizer_step(run: _Run) -> None:
    clip = run.recipe.train.clip_grad
    if clip:
        run.scaler.unscale_(run.optimizer)  # clip the true gradients, not the fp16-scaled ones
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)


def _maybe_kill(run: _Run, global_step: int) -> None:
    if run.kill_at is not None and global_step == run.kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _postfix(run: _Run, loss: float) -> dict[str, str]:
    out = {"loss": f"{loss:.4f}"}
    if run.log:
        metric = run.recipe.main_metric
        value = run.log[-1].get(metric)
        if value is not None:
            out[f"val_{metric}"] = f"{value:.4f}"
    return out


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    out = {}
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor):
            out[key] = value
        elif key == "image" and channels_last:
            out[key] = value.to(device, non_blocking=True, memory_format=torch.channels_last)
        else:
            out[key] = value.to(device, non_blocking=True)
    return out


# ---- validation ----------------------------------------------------------------------------------


@torch.no_grad()
def _validate(run: _Run) -> tuple[float, dict[str, float]]:
    """Validation loss and the task's metrics at tta 1.

    One pass gives both: the loss needs logits, which medals.infer.predict does not return; the
    probabilities come from predict's own activation, so they match what evaluate computes at tta 1.
    """
    from medals.infer.predict import activation
    from medals.losses import split_outputs
    from medals.scoring import score

    task = run.recipe.task
    # Under DDP: the plain module with rank 0's buffers, so ranks with different numbers of validation
    # batches make no collective calls in forward.
    model = parallel.evaluation_model(run.model)
    model.eval()
    loss_sum, seen = torch.zeros((), device=run.device), 0
    term_sums: dict[str, torch.Tensor] = {}
    truths, probs, cls_probs = [], [], []
    for batch in prefetched(run.val_loader, run.prepare_val, None, run.device):
        with run.runtime.autocast(run.device):
            outputs = model(batch["image"], batch.get("meta"))
            loss = run.loss_fn(outputs, batch)
        size = batch["image"].shape[0]
        loss_sum += loss.detach().float() * size
        seen += size
        for name, value in run.loss_fn.parts.items():
            term_sums[name] = term_sums.get(name, 0.0) + value.float() * size
        logits, cls_logits = split_outputs(outputs)
        prob = activation(logits, task)
        if cls_logits is not None and task == "segmentation":
            cls_probs.append(torch.sigmoid(cls_logits.float()).reshape(-1).cpu().numpy())
        if task == "multiclass":
            probs.append(prob.cpu().numpy())
            truths.append(batch["target"].cpu().numpy().astype(np.int64))
        elif task == "multilabel":
            probs.append(prob.cpu().numpy())
            truths.append(batch["target"].cpu().numpy().astype(np.uint8))
        else:
            # float16 keeps a large segmentation fold's probabilities in memory at half the cost.
            probs.append(prob[:, 0].to(torch.float16).cpu().numpy())
            truths.append(batch["mask"][:, 0].cpu().numpy() > 0.5)
    # Each rank validated its own chunk of rows: every rank gets all of them, in row order.
    term_totals = {name: float(total) for name, total in term_sums.items()}
    truth, prob, cls_prob, loss_total, seen, term_totals = parallel.gather_validation(
        truths, probs, cls_probs, loss_sum.item(), seen, term_totals
    )
    metrics = score(run.recipe, run.val_rows, truth, prob, run.positive, cls_prob)
    if len(term_sums) > 1:
        # Each term's validation value (val_focal, ...): a checkpoint rule may pick one (HPA1 kept the
        # epoch of the lowest validation focal loss, not of the whole sum).
        metrics.update({f"val_{name}": total / max(seen, 1) for name, total in term_totals.items()})
    return loss_total / max(seen, 1), {key: float(value) for key, value in metrics.items()}


# ---- weight averaging ----------------------------------------------------------------------------


def _average_weights(run: _Run) -> None:
    """swa.pt: the mean of the chosen epochs' weights with BatchNorm statistics recomputed, validated."""
    import copy

    from medals.train.averaging import average_checkpoints, recompute_batchnorm

    epochs = run.recipe.swa_epochs
    paths = [run.fold_dir / f"epoch{epoch}.pt" for epoch in epochs]
    averaged = copy.deepcopy(unwrap(run.model))
    averaged.load_state_dict(average_checkpoints(paths))
    averaged.to(run.device)
    seed = _epoch_seed(run, run.recipe.train.epochs)
    loader = _loader(run.recipe, run.train_set, shuffle=True, seed=seed)
    generator = _device_generator(run, seed)
    batches = (run.prepare_train(batch, generator) for batch in loader)
    recompute_batchnorm(averaged, batches, run.device, run.runtime.channels_last)
    parallel.average_buffers(averaged)  # each rank measured its share of the batches
    model, run.model = run.model, averaged
    try:
        val_loss, metrics = _validate(run)
    finally:
        run.model = model
    row = {"epoch": run.recipe.train.epochs, "val_loss": val_loss, **metrics}
    _save_weights(run, run.fold_dir / "swa.pt", run.recipe.train.epochs, row, model=averaged)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch")
    if distributed.is_main():
        print(f"fold {run.fold} swa of epochs {epochs}: {shown}", flush=True)


def _save_weights(run: _Run, path: Path, epoch: int, row: dict, model: nn.Module | None = None) -> None:
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


# ---- checkpoints and log -----------------------------------------------------------------------------


def is_improvement(value: float, previous: float | None, mode: str) -> bool:
    """Strictly better than the best so far (ties keep the earlier epoch); NaN never is."""
    if math.isnan(value):
        return False
    if previous is None:
        return True
    return value > previous if mode == "max" else value < previous


def _save_improved(run: _Run, row: dict[str, float]) -> None:
    """Save <rule>.pt for each rule whose metric improved; a NaN value never counts as improved."""
    known = [k for k in row if k not in ("epoch", "lr", "seconds")]
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


def _write_log(run: _Run) -> None:
    if run.log:
        write_csv(run.fold_dir / "log.csv", pd.DataFrame(run.log))
