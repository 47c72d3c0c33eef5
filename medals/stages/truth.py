"""Ground truth of training rows in the shape the metrics take."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.data.splits import multi_hot


def class_truth(recipe: Recipe, rows: pd.DataFrame, num_classes: int) -> np.ndarray:
    if recipe.task in ("multiclass", "binary"):
        return rows["label"].to_numpy(dtype=np.int64)
    if recipe.task == "regression":
        return rows["target"].to_numpy(dtype=np.float64)
    if recipe.task == "ordinal":  # the class index
        return rows["target"].to_numpy(dtype=np.float64).round().astype(np.int64)
    return multi_hot(rows["labels"], num_classes)


def mask_truth(recipe: Recipe, rows: pd.DataFrame, num_classes: int = 1) -> np.ndarray:
    """Masks at network resolution, resized the way the validation transform resizes them: [N, S, S],
    or [N, C, S, S] for C > 1 mask classes."""
    import cv2

    from medals.data.io import read_mask
    from medals.data.long_masks import decode_classes
    from medals.data.rle import decode_many

    size = recipe.train.image_size
    if num_classes > 1:
        masks = np.zeros((len(rows), num_classes, size, size), dtype=bool)
        for row, item in enumerate(rows.itertuples(index=False)):
            full = decode_classes(
                item.rle, (int(item.height), int(item.width)), recipe.data.rle_format, num_classes
            )
            small = cv2.resize(full.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
            masks[row] = small.reshape(size, size, num_classes).transpose(2, 0, 1) > 0
        return masks
    masks = np.zeros((len(rows), size, size), dtype=bool)
    for row, item in enumerate(rows.itertuples(index=False)):
        mask_path = getattr(item, "mask_path", None)
        if isinstance(mask_path, str) and mask_path:
            full = read_mask(mask_path)
        else:
            full = decode_many(item.rle, (int(item.height), int(item.width)), recipe.data.rle_format)
        small = cv2.resize(full.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
        masks[row] = small > 0
    return masks
