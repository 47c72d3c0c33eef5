"""Parity with the SIIM-ACR pneumothorax 2nd place code (seed 004's src_unet_seg / src_unet_cls).

Each figure is worked out by hand from the seed's formulas (re-derived, not its code):

- SoftDiceLoss_binary: per image I = sum(p t) + s, U = sum(p^2) + sum(t^2) + s (s = 0.01), score =
  mean over the batch of 2 I / U, loss = 1 - clamp(score, 0, 1 - 1e-7);
- predict_768.py: the 768 model's logits are upsampled bilinearly to 1024, then the sigmoid, then the
  fold mean; ensemble_5_model.py averages the five models and thresholds at 0.4;
- stacking.py: the final submission keeps a mask where the stacked probability is > 0.65 (0.7 is the
  threshold of each classification model's own submission in predict.py, not of the ensemble);
- their mask2rle writes a run only when the mask falls back to 0, so a run that reaches the last pixel
  is never written (medals' encoder writes it: the seed's is a bug there, kept out on purpose).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medals.config import load_recipe, make_plan, recipe_from_dict
from medals.data.rle import decode, encode
from medals.errors import MedalsError
from medals.infer.predict import predict_with_cls, upsample_logits
from medals.stages.submit import _gate
from medals.train.losses import soft_dice

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "pneumothorax_2nd"


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# ---- soft Dice ---------------------------------------------------------------------------------


def _dice(**params):
    return soft_dice("segmentation", **params)


SEED_DICE = {"smooth": 0.01, "squared": True, "smooth_intersection": True, "clamp": True}


def test_soft_dice_matches_the_seed_on_a_hand_worked_batch():
    # Image 1: target [1, 1, 0, 0], all logits 0 (p = 0.5): sum(p t) = 1, sum(p^2) = 1, sum(t^2) = 2.
    # Image 2: empty target, the same p: sum(p t) = 0, sum(p^2) = 1, sum(t^2) = 0.
    logits = torch.zeros(2, 1, 2, 2)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).reshape(2, 1, 2, 2)
    seed = 1 - (2 * 1.01 / 3.01 + 2 * 0.01 / 1.01) / 2  # 0.654551
    old = 1 - ((2 + 0.01) / 3.01 + 0.01 / 1.01) / 2  # medals' (2 I + s) / (U + s): 0.661163
    got = float(_dice(**SEED_DICE)(logits, {"mask": mask}))
    assert got == pytest.approx(seed, abs=1e-6)
    assert seed == pytest.approx(0.654551, abs=1e-6) and old == pytest.approx(0.661163, abs=1e-6)
    # Without the two switches, the same params give medals' form (the figures differ by 0.0066).
    plain = float(_dice(smooth=0.01, squared=True)(logits, {"mask": mask}))
    assert plain == pytest.approx(old, abs=1e-6)
    assert abs(got - plain) == pytest.approx(0.006612, abs=1e-5)


def test_soft_dice_clamps_the_batch_score_like_the_seed():
    # Empty targets and near-empty predictions: each image scores 2 s / (sum(p^2) + s), close to 2;
    # the batch score is clamped to 1 - 1e-7, so the loss is ~1e-7 and no gradient flows.
    logits = torch.full((2, 1, 2, 2), -12.0, requires_grad=True)
    mask = torch.zeros(2, 1, 2, 2)
    p2 = 4 * _sigmoid(-12.0) ** 2
    assert 2 * 0.01 / (p2 + 0.01) > 1.99  # the unclamped score
    loss = _dice(**SEED_DICE)(logits, {"mask": mask})
    # 1 - 1e-7 in float32 (the seed's dtype too) is 1 - 2^-23 = 1 - 1.19e-7.
    assert float(loss.detach()) == pytest.approx(float(1 - np.float32(1 - 1e-7)), abs=1e-12)
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0
    # A batch under the clamp keeps its gradient.
    logits = torch.zeros(1, 1, 2, 2, requires_grad=True)
    _dice(**SEED_DICE)(logits, {"mask": torch.ones(1, 1, 2, 2)}).backward()
    assert torch.count_nonzero(logits.grad) == 4


def test_segmentation_recipes_use_the_seed_dice():
    for name in ("seg_unet_se50_1024", "seg_unet_se101_1024", "seg_unet_ef3_1024", "seg_unet_ef5_768"):
        recipe = load_recipe(RECIPES / f"{name}.yaml")
        assert recipe.loss[0].name == "dice" and recipe.loss[0].params == SEED_DICE
    deeplab = load_recipe(RECIPES / "seg_deeplab_se50_1024.yaml")
    assert deeplab.loss[0].params == SEED_DICE


# ---- 768 -> 1024: upsample logits, then sigmoid ---------------------------------------------------


class _Fixed(nn.Module):
    """A 'model' whose mask logits are always the given [1, h, w] map."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.register_buffer("logits", logits)

    def forward(self, x):
        return self.logits.expand(x.shape[0], *self.logits.shape)


class _Images(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        return {"image": torch.zeros(3, 2, 2), "index": i}


def test_logits_are_upsampled_before_the_sigmoid():
    # Columns of logits -4, 4 upsampled 2 -> 4 with half-pixel centres sample the source at x = 0,
    # 0.25, 0.75, 1 (clamped): logits -4, -2, 2, 4, then sigmoid. Upsampling the probabilities instead
    # interpolates sigmoid(-4) and sigmoid(4): 0.0180, 0.2590, 0.7410, 0.9820.
    logits = torch.tensor([[-4.0, 4.0], [-4.0, 4.0]])
    model = _Fixed(logits[None])
    loader = DataLoader(_Images(), batch_size=2)
    probs, _ = predict_with_cls(model, loader, "segmentation", mask_size=4)
    seed_row = [_sigmoid(v) for v in (-4, -2, 2, 4)]
    prob_row = [
        _sigmoid(-4),
        0.75 * _sigmoid(-4) + 0.25 * _sigmoid(4),
        0.25 * _sigmoid(-4) + 0.75 * _sigmoid(4),
    ]
    prob_row.append(_sigmoid(4))
    assert probs.shape == (2, 4, 4)
    np.testing.assert_allclose(probs[0], np.tile(seed_row, (4, 1)), rtol=0, atol=1e-6)
    diff = np.abs(np.array(seed_row) - np.array(prob_row)).max()
    assert diff == pytest.approx(0.139790, abs=1e-5)  # sigmoid then upsample would be off by this
    # At a pixel threshold of 0.2 the two orders disagree on a whole column.
    assert (np.array(seed_row) > 0.2).tolist() == [False, False, True, True]
    assert (np.array(prob_row) > 0.2).tolist() == [False, True, True, True]
    # Without mask_size the model's own size is kept.
    same, _ = predict_with_cls(model, loader, "segmentation")
    np.testing.assert_allclose(same[0], torch.sigmoid(logits).numpy(), atol=1e-7)
    assert upsample_logits(logits[None], 2).shape == (1, 2, 2)


def test_the_768_recipe_predicts_1024_masks_and_the_others_their_own_size():
    plan = make_plan(RECIPES / "ensemble.yaml")
    recipes = [load_recipe(path) for path in plan.all_recipes]
    sizes = {recipe.name: (recipe.train.image_size, recipe.infer.mask_size) for recipe in recipes}
    assert sizes["seg_unet_ef5_768"] == (768, 1024)
    assert all(mask is None for name, (_, mask) in sizes.items() if name != "seg_unet_ef5_768")
    with pytest.raises(MedalsError, match="infer.mask_size .the test masks. side. is for task segmentation"):
        recipe_from_dict({"name": "c", "task": "multiclass", "infer": {"mask_size": 8}}, "test")


# ---- gate ----------------------------------------------------------------------------------------


def test_gate_keeps_masks_strictly_above_0_65():
    plan = make_plan(RECIPES / "ensemble.yaml")
    assert plan.ensemble.gate.threshold == 0.65  # stacking.py's submission_swa_0.65.csv
    seg = load_recipe(RECIPES / "seg_unet_se50_1024.yaml")
    gated = seg.model_copy(update={"submit": seg.submit.model_copy(update={"gate_threshold": 0.65})})
    test = pd.DataFrame({"id": list("abcd"), "p_cls": [0.64, 0.65, 0.6501, 0.7]})
    assert _gate(gated, test).tolist() == [False, False, True, True]  # seed: preds > 0.65


# ---- RLE: a run reaching the last pixel ----------------------------------------------------------


def seed_rle(mask: np.ndarray) -> str:
    """The seed's rule re-derived: column-major scan, a run is written when the mask falls back to 0,
    each start relative to the pixel after the previous run's end."""
    out, start, length, since = [], -1, 0, 0
    last = 0
    for value in mask.T.ravel():
        if value != last:
            if value:
                start, length = since, 1
            else:
                out += [str(start), str(length)]
                start, length, since = -1, 0, 0
        elif start > -1:
            length += 1
        last = value
        since += 1
    return " ".join(out)


def test_rle_keeps_a_run_that_touches_the_last_pixel():
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[2:, 0] = 1  # column-major pixels 2, 3
    mask[2:, 3] = 1  # pixels 14, 15: the run ends at the last pixel
    assert seed_rle(mask) == "2 2"  # the seed drops the second run
    assert encode(mask, "siim") == "2 2 10 2"
    assert decode(encode(mask, "siim"), (4, 4), "siim").tolist() == mask.astype(bool).tolist()
    lost = decode(seed_rle(mask), (4, 4), "siim")
    assert int((lost != mask.astype(bool)).sum()) == 2  # the seed's string loses these 2 pixels
    # Away from the last pixel the two encoders agree.
    inner = mask.copy()
    inner[3, 3] = 0
    assert seed_rle(inner) == encode(inner, "siim") == "2 2 10 1"


# ---- image-level head ----------------------------------------------------------------------------


def test_cls_head_is_gap_then_two_linears_on_the_deepest_map():
    from medals.models.segmenter import ClassificationHead

    # Unet_se50_model: GAP of the deepest encoder map (old smp listed it first), Linear(C, C),
    # Linear(C, 1), nothing in between.
    head = ClassificationHead(6)
    assert [type(m) for m in head.children()] == [nn.AdaptiveAvgPool2d, nn.Linear, nn.Linear]
    assert (head.hidden.in_features, head.hidden.out_features, head.out.out_features) == (6, 6, 1)
    features = torch.randn(2, 6, 3, 5)
    pooled = features.mean(dim=(2, 3))
    expected = pooled @ head.hidden.weight.T + head.hidden.bias
    expected = expected @ head.out.weight.T + head.out.bias
    torch.testing.assert_close(head(features), expected)
