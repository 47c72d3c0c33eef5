"""What several stages share: reading earlier stages' files, devices, loaders and fold models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medals.config import Recipe
from medals.errors import MedalsError
from medals.files import read_json
from medals.layout import RunLayout


def say(message: str) -> None:
    print(message, flush=True)


def resolve_device(name: str | None) -> torch.device:
    """The device asked for ("auto": cuda when there is one); under torchrun a CUDA device is the rank's
    own, cuda:LOCAL_RANK."""
    from medals.train.distributed import device_for_rank

    if name in (None, "auto"):
        return device_for_rank("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MedalsError(f"device '{name}' was asked for but no CUDA device is available")
    return device_for_rank(name)


def require(path: Path, stage: str) -> Path:
    if not path.exists():
        raise MedalsError(f"{path} does not exist: run `medals {stage}` for this recipe first")
    return path


def read_table(layout: RunLayout) -> pd.DataFrame:
    return pd.read_parquet(require(layout.table, "prepare"))


def read_labels(layout: RunLayout) -> dict:
    return read_json(require(layout.labels, "prepare"))


def train_rows_with_folds(layout: RunLayout) -> pd.DataFrame:
    table = read_table(layout)
    folds = pd.read_parquet(require(layout.folds, "split"))
    train = table[table["split"] == "train"].reset_index(drop=True)
    return train.merge(folds[["id", "fold"]], on="id", how="inner", validate="one_to_one")


def train_rows(layout: RunLayout) -> pd.DataFrame:
    table = read_table(layout)
    return table[table["split"] == "train"].reset_index(drop=True)


def test_rows(layout: RunLayout) -> pd.DataFrame:
    table = read_table(layout)
    return table[table["split"] == "test"].reset_index(drop=True)


def fold_ids(recipe: Recipe) -> list[int]:
    folds = recipe.train.folds
    if folds is None:
        return list(range(recipe.split.n_folds))
    bad = [fold for fold in folds if not 0 <= fold < recipe.split.n_folds]
    if bad:
        raise MedalsError(f"train.folds has {bad[0]}, outside 0..{recipe.split.n_folds - 1}")
    return list(folds)


def positive_index(recipe: Recipe, classes: list[str] | None) -> int | None:
    """Index of submit.target_class in the class list (multiclass AUC and probability submissions)."""
    target = recipe.submit.target_class
    if target is None or recipe.task != "multiclass":
        return None
    if isinstance(target, int):
        return target
    if classes is None or target not in classes:
        raise MedalsError(f"submit.target_class '{target}' is not one of the classes {classes}")
    return classes.index(target)


def _eval_loader(recipe: Recipe, dataset):
    """The inference loader over a dataset: in order, infer.batch_size (else train's), its collation."""
    from medals.data.dataset import make_loader

    batch = recipe.infer.batch_size or recipe.train.batch_size
    collate = getattr(dataset, "collate_fn", None)
    return make_loader(dataset, batch, False, recipe.train.num_workers, recipe.seed, collate_fn=collate)


def make_eval_batches(
    recipe: Recipe, rows: pd.DataFrame, num_classes: int, with_target: bool, device, runtime
):
    """(loader, prepare or None) for inference on the runtime's data path."""
    if runtime.data_path != "gpu":
        from medals.data.dataset import recipe_dataset

        dataset = recipe_dataset(recipe, rows, num_classes, train=False, with_target=with_target)
        return _eval_loader(recipe, dataset), None
    from medals.data.device_batches import recipe_device_data

    dataset, batcher = recipe_device_data(
        recipe, rows, num_classes, False, device, runtime.channels_last, with_target=with_target
    )
    return _eval_loader(recipe, dataset), batcher


def load_fold_model(recipe: Recipe, layout: RunLayout, fold: int, num_classes: int, n_meta: int, device):
    from medals.models.factory import create_model
    from medals.train.checkpoint import load_model_weights

    path = layout.checkpoint(fold, recipe.infer.checkpoint)
    if not path.exists():
        raise MedalsError(
            f"checkpoint {path} does not exist: train fold {fold} first "
            f"(or set infer.checkpoint to one of the saved names)"
        )
    # The checkpoint holds every weight: no download, no re-read of model.weights.
    model = create_model(recipe, num_classes, n_meta=n_meta, init_weights=False)
    load_model_weights(model, path)
    return model.to(device)


def make_crop_loader(recipe: Recipe, rows: pd.DataFrame, num_classes: int, with_target: bool, seed: int):
    """An eval loader whose images are crop seed `seed`'s random square crops (infer.crop_seeds)."""
    from medals.data.augment_cpu import build_crop_transform
    from medals.data.crop import SeededItems
    from medals.data.dataset import recipe_dataset

    dataset = recipe_dataset(recipe, rows, num_classes, train=False, with_target=with_target)
    # The crop goes in front of the eval dataset's own validation pipeline (its resize and normalisation).
    dataset.transform = build_crop_transform(
        seed, recipe.train.image_size, recipe.task, base=dataset.transform
    )
    return _eval_loader(recipe, SeededItems(dataset, seed))


def predict_rows(recipe: Recipe, model, rows: pd.DataFrame, num_classes: int, device, with_target: bool):
    """(probabilities, image-level probabilities of a classification head or None).

    With infer.crop_seeds = N > 0 (classification only) each image is predicted on N seeded random square
    crops, each through all the TTA views, and the N results are merged element-wise by infer.merge.
    """
    from medals.infer.predict import predict_with_cls
    from medals.infer.tta import merge
    from medals.train.runtime import resolve_runtime

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
        )

    n_crops = recipe.infer.crop_seeds
    if n_crops == 0:
        return run(*make_eval_batches(recipe, rows, num_classes, with_target, device, runtime))
    per_crop = [
        torch.from_numpy(run(make_crop_loader(recipe, rows, num_classes, with_target, seed))[0])
        for seed in range(n_crops)
    ]
    return merge(per_crop, recipe.infer.merge).numpy(), None


def prob_columns(num_classes: int) -> list[str]:
    return [f"p_{k}" for k in range(num_classes)]


def prob_frame(ids: pd.Series, probs: np.ndarray, num_classes: int) -> pd.DataFrame:
    frame = pd.DataFrame(probs.astype(np.float32), columns=prob_columns(num_classes))
    frame.insert(0, "id", ids.astype(str).to_numpy())
    return frame
