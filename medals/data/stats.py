"""Dataset channel statistics for train.mean / train.std.

The 1st-place HPA solution normalised each of the four channels by the dataset's own mean and std.
Compute them once over the training images and put the numbers in the recipe::

    from medals.config import load_recipe  # or however the recipe is loaded
    from medals.data.stats import channel_stats
    from medals.data.table import build_table

    table = build_table(recipe)
    mean, std = channel_stats(table.loc[table.split == "train", "path"], sample=2000)
    # train: {mean: [...], std: [...]}

Values are in [0, 1] units (pixel / 255), as train.mean/std expect. Paths are read with read_image, so
"|"-joined channel files and plane selectors work as in training.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from medals.data.io import read_image
from medals.errors import MedalsError


def channel_stats(
    paths: Iterable[str], sample: int | None = None, seed: int = 0
) -> tuple[list[float], list[float]]:
    """Per-channel (mean, std) over all pixels of the images (a random ``sample`` of them if given).

    Every image counts by its pixels (exact pooled statistics, accumulated in float64); all images must
    have the same channel count.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise MedalsError("channel_stats needs at least one image path")
    if sample is not None:
        if sample < 1:
            raise MedalsError(f"channel_stats: sample must be a positive number of images, got {sample}")
        if sample < len(paths):
            rng = np.random.default_rng(seed)
            paths = [paths[i] for i in sorted(rng.choice(len(paths), size=sample, replace=False))]
    total = total_sq = None
    count = 0
    for path in paths:
        image = read_image(path).astype(np.float64) / 255.0
        pixels = image.reshape(-1, image.shape[2])
        if total is None:
            total = np.zeros(pixels.shape[1])
            total_sq = np.zeros(pixels.shape[1])
        elif pixels.shape[1] != total.shape[0]:
            raise MedalsError(
                f"channel_stats: {path} has {pixels.shape[1]} channels but earlier images have {total.shape[0]}"
            )
        total += pixels.sum(axis=0)
        total_sq += (pixels**2).sum(axis=0)
        count += pixels.shape[0]
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 0.0)
    return [float(v) for v in mean], [float(v) for v in np.sqrt(var)]
