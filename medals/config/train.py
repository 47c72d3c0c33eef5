"""The `train` section: losses, schedules, checkpoint rules, SWA, and which keys a training digest ignores."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from medals.config.base import Strict


class LossTerm(Strict):
    name: str
    weight: float = 1.0
    params: dict[str, Any] = Field(default_factory=dict)
    # "cls": the image-level logit of model.cls_head (the key is not "on": YAML reads that as true)
    # "aux": the auxiliary-head logits of a classifier with model.aux_head (same targets as "main")
    output: Literal["main", "cls", "aux"] = "main"


class ScheduleConfig(Strict):
    name: Literal["constant", "warmup_cosine", "steps", "formula"] = "warmup_cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    min_lr: float = Field(0.0, ge=0)
    steps: list[tuple[int, float]] = Field(default_factory=list)  # (first epoch, lr), 1-based
    formula: str | None = None  # per-epoch lr from epoch (1-based), epochs, lr, cos, pi, ...


class CheckpointRule(Strict):
    name: str = "best"
    metric: str | None = None  # default: the task's main metric
    mode: Literal["max", "min"] = "max"


class SwaConfig(Strict):
    """Average these epochs' weights (1-based, as in log.csv) into swa.pt, BatchNorm recomputed."""

    epochs: list[PositiveInt] | None = None
    last: int | None = Field(None, ge=1)  # or: the last N epochs

    @model_validator(mode="after")
    def _one_of(self) -> SwaConfig:
        if (self.epochs is None) == (self.last is None):
            raise ValueError("give exactly one of swa.epochs (a list) or swa.last (a count)")
        return self


# Train settings that change nothing in what is trained: results stay valid when they change.
NEUTRAL_TRAIN_KEYS = ("progress", "num_workers", "tensorboard")


# Train settings added after runs existed, with their defaults: at its default such a key is left out of
# the digests, so runs made before it existed keep their digests (and their trained folds).
LATER_TRAIN_DEFAULTS: dict[str, Any] = {"sync_bn": False, "compile": False, "data_path": "auto"}


# Train settings whose default changed after runs existed: (new default, old default). The new default is
# digested as the old one, so runs made under the old default keep their digests.
CHANGED_TRAIN_DEFAULTS: dict[str, tuple[Any, Any]] = {"channels_last": (None, False)}


def digest_train(train: dict[str, Any], *drop: str) -> dict[str, Any]:
    """A dumped train section as the digests see it: without neutral keys, later keys at their default
    and the keys in ``drop``; changed defaults as they were."""
    out = {}
    for key, value in train.items():
        if key in (*NEUTRAL_TRAIN_KEYS, *drop):
            continue
        if key in LATER_TRAIN_DEFAULTS and value == LATER_TRAIN_DEFAULTS[key]:
            continue
        if key in CHANGED_TRAIN_DEFAULTS and value == CHANGED_TRAIN_DEFAULTS[key][0]:
            value = CHANGED_TRAIN_DEFAULTS[key][1]
        out[key] = value
    return out


class TrainConfig(Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    image_size: int = Field(256, ge=8)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    # Per-device defaults (medals.runtime.settings): "auto" precision is bf16 on Ampere+ GPUs, fp16 on older
    # ones, fp32 on the CPU; channels_last None = on with CUDA, off on the CPU; compile: torch.compile
    # of the training forward (opt-in: minutes of compiling per fold).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool | None = None
    compile: bool = False
    # Where images are decoded and augmented: "cpu" (DataLoader workers, albumentations), "gpu" (workers
    # only read bytes; JPEG decode, the augmentation list and normalisation run batched on the device:
    # medals.data.device_batches), "auto" (gpu with CUDA when every op of the list has a GPU version).
    data_path: Literal["auto", "cpu", "gpu"] = "auto"
    accumulate: int = Field(1, ge=1)
    clip_grad: float | None = Field(None, gt=0)
    augment: list[dict[str, Any]] | None = None  # albumentations ops; None: the task default
    mean: list[float] | None = None
    std: list[float] | None = None
    # "fixed": (x/255 - mean)/std with train.mean/std (or the defaults); "image": each image's channels
    # standardised by their own mean/std after augmentation (HPA 3rd place); train.mean/std unused.
    # dataset: per-channel mean/std of the training images, measured by prepare (HPA1)
    normalize: Literal["fixed", "image", "dataset"] = "fixed"
    checkpoints: list[CheckpointRule] = Field(default_factory=lambda: [CheckpointRule()])
    swa: SwaConfig | None = None
    folds: list[NonNegativeInt] | None = None  # train only these folds
    num_workers: int = Field(0, ge=0)
    deterministic: bool = False
    progress: bool = True
    # Scalars of every epoch also to <fold dir>/tensorboard (torch.utils.tensorboard; needs tensorboard).
    tensorboard: bool = False
    # Under torchrun (DDP): BatchNorm statistics over the global batch instead of each GPU's share.
    sync_bn: bool = False
