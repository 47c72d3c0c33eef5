"""Stochastic weight averaging: the equal mean of chosen epochs' weights, then fresh BatchNorm statistics.

Averaged weights do not match the running statistics any single epoch collected, so BatchNorm means
and variances are recomputed with one pass over the training fold in train mode, without gradients:
with its training augmentation (train.swa.bn_data "train"), or without it ("plain", HPA3's swa.py).
Each batch counts by its number of images (HPA3's bn_update: momentum b / (n + b)), so the statistics
are the cumulative average over images, whatever the batch sizes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from medals.errors import MedalsError
from medals.runtime.checkpoint import load_checkpoint


def average_checkpoints(paths: Iterable[str | Path]) -> dict[str, torch.Tensor]:
    """Equal average of the weights in ``paths``; integer buffers (BN batch counters) come from the last."""
    paths = list(paths)
    if not paths:
        raise MedalsError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    for path in paths:
        state = load_checkpoint(path)["model"]
        for key, value in state.items():
            if not value.is_floating_point():
                total[key] = value.clone()
            elif key in total:
                total[key] += value.double()
            else:
                total[key] = value.double()
    return {
        key: (value / len(paths)).to(torch.float32) if value.is_floating_point() else value
        for key, value in total.items()
    }


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, loader, device: torch.device, channels_last: bool = False) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them over ``loader``; returns images seen.

    Before a batch of b images, after n images, each layer's momentum is b / (n + b): its running mean
    and variance end as the average of the batches' statistics weighted by their image counts.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = {}
    for norm in norms:
        norm.reset_running_stats()
        momenta[norm] = norm.momentum
    was_training = model.training
    model.train()
    seen = 0
    for batch in loader:
        layout = torch.channels_last if channels_last else torch.contiguous_format
        image = batch["image"].to(device, memory_format=layout)
        size = image.shape[0]
        for norm in norms:
            norm.momentum = size / (seen + size)
        meta = batch.get("meta")
        model(image, meta.to(device) if meta is not None else None)
        seen += size
    for norm, momentum in momenta.items():
        norm.momentum = momentum
    model.train(was_training)
    return seen
