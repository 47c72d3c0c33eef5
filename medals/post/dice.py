"""Dice on mask stacks: per image with an explicit empty rule, at a reduced size (as SIIM-ACR pneumothorax
scored it), and swept over the pixel threshold. A pixel is positive when its probability is strictly
above the threshold (``p > t``), as everywhere in medals.post."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from medals.errors import MedalsError


def dice_per_image(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice of each image of bool stacks [N, ...]: both empty = 1, exactly one empty = 0."""
    pred = np.asarray(pred).astype(bool)
    truth = np.asarray(truth).astype(bool)
    if pred.shape != truth.shape:
        raise MedalsError(f"predicted masks {pred.shape} and true masks {truth.shape} differ in shape")
    pred = pred.reshape(len(pred), -1)
    truth = truth.reshape(len(truth), -1)
    intersection = (pred & truth).sum(axis=1)
    total = pred.sum(axis=1) + truth.sum(axis=1)
    # With one mask empty the intersection is 0 while the total is not, so the formula gives 0 there.
    return np.where(total > 0, 2.0 * intersection / np.maximum(total, 1), 1.0)


def mean_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(dice_per_image(pred, truth)))


def class_pairs(masks: np.ndarray) -> np.ndarray:
    """[N, C, H, W] masks of C classes -> [N * C, H, W], one mask per (image, class) pair (image-major)."""
    masks = np.asarray(masks)
    return masks.reshape(-1, *masks.shape[2:]) if masks.ndim == 4 else masks


def dice_per_class(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[N, C] Dice of every (image, class) pair of [N, C, H, W] stacks; their mean is Severstal's metric."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.ndim != 4:
        raise MedalsError(f"masks of several classes must be [N, C, H, W], got shape {pred.shape}")
    return dice_per_image(class_pairs(pred), class_pairs(truth)).reshape(pred.shape[:2])


def downsample(images: np.ndarray, size: int = 128) -> np.ndarray:
    """Bilinear resize of a stack [N, H, W] to float32 [N, size, size] (half-pixel centres, no antialias).

    cv2.resize (INTER_LINEAR) one image at a time rather than one batched torch interpolate: both
    sample the same points as torch's align_corners=False (agreeing to ~1e-7 at 1024 -> 128, ~1e-5 at
    non-integer factors), but only one image at a time is converted to float32, so memory-mapped float16
    stacks of thousands of 1024x1024 masks never get a full float32 copy, and this module stays
    free of torch.
    """
    images = np.asarray(images)  # a memory map stays a view, not a copy
    if images.ndim != 3:
        raise MedalsError(f"images to downsample must be an [N, H, W] stack, got shape {images.shape}")
    if int(size) != size or size < 1:
        raise MedalsError(f"downsample size must be a positive integer, got {size}")
    size = int(size)
    out = np.empty((len(images), size, size), dtype=np.float32)
    for i in range(len(images)):
        image = np.asarray(images[i], dtype=np.float32)
        # dsize is (width, height); a same-size resize returns the image unchanged.
        out[i] = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return out


def _small_truth(truth: np.ndarray, size: int | None) -> np.ndarray:
    """Truth masks at ``size``: bilinear on 0/1 floats, then on where strictly above 0.5."""
    if size is None:
        return np.asarray(truth).astype(bool)
    return downsample(truth, size) > 0.5


def _check_pair(probs: np.ndarray, truth: np.ndarray) -> None:
    if np.shape(probs) != np.shape(truth):
        raise MedalsError(
            f"mask probabilities {np.shape(probs)} and true masks {np.shape(truth)} differ in shape"
        )


def dice_at_size(probs: np.ndarray, truth: np.ndarray, size: int = 128, threshold: float = 0.5) -> float:
    """Mean per-image Dice after downsampling probabilities and truth [N, H, W] to ``size`` (PTX's metric).

    Pixels are on where the downsampled probability is above ``threshold`` and the downsampled truth
    above 0.5; both empty = 1, exactly one empty = 0 (dice_per_image).
    """
    _check_pair(probs, truth)
    return mean_dice(downsample(probs, size) > threshold, _small_truth(truth, size))


def best_threshold(scores: dict[float, float]) -> float:
    """The threshold with the highest score; ties go to the one nearest 0.5 (as search_thresholds)."""
    best = max(scores.values())
    tied = [t for t, value in scores.items() if value >= best - 1e-12]
    return min(tied, key=lambda t: abs(t - 0.5))


def threshold_grid(thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    grid = np.asarray(thresholds, dtype=np.float64).ravel()
    if len(grid) == 0:
        raise MedalsError("the threshold grid is empty")
    return grid


def sweep_pixel_threshold(
    probs: np.ndarray,
    truth: np.ndarray,
    thresholds: Sequence[float] | np.ndarray,
    size: int | None = 128,
) -> tuple[float, dict[float, float]]:
    """Mean Dice at each pixel threshold: (best threshold, {threshold: dice}).

    Both stacks are downsampled to ``size`` once (None keeps the full size), then every threshold is
    scored on the small stacks, so the sweep costs one resize, not one per threshold.
    """
    _check_pair(probs, truth)
    grid = threshold_grid(thresholds)
    small = np.asarray(probs, dtype=np.float32) if size is None else downsample(probs, size)
    small_truth = _small_truth(truth, size)
    scores = {float(t): mean_dice(small > t, small_truth) for t in grid}
    return best_threshold(scores), scores
