"""Losses by name, and weighted sums of them built from the recipe's loss terms.

A loss factory takes the task and the term's params and returns fn(logits, batch) -> scalar.
Recipes can add losses with `@register_loss("name")`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from medals.config import LossTerm
from medals.errors import MedalsError
from medals.models.outputs import split_outputs

LossFn = Callable[[Tensor, dict], Tensor]
LossFactory = Callable[..., LossFn]

LOSSES: dict[str, LossFactory] = {}

DEFAULT_TERMS: dict[str, list[LossTerm]] = {
    "binary": [LossTerm(name="bce")],
    "multiclass": [LossTerm(name="ce")],
    "multilabel": [LossTerm(name="bce")],
    "segmentation": [LossTerm(name="bce"), LossTerm(name="dice")],
    "regression": [LossTerm(name="mse")],
    "ordinal": [LossTerm(name="mse")],
}

# Losses on a regression output (regression and ordinal tasks), and only those there.
REGRESSION_LOSSES = ("mse", "mae", "smooth_l1")
NUMERIC_TASKS = ("regression", "ordinal")


def register_loss(name: str) -> Callable[[LossFactory], LossFactory]:
    """Decorator: register factory(task, **params) -> fn(logits, batch) under `name`."""

    def decorate(factory: LossFactory) -> LossFactory:
        LOSSES[name] = factory
        return factory

    return decorate


def binary_pair(logits: Tensor, batch: dict, task: str) -> tuple[Tensor, Tensor]:
    """(logits, float targets) of the same shape for per-element sigmoid losses.

    Segmentation: the mask. Multilabel: multi-hot [B, K]. A [B] or [B, 1] logit: binary targets.
    Integer class targets with K > 1 logits become one-hot.
    """
    if task == "segmentation":
        target = batch["mask"]
    else:
        target = batch["target"]
        if logits.ndim == 2 and logits.shape[1] > 1 and target.ndim == 1:
            target = F.one_hot(target.long(), logits.shape[1])
    target = target.to(logits.dtype)
    if target.shape != logits.shape and target.numel() == logits.numel():
        target = target.reshape(logits.shape)  # [B] targets for a [B, 1] logit
    if target.shape != logits.shape:
        raise ValueError(f"targets of shape {tuple(target.shape)} do not fit logits {tuple(logits.shape)}")
    return logits, target


@register_loss("ce")
def cross_entropy(task: str, label_smoothing: float = 0.0) -> LossFn:
    if task != "multiclass":
        raise MedalsError(f"loss 'ce' needs task multiclass, not {task!r}")

    def fn(logits: Tensor, batch: dict) -> Tensor:
        return F.cross_entropy(logits, batch["target"].long(), label_smoothing=label_smoothing)

    return fn


@register_loss("bce")
def binary_cross_entropy(task: str, pos_weight: float | None = None) -> LossFn:
    def fn(logits: Tensor, batch: dict) -> Tensor:
        x, t = binary_pair(logits, batch, task)
        weight = None if pos_weight is None else torch.tensor(pos_weight, dtype=x.dtype, device=x.device)
        return F.binary_cross_entropy_with_logits(x, t, pos_weight=weight)

    return fn


@register_loss("focal")
def focal(task: str, gamma: float = 2.0, alpha: float | None = None, reduction: str = "mean") -> LossFn:
    """Binary focal loss (Lin 2017) per element: BCE * (1 - p_t)^gamma, optionally alpha-weighted.

    reduction "mean": mean over all elements; "sum_classes": sum over classes (or pixels), mean over batch.
    """
    if reduction not in ("mean", "sum_classes"):
        raise MedalsError(f"loss 'focal' param reduction {reduction!r} must be 'mean' or 'sum_classes'")

    def fn(logits: Tensor, batch: dict) -> Tensor:
        x, t = binary_pair(logits, batch, task)
        bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        p = torch.sigmoid(x)
        p_t = p * t + (1 - p) * (1 - t)
        loss = bce * (1 - p_t).pow(gamma)
        if alpha is not None:
            loss = loss * (alpha * t + (1 - alpha) * (1 - t))
        if reduction == "sum_classes" and loss.ndim > 1:
            return loss.flatten(1).sum(1).mean()
        return loss.mean()

    return fn


# The PTX seed's SoftDiceLoss_binary clamps its batch score to [0, 1 - CLAMP_EPS].
DICE_CLAMP_EPS = 1e-7


@register_loss("dice")
def soft_dice(
    task: str,
    smooth: float = 1.0,
    squared: bool = False,
    smooth_intersection: bool = False,
    clamp: bool = False,
) -> LossFn:
    """1 - mean over images of (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth), p = sigmoid(logits).

    squared=True uses sum(p^2) + sum(t^2) in the denominator (the V-Net form). The SIIM-ACR 2nd place
    form (its SoftDiceLoss_binary) is squared with two more switches: smooth_intersection adds smooth to
    the intersection before doubling, 2 (sum(p t) + smooth) / (denom + smooth), so an empty image with
    an empty prediction scores 2, not 1; clamp clips the batch mean score to [0, 1 - 1e-7] before
    1 - score (no gradient flows where it clips).
    Masks of several classes [B, C, H, W] (C > 1) get one Dice per image and class, averaged over both, as
    Severstal scores them.
    """

    def fn(logits: Tensor, batch: dict) -> Tensor:
        x, t = binary_pair(logits, batch, task)
        if task == "segmentation" and x.ndim == 4 and x.shape[1] > 1:
            x, t = x.flatten(0, 1), t.flatten(0, 1)  # each (image, class) pair is one mask
        p = torch.sigmoid(x.float()).flatten(1) if x.ndim > 1 else torch.sigmoid(x.float())[:, None]
        t = t.float().reshape(p.shape)
        inter = (p * t).sum(1)
        denom = (p * p).sum(1) + (t * t).sum(1) if squared else p.sum(1) + t.sum(1)
        numerator = 2 * (inter + smooth) if smooth_intersection else 2 * inter + smooth
        score = (numerator / (denom + smooth)).mean()
        if clamp:
            score = torch.clamp(score, 0.0, 1.0 - DICE_CLAMP_EPS)
        return 1 - score

    return fn


def _scaled_errors(prediction: Tensor, batch: dict, target_std: float) -> Tensor:
    """(prediction - target) / std, float32 [B]: errors of the standardised target, so the learning rate
    means the same whatever the target's units (the model's outputs are in those units)."""
    target = batch["target"].float().reshape(-1)
    return (prediction.float().reshape(-1) - target) / target_std


@register_loss("mse")
def mse(task: str, target_std: float = 1.0) -> LossFn:
    """Mean squared error of the standardised target."""
    return lambda prediction, batch: _scaled_errors(prediction, batch, target_std).pow(2).mean()


@register_loss("mae")
def mae(task: str, target_std: float = 1.0) -> LossFn:
    """Mean absolute error of the standardised target (L1)."""
    return lambda prediction, batch: _scaled_errors(prediction, batch, target_std).abs().mean()


@register_loss("smooth_l1")
def smooth_l1(task: str, beta: float = 1.0, target_std: float = 1.0) -> LossFn:
    """Huber-like smooth L1 of the standardised target: quadratic within `beta` (in standard
    deviations), linear beyond."""
    if beta <= 0:
        raise MedalsError(f"loss 'smooth_l1' param beta must be positive, got {beta}")

    def fn(prediction: Tensor, batch: dict) -> Tensor:
        errors = _scaled_errors(prediction, batch, target_std)
        return F.smooth_l1_loss(errors, torch.zeros_like(errors), beta=beta)

    return fn


def _columns(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """[N, C] float32 views: one column per class (dim 1), rows over the batch (and any pixels)."""
    if logits.ndim == 1:
        return logits.float()[:, None], target.float()[:, None]
    c = logits.shape[1]
    x = logits.float().transpose(0, 1).reshape(c, -1).T
    t = target.float().transpose(0, 1).reshape(c, -1).T
    return x, t


def lovasz_hinge_columns(logits: Tensor, target: Tensor) -> Tensor:
    """Binary Lovasz hinge (Berman et al. 2018) of each column of [N, C] logits; returns [C].

    Per column: hinge errors e = 1 - x * (2t - 1), sorted in decreasing order, dotted (after ReLU)
    with the gradient of the Lovasz extension of the Jaccard loss at that order:
    g_1 = J_1, g_i = J_i - J_(i-1), J_i = 1 - (P - tp_i) / (P + fp_i) where P is the column's number
    of positives and tp_i, fp_i count positives and negatives among the first i sorted errors.
    """
    signs = 2 * target - 1
    errors = 1 - logits * signs
    errors_sorted, order = torch.sort(errors, dim=0, descending=True)
    gt_sorted = torch.gather(target, 0, order)
    positives = gt_sorted.sum(0, keepdim=True)
    intersection = positives - gt_sorted.cumsum(0)
    union = positives + (1 - gt_sorted).cumsum(0)
    jaccard = 1 - intersection / union
    grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], dim=0)
    return (F.relu(errors_sorted) * grad).sum(0)


@register_loss("lovasz")
def lovasz(task: str, per_class: bool = True, symmetric: bool = True) -> LossFn:
    """Lovasz hinge on sigmoid logits, as the HPA 1st place solution used it.

    per_class=True (HPA1): one Lovasz hinge per class over the batch's images (and pixels), averaged over
    classes; False: a single hinge over every element flattened. symmetric=True averages the loss of
    (logits, targets) and of (-logits, 1 - targets), so negatives are scored like positives.
    """

    def one_way(x: Tensor, t: Tensor) -> Tensor:
        if not per_class:
            x, t = x.reshape(-1, 1), t.reshape(-1, 1)
        return lovasz_hinge_columns(x, t).mean()

    def fn(logits: Tensor, batch: dict) -> Tensor:
        x, t = _columns(*binary_pair(logits, batch, task))
        loss = one_way(x, t)
        if symmetric:
            loss = (loss + one_way(-x, 1 - t)) / 2
        return loss

    return fn


def hard_negative_count(
    n_pos: Tensor, n_neg: Tensor, neg_more: int = 2, neg_least_ratio: float = 0.5, neg_max_ratio: float = 0.7
) -> Tensor:
    """How many negatives hard-negative BCE keeps in a column with n_pos positives and n_neg negatives:

    min(n_neg, n_pos + max(neg_more, floor(neg_least_ratio * n_neg)), floor(neg_max_ratio * n_neg) + neg_more).
    """
    n_pos, n_neg = n_pos.double(), n_neg.double()
    at_least = torch.clamp(torch.floor(neg_least_ratio * n_neg), min=neg_more)
    k = torch.minimum(n_neg, n_pos + at_least)
    return torch.minimum(k, torch.floor(neg_max_ratio * n_neg) + neg_more).long()


@register_loss("hard_bce")
def hard_bce(
    task: str, neg_more: int = 2, neg_least_ratio: float = 0.5, neg_max_ratio: float = 0.7
) -> LossFn:
    """Hard-negative-mined BCE (HPA1's "hard log loss"), per class over the batch.

    For each class: every positive image plus the k negatives with the highest logits (the highest BCE),
    k from hard_negative_count; the mean BCE over those, then the mean over classes.
    """

    def fn(logits: Tensor, batch: dict) -> Tensor:
        x, t = _columns(*binary_pair(logits, batch, task))
        neg = t <= 0
        n_neg = neg.sum(0)
        k = hard_negative_count(len(t) - n_neg, n_neg, neg_more, neg_least_ratio, neg_max_ratio)
        # Rank of each negative among its column's negatives by decreasing logit (positives rank last).
        key = torch.where(neg, x, torch.full_like(x, -torch.inf))
        order = torch.argsort(key, dim=0, descending=True)
        rank = torch.argsort(order, dim=0)  # the inverse permutation
        keep = (~neg | (rank < k)).to(x.dtype)
        bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        return ((bce * keep).sum(0) / keep.sum(0)).mean()

    return fn


class LossSum:
    """Weighted sum of named loss terms; `parts` holds the last detached value of each term (a tensor:
    reading it as a float on every training step would stall the GPU until the step is done).

    Each term reads the main output or, with output: cls, the image-level logit of a segmentation model
    with a classification head (its target: whether the mask is non-empty), or, with output: aux, the
    auxiliary-head logits of a classifier with model.aux_head (same targets as the main output).
    """

    def __init__(self, terms: list[tuple[str, float, LossFn, str]]) -> None:
        self.terms = terms
        self.parts: dict[str, torch.Tensor] = {}

    def __call__(self, outputs: Tensor | tuple[Tensor, Tensor], batch: dict) -> Tensor:
        main, cls = split_outputs(outputs)
        total: Tensor | None = None
        for name, weight, fn, on in self.terms:
            if on == "cls" and cls is None:
                raise MedalsError(
                    f"loss term {name!r} has output 'cls' but the model has no classification head"
                )
            if on == "aux" and cls is None:
                raise MedalsError(f"loss term {name!r} has output 'aux' but the model has no auxiliary head")
            value = fn(main if on == "main" else cls, batch)
            self.parts[name] = value.detach()
            total = weight * value if total is None else total + weight * value
        assert total is not None
        return total


def _make_term(term: LossTerm, index: int, task: str, target_std: float = 1.0) -> LossFn:
    factory = LOSSES.get(term.name)
    if factory is None:
        raise MedalsError(
            f"loss[{index}].name {term.name!r} is not a known loss; known: {', '.join(sorted(LOSSES))}"
        )
    if (task in NUMERIC_TASKS) != (term.name in REGRESSION_LOSSES):
        fits = (
            "regression and ordinal" if term.name in REGRESSION_LOSSES else "classification and segmentation"
        )
        raise MedalsError(
            f"loss[{index}] {term.name!r} is for {fits} tasks, not {task!r}"
            + (f": use {', '.join(REGRESSION_LOSSES)}" if task in NUMERIC_TASKS else "")
        )
    accepted = [p for p in inspect.signature(factory).parameters if p not in ("task", "target_std")]
    unknown = sorted(set(term.params) - set(accepted))
    if unknown:
        raise MedalsError(
            f"loss[{index}] ({term.name}) has unknown param {unknown[0]!r}; accepted: {', '.join(accepted) or 'none'}"
        )
    params: dict[str, Any] = dict(term.params)
    if term.name in REGRESSION_LOSSES:
        params["target_std"] = target_std
    return factory(task, **params)


def term_names(terms: list[LossTerm] | None, task: str) -> list[str]:
    """Each term's name in the logs (val_<name>): its loss name, with its index when two terms share it."""
    terms = DEFAULT_TERMS[task] if terms is None else terms
    return [
        t.name if sum(o.name == t.name for o in terms) == 1 else f"{t.name}_{i}" for i, t in enumerate(terms)
    ]


def build_loss(terms: list[LossTerm] | None, task: str, target_std: float = 1.0) -> LossSum:
    """fn(logits, batch) -> scalar: the weighted sum of `terms`, or the task default when None.

    target_std: regression and ordinal tasks divide errors by the training targets' standard deviation.
    """
    if terms is None:
        terms = DEFAULT_TERMS[task]
    if not terms:
        raise MedalsError("loss must list at least one term")
    built = []
    for i, (term, name) in enumerate(zip(terms, term_names(terms, task), strict=True)):
        # The image-level logit is a binary classifier whatever the task; an aux head shares the main task.
        term_task = "binary" if term.output == "cls" else task
        built.append((name, term.weight, _make_term(term, i, term_task, target_std), term.output))
    return LossSum(built)
