"""Weight averaging: the equal mean of checkpoints, BatchNorm statistics recomputed, swa.pt in training."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch
from torch import nn

from medals.runtime.checkpoint import load_checkpoint, save_checkpoint
from medals.train import loop
from medals.train.averaging import average_checkpoints, recompute_batchnorm


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, image, meta=None):
        return self.bn(self.conv(image))


def test_average_is_the_equal_mean(tmp_path):
    paths = []
    for value in (1.0, 2.0, 6.0):
        model = Tiny()
        for p in model.parameters():
            p.data.fill_(value)
        model.bn.num_batches_tracked.fill_(int(value))
        paths.append(save_checkpoint(tmp_path / f"e{value}.pt", model, None, None, 1))
    state = average_checkpoints(paths)
    assert torch.allclose(state["conv.weight"], torch.full_like(state["conv.weight"], 3.0))
    assert state["bn.num_batches_tracked"].item() == 6  # counters are not averaged


def test_batchnorm_statistics_are_recomputed_over_the_loader():
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():
        model.conv.weight.fill_(1.0)
        model.conv.bias.zero_()
    model.bn.running_mean.fill_(123.0)
    model.eval()
    images = [torch.randn(4, 1, 3, 3) * 2 + 5 for _ in range(3)]
    seen = recompute_batchnorm(model, [{"image": x} for x in images], torch.device("cpu"))
    everything = torch.cat(images)
    assert seen == 12
    # Equal-weight average of the per-batch means == the mean over all images (equal batch sizes).
    assert torch.allclose(model.bn.running_mean, everything.mean().repeat(2), atol=1e-5)
    assert model.bn.momentum == 0.1 and not model.training


@pytest.mark.slow
def test_training_writes_swa_checkpoint(tmp_path, monkeypatch):
    import cv2
    import numpy as np

    from medals.config import recipe_from_dict
    from medals.train.loop import train_fold

    rows = []
    for i in range(24):
        label = i % 2
        image = np.full((16, 16, 3), 200 if label else 40, np.uint8)
        path = tmp_path / f"im{i}.png"
        cv2.imwrite(str(path), image)
        rows.append(
            {
                "id": f"im{i}",
                "split": "train",
                "path": str(path),
                "height": 16,
                "width": 16,
                "label": label,
                "fold": i % 2,
            }
        )
    table = pd.DataFrame(rows)
    recipe = recipe_from_dict(
        {
            "name": "swa",
            "task": "multiclass",
            "data": {"classes": ["a", "b"], "label_column": "y"},
            "model": {"backbone": "resnet10t"},
            "train": {
                "epochs": 3,
                "batch_size": 8,
                "image_size": 16,
                "progress": False,
                "augment": [],
                "swa": {"last": 2},
            },
        },
        "test",
    )
    fold = tmp_path / "fold0"
    kept = tmp_path / "kept"
    drop = loop.drop_resume_files

    def copy_then_drop(
        fold_dir, recipe
    ):  # the epoch files are deleted once final.pt exists: keep copies to compare
        kept.mkdir()
        for path in fold_dir.glob("epoch*.pt"):
            shutil.copy(path, kept / path.name)
        drop(fold_dir, recipe)

    monkeypatch.setattr(loop, "drop_resume_files", copy_then_drop)
    train_fold(recipe, table, 0, fold, num_classes=2)
    assert sorted(p.name for p in kept.iterdir()) == ["epoch2.pt", "epoch3.pt"]
    assert not (fold / "last.pt").exists() and not list(fold.glob("epoch*.pt"))
    assert (fold / "final.pt").exists()
    swa = load_checkpoint(fold / "swa.pt")
    averaged = average_checkpoints([kept / "epoch2.pt", kept / "epoch3.pt"])
    for key, value in averaged.items():
        if value.is_floating_point() and "running_" not in key:
            assert torch.allclose(swa["model"][key], value), key
    running = next(k for k in averaged if k.endswith("running_mean"))
    assert not torch.allclose(swa["model"][running], averaged[running])  # recomputed, not averaged
    assert "auc" in swa["metrics"]
