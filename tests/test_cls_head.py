"""Segmentation with an image-level classification head: losses on it, its probabilities, the gate."""

from __future__ import annotations

import shutil
from importlib import resources

import numpy as np
import pandas as pd
import pytest
import torch

from medals.cli import main
from medals.config import LossTerm, recipe_from_dict
from medals.demo.chest import generate_chest
from medals.errors import MedalsError
from medals.files import read_json
from medals.infer.predict import predict_with_cls
from medals.models.segmenter import Segmenter
from medals.train.losses import build_loss


def test_head_output_and_losses_on_each_output():
    torch.manual_seed(0)
    model = Segmenter("unet", "resnet18", in_chans=1, cls_head=True)
    mask_logits, cls_logits = model(torch.randn(2, 1, 32, 32))
    assert mask_logits.shape == (2, 1, 32, 32) and cls_logits.shape == (2, 1)
    batch = {"mask": torch.zeros(2, 1, 32, 32), "target": torch.tensor([0.0, 1.0])}
    loss = build_loss([LossTerm(name="dice"), LossTerm(name="bce", output="cls", weight=2.0)], "segmentation")
    total = loss((mask_logits, cls_logits), batch)
    expected_cls = torch.nn.functional.binary_cross_entropy_with_logits(cls_logits[:, 0], batch["target"])
    assert total.item() == pytest.approx(float(loss.parts["dice"]) + 2.0 * expected_cls.item(), rel=1e-5)
    with pytest.raises(MedalsError, match="no classification head"):
        loss(mask_logits, batch)


def test_config_rules_for_the_head():
    base = {"name": "s", "task": "segmentation", "model": {"arch": "unet"}}
    with pytest.raises(MedalsError, match="output 'cls' but model.cls_head is false"):
        recipe_from_dict({**base, "loss": [{"name": "bce", "output": "cls"}]}, "t")
    with pytest.raises(MedalsError, match="cls_head is for task segmentation"):
        recipe_from_dict({"name": "c", "task": "multiclass", "model": {"cls_head": True}}, "t")


def test_predict_returns_merged_image_probabilities():
    torch.manual_seed(0)
    model = Segmenter("unet", "resnet18", in_chans=1, cls_head=True).eval()
    images = torch.randn(3, 1, 32, 32)
    loader = [{"image": images, "index": torch.arange(3)}]

    class Loader(list):
        dataset = range(3)

    masks, cls = predict_with_cls(model, Loader(loader), "segmentation", tta=2)
    with torch.no_grad():
        plain = torch.sigmoid(model(images)[1])[:, 0]
        flipped = torch.sigmoid(model(images.flip(-1))[1])[:, 0]
    assert masks.shape == (3, 32, 32)
    assert np.allclose(cls, ((plain + flipped) / 2).numpy(), atol=1e-6)


@pytest.mark.slow
def test_chest_with_head_reports_cls_metrics_and_gates(tmp_path):
    generate_chest(tmp_path, n_train=40, n_test=8, size=48, seed=2)
    recipe = tmp_path / "chest.yaml"
    shutil.copy(resources.files("medals.demo").joinpath("demo_chest.yaml"), recipe)
    common = [
        f"run_dir={tmp_path / 'run'}",
        "train.epochs=1",
        "split.n_folds=2",
        "train.image_size=32",
        "data.cache_size=32",
        "train.progress=false",
        "model.cls_head=true",
        "loss=[{name: dice}, {name: bce, output: cls}]",
        "metrics.dice_size=16",
        "submit.min_area=0",
        "submit.pixel_threshold=0.0",  # every pixel on: only the gate can empty a mask
    ]
    assert main(["run", str(recipe), *common, "submit.gate_threshold=1.0"]) == 0
    metrics = read_json(tmp_path / "run/metrics.json")
    assert {"cls_auc", "cls_f1", "dice_best", "pixel_threshold_best"} <= set(metrics["pooled"])
    assert "p_cls" in pd.read_parquet(tmp_path / "run/oof.parquet")
    test = pd.read_parquet(tmp_path / "run/test.parquet")
    assert test["p_cls"].between(0, 1).all()
    closed = pd.read_csv(tmp_path / "run/submission.csv", dtype=str)
    assert (closed["EncodedPixels"] == "-1").all()  # no probability is above 1.0

    assert main(["submit", str(recipe), *common, "submit.gate_threshold=0.0"]) == 0
    opened = pd.read_csv(tmp_path / "run/submission.csv", dtype=str)
    assert (opened["EncodedPixels"] != "-1").all()  # all pass the gate, every pixel is on
