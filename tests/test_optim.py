from __future__ import annotations

import pytest
import torch
from torch import nn

from medals.config import TrainConfig
from medals.train.optim import build_optimizer, param_groups


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=True),
        nn.BatchNorm2d(4),
        nn.Flatten(),
        nn.LayerNorm(4 * 6 * 6),
        nn.Linear(144, 2),
    )


def _zero_grad_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """One step with all gradients zero: any change comes from weight decay alone."""
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    return before


def test_groups_split_weights_from_biases_and_norms():
    model = _net()
    model[0].bias.requires_grad_(False)  # frozen parameters are left out
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["0.weight", "4.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == [
        "1.bias",
        "1.weight",
        "3.bias",
        "3.weight",
        "4.bias",
    ]
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0


def test_adamw_decays_only_weights():
    model = _net()
    optimizer = build_optimizer(model, TrainConfig(optimizer="adamw", lr=0.1, weight_decay=0.5))
    assert isinstance(optimizer, torch.optim.AdamW)
    before = _zero_grad_step(model, optimizer)
    for name, p in model.named_parameters():
        if name in ("0.weight", "4.weight"):
            # Decoupled decay: w <- w * (1 - lr * wd), with no Adam update for a zero gradient.
            assert torch.allclose(p, before[name] * (1 - 0.1 * 0.5), atol=1e-7), name
        else:
            assert torch.equal(p, before[name]), name


def test_adam_adds_l2_to_weights_only():
    model = _net()
    optimizer = build_optimizer(model, TrainConfig(optimizer="adam", lr=0.01, weight_decay=0.1))
    assert type(optimizer) is torch.optim.Adam
    before = _zero_grad_step(model, optimizer)
    # L2 through the gradient: Adam's first step moves each decayed weight by ~lr towards zero.
    moved = (before["4.weight"] - model[4].weight).abs()
    assert torch.allclose(moved, torch.full_like(moved, 0.01), atol=1e-4)
    assert torch.equal(model[4].bias, before["4.bias"])
    assert torch.equal(model[1].weight, before["1.weight"])


def test_sgd_momentum_without_nesterov():
    model = _net()
    optimizer = build_optimizer(model, TrainConfig(optimizer="sgd", lr=0.1, momentum=0.8, weight_decay=0.5))
    assert isinstance(optimizer, torch.optim.SGD)
    assert all(g["momentum"] == 0.8 and g["nesterov"] is False for g in optimizer.param_groups)
    before = _zero_grad_step(model, optimizer)
    assert torch.allclose(model[0].weight, before["0.weight"] * (1 - 0.1 * 0.5))
    assert torch.equal(model[0].bias, before["0.bias"])


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_initial_lr_is_train_lr(name):
    optimizer = build_optimizer(_net(), TrainConfig(optimizer=name, lr=0.003))
    assert [g["lr"] for g in optimizer.param_groups] == [0.003, 0.003]
