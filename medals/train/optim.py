"""The optimizer named by train.optimizer, with weight decay on weight matrices and kernels only."""

from __future__ import annotations

import torch
from torch import nn

from medals.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed (weights of >= 2 dims) and not decayed (biases, norm scales and shifts).

    Decaying a BatchNorm/LayerNorm scale or a bias only pulls it towards zero without regularising
    anything, the usual practice (timm's param_groups_weight_decay) is to leave 1-d parameters alone.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim > 1 else no_decay).append(param)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """adam (L2 added to the gradient), adamw (decoupled decay) or sgd (momentum, no nesterov)."""
    groups = param_groups(model, train.weight_decay)
    if train.optimizer == "adam":
        return torch.optim.Adam(groups, lr=train.lr)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=train.lr)
    return torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum, nesterov=False)
