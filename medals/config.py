"""Typed recipe: YAML -> validated config, with dotted command-line overrides.

Every section forbids unknown keys, so a misspelt key is an error naming the key and the file,
never a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medals.errors import MedalsError

Task = Literal["multiclass", "multilabel", "segmentation"]
RleFormat = Literal["siim", "row", "column"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class NumericMeta(Strict):
    """A numeric column used as a feature: value / scale, missing values set to fill."""

    scale: float = 1.0
    fill: float = 0.0


class MappedMeta(Strict):
    """A column whose values map to numbers (e.g. sex: male 1, female 0); others get fill."""

    values: dict[str, float]
    fill: float = -1.0


class MetaConfig(Strict):
    numeric: dict[str, NumericMeta] = Field(default_factory=dict)
    mapped: dict[str, MappedMeta] = Field(default_factory=dict)
    # One-hot over the values seen in train and test together, plus a column for missing.
    categorical: list[str] = Field(default_factory=list)
    # log1p(number of rows sharing the value), counted within train and within test.
    group_counts: list[str] = Field(default_factory=list)
    # log(image file size in bytes): a surprisingly strong feature in the melanoma data.
    file_size: bool = False


class DuplicatesConfig(Strict):
    """Perceptual-hash duplicate search in prepare: groups kept in one fold, test leaks reported."""

    kinds: list[Literal["phash", "ahash"]] = Field(default_factory=lambda: ["phash"])
    channels: list[int] = Field(default_factory=lambda: [0, 1, 2])  # planes hashed (HPA3: green only)
    max_distance: int = 12  # a pair: Hamming distance <= this on every plane (HPA1)
    exact: bool = False  # HPA3: identical hashes instead


class DataConfig(Strict):
    root: str = "."  # relative to the recipe file's folder
    train_csv: str = "train.csv"
    test_csv: str | None = "test.csv"
    sample_submission: str | None = "sample_submission.csv"
    id_column: str = "id"
    label_column: str | None = None
    classes: list[str] | None = None
    num_classes: int | None = None
    label_map: dict[str, str] = Field(default_factory=dict)
    query: str | None = None  # pandas query applied to the training rows, e.g. "tfrecord >= 0"
    image_path: str = "train/{id}.png"  # {id} and, for multi-file channels, {channel}
    test_image_path: str = "test/{id}.png"
    channels: list[str] | None = None  # values for {channel}; the files are stacked in this order
    mask_column: str | None = None  # RLE column; several rows of one id are OR-ed
    mask_path: str | None = None  # or a template for mask image files
    rle_format: RleFormat = "siim"
    group_column: str | None = None
    meta: MetaConfig | None = None
    keep_columns: list[str] = Field(default_factory=list)  # CSV columns carried into the table
    # A registered function that builds the train/test frames instead of reading the two CSVs
    # (e.g. merging a competition's data with an external set): see medals/data/adapters.py.
    adapter: str | None = None
    adapter_params: dict[str, Any] = Field(default_factory=dict)
    duplicates: DuplicatesConfig | None = None
    cache_size: int | None = None  # side of the resized uint8 cache made by prepare
    # File format of that cache: npy (any channel count) or 8-bit png (1, 3 or 4 channels; DICOM -> PNG).
    cache_format: Literal["npy", "png"] = "npy"


class SplitConfig(Strict):
    # hpa1: multilabel-stratified over duplicate groups, competition and external rows apart (column
    # = the 0/1 external flag); hpa3: 2*n_folds+1 stratified chunks, fold k validates on chunks 2k and
    # 2k+1, the last chunk is a hold-out (fold -2) used for prevalence thresholds.
    method: Literal[
        "kfold", "stratified", "grouped", "stratified_grouped", "multilabel", "fixed", "hpa1", "hpa3"
    ] = "stratified"
    clean_external: bool = False  # hpa1: drop external rows duplicating a train row with other labels
    n_folds: int = Field(5, ge=2)
    column: str | None = None  # for "fixed": the column whose values map to folds
    mapping: dict[str, int] | None = None  # for "fixed": value -> fold (default: value % n_folds)
    seed: int | None = None  # default: the recipe seed
    # Only training rows matching this pandas query get folds, e.g. 'has_mask == 1'; the others are left
    # out of training and evaluation.
    query: str | None = None
    # Training rows matching this pandas query train in every fold and are never validated on
    # (fold -1), e.g. "is_extra == 1" for external images with pseudo masks.
    train_only: str | None = None


class ModelConfig(Strict):
    arch: Literal["classifier", "unet", "fpn", "deeplabv3plus"] = "classifier"
    backbone: str = "resnet18"  # timm name (classifier and segmentation encoder)
    pretrained: bool = False
    weights: str | None = None  # local weights file for the backbone
    weights_mapping: Literal["name", "position"] = "name"
    in_chans: int = 3
    # pool_concat (HPA1: concat(avg, max) pool, BN, Dropout(model.dropout), Linear(2F->F), ReLU, BN, Dropout,
    # Linear) and attention (HPA3: per-class spatial attention) work on the backbone's unpooled feature map.
    head: Literal["linear", "msd", "meta", "pool_concat", "attention"] = "linear"
    dropout: float = 0.0
    msd_samples: int = 5
    msd_dropout: float = 0.5
    meta_hidden: list[int] = Field(default_factory=lambda: [512, 128])
    meta_dropout: float = 0.3
    decoder: dict[str, Any] = Field(default_factory=dict)  # extra keyword arguments for the smp model
    # Segmentation: an image-level "is anything there" logit from the deepest encoder map, trained by
    # loss terms with output: cls and used by submit.gate_threshold.
    cls_head: bool = False
    # HPA1 "large" DenseNet: an extra 2x2 max-pool after the stem (densenet backbones only).
    stem_pool: bool = False
    # HPA3 InceptionV3: a second per-class attention head on the penultimate backbone stage; its logits are
    # the model's second output, trained by loss terms with output: aux (HPA3 weight 0.4), unused in predictions.
    aux_head: bool = False


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

    @model_validator(mode="after")
    def _one_of(self) -> SwaConfig:
        if (self.epochs is None) == (self.last is None):
            raise ValueError("give exactly one of swa.epochs (a list) or swa.last (a count)")
        return self


# Train settings that change nothing in what is trained: results stay valid when they change.
NEUTRAL_TRAIN_KEYS = ("progress", "num_workers")

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
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    # Per-device defaults (medals.train.runtime): "auto" precision is bf16 on Ampere+ GPUs, fp16 on older
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
    # Under torchrun (DDP): BatchNorm statistics over the global batch instead of each GPU's share.
    sync_bn: bool = False


class MetricsConfig(Strict):
    # Extra metrics on subsets of the validation rows: {"20": "is_ext == 0"} adds auc_20, ...
    # (pandas queries over table columns, e.g. data.keep_columns).
    subsets: dict[str, str] = Field(default_factory=dict)
    # Pooled OOF metrics also on per-fold percentile ranks (auc_rank, auc_20_rank).
    rank: bool = False
    # Segmentation: Dice after downsampling probabilities and truth to this side (PTX scored at 128);
    # evaluate then also sweeps the pixel threshold (dice_best at pixel_threshold_best).
    dice_size: int | None = None


class InferConfig(Strict):
    tta: Literal[1, 2, 4, 8] = 1
    merge: Literal["mean", "max"] = "mean"
    # Crop TTA (HPA1): 0 = the validation resize only; N>0 = N random square crops of side
    # U(image_size, image side) per image, each seed fixed, every crop resized to image_size, each crop
    # seen through all the TTA views, all merged by infer.merge. Classification tasks only.
    crop_seeds: int = Field(0, ge=0)
    checkpoint: str = "best"
    batch_size: int | None = None


class NeighboursConfig(Strict):
    """HPA1's metric-learning post-processing (medals.stages.neighbours): an ArcFace embedding trained on
    the training rows with identity_column as the class (HPA1: the antibody); a test prediction takes its
    nearest reference image's labels when their cosine similarity is above threshold."""

    identity_column: str  # a table column (listed in data.keep_columns); rows without a value are skipped
    reference_query: str | None = None  # pandas query choosing reference training rows; None: all of them
    backbone: str = "resnet50"
    pretrained: bool = False
    embedding_dim: int = Field(512, ge=1)
    s: float = 30.0
    m: float = 0.5
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-4, gt=0)
    image_size: int | None = Field(None, ge=8)  # None: train.image_size
    batch_size: int | None = Field(None, ge=2)  # None: train.batch_size
    threshold: float = 0.65


class SubmitConfig(Strict):
    kind: Literal["probability", "multilabel", "rle"] | None = None  # default by task
    target_class: str | int | None = None  # probability: which class's probability
    # multilabel: "oof" (best F1 per class on OOF), a number, or matched to a prevalence: the training
    # labels' rate on the test predictions (HPA1), or the hold-out's true rate on its predictions (HPA3)
    threshold: float | Literal["oof", "prevalence_train", "prevalence_holdout"] = "oof"
    average_duplicates: bool = False  # near-duplicate test images get their group's mean prediction
    replace_leaks: bool = False  # a test image duplicating a labelled one takes its labels
    always_top1: bool = True
    pixel_threshold: float = 0.5
    min_area: int = 0
    # Keep a mask only when the image-level probability (the model's cls head, or an ensemble's
    # stacked gate) is above this; otherwise the image is submitted empty.
    gate_threshold: float | None = None
    file: str = "submission.csv"
    neighbours: NeighboursConfig | None = None  # HPA1 nearest-neighbour replacement (multilabel)


class PolicySearchConfig(Strict):
    """HPA3's augmentation-policy search (the `search` stage, medals.augment_policy): `candidates` random
    policies of `subpolicies` two-op sub-policies, each scored by a short training (`epochs`) on fold `fold`;
    the best `keep` are written to `file` (relative to the run directory), which train.augment uses as
    {name: PolicyFile, path: "{run_dir}/policies.json"}."""

    candidates: int = Field(50, ge=1)
    subpolicies: int = Field(5, ge=1)
    keep: int = Field(5, ge=1)
    epochs: int = Field(2, ge=1)  # training epochs per candidate
    fold: int = Field(0, ge=0)
    seed: int | None = None  # default: the recipe seed
    # Dotted recipe overrides for the candidates' trainings, e.g. {"model.backbone": "resnet18",
    # "train.image_size": 256} (HPA3 scored candidates with a ResNet18 at 256 px).
    overrides: dict[str, Any] = Field(default_factory=dict)
    file: str = "policies.json"


class Recipe(Strict):
    name: str
    task: Task
    seed: int = 0
    run_dir: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: list[LossTerm] | None = None  # None: the task default
    train: TrainConfig = Field(default_factory=TrainConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    infer: InferConfig = Field(default_factory=InferConfig)
    submit: SubmitConfig = Field(default_factory=SubmitConfig)
    policy_search: PolicySearchConfig | None = None  # HPA3 augmentation-policy search
    # Where the recipe came from; data.root and run_dir are resolved against it.
    source: str | None = None

    @model_validator(mode="after")
    def _check_task_fields(self) -> Recipe:
        if self.task == "segmentation" and self.model.arch == "classifier":
            raise ValueError("task 'segmentation' needs model.arch unet, fpn or deeplabv3plus")
        if self.task != "segmentation" and self.model.arch != "classifier":
            raise ValueError(f"task '{self.task}' needs model.arch classifier")
        if self.infer.crop_seeds and self.task == "segmentation":
            raise ValueError("infer.crop_seeds (crop TTA) is for classification tasks")
        if self.model.cls_head and self.task != "segmentation":
            raise ValueError("model.cls_head is for task segmentation")
        if any(term.output == "cls" for term in self.loss or []) and not self.model.cls_head:
            raise ValueError("a loss term has output 'cls' but model.cls_head is false")
        # HPA heads (model.stem_pool, model.aux_head, loss output aux)
        if (self.model.stem_pool or self.model.aux_head) and self.model.arch != "classifier":
            raise ValueError("model.stem_pool and model.aux_head are for model.arch classifier")
        if self.model.aux_head and self.model.head != "attention":
            raise ValueError("model.aux_head needs model.head 'attention'")
        if any(term.output == "aux" for term in self.loss or []) and not self.model.aux_head:
            raise ValueError("a loss term has output 'aux' but model.aux_head is false")
        if self.train.swa is not None:
            bad = [e for e in self.swa_epochs if not 1 <= e <= self.train.epochs]
            if bad:
                raise ValueError(f"train.swa epoch {bad[0]} is outside 1..{self.train.epochs}")
        return self

    @property
    def swa_epochs(self) -> list[int]:
        """The 1-based epochs whose weights swa.pt averages (empty without train.swa)."""
        swa = self.train.swa
        if swa is None:
            return []
        if swa.epochs is not None:
            return sorted(set(swa.epochs))
        return list(range(max(1, self.train.epochs - swa.last + 1), self.train.epochs + 1))

    # ---- derived paths and defaults -------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        return Path(self.source).parent if self.source else Path.cwd()

    @property
    def data_root(self) -> Path:
        return (self.base_dir / self.data.root).resolve()

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    @property
    def main_metric(self) -> str:
        return {"multiclass": "auc", "multilabel": "f1_macro", "segmentation": "dice"}[self.task]

    @property
    def submit_kind(self) -> str:
        default = {"multiclass": "probability", "multilabel": "multilabel", "segmentation": "rle"}
        return self.submit.kind or default[self.task]


# ---- loading ------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.epochs=2' -> (['train', 'epochs'], 2); the value is read as YAML."""
    if "=" not in text:
        raise MedalsError(f"override '{text}' is not of the form key.path=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise MedalsError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_override(tree: dict, path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise MedalsError(f"override key '{'.'.join(path)}': '{part}' is not a section")
        node = child
    node[path[-1]] = value


def _describe_error(err: dict, tree: dict, where: str) -> str:
    key = ".".join(str(part) for part in err["loc"])
    kind = err["type"]
    if not key:
        return f"{where}: {err['msg'].removeprefix('Value error, ')}"
    if kind == "extra_forbidden":
        return f"{where}: unknown key '{key}'"
    if kind == "missing":
        return f"{where}: missing required key '{key}'"
    value = tree
    for part in err["loc"]:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            value = None
            break
    msg = err["msg"].removeprefix("Value error, ")
    if value is None or isinstance(value, dict):
        return f"{where}: key '{key}': {msg}"
    return f"{where}: key '{key}' has value {value!r}: {msg}"


def recipe_from_dict(tree: dict, where: str) -> Recipe:
    try:
        return Recipe.model_validate(tree)
    except ValidationError as exc:
        raise MedalsError(_describe_error(exc.errors()[0], tree, where)) from None


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe YAML, apply dotted overrides and validate; errors name the key and the file."""
    path = Path(path)
    if not path.is_file():
        raise MedalsError(f"recipe file {path} does not exist")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MedalsError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise MedalsError(f"{path}: a recipe must be a mapping of keys to values")
    where = str(path)
    if overrides:
        where = f"{path} (with overrides {' '.join(overrides)})"
    for text in overrides:
        key, value = parse_override(text)
        apply_override(tree, key, value)
    if tree.get("source") is None:
        tree["source"] = str(path.resolve())
    return recipe_from_dict(tree, where)


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
