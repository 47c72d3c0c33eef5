"""The `metrics` and `infer` sections: what is scored out of fold, and test-time augmentation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_serializer

from medals.config.base import Strict, without_later_defaults  # noqa: F401 - also read from here


class MetricsConfig(Strict):
    # Extra metrics on subsets of the validation rows: {"20": "is_ext == 0"} adds auc_20, ...
    # (pandas queries over table columns, e.g. data.keep_columns).
    subsets: dict[str, str] = Field(default_factory=dict)
    # Pooled OOF metrics also on per-fold percentile ranks (auc_rank, auc_20_rank).
    rank: bool = False
    # Segmentation: Dice after downsampling probabilities and truth to this side (PTX scored at 128);
    # evaluate then also sweeps the pixel threshold (dice_best at pixel_threshold_best).
    dice_size: int | None = Field(None, ge=8)
    # The metric checkpoints (by default), init, report and compare rank by; None: the task's
    # (MAIN_METRIC). Any name of medals.config.metric_names for the task, computed even if not in extra.
    main: str | None = None
    # Metrics computed beside the task's own, e.g. [qwk, pauc] (medals.config.metric_names).
    extra: list[str] = Field(default_factory=list)
    # pauc: the TPR floor above which the ROC area is taken (ISIC 2024: 0.8, scores in 0..0.2).
    pauc_min_tpr: float = Field(0.8, ge=0.0, lt=1.0)
    # logloss of a multilabel task: a weight per class name (others 1), e.g. {any: 2} (RSNA ICH).
    logloss_weights: dict[str, float] = Field(default_factory=dict)


# Metrics keys added after runs existed, with their defaults: left out of the stage digests at their
# default, so runs made before them keep their digests (and their trained folds).
LATER_METRICS_DEFAULTS: dict[str, Any] = {
    "main": None,
    "extra": [],
    "pauc_min_tpr": 0.8,
    "logloss_weights": {},
}


# Infer settings added after runs existed, with their defaults: left out of the dump (and so out of every
# digest) at their default, so runs made before them keep their stamps.
LATER_INFER_DEFAULTS: dict[str, Any] = {"mask_size": None}


class InferConfig(Strict):
    tta: Literal[1, 2, 4, 8] = 1
    merge: Literal["mean", "max"] = "mean"
    # Crop TTA (HPA1): 0 = the validation resize only; N>0 = N random square crops of side
    # U(image_size, image side) per image, each seed fixed, every crop resized to image_size, each crop
    # seen through all the TTA views, all merged by infer.merge. Classification tasks only.
    crop_seeds: int = Field(0, ge=0)
    checkpoint: str = "best"
    batch_size: int | None = Field(None, ge=1)
    # Segmentation test predictions: each fold's logits upsampled (bilinear, half-pixel centres) to this
    # side BEFORE the sigmoid, as the PTX seed's predict_768.py did for its 768 model (None: the model's
    # output size; masks of different sizes are then upsampled as probabilities when ensembled).
    mask_size: int | None = Field(None, ge=1)

    @model_serializer(mode="wrap")
    def _drop_later_defaults(self, handler: Any) -> dict[str, Any]:
        return without_later_defaults(handler(self), LATER_INFER_DEFAULTS)
