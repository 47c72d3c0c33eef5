"""Per-class mask post-processing searched on OOF predictions: pixel threshold, smallest component, and an
empty-mask gate, for each class of a multi-class segmentation (the one-class case is C = 1).

For each class, one after the other on the OOF masks at network resolution, maximising that class's mean
Dice over images (both empty = 1, as Severstal and UW-Madison score each (image, class) pair):

1. the pixel threshold (pixels on where p > t), with nothing else;
2. then the smallest kept 8-connected component (``min_area``, pixels at network resolution);
3. then the gate: the class's mask is kept only where its highest pixel probability is above ``gate``
   (an image-level "is this class present", so a few confident pixels do not make a false positive).

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


def _best(scores: list[float], neutral: int) -> int:
    """Index of the best score; among ties (within 1e-9) the one nearest `neutral`."""
    best = max(scores)
    tied = [i for i, value in enumerate(scores) if value >= best - 1e-9]
    return min(tied, key=lambda i: abs(i - neutral))


def search_class_post(probs: np.ndarray, truth: np.ndarray) -> tuple[list[ClassPost], dict[str, list[float]]]:
    """(one ClassPost per class, {"dice_before": per-class Dice at 0.5, "dice_after": with the search's
    choices}) for OOF probabilities and truth [N, C, S, S] (or [N, S, S] for one class)."""
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

        def dice(post: ClassPost, p=p, t=t) -> float:
            return float(dice_per_image(class_decisions(p, post), t).mean())

        before.append(dice(ClassPost()))
        scores = [dice(ClassPost(threshold=float(x))) for x in THRESHOLDS]
        post = ClassPost(threshold=float(THRESHOLDS[_best(scores, int(np.argmin(np.abs(THRESHOLDS - 0.5))))]))
        scores = [dice(ClassPost(post.threshold, a)) for a in areas]
        post = ClassPost(post.threshold, areas[_best(scores, 0)])
        scores = [dice(ClassPost(post.threshold, post.min_area, g)) for g in GATES]
        post = ClassPost(post.threshold, post.min_area, GATES[_best(scores, 0)])
        chosen.append(post)
        after.append(dice(post))
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
