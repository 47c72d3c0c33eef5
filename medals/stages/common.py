"""What several stages share: reading earlier stages' files, devices, loaders and fold models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medals.config import Recipe
from medals.errors import MedalsError
from medals.files import read_json, read_parquet
from medals.stages.layout import RunLayout


def say(message: str) -> None:
    print(message, flush=True)


def resolve_device(name: str | None) -> torch.device:
    """The device asked for ("auto": cuda when there is one); under torchrun a CUDA device is the rank's
    own, cuda:LOCAL_RANK."""
    from medals.runtime.distributed import device_for_rank

    if name in (None, "auto"):
        return device_for_rank("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MedalsError(f"device '{name}' was asked for but no CUDA device is available")
    return device_for_rank(name)


def require(path: Path, stage: str) -> Path:
    if not path.exists():
        raise MedalsError(f"{path} does not exist: run `medals {stage}` for this recipe first")
    return path


def read_run_parquet(layout: RunLayout, path: Path, stage: str | None = None) -> pd.DataFrame:
    """A run-folder parquet file (required from ``stage`` when given); a damaged one in one sentence."""
    return read_parquet(require(path, stage) if stage else path, fix=layout.redo_hint(path))


def read_run_json(layout: RunLayout, path: Path, stage: str | None = None):
    return read_json(require(path, stage) if stage else path, fix=layout.redo_hint(path))


def read_table(layout: RunLayout) -> pd.DataFrame:
    return read_run_parquet(layout, layout.table, "prepare")


def read_labels(layout: RunLayout) -> dict:
    return read_run_json(layout, layout.labels, "prepare")


def train_rows_with_folds(layout: RunLayout) -> pd.DataFrame:
    table = read_table(layout)
    folds = read_run_parquet(layout, layout.folds, "split")
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
    return class_index(target, classes, "submit.target_class")


def class_index(target: str | int, classes: list[str] | None, key: str) -> int:
    """A class named by a recipe key: an int is an index into the class list, a string a class name."""
    if isinstance(target, int):
        if classes is not None and not 0 <= target < len(classes):
            raise MedalsError(f"{key} {target} is not a class index (0..{len(classes) - 1})")
        return target
    if classes is None or target not in classes:
        raise MedalsError(f"{key} '{target}' is not one of the classes {classes}")
    return classes.index(target)


def load_fold_model(recipe: Recipe, layout: RunLayout, fold: int, num_classes: int, n_meta: int, device):
    from medals.models.factory import create_model
    from medals.runtime.checkpoint import load_model_weights

    path = layout.checkpoint(fold, recipe.infer.checkpoint)
    if not path.exists():
        raise MedalsError(
            f"checkpoint {path} does not exist: train fold {fold} first "
            f"(or set infer.checkpoint to one of the saved names)"
        )
    # The checkpoint holds every weight: no download, no re-read of model.weights.
    model = create_model(recipe, num_classes, n_meta=n_meta, init_weights=False)
    payload = load_model_weights(model, path)
    _check_fold_config(recipe, layout, fold, path, payload.get("config_hash"))
    return model.to(device)


def _check_fold_config(recipe: Recipe, layout: RunLayout, fold: int, path: Path, held: str | None) -> None:
    """A fold's weights trained under another config (a fold another job was training when the config
    changed) are refused, never used for this config's predictions."""
    from medals.train.loop import training_hash

    if held is not None and held != training_hash(recipe, train_rows_with_folds(layout), fold):
        raise MedalsError(
            f"{path} was trained under another training config than this recipe's: train fold {fold} "
            f"again (`medals train RECIPE --fold {fold}`)"
        )


def prob_columns(num_classes: int) -> list[str]:
    return [f"p_{k}" for k in range(num_classes)]


def prob_frame(ids: pd.Series, probs: np.ndarray, num_classes: int) -> pd.DataFrame:
    frame = pd.DataFrame(probs.astype(np.float32), columns=prob_columns(num_classes))
    frame.insert(0, "id", ids.astype(str).to_numpy())
    return frame
