"""One optimizer step: gradient scaling and clipping, the learning rate, and the kill hook for tests."""

from __future__ import annotations

import os
import signal

import torch

from medals.train.setup import Run


def optimizer_step(run: Run) -> None:
    clip = run.recipe.train.clip_grad
    if clip:
        run.scaler.unscale_(run.optimizer)  # clip the true gradients, not the fp16-scaled ones
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)


def maybe_kill(run: Run, global_step: int) -> None:
    if run.kill_at is not None and global_step == run.kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
