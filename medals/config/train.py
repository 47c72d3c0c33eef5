"""The `train` section: losses, schedules, checkpoint rules, SWA, and which keys a training digest ignores."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

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
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    steps: list[tuple[int, float]] = Field(default_factory=list)  # (first epoch, lr), 1-based
    formula: str | None = None  # per-epoch lr from epoch (1-based), epochs, lr, cos, pi, ...


class CheckpointRule(Strict):
    name: str = "best"
    metric: str | None = None  # default: the task's main metric
    mode: Literal["max", "min"] = "max"


class SwaConfig(Strict):
    """Average these epochs' weights (1-based, as in log.csv) into swa.pt, BatchNorm recomputed."""

    epochs: list[int] | None = None
    last: int | None = Field(None, ge=1)  # or: the last N epochs
    # The images BatchNorm is recomputed on: "train" the training fold with its augmentation, "plain"
    # the same rows without it (resize and normalisation only), as HPA3's swa.py does.
    bn_data: Literal["train", "plain"] = "train"

    @model_validator(mode="after")
    def _one_of(self) -> SwaConfig:
        if (self.epochs is None) == (self.last is None):
            raise ValueError("give exactly one of swa.epochs (a list) or swa.last (a count)")
        return self


class SamplerConfig(Strict):
    """How the training rows are drawn each epoch (medals.data.sampling); unset: a plain shuffle.

    Each class gets a weight and a row the largest weight among its labels (a row without labels: 1):
    "class_balanced": (count of the most frequent class / count of the class) ** power;
    "rare_classes": ``factor`` for the classes listed in ``classes`` or, without a list, for those on
    fewer than a ``below`` share of the training rows, 1 for the others.
    mode "weighted": ``num_samples`` draws (default: one per row) with replacement, P(row) ~ its weight;
    "repeat": every row ``round(weight)`` times, shuffled (the epoch grows by the extra copies).
    The draws come from the epoch's seed, so a resumed epoch repeats them and DDP ranks agree.
    """

    name: Literal["class_balanced", "rare_classes"]
    mode: Literal["weighted", "repeat"] = "weighted"
    power: float = Field(1.0, ge=0)
    classes: list[int] | None = None
    below: float | None = Field(None, gt=0, le=1)
    factor: float = Field(2.0, ge=1)
    num_samples: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _rare_rule(self) -> SamplerConfig:
        if self.name == "rare_classes" and (self.classes is None) == (self.below is None):
            raise ValueError(
                "sampler 'rare_classes' needs exactly one of classes (a list) or below (a share)"
            )
        if self.mode == "repeat" and self.num_samples is not None:
            raise ValueError("sampler mode 'repeat' draws every row round(weight) times: drop num_samples")
        return self


class PhaseConfig(Strict):
    """A stretch of epochs with its own frozen modules and lr (medals.train.phases).

    A fresh optimizer (train.optimizer over the parameters left trainable) starts each phase; ``lr`` set:
    a constant lr for the phase, else train.schedule at the global epoch.
    """

    epochs: int | None = Field(None, ge=1)  # None (the last phase only): the epochs left
    freeze: Literal["backbone"] | None = None  # the timm backbone / the segmenter's encoder
    lr: float | None = Field(None, gt=0)


# Train settings that change nothing in what is trained: results stay valid when they change.
NEUTRAL_TRAIN_KEYS = ("progress", "num_workers", "tensorboard")


# Train settings added after runs existed, with their defaults: at its default such a key is left out of
# the digests, so runs made before it existed keep their digests (and their trained folds).
LATER_TRAIN_DEFAULTS: dict[str, Any] = {
    "sync_bn": False,
    "compile": False,
    "data_path": "auto",
    "sampler": None,
    "phases": None,
}


# train.swa keys added after runs existed, with their defaults (left out of the digests at the default).
LATER_SWA_DEFAULTS: dict[str, Any] = {"bn_data": "train"}


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
        if key == "swa" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if LATER_SWA_DEFAULTS.get(k, object()) != v}
        out[key] = value
    return out


class TrainConfig(Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    image_size: int = Field(256, ge=8)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = 0.0
    momentum: float = 0.9
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
    clip_grad: float | None = None
    augment: list[dict[str, Any]] | None = None  # albumentations ops; None: the task default
    mean: list[float] | None = None
    std: list[float] | None = None
    # "fixed": (x/255 - mean)/std with train.mean/std (or the defaults); "image": each image's channels
    # standardised by their own mean/std after augmentation (HPA 3rd place); train.mean/std unused.
    # dataset: per-channel mean/std of the training images, measured by prepare (HPA1)
    normalize: Literal["fixed", "image", "dataset"] = "fixed"
    checkpoints: list[CheckpointRule] = Field(default_factory=lambda: [CheckpointRule()])
    swa: SwaConfig | None = None
    folds: list[int] | None = None  # train only these folds
    num_workers: int = 0
    deterministic: bool = False
    progress: bool = True
    # Scalars of every epoch also to <fold dir>/tensorboard (torch.utils.tensorboard; needs tensorboard).
    tensorboard: bool = False
    # Under torchrun (DDP): BatchNorm statistics over the global batch instead of each GPU's share.
    sync_bn: bool = False
    # Rare-class up-sampling / class balancing of the training rows (SamplerConfig); None: plain shuffle.
    sampler: SamplerConfig | None = None
    # Freeze phases, e.g. [{epochs: 1, freeze: backbone, lr: 1e-3}, {}]: their epochs add up to
    # train.epochs (the last may leave its count out: the rest); None: one phase, nothing frozen.
    phases: list[PhaseConfig] | None = None

    @model_validator(mode="after")
    def _phases_cover_the_epochs(self) -> TrainConfig:
        if self.phases is None:
            return self
        if not self.phases:
            raise ValueError("train.phases is empty: give at least one phase, or leave the key out")
        if any(p.epochs is None for p in self.phases[:-1]):
            raise ValueError("train.phases: only the last phase may leave out epochs (it takes the rest)")
        given = sum(p.epochs or 0 for p in self.phases)
        last_open = self.phases[-1].epochs is None
        if (last_open and given >= self.epochs) or (not last_open and given != self.epochs):
            raise ValueError(
                f"train.phases give {given} epochs but train.epochs is {self.epochs}: their epochs must "
                f"add up to train.epochs (or leave the last phase's epochs out, with at least one left)"
            )
        return self
