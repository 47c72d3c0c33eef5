"""create_model: the one entry point from a recipe to a model (classifier or segmenter)."""

from __future__ import annotations

from pathlib import Path

import timm
from torch import nn

from medals.config import Recipe
from medals.config.base import NUMERIC_TASKS
from medals.errors import MedalsError
from medals.models.classifier import Classifier
from medals.models.segmenter import Segmenter
from medals.models.weights import copy_to_features, load_local_weights


def weights_file(recipe: Recipe, value: str, key: str = "model.weights") -> Path:
    """A weights file a recipe names under `key`: relative paths tried against the recipe's folder, then
    the working directory."""
    raw = Path(value)
    for candidate in (raw,) if raw.is_absolute() else (recipe.base_dir / raw, raw):
        if candidate.is_file():
            return candidate
    raise MedalsError(f"{key} file {value} does not exist")


def _weights_path(recipe: Recipe) -> Path:
    return weights_file(recipe, recipe.model.weights or "")


def create_model(
    recipe: Recipe, num_classes: int, n_meta: int = 0, *, init_weights: bool = True
) -> nn.Module:
    """Classifier (logits [B, K]) or Segmenter (mask logits [B, K, H, W], K mask classes) for the recipe's
    model section.

    Downloads ImageNet weights only when model.pretrained is true and no model.weights file is given.
    init_weights=False skips both (random init): for rebuilding a model whose checkpoint is loaded next.
    """
    cfg = recipe.model
    if not init_weights:
        cfg = cfg.model_copy(update={"pretrained": False, "weights": None})
    if cfg.arch == "classifier":
        if not timm.is_model(cfg.backbone):
            raise MedalsError(
                f"model.backbone {cfg.backbone!r} is not a timm model name (see timm.list_models)"
            )
        if cfg.head == "meta":
            if n_meta <= 0:
                raise MedalsError("model.head is 'meta' but there are no meta features (set data.meta)")
            if not cfg.meta_hidden or min(cfg.meta_hidden) < 1:
                raise MedalsError(f"model.meta_hidden {cfg.meta_hidden} must list positive layer sizes")
        numeric = recipe.task in NUMERIC_TASKS  # one output, in the target's units
        model: nn.Module = Classifier.from_config(cfg, num_classes, n_meta, output_scale=numeric)
        if cfg.weights:
            load_local_weights(model.backbone, _weights_path(recipe), cfg.weights_mapping)
        return model

    model = Segmenter.from_config(cfg, classes=num_classes)
    if cfg.weights:
        path = _weights_path(recipe)
        if model.is_timm_encoder:
            # Load into the full timm model, whose key list matches the checkpoint (head convs
            # included), then copy into smp's features-only twin.
            full = timm.create_model(
                model.encoder_name.removeprefix("tu-"), pretrained=False, num_classes=0, in_chans=cfg.in_chans
            )
            load_local_weights(full, path, cfg.weights_mapping)
            copy_to_features(full, model.encoder.model)
        else:
            load_local_weights(model.encoder, path, cfg.weights_mapping)
    return model
