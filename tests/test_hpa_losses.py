"""HPA losses: symmetric Lovasz hinge, hard-negative BCE, focal reductions, the 0.5/0.5/0.5 sum, aux routing.

Each loss is checked against values worked out by hand on tiny inputs.
"""

from __future__ import annotations

import math

import pytest
import torch

from medals.config import LossTerm, recipe_from_dict
from medals.errors import MedalsError
from medals.train.losses import build_loss, hard_negative_count


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def loss_of(name: str, logits, target, task: str = "multilabel", **params) -> float:
    fn = build_loss([LossTerm(name=name, params=params)], task)
    return fn(torch.tensor(logits), {"target": torch.tensor(target)}).item()


# ---- Lovasz hinge ------------------------------------------------------------------------------------


def test_lovasz_one_class_by_hand():
    # One class, three images: logits x, labels y (a [3, 1] batch).
    x = [[2.0], [0.5], [-1.0]]
    y = [[1.0], [0.0], [1.0]]
    # Hinge errors e = 1 - x * (2y - 1) = [1 - 2, 1 + 0.5, 1 - 1] = [-1, 1.5, 2].
    # Sorted decreasing: 2 (y=1), 1.5 (y=0), -1 (y=1); P = 2 positives.
    # J_i = 1 - (P - tp_i) / (P + fp_i): tp = [1, 1, 2], fp = [0, 1, 1]
    #   J = [1 - 1/2, 1 - 1/3, 1 - 0/3] = [1/2, 2/3, 1]; gradient g = [1/2, 1/6, 1/3].
    # Loss = relu(2) * 1/2 + relu(1.5) * 1/6 + relu(-1) * 1/3 = 1 + 0.25 = 1.25.
    forward = 1.25
    # Mirrored (-x, 1 - y): same errors [-1, 1.5, 2]; sorted labels 0, 1, 0; P = 1.
    #   tp = [0, 1, 1], fp = [1, 1, 2]: J = [1 - 1/2, 1 - 0/2, 1 - 0/3] = [1/2, 1, 1]; g = [1/2, 1/2, 0].
    # Loss = 2 * 1/2 + 1.5 * 1/2 + 0 = 1.75.
    mirrored = 1.75
    assert loss_of("lovasz", x, y, symmetric=False) == pytest.approx(forward)
    assert loss_of("lovasz", x, y) == pytest.approx((forward + mirrored) / 2)  # symmetric (default): 1.5


def test_lovasz_is_per_class_over_the_batch():
    # Column 0 is the hand example above; column 1: logits [1, -1, 3], labels [1, 0, 0].
    x = [[2.0, 1.0], [0.5, -1.0], [-1.0, 3.0]]
    y = [[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
    # Column 1 errors: [1 - 1, 1 - 1, 1 + 3] = [0, 0, 4]; sorted 4 (y=0), 0 (y=1), 0 (y=0)
    #   (the tie of the two zero errors does not matter: they are multiplied by relu(0) = 0); P = 1.
    #   J = [1 - 1/2, 1 - 0/2, 1 - 0/3] = [1/2, 1, 1]; g = [1/2, 1/2, 0]: loss = 4 * 1/2 = 2.
    assert loss_of("lovasz", x, y, symmetric=False) == pytest.approx((1.25 + 2.0) / 2)
    # Flattened (per_class=False): one hinge over the six elements.
    # Errors [-1, 0, 1.5, 0, 2, 4] with labels [1, 1, 0, 0, 1, 0]; sorted decreasing:
    #   4 (y=0), 2 (y=1), 1.5 (y=0), 0, 0, -1 (y=1) -- the zeros weigh nothing, P = 3.
    #   J_1 = 1 - 3/4 = 1/4; J_2 = 1 - 2/4 = 1/2; J_3 = 1 - 2/5 = 3/5.
    #   loss = 4 * 1/4 + 2 * (1/2 - 1/4) + 1.5 * (3/5 - 1/2) = 1 + 0.5 + 0.15 = 1.65.
    assert loss_of("lovasz", x, y, symmetric=False, per_class=False) == pytest.approx(1.65)


def test_lovasz_perfect_margin_is_zero_and_gradients_flow():
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    fn = build_loss([LossTerm(name="lovasz")], "multilabel")
    assert fn(5 * (2 * y - 1), {"target": y}).item() == pytest.approx(0.0)
    logits = torch.zeros(3, 2, requires_grad=True)
    fn(logits, {"target": y}).backward()
    # Raising a positive's logit and lowering a negative's both lower the loss.
    assert (logits.grad[y > 0] < 0).all() and (logits.grad[y == 0] > 0).all()


# ---- hard-negative BCE -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_pos", "n_neg", "k"),
    [
        (1, 5, 3),  # min(5, 1 + max(2, 2), 3 + 2)
        (0, 5, 2),  # min(5, 0 + 2, 5)
        (5, 10, 9),  # min(10, 5 + 5, 7 + 2)
        (8, 2, 2),  # min(2, 8 + 2, 1 + 2): every negative
        (3, 0, 0),
        (0, 1, 1),  # min(1, 2, 0 + 2)
        (40, 100, 72),  # min(100, 40 + 50, 70 + 2)
    ],
)
def test_hard_negative_count(n_pos, n_neg, k):
    assert hard_negative_count(torch.tensor(n_pos), torch.tensor(n_neg)).item() == k


def test_hard_bce_by_hand():
    # Class 0: one positive (logit 0) and five negatives; k = 3 keeps the negatives with logits 3, 2, 1.
    # Class 1: all positive, nothing to mine: the mean BCE of the six positives.
    c0 = [0.0, 3.0, -1.0, 2.0, -2.0, 1.0]
    y0 = [1, 0, 0, 0, 0, 0]
    c1 = [1.0, -1.0, 0.5, 2.0, 0.0, -0.5]
    logits = [[a, b] for a, b in zip(c0, c1, strict=True)]
    target = [[float(a), 1.0] for a in y0]
    class0 = (math.log(2) + softplus(3) + softplus(2) + softplus(1)) / 4  # BCE(x, 1) = softplus(-x)
    class1 = sum(softplus(-x) for x in c1) / 6
    assert loss_of("hard_bce", logits, target) == pytest.approx((class0 + class1) / 2, rel=1e-6)
    # neg_more / ratios are parameters: neg_max_ratio 0 and neg_more 1 keep only the hardest negative.
    one = (math.log(2) + softplus(3)) / 2
    value = loss_of("hard_bce", logits, target, neg_more=1, neg_max_ratio=0.0)
    assert value == pytest.approx((one + class1) / 2, rel=1e-6)


# ---- focal reductions and the HPA1 sum ---------------------------------------------------------------


def focal_by_hand(x: float, t: float, gamma: float = 2.0) -> float:
    p_t = sig(x) if t else 1 - sig(x)
    return (1 - p_t) ** gamma * -math.log(p_t)


def test_focal_hpa1_sums_classes_and_hpa3_means_elements():
    logits = [[1.0, -2.0, 0.5], [0.0, 2.0, -1.0]]
    target = [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    per = [
        [focal_by_hand(x, t) for x, t in zip(xr, tr, strict=True)]
        for xr, tr in zip(logits, target, strict=True)
    ]
    hpa1 = loss_of("focal", logits, target, reduction="sum_classes")
    assert hpa1 == pytest.approx(sum(sum(r) for r in per) / 2, rel=1e-6)  # sum over classes, mean over images
    hpa3 = loss_of("focal", logits, target)
    assert hpa3 == pytest.approx(sum(sum(r) for r in per) / 6, rel=1e-6)  # mean over all elements


def test_hpa1_loss_is_half_of_each_term():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=g)
    batch = {"target": (torch.rand(8, 5, generator=g) > 0.7).float()}
    terms = [
        LossTerm(name="focal", weight=0.5, params={"gamma": 2, "reduction": "sum_classes"}),
        LossTerm(name="lovasz", weight=0.5),
        LossTerm(name="hard_bce", weight=0.5),
    ]
    total = build_loss(terms, "multilabel")
    value = total(logits, batch)
    each = {
        t.name: build_loss([t.model_copy(update={"weight": 1.0})], "multilabel")(logits, batch) for t in terms
    }
    assert value.item() == pytest.approx(0.5 * sum(v.item() for v in each.values()), rel=1e-6)
    assert {k: float(v) for k, v in total.parts.items()} == {
        k: pytest.approx(v.item()) for k, v in each.items()
    }


# ---- the aux output ----------------------------------------------------------------------------------


def test_aux_term_reads_the_second_output():
    g = torch.Generator().manual_seed(1)
    main, aux = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    batch = {"target": (torch.rand(4, 3, generator=g) > 0.5).float()}
    loss = build_loss(
        [LossTerm(name="focal"), LossTerm(name="focal", weight=0.4, output="aux")], "multilabel"
    )
    focal = build_loss([LossTerm(name="focal")], "multilabel")
    expected = focal(main, batch) + 0.4 * focal(aux, batch)
    torch.testing.assert_close(loss((main, aux), batch), expected)
    with pytest.raises(MedalsError, match="output 'aux' but the model has no auxiliary head"):
        loss(main, batch)


def test_aux_config_rules():
    base = {"name": "h", "task": "multilabel"}
    with pytest.raises(MedalsError, match="output 'aux' but model.aux_head is false"):
        recipe_from_dict({**base, "loss": [{"name": "focal", "output": "aux"}]}, "t")
    with pytest.raises(MedalsError, match="aux_head needs model.head 'attention'"):
        recipe_from_dict({**base, "model": {"aux_head": True}}, "t")
    with pytest.raises(MedalsError, match="for model.arch classifier"):
        recipe_from_dict(
            {"name": "s", "task": "segmentation", "model": {"arch": "unet", "stem_pool": True}}, "t"
        )
    ok = recipe_from_dict(
        {
            **base,
            "model": {"head": "attention", "aux_head": True},
            "loss": [{"name": "focal"}, {"name": "focal", "weight": 0.4, "output": "aux"}],
        },
        "t",
    )
    assert [t.output for t in ok.loss] == ["main", "aux"]
