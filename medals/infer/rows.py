"""Predicting a table's rows with a fold's model: the eval loader, TTA views, seeded random crops."""

from __future__ import annotations

import pandas as pd
import torch

from medals.config import Recipe


def eval_loader(recipe: Recipe, dataset):
    """The inference loader over a dataset: in order, infer.batch_size (else train's), its collation."""
    from medals.data.dataset import make_loader

    batch = recipe.infer.batch_size or recipe.train.batch_size
    collate = getattr(dataset, "collate_fn", None)
    return make_loader(dataset, batch, False, recipe.train.num_workers, recipe.seed, collate_fn=collate)


def make_crop_loader(recipe: Recipe, rows: pd.DataFrame, num_classes: int, with_target: bool, seed: int):
    """An eval loader whose images are crop seed `seed`'s random square crops (infer.crop_seeds)."""
    from medals.augment.cpu import build_crop_transform
    from medals.augment.crop import SeededItems
    from medals.data.dataset import recipe_dataset

    dataset = recipe_dataset(recipe, rows, num_classes, train=False, with_target=with_target)
    # The crop goes in front of the eval dataset's own validation pipeline (its resize and normalisation).
    dataset.transform = build_crop_transform(
        seed, recipe.train.image_size, recipe.task, base=dataset.transform
    )
    return eval_loader(recipe, SeededItems(dataset, seed))


def predict_rows(
    recipe: Recipe,
    model,
    rows: pd.DataFrame,
    num_classes: int,
    device,
    with_target: bool,
    mask_size: int | None = None,
    identity: bool = False,
):
    """(probabilities, image-level probabilities of a classification head or None); with identity=True
    also the identity view's probabilities alone (None with crop TTA, whose crops have no such view).

    mask_size: segmentation logits upsampled to that side before the sigmoid (infer.mask_size; the
    predict stage passes it, evaluation scores at the model's own size).

    With infer.crop_seeds = N > 0 (classification only) each image is predicted on N seeded random square
    crops, each through all the TTA views, and the N results are merged element-wise by infer.merge.
    """
    from medals.infer.batches import batch_source
    from medals.infer.predict import predict_with_cls
    from medals.infer.tta import merge
    from medals.runtime.settings import resolve_runtime

    runtime = resolve_runtime(recipe, device)

    def run(loader, prepare=None):
        return predict_with_cls(
            model,
            loader,
            recipe.task,
            tta=recipe.infer.tta,
            merge=recipe.infer.merge,
            device=device,
            precision=recipe.train.precision,
            channels_last=runtime.channels_last,
            prepare=prepare,
            mask_size=mask_size,
            identity=identity,
        )

    n_crops = recipe.infer.crop_seeds
    if n_crops == 0:
        dataset, prepare = batch_source(
            recipe, runtime, rows, num_classes, False, device, with_target=with_target
        )
        return run(eval_loader(recipe, dataset), prepare)
    if identity:
        return (*predict_rows(recipe, model, rows, num_classes, device, with_target), None)
    per_crop = [
        torch.from_numpy(run(make_crop_loader(recipe, rows, num_classes, with_target, seed))[0])
        for seed in range(n_crops)
    ]
    return merge(per_crop, recipe.infer.merge).numpy(), None
