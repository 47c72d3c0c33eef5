"""Losses: each against hand-computed values on tiny tensors, defaults, weighted sums, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medals.config import LossTerm
from medals.errors import MedalsError
from medals.train.losses import LOSSES, build_loss, register_loss


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_ce_with_label_smoothing_matches_torch_and_hand_value():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    target = torch.tensor([0, 2])
    loss = build_loss([LossTerm(name="ce", params={"label_smoothing": 0.1})], "multiclass")
    value = loss(logits, {"target": target})
    torch.testing.assert_close(value, F.cross_entropy(logits, target, label_smoothing=0.1))
    # By hand: (1 - eps) * NLL + eps * mean over classes of -log p.
    logp = logits.log_softmax(1)
    hand = sum(0.9 * -logp[i, t] + 0.1 * -logp[i].mean() for i, t in enumerate(target.tolist())) / 2
    assert value.item() == pytest.approx(hand.item(), rel=1e-6)
    plain = build_loss(None, "multiclass")(logits, {"target": target})
    assert plain.item() == pytest.approx(-(logp[0, 0] + logp[1, 2]).item() / 2, rel=1e-6)


def test_bce_multilabel_and_binary_shapes():
    logits = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    hand = -(math.log(sig(1)) + math.log(1 - sig(-2)) + math.log(sig(0)) + math.log(sig(3))) / 4
    assert build_loss(None, "multilabel")(logits, {"target": target}).item() == pytest.approx(hand, rel=1e-6)
    # One logit per image, [B, 1] or [B], with a [B] target.
    one = torch.tensor([[1.0], [-1.0]])
    binary = {"target": torch.tensor([1, 0])}
    bce = build_loss([LossTerm(name="bce")], "multiclass")
    expected = -(math.log(sig(1)) + math.log(1 - sig(-1))) / 2
    assert bce(one, binary).item() == pytest.approx(expected, rel=1e-6)
    assert bce(one[:, 0], binary).item() == pytest.approx(expected, rel=1e-6)


def test_bce_segmentation_uses_the_mask():
    logits = torch.tensor([[[[2.0, -2.0], [0.0, 1.0]]]])
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    bce = build_loss([LossTerm(name="bce")], "segmentation")
    value = bce(logits, {"mask": mask, "target": torch.tensor([1.0])})
    hand = -(math.log(sig(2)) + math.log(1 - sig(-2)) + math.log(1 - sig(0)) + math.log(sig(1))) / 4
    assert value.item() == pytest.approx(hand, rel=1e-6)


def test_focal_gamma0_is_bce_and_gamma2_by_hand():
    logits = torch.tensor([[1.5, -0.5, 0.2], [-2.0, 0.3, 2.5]])
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    batch = {"target": target}
    focal0 = build_loss([LossTerm(name="focal", params={"gamma": 0})], "multilabel")
    torch.testing.assert_close(focal0(logits, batch), F.binary_cross_entropy_with_logits(logits, target))
    # gamma 2, alpha 0.25, summed over classes then averaged over the batch.
    focal = build_loss(
        [LossTerm(name="focal", params={"gamma": 2, "alpha": 0.25, "reduction": "sum_classes"})], "multilabel"
    )
    rows = []
    for x_row, t_row in zip(logits.tolist(), target.tolist(), strict=True):
        total = 0.0
        for x, t in zip(x_row, t_row, strict=True):
            p_t = sig(x) if t else 1 - sig(x)
            total += (0.25 if t else 0.75) * (1 - p_t) ** 2 * -math.log(p_t)
        rows.append(total)
    assert focal(logits, batch).item() == pytest.approx(sum(rows) / 2, rel=1e-5)


def test_dice_perfect_half_and_squared():
    big = 20.0
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, :2] = 1
    mask[1, 0, :, :1] = 1
    perfect = torch.where(mask > 0, big, -big)
    dice = build_loss([LossTerm(name="dice")], "segmentation")
    assert dice(perfect, {"mask": mask}).item() == pytest.approx(0.0, abs=1e-6)
    # All-zero logits: p = 0.5 everywhere; per image dice = (2 * 0.5 * |t| + 1) / (8 + |t| + 1).
    zeros = torch.zeros(2, 1, 4, 4)
    d0 = (2 * 0.5 * 8 + 1) / (8 + 8 + 1)
    d1 = (2 * 0.5 * 4 + 1) / (8 + 4 + 1)
    assert dice(zeros, {"mask": mask}).item() == pytest.approx(1 - (d0 + d1) / 2, rel=1e-6)
    squared = build_loss([LossTerm(name="dice", params={"squared": True, "smooth": 0.0})], "segmentation")
    s0 = (2 * 0.5 * 8) / (16 * 0.25 + 8)
    s1 = (2 * 0.5 * 4) / (16 * 0.25 + 4)
    assert squared(zeros, {"mask": mask}).item() == pytest.approx(1 - (s0 + s1) / 2, rel=1e-6)


def test_weighted_sum_and_segmentation_default():
    logits = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    batch = {"mask": mask, "target": torch.ones(2)}
    bce = build_loss([LossTerm(name="bce")], "segmentation")(logits, batch)
    dice = build_loss([LossTerm(name="dice")], "segmentation")(logits, batch)
    default = build_loss(None, "segmentation")
    torch.testing.assert_close(default(logits, batch), bce + dice)
    assert {k: float(v) for k, v in default.parts.items()} == {
        "bce": pytest.approx(bce.item()),
        "dice": pytest.approx(dice.item()),
    }
    weighted = build_loss(
        [LossTerm(name="bce", weight=0.25), LossTerm(name="dice", weight=2.0)], "segmentation"
    )
    torch.testing.assert_close(weighted(logits, batch), 0.25 * bce + 2.0 * dice)


def test_gradients_flow():
    logits = torch.zeros(3, 4, requires_grad=True)
    loss = build_loss([LossTerm(name="focal"), LossTerm(name="bce")], "multilabel")
    loss(logits, {"target": torch.ones(3, 4)}).backward()
    assert (logits.grad < 0).all()  # raising every logit lowers the loss for all-positive targets


def test_errors_name_the_loss():
    with pytest.raises(MedalsError, match=r"'jaccard'.*known: bce, ce, dice, focal, hard_bce, lovasz"):
        build_loss([LossTerm(name="jaccard")], "segmentation")
    with pytest.raises(MedalsError, match=r"focal.*'gama'"):
        build_loss([LossTerm(name="focal", params={"gama": 2})], "multilabel")
    with pytest.raises(MedalsError, match="ce"):
        build_loss([LossTerm(name="ce")], "segmentation")


def test_register_loss_decorator():
    @register_loss("l1_test")
    def l1(task, scale: float = 1.0):
        return lambda logits, batch: scale * (logits - batch["target"]).abs().mean()

    try:
        fn = build_loss([LossTerm(name="l1_test", params={"scale": 2.0})], "multilabel")
        assert fn(torch.ones(2, 2), {"target": torch.zeros(2, 2)}).item() == pytest.approx(2.0)
    finally:
        LOSSES.pop("l1_test")
