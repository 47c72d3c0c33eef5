from __future__ import annotations

import numpy as np
import pytest

from medals.errors import MedalsError
from medals.post.decisions import multilabel_decisions, threshold_masks


def test_threshold_is_strict():
    probs = np.array([[[0.2, 0.5], [0.51, 0.9]]])
    assert threshold_masks(probs, 0.5).tolist() == [[[False, False], [True, True]]]


def test_min_area_removes_small_components_per_image():
    probs = np.zeros((2, 8, 8), dtype=np.float32)
    probs[0, 0:3, 0:3] = 0.9  # 9 pixels: kept
    probs[0, 6, 6] = 0.9  # 1 pixel: removed
    probs[0, 5, 5] = 0.9  # diagonal neighbour of (6, 6): with 8-connectivity the pair has 2 pixels
    probs[0, 4, 0:2] = 0.9  # a 2-pixel bar
    # 4 pixels at the same place as image 0's 9-pixel block: were components joined across the
    # stack axis, this block would count 13 pixels and survive min_area 5.
    probs[1, 0:2, 0:2] = 0.9
    out = threshold_masks(probs, 0.5, min_area=5)
    assert out[0, 0:3, 0:3].all()
    assert out.sum() == 9  # the diagonal pair, the bar and image 1's block are gone
    # 8-connectivity: the diagonal pair is one component of 2 pixels and survives min_area 2.
    kept = threshold_masks(probs, 0.5, min_area=2)
    assert kept[0, 5, 5] and kept[0, 6, 6] and kept[0, 4, 0] and kept[1].sum() == 4
    assert threshold_masks(probs, 0.5, min_area=0).sum() == 9 + 2 + 2 + 4


def test_threshold_masks_shape_check():
    with pytest.raises(MedalsError, match=r"\[N, H, W\]"):
        threshold_masks(np.zeros((4, 4)), 0.5)


def test_multilabel_decisions():
    probs = np.array([[0.1, 0.2, 0.3], [0.6, 0.7, 0.1], [0.5, 0.1, 0.45]])
    thresholds = np.array([0.5, 0.5, 0.4])
    plain = multilabel_decisions(probs, thresholds, always_top1=False)
    assert plain.tolist() == [[False, False, False], [True, True, False], [False, False, True]]
    top1 = multilabel_decisions(probs, thresholds, always_top1=True)
    # Row 0 had nothing: its argmax (class 2) is switched on; row 2's argmax (class 0) is added.
    assert top1.tolist() == [[False, False, True], [True, True, False], [True, False, True]]
    assert multilabel_decisions(probs, 0.55, always_top1=False).sum() == 2
    with pytest.raises(MedalsError, match="2 thresholds given for 3 classes"):
        multilabel_decisions(probs, [0.5, 0.5])
