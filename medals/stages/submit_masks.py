"""submit for masks of several classes, or of a long layout: per-class post-processing (as given, or
searched on OOF), one RLE per (image, class), written into the sample submission's rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.data.long_masks import is_long, long_submission
from medals.data.rle import encode
from medals.errors import MedalsError
from medals.files import write_json
from medals.post.mask_search import ClassPost, full_size_masks, search_class_post
from medals.stages.common import say
from medals.stages.layout import RunLayout
from medals.stages.truth import mask_truth


def uses_class_masks(recipe: Recipe, labels: dict) -> bool:
    """This path, rather than the one-mask RLE writer: a long layout, several classes, or a searched post."""
    return is_long(recipe.data) or labels["num_classes"] > 1 or recipe.submit.mask_search is not None


def class_posts(recipe: Recipe, layout: RunLayout, train: pd.DataFrame, oof, num_classes: int, classes):
    """(one ClassPost per class, the side its min_area is counted at, or None for full-size pixels)."""
    if recipe.submit.mask_search is None:
        sub = recipe.submit
        return [ClassPost(sub.pixel_threshold, sub.min_area, 0.0)] * num_classes, None
    if oof is None or not layout.oof_masks.exists():
        raise MedalsError("submit.mask_search is 'oof' but there are no OOF masks: run `medals evaluate`")
    rows = train.set_index("id").loc[oof["id"].astype(str)].reset_index()
    probs = np.load(layout.oof_masks)
    posts, dice = search_class_post(probs, mask_truth(recipe, rows, num_classes))
    names = [str(c) for c in classes]
    for name, post, before, after in zip(names, posts, dice["dice_before"], dice["dice_after"], strict=True):
        say(
            f"submit: class {name}: threshold {post.threshold:.2f}, min_area {post.min_area} px, gate "
            f"{post.gate:.2f} (OOF Dice {before:.4f} -> {after:.4f})"
        )
    chosen = {name: post.as_dict() for name, post in zip(names, posts, strict=True)}
    write_json(
        layout.in_run("mask_search.json"), {"image_size": recipe.train.image_size, **dice, "classes": chosen}
    )
    return posts, recipe.train.image_size


def class_mask_submission(
    recipe: Recipe,
    layout: RunLayout,
    rows,
    test: pd.DataFrame,
    masks: np.ndarray,
    oof: pd.DataFrame | None,
    labels: dict,
    sample: pd.DataFrame,
    sample_path,
    keep: np.ndarray,
) -> pd.DataFrame:
    """The submission frame: the long sample's rows filled in, or one RLE per image for one class."""
    num_classes, classes = labels["num_classes"], labels["classes"]
    posts, side = class_posts(recipe, layout, rows.train, oof, num_classes, classes)
    sizes = rows.test.set_index("id").loc[test["id"].astype(str), ["height", "width"]].to_numpy()
    fmt = recipe.data.rle_format
    encoded: dict[str, list[str]] = {}
    for ident, probs, (height, width), kept in zip(test["id"].astype(str), masks, sizes, keep, strict=True):
        if kept:
            full = full_size_masks(np.asarray(probs, dtype=np.float32), (height, width), posts, side)
        else:
            full = np.zeros((num_classes, int(height), int(width)), dtype=bool)
        encoded[ident] = [encode(mask, fmt) for mask in full]
    if is_long(recipe.data):
        return long_submission(sample, recipe.data, classes, sample_path, encoded)
    columns = [str(name).strip() for name in sample.columns[:2]]
    return pd.DataFrame({columns[0]: list(encoded), columns[1]: [rles[0] for rles in encoded.values()]})
