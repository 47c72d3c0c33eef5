"""The whole recipe: every section, and the checks that span sections."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from medals.config.base import LABEL_TASKS, Strict, Task
from medals.config.data import DataConfig
from medals.config.infer import InferConfig, MetricsConfig
from medals.config.metric_names import METRIC_NAMES, base_name, check_metric, metric_direction
from medals.config.model import ModelConfig
from medals.config.search import PolicySearchConfig
from medals.config.split import SplitConfig
from medals.config.submit import SubmitConfig
from medals.config.train import LossTerm, TrainConfig

# Checkpoint files a fold writes itself (epoch<k> too): no train.checkpoints rule may take these names.
RESERVED_CHECKPOINTS = ("last", "final", "swa")

# The metric each task is scored by (checkpoints, init, report and compare read it here).
MAIN_METRIC = {
    "binary": "auc",
    "multiclass": "auc",
    "multilabel": "f1_macro",
    "segmentation": "dice",
    "regression": "rmse",
    "ordinal": "qwk",
}

# The submission kinds each task may write (the first is its default).
SUBMIT_KINDS = {
    "binary": ("probability", "label"),
    "multiclass": ("probability", "label", "ordinal"),
    "multilabel": ("multilabel",),
    "segmentation": ("rle",),
    "regression": ("value",),
    "ordinal": ("ordinal", "value"),
}


def main_metric_of(config: dict) -> str:
    """The main metric of a dumped recipe (config.yaml): metrics.main, else the task's."""
    main = (config.get("metrics") or {}).get("main")
    if main:
        return main
    kind = (config.get("submit") or {}).get("kind")
    wide = (config.get("data") or {}).get("target_layout", "column") != "column"
    if config.get("task") == "multilabel" and (kind == "probability" or (kind is None and wide)):
        return "auc_macro"  # as Recipe.main_metric
    return MAIN_METRIC.get(config.get("task"), "auc")


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
        if self.infer.mask_size is not None and self.task != "segmentation":
            raise ValueError("infer.mask_size (the test masks' side) is for task segmentation")
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
        if self.data.prediction_id and self.task == "segmentation":
            raise ValueError(
                "data.prediction_id (several images, one submission row) is for classification tasks"
            )
        self._check_metrics()
        submit = self.submit
        per_class = self.data.target_layout != "column" and self.task != "segmentation"
        if per_class and self.submit_kind != "probability":
            raise ValueError(
                f"data.target_layout '{self.data.target_layout}' submits one probability per class: "
                "submit.kind must be probability"
            )
        if submit.target_class is not None and submit.target_classes is not None:
            raise ValueError("give submit.target_class or submit.target_classes, not both")
        if submit.target_classes is not None and not submit.target_classes:
            raise ValueError("submit.target_classes lists no class")
        if self.submit_kind == "label" and self.task not in LABEL_TASKS:
            raise ValueError(
                "submit.kind 'label' (the most probable class) is for tasks binary and multiclass"
            )
        kinds = SUBMIT_KINDS[self.task]
        if self.task == "multilabel" and self.data.target_layout != "column":
            kinds = ("probability",)  # one probability per class column (RANZCR) or class row (RSNA ICH)
        if self.submit_kind not in kinds:
            raise ValueError(
                f"submit.kind '{self.submit_kind}' does not fit task '{self.task}'"
                + (
                    f" with data.target_layout '{self.data.target_layout}'"
                    if self.data.target_layout != "column"
                    else ""
                )
                + f": use {' or '.join(kinds)}"
            )
        if submit.clip is not None and self.submit_kind != "value":
            raise ValueError("submit.clip is for submit.kind 'value' (a regression output)")
        cuts = submit.cutpoints
        if isinstance(cuts, list):
            if any(b <= a for a, b in zip(cuts, cuts[1:], strict=False)):
                raise ValueError(f"submit.cutpoints {cuts} must be strictly increasing")
            if self.data.classes and len(cuts) != len(self.data.classes) - 1:
                raise ValueError(
                    f"submit.cutpoints has {len(cuts)} values for {len(self.data.classes)} grades: give "
                    f"{len(self.data.classes) - 1}"
                )
        if self.task == "binary" and submit.target_classes is not None:
            raise ValueError(
                "task binary submits the probability of its second class: drop submit.target_classes"
            )
        if self.train.swa is not None:
            bad = [e for e in self.swa_epochs if not 1 <= e <= self.train.epochs]
            if bad:
                raise ValueError(f"train.swa epoch {bad[0]} is outside 1..{self.train.epochs}")
        names = [rule.name for rule in self.train.checkpoints]
        for i, name in enumerate(names):
            reserved = name in RESERVED_CHECKPOINTS or name.startswith("epoch")
            if reserved or not name or "/" in name or name != name.strip():
                raise ValueError(
                    f"train.checkpoints[{i}].name '{name}' is not allowed "
                    f"(reserved: last, final, swa, epoch<k>; no '/')"
                )
            if names.count(name) > 1:
                raise ValueError(f"train.checkpoints has the name '{name}' twice")
        kept = self.kept_checkpoints
        if self.infer.checkpoint not in kept:
            raise ValueError(
                f"infer.checkpoint '{self.infer.checkpoint}' is not a checkpoint a fold keeps: "
                f"choose one of {', '.join(kept)}"
            )
        return self

    def _check_metrics(self) -> None:
        """Metric names that do not fit the task are refused here, not after the first epoch; a checkpoint
        rule without a mode takes its metric's direction (rmse: min)."""
        if self.metrics.main is not None:
            check_metric(self.metrics.main, self.task, "metrics.main")
        for i, name in enumerate(self.metrics.extra):
            check_metric(name, self.task, f"metrics.extra[{i}]")
        for i, rule in enumerate(self.train.checkpoints):
            metric = rule.metric or self.main_metric
            base = base_name(metric)
            if base in METRIC_NAMES:
                check_metric(base, self.task, f"train.checkpoints[{i}].metric")
            if "mode" not in rule.model_fields_set and metric_direction(metric) == "min":
                rule.mode = "min"
        weights = self.metrics.logloss_weights
        if weights and self.task != "multilabel":
            raise ValueError("metrics.logloss_weights (one weight per class column) is for task multilabel")
        if weights and (self.data.classes or self.data.num_classes):
            names = [str(c) for c in self.data.classes or range(self.data.num_classes or 0)]
            unknown = sorted(set(weights) - set(names))
            if unknown:
                raise ValueError(
                    f"metrics.logloss_weights names '{unknown[0]}', which is not one of the classes"
                )
        named = {*self.metrics.extra, self.main_metric, *(r.metric for r in self.train.checkpoints)}
        one_class = sorted(named & {"pauc", "pf1"})
        if self.task == "multiclass" and one_class and self.submit.target_class is None:
            raise ValueError(
                f"metric '{one_class[0]}' of a multiclass task scores one class: set submit.target_class"
            )

    @property
    def kept_checkpoints(self) -> list[str]:
        """The checkpoint names a finished fold holds: the train.checkpoints rules, final, and swa."""
        names = [rule.name for rule in self.train.checkpoints] + ["final"]
        return names + ["swa"] if self.train.swa is not None else names

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
        if self.metrics.main:
            return self.metrics.main
        if self.task == "multilabel" and self.submit_kind == "probability":
            return "auc_macro"  # probabilities per class column are scored by ranking (RANZCR CLiP)
        return MAIN_METRIC[self.task]

    @property
    def submit_kind(self) -> str:
        if self.submit.kind:
            return self.submit.kind
        if self.task == "multilabel" and self.data.target_layout != "column":
            return "probability"  # one probability per class column (or row)
        return SUBMIT_KINDS[self.task][0]
