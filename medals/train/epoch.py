"""One epoch: the training pass with gradient accumulation, then validation, checkpoints and the log."""

from __future__ import annotations

import math
import time

import torch

from medals.data.prefetch import prefetched
from medals.errors import MedalsError
from medals.runtime import distributed, sharding
from medals.train.checkpointing import SPEED_COLUMNS, save_checkpoint, save_improved, save_weights, write_log
from medals.train.phases import enter_epoch
from medals.train.setup import Run, device_generator, epoch_seed, fold_loader
from medals.train.step import maybe_kill, optimizer_step, set_lr
from medals.train.validation import validate


def run_epoch(run: Run, epoch: int) -> None:
    started = time.perf_counter()
    enter_epoch(run, epoch)  # train.phases: a new phase freezes and gets its optimizer here
    lr, train_loss, images_per_s, data_wait = train_epoch(run, epoch)
    val_loss, metrics = validate(run)
    row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "val_loss": val_loss, **metrics}
    row["seconds"] = round(time.perf_counter() - started, 3)
    row["images_per_s"] = round(images_per_s, 1)  # training images per second (all ranks)
    # The share of the training pass the loop spent waiting for its next batch (host time; on CUDA the
    # GPU may still be busy with the previous step meanwhile, so this bounds the GPU's idle share).
    row["data_wait"] = round(data_wait, 4)
    run.log.append(row)
    save_improved(run, row)
    if epoch + 1 in run.recipe.swa_epochs:
        # Written before last.pt, so a resumed run always finds the epochs it will average.
        save_weights(run, run.fold_dir / f"epoch{epoch + 1}.pt", epoch + 1, row)
    write_log(run)
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
    if run.tensorboard is not None:
        for key, value in row.items():
            if key != "epoch":
                run.tensorboard.add_scalar(key, value, epoch + 1)
        run.tensorboard.flush()
    shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", *SPEED_COLUMNS))
    if distributed.is_main():
        print(
            f"fold {run.fold} epoch {epoch + 1}/{run.recipe.train.epochs}: {shown} ({row['seconds']:.0f} s)",
            flush=True,
        )


def train_epoch(run: Run, epoch: int) -> tuple[float, float, float, float]:
    """One pass over the training rows: (lr at the epoch's first step, mean training loss, images/s, the
    fraction of the pass spent waiting for data)."""
    from tqdm.auto import tqdm

    cfg = run.recipe.train
    # A fresh loader per epoch seeded by (seed, fold, epoch): make_loader seeds the shuffling and the
    # augmentation RNGs (in the main process and in each worker) from it.
    seed = epoch_seed(run, epoch)
    loader = fold_loader(run.recipe, run.train_set, shuffle=True, seed=seed, weights=run.sample_weights)
    generator = device_generator(seed)
    n_batches, accumulate = len(loader), cfg.accumulate
    run.model.train()
    run.optimizer.zero_grad(set_to_none=True)
    first_lr = run.schedule.lr_at(epoch, 0)
    loss_sum = torch.zeros((), device=run.device)
    seen = 0
    started = time.perf_counter()
    world = distributed.world_size()
    waits: dict[str, float] = {"wait_s": 0.0}
    bar = tqdm(
        prefetched(loader, run.prepare_train, generator, run.device, stats=waits),
        total=n_batches,
        desc=f"fold {run.fold} epoch {epoch + 1}/{cfg.epochs}",
        disable=not cfg.progress or not distributed.is_main(),
        leave=False,
        dynamic_ncols=True,
    )
    for i, batch in enumerate(bar):
        step = i // accumulate
        if i % accumulate == 0:
            set_lr(run.optimizer, run.schedule.lr_at(epoch, step))
        # The last window of an epoch may be short: average over the batches it really has.
        window = min(accumulate, n_batches - step * accumulate)
        boundary = (i + 1) % accumulate == 0 or i + 1 == n_batches
        # Under DDP the gradients are all-reduced once per window, at its last micro-batch.
        with sharding.no_sync(run.model, not boundary):
            with run.runtime.autocast(run.device):
                logits = run.train_forward(batch["image"], batch.get("meta"))
                loss = run.loss_fn(logits, batch)
            run.scaler.scale(loss / window).backward()
        size = batch["image"].shape[0]
        loss_sum += loss.detach().float() * size
        seen += size
        if boundary:
            optimizer_step(run)
            maybe_kill(run, epoch * run.steps_per_epoch + step + 1)
        if cfg.progress and (i % 10 == 0 or i + 1 == n_batches):
            rate = seen * world / max(time.perf_counter() - started, 1e-9)
            lr = run.optimizer.param_groups[0]["lr"]
            bar.set_postfix(_postfix(run, loss_sum.item() / max(seen, 1), lr, rate), refresh=False)
    bar.close()
    elapsed = max(time.perf_counter() - started, 1e-9)
    images_per_s = seen * world / elapsed
    data_wait = min(waits["wait_s"] / elapsed, 1.0)
    train_loss = sharding.global_mean(loss_sum, seen)  # over every rank's rows
    if not math.isfinite(train_loss):
        raise MedalsError(
            f"fold {run.fold} epoch {epoch + 1}: the training loss is {train_loss}, training diverged "
            f"(lower train.lr or set train.clip_grad)"
        )
    return first_lr, train_loss, images_per_s, data_wait


def _postfix(run: Run, loss: float, lr: float, rate: float) -> dict[str, str]:
    out = {"loss": f"{loss:.4f}", "lr": f"{lr:.3g}", "img/s": f"{rate:.0f}"}
    if run.log:
        metric = run.recipe.main_metric
        value = run.log[-1].get(metric)
        if value is not None:
            out[f"val_{metric}"] = f"{value:.4f}"
    return out
