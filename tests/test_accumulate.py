"""train.accumulate: k accumulated batches of b rows make the optimizer step that one batch of k*b rows
makes (plain SGD, a loss that is a mean over rows, a model without BatchNorm), through the real
training epoch (medals.train.epoch.train_epoch)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medals.config import Recipe
from medals.train.epoch import train_epoch
from medals.train.optim import build_optimizer
from medals.train.setup import build_run
from tests.test_loop import COLOURS, _base_table, _write_images

pytestmark = pytest.mark.usefixtures("one_thread")

LR = 0.5
# 40 float32 ulps of 1.0: the weights here are below 1 in size, each a sum of a few hundred rounded terms
TOL = 40 * torch.finfo(torch.float32).eps


class Tiny(nn.Module):
    """conv -> ReLU -> global mean -> linear: no BatchNorm, no dropout, so batches do not interact."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, image: torch.Tensor, meta: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(F.relu(self.conv(image)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("images")
    frame = _base_table(_write_images(root, 16, lambda i: COLOURS[i % 3]))
    frame["label"] = np.arange(16, dtype=np.int64) % 3
    return frame


def _trained(table: pd.DataFrame, tmp_path, batch_size: int, accumulate: int, rows: int = 8):
    """(Tiny after one epoch of train_epoch, the number of optimizer steps, the run)."""
    recipe = Recipe.model_validate(
        {
            "name": "acc",
            "task": "multiclass",
            "seed": 0,
            "data": {"classes": ["red", "green", "blue"]},
            "model": {"backbone": "test_resnet"},
            "train": {
                "epochs": 1,
                "batch_size": batch_size,
                "accumulate": accumulate,
                "image_size": 32,
                "optimizer": "sgd",
                "momentum": 0.0,
                "lr": LR,
                "schedule": {"name": "constant"},
                "precision": "fp32",
                "augment": [],
                "progress": False,
            },
        }
    )
    train_rows = table[table["fold"] != 0].reset_index(drop=True).iloc[:rows]
    val_rows = table[table["fold"] == 0].reset_index(drop=True)
    run = build_run(recipe, train_rows, val_rows, 0, tmp_path, torch.device("cpu"), 3, None, "h")
    torch.manual_seed(0)
    model = Tiny()
    run.model = run.train_forward = model
    run.optimizer = build_optimizer(model, recipe.train)
    steps = []
    original = run.optimizer.step
    run.optimizer.step = lambda *a, **k: steps.append(1) or original(*a, **k)
    train_epoch(run, 0)
    return model, len(steps), run


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_accumulated_batches_step_as_one_large_batch(table, tmp_path):
    # 8 rows: 4 batches of 2 accumulated in pairs = 2 steps, as 2 batches of 4 (same row order: the
    # epoch's permutation does not depend on the batch size)
    small, small_steps, _ = _trained(table, tmp_path / "a", batch_size=2, accumulate=2)
    large, large_steps, _ = _trained(table, tmp_path / "b", batch_size=4, accumulate=1)
    assert small_steps == large_steps == 2
    # the same sums in float32 in another order: equal to a few ulps (see TOL)
    assert (_flat(small) - _flat(large)).abs().max() < TOL
    # without accumulation, 4 steps of batch 2 land elsewhere: the comparison can tell them apart
    plain, plain_steps, _ = _trained(table, tmp_path / "c", batch_size=2, accumulate=1)
    assert plain_steps == 4
    assert (_flat(plain) - _flat(large)).abs().max() > 1e-3


def test_one_accumulated_step_is_sgd_on_the_mean_loss_of_all_its_rows(table, tmp_path):
    # 4 rows, batch 2, accumulate 2: one optimizer step; by hand, w - lr * grad(mean CE over the 4 rows)
    trained, steps, run = _trained(table, tmp_path / "d", batch_size=2, accumulate=2, rows=4)
    assert steps == 1
    torch.manual_seed(0)
    start = Tiny()
    items = [run.train_set[i] for i in range(4)]
    images = torch.stack([item["image"] for item in items])
    targets = torch.stack([item["target"] for item in items])
    loss = F.cross_entropy(start(images), targets)
    grads = torch.autograd.grad(loss, list(start.parameters()))
    expected = torch.cat(
        [(p.detach() - LR * g).flatten() for p, g in zip(start.parameters(), grads, strict=True)]
    )
    # float32: the accumulated gradient sums a batch's pixels in another order than the full batch does;
    # the weights (|w| < 1) then agree to a few float32 ulps of 1 (1.2e-7 each), not bit for bit
    assert (_flat(trained) - expected).abs().max() < TOL
    assert (_flat(trained) - _flat(start)).abs().max() > 1e-3  # the step moved the weights
