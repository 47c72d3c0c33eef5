"""Per-class mask post-processing searched on OOF predictions: pixel threshold, smallest component, and an
empty-mask gate, for each class of a multi-class segmentation (the one-class case is C = 1).

For each class, on the OOF masks at network resolution, maximising that class's mean Dice over images
(both empty = 1, as Severstal and UW-Madison score each (image, class) pair):

1. the pixel threshold (pixels on where p > t) together with the gate: the class's mask is kept only
   where its highest pixel probability is above ``gate`` (an image-level "is this class present", so
   a haze of middling probabilities does not make a false positive);
2. then the smallest kept 8-connected component (``min_area``, pixels at network resolution).

Ties go to the neutral choice (the threshold nearest 0.5, no area limit, no gate), so a class the OOF
data says nothing about is post-processed as little as possible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from medals.errors import MedalsError
from medals.post.decisions import remove_small_components
from medals.post.metrics import dice_per_image

THRESHOLDS = np.round(np.arange(0.1, 0.91, 0.05), 2)
AREA_FRACTIONS = (0.0, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04)  # of the image's pixels
GATES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class ClassPost:
    """One class's post-processing; min_area in pixels at the network resolution the search ran at."""

    threshold: float = 0.5
    min_area: int = 0
    gate: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _as_classes(masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks)
    return masks[:, None] if masks.ndim == 3 else masks


def class_decisions(probs: np.ndarray, post: ClassPost, min_area: int | None = None) -> np.ndarray:
    """bool [N, H, W] of one class's probabilities [N, H, W] under `post` (min_area overrides its area)."""
    area = post.min_area if min_area is None else min_area
    masks = remove_small_components(probs > post.threshold, int(area))
    if post.gate > 0:
        keep = probs.reshape(len(probs), -1).max(axis=1) > post.gate
        masks = masks & keep[:, None, None]
    return masks


def _dice_by_gate(pred: np.ndarray, truth: np.ndarray, p_max: np.ndarray) -> np.ndarray:
    """[G] mean Dice over images of bool masks [N, H, W] under each gate of GATES (0: no gate); a gated
    image's mask is empty, so its Dice is 1 where the truth is empty and 0 where it is not."""
    inter = (pred & truth).sum(axis=(1, 2))
    total = pred.sum(axis=(1, 2)) + truth.sum(axis=(1, 2))
    dice = np.where(total > 0, 2.0 * inter / np.maximum(total, 1), 1.0)
    empty_truth = np.where(truth.any(axis=(1, 2)), 0.0, 1.0)
    return np.array([(np.where(p_max > g, dice, empty_truth) if g > 0 else dice).mean() for g in GATES])


def search_class_post(probs: np.ndarray, truth: np.ndarray) -> tuple[list[ClassPost], dict[str, list[float]]]:
    """(one ClassPost per class, {"dice_before": per-class Dice at 0.5, "dice_after": with the search's
    choices}) for OOF probabilities and truth [N, C, S, S] (or [N, S, S] for one class).

    Threshold and gate are searched together (a gate can keep a low threshold's full masks on the images
    it lets through), from per-image counts at each threshold; then the smallest component."""
    probs, truth = _as_classes(probs).astype(np.float32), _as_classes(truth).astype(bool)
    if probs.shape != truth.shape:
        raise MedalsError(f"OOF masks {probs.shape} and true masks {truth.shape} differ in shape")
    if len(probs) == 0:
        raise MedalsError("there are no OOF masks to search the post-processing on")
    pixels = probs.shape[2] * probs.shape[3]
    areas = sorted({int(round(f * pixels)) for f in AREA_FRACTIONS})
    chosen, before, after = [], [], []
    for k in range(probs.shape[1]):
        p, t = probs[:, k], truth[:, k]
        p_max = p.reshape(len(p), -1).max(axis=1)
        before.append(float(dice_per_image(p > 0.5, t).mean()))
        grid = np.stack([_dice_by_gate(p > x, t, p_max) for x in THRESHOLDS])  # [T, G]
        # ties: the threshold nearest 0.5, then the lowest gate (the least post-processing)
        order = sorted(
            np.ndindex(*grid.shape), key=lambda ij: (-round(grid[ij], 9), abs(THRESHOLDS[ij[0]] - 0.5), ij[1])
        )
        i, j = order[0]
        post = ClassPost(float(THRESHOLDS[i]), 0, float(GATES[j]))
        scores = [float(dice_per_image(class_decisions(p, post, a), t).mean()) for a in areas]
        best = max(scores)
        post = ClassPost(
            post.threshold, areas[next(n for n, v in enumerate(scores) if v >= best - 1e-9)], post.gate
        )
        chosen.append(post)
        after.append(float(dice_per_image(class_decisions(p, post), t).mean()))
    return chosen, {"dice_before": before, "dice_after": after}


def full_size_masks(
    probs: np.ndarray, size: tuple[int, int], posts: list[ClassPost], searched_side: int | None = None
) -> np.ndarray:
    """bool [C, H, W]: one image's class probabilities [C, h, w] upsampled to `size` (probabilities, not
    decisions, so edges are placed at full resolution) and post-processed per class. A min_area found at
    network resolution (searched_side) is scaled to the full size's pixels; the gate reads the network-
    resolution maximum, as the search did."""
    probs = _as_classes(probs[None])[0]
    if len(posts) != probs.shape[0]:
        raise MedalsError(f"{len(posts)} post-processing settings for {probs.shape[0]} mask classes")
    height, width = int(size[0]), int(size[1])
    out = np.zeros((probs.shape[0], height, width), dtype=bool)
    for k, post in enumerate(posts):
        if post.gate > 0 and float(probs[k].max()) <= post.gate:
            continue
        up = cv2.resize(probs[k].astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        scale = height * width / (searched_side * searched_side) if searched_side else 1.0
        out[k] = remove_small_components((up > post.threshold)[None], int(round(post.min_area * scale)))[0]
    return out
