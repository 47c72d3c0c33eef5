"""Turn probabilities into decisions: thresholded masks without specks, multilabel label sets.

A probability is a positive decision when strictly above its threshold, as in medals.post.metrics.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medals.errors import MedalsError

# 8-connectivity within each image and none across the stack axis, so one label() call handles
# every image of an [N, H, W] stack at once.
_STACK_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_STACK_STRUCTURE[1] = True


def remove_small_components(masks: np.ndarray, min_area: int) -> np.ndarray:
    """Drop 8-connected components of fewer than ``min_area`` pixels from bool masks [N, H, W]."""
    if min_area <= 0:
        return masks
    labels, count = ndimage.label(masks, structure=_STACK_STRUCTURE)
    if count == 0:
        return masks
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_area
    keep[0] = False  # background
    return keep[labels]


def threshold_masks(probs: np.ndarray, pixel_threshold: float, min_area: int = 0) -> np.ndarray:
    """bool [N, H, W]: pixels above ``pixel_threshold``, components under ``min_area`` removed."""
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise MedalsError(f"mask probabilities must be an [N, H, W] stack, got shape {probs.shape}")
    return remove_small_components(probs > pixel_threshold, int(min_area))


def multilabel_decisions(
    probs: np.ndarray, thresholds: float | np.ndarray, always_top1: bool = True
) -> np.ndarray:
    """bool [N, K]: class k is on where p_k > threshold_k; with ``always_top1`` the argmax is always on.

    Forcing the top class suits competitions where every image has at least one label (HPA).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise MedalsError(f"multilabel probabilities must be [N, K], got shape {probs.shape}")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim == 1 and len(thresholds) != probs.shape[1]:
        raise MedalsError(f"{len(thresholds)} thresholds given for {probs.shape[1]} classes")
    decisions = probs > thresholds
    if always_top1 and len(probs):
        decisions[np.arange(len(probs)), probs.argmax(axis=1)] = True
    return decisions
