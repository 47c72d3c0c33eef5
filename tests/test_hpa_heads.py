"""HPA heads on the feature map: pool_concat (HPA1), per-class attention with an aux head (HPA3), stem pool."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medals.config import LossTerm, Recipe
from medals.errors import MedalsError
from medals.models.factory import create_model
from medals.models.heads import AttentionHead, PoolConcatHead
from medals.train.losses import build_loss

torch.set_num_threads(2)


def recipe(**model) -> Recipe:
    return Recipe(name="t", task="multilabel", model={"in_chans": 4, **model})


def images(size: int, b: int = 2) -> torch.Tensor:
    return torch.randn(b, 4, size, size, generator=torch.Generator().manual_seed(0))


# ---- PoolConcatHead ----------------------------------------------------------------------------------


def test_pool_concat_head_layers_and_eval_output_by_hand():
    head = PoolConcatHead(3, 2, dropout=0.5)
    kinds = [type(m) for m in head.children()]
    assert kinds == [nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.Dropout, nn.Linear]
    assert head.bn1.num_features == 6 and (head.fc1.in_features, head.fc1.out_features) == (6, 3)
    assert (head.fc.in_features, head.fc.out_features) == (3, 2) and not head.fc.bias.any()
    g = torch.Generator().manual_seed(0)
    for bn in (head.bn1, head.bn2):  # non-trivial running statistics
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    fmap = torch.randn(2, 3, 4, 5, generator=g)
    head.eval()
    # By hand: [avg over H*W, max over H*W], normalise, Linear, ReLU, normalise, Linear (dropout off).
    pooled = torch.cat([fmap.flatten(2).mean(2), fmap.flatten(2).max(2).values], 1)

    def norm(x, bn):
        return (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias

    hidden = torch.relu(norm(pooled, head.bn1) @ head.fc1.weight.T + head.fc1.bias)
    expected = norm(hidden, head.bn2) @ head.fc.weight.T + head.fc.bias
    torch.testing.assert_close(head(fmap), expected)
    head.train()
    assert head(fmap).shape == (2, 2)


# ---- AttentionHead -----------------------------------------------------------------------------------


def test_attention_head_constant_attention_is_the_mean_of_the_logit_map():
    head = AttentionHead(6, 3)
    nn.init.zeros_(head.attention.weight)
    nn.init.constant_(head.attention.bias, 0.7)  # the same attention logit at every pixel
    fmap = torch.randn(2, 6, 4, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(head(fmap), head.logits(fmap).mean((2, 3)))


def test_attention_head_two_pixels_by_hand():
    head = AttentionHead(1, 1)
    with torch.no_grad():
        head.logits.weight.fill_(2.0)
        head.logits.bias.fill_(0.5)
        head.attention.weight.fill_(1.0)
        head.attention.bias.fill_(0.0)
    fmap = torch.tensor([[[[1.0, 2.0]]]])  # one image, one channel, 1 x 2 pixels
    # Logit map 2 * [1, 2] + 0.5 = [2.5, 4.5]; attention logits [1, 2] -> softmax [1, e] / (1 + e).
    expected = (2.5 + 4.5 * math.e) / (1 + math.e)
    assert head(fmap).item() == pytest.approx(expected, rel=1e-6)


# ---- models ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backbone", "size", "features"),
    [
        ("densenet121", 64, 1024),
        ("inception_v3", 80, 2048),
        ("resnet34", 64, 512),
        ("seresnext50_32x4d", 64, 2048),
    ],
)
def test_pool_concat_classifier_shapes(backbone, size, features):
    model = create_model(recipe(backbone=backbone, head="pool_concat", dropout=0.5), num_classes=28)
    assert model.num_features == features and model.head.fc1.in_features == 2 * features
    assert model(images(size)).shape == (2, 28)
    model.eval()
    with torch.no_grad():
        assert model(images(size)).shape == (2, 28)
        assert model.features(images(size)).shape == (2, features)


def test_stem_pool_halves_the_densenet_map():
    plain = create_model(recipe(backbone="densenet121", head="pool_concat"), 3)
    large = create_model(recipe(backbone="densenet121", head="pool_concat", stem_pool=True), 3)
    x = images(128)
    assert plain.backbone.forward_features(x).shape[-2:] == (4, 4)
    assert large.backbone.forward_features(x).shape[-2:] == (2, 2)
    # The pool has no weights: the two state dicts have the same keys and shapes.
    assert {k: v.shape for k, v in plain.state_dict().items()} == {
        k: v.shape for k, v in large.state_dict().items()
    }
    assert large(x).shape == (2, 3)
    with pytest.raises(MedalsError, match="stem_pool is for densenet"):
        create_model(recipe(backbone="resnet34", stem_pool=True), 3)


def test_attention_classifier_without_aux_returns_logits():
    model = create_model(recipe(backbone="resnet34", head="attention"), 5)
    assert isinstance(model.head, AttentionHead) and model.aux_head is None
    assert model(images(64)).shape == (2, 5)


def test_attention_aux_head_sits_on_the_penultimate_stage():
    model = create_model(recipe(backbone="inception_v3", head="attention", aux_head=True), 28)
    assert model.aux_head.logits.in_channels == 768  # Mixed_6e, as in the HPA3 InceptionV3
    assert model.head.logits.in_channels == 2048
    for train in (True, False):
        model.train(train)
        with torch.set_grad_enabled(train):
            logits, aux = model(images(80))
        assert logits.shape == aux.shape == (2, 28)


def grad_sum(module: nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_training_step_with_the_aux_term():
    r = Recipe(
        name="t",
        task="multilabel",
        model={"backbone": "resnet18", "in_chans": 4, "head": "attention", "aux_head": True},
        loss=[LossTerm(name="focal"), LossTerm(name="focal", weight=0.4, output="aux")],
    )
    model = create_model(r, 4)
    x = images(64)
    batch = {"target": torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]])}
    # The aux head reads layer3's output: its term alone trains layer3 and below, not layer4 or the main head.
    build_loss([LossTerm(name="focal", output="aux")], "multilabel")(model(x), batch).backward()
    assert (
        grad_sum(model.aux_head) > 0
        and grad_sum(model.backbone.layer3) > 0
        and grad_sum(model.backbone.conv1) > 0
    )
    assert grad_sum(model.backbone.layer4) == 0 and grad_sum(model.head) == 0
    model.zero_grad()

    loss_fn = build_loss(r.loss, r.task)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    outputs = model(x)
    loss = loss_fn(outputs, batch)
    focal = build_loss([LossTerm(name="focal")], "multilabel")
    torch.testing.assert_close(loss, focal(outputs[0], batch) + 0.4 * focal(outputs[1], batch))
    loss.backward()
    for part in (model.head, model.aux_head):
        for name, p in part.named_parameters():
            if name == "attention.bias":
                # Shifting all of a class's attention logits alike leaves the softmax unchanged: no gradient.
                assert p.grad.abs().max() < 1e-6
            else:
                assert p.grad.abs().sum() > 0, name
    before = model.aux_head.logits.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, model.aux_head.logits.weight)


@pytest.mark.slow
def test_attention_with_aux_head_trains_and_predicts_main_output_only(tmp_path):
    """The aux logits train through their own loss term and never reach predictions or metrics."""
    import numpy as np
    import pandas as pd

    from medals.config import recipe_from_dict
    from medals.data.dataset import make_loader, recipe_dataset
    from medals.infer.predict import predict_with_cls
    from medals.models.factory import create_model
    from medals.runtime.checkpoint import load_model_weights
    from medals.train.loop import train_fold

    rows = []
    for i in range(16):
        image = np.full((16, 16, 4), 30 + 12 * i, np.uint8)
        path = tmp_path / f"c{i}.npy"
        np.save(path, image)
        rows.append(
            {
                "id": f"c{i}",
                "split": "train",
                "path": str(path),
                "height": 16,
                "width": 16,
                "labels": "0" if i % 2 else "1 2",
                "fold": i % 2,
            }
        )
    table = pd.DataFrame(rows)
    recipe = recipe_from_dict(
        {
            "name": "att",
            "task": "multilabel",
            "data": {"num_classes": 3, "label_column": "Target"},
            "model": {"backbone": "resnet18", "in_chans": 4, "head": "attention", "aux_head": True},
            "loss": [{"name": "focal"}, {"name": "focal", "weight": 0.4, "output": "aux"}],
            "train": {"epochs": 1, "batch_size": 8, "image_size": 16, "progress": False, "augment": []},
        },
        "test",
    )
    result = train_fold(recipe, table, 0, tmp_path / "fold0", num_classes=3)
    assert "f1_macro" in result and "cls_auc" not in result
    model = create_model(recipe, 3, init_weights=False)
    load_model_weights(model, tmp_path / "fold0" / "final.pt")
    loader = make_loader(recipe_dataset(recipe, table, 3, train=False), 8, False, 0, 0, False)
    probs, cls = predict_with_cls(model, loader, "multilabel")
    assert probs.shape == (16, 3) and cls is None
