"""The metric names a recipe may use, the tasks each applies to and its direction: the one table that
recipe validation (metrics.main, metrics.extra, train.checkpoints), checkpoint modes and `compare` read.

The functions that compute them live in medals.post.metric_registry, keyed by the same names (a test
checks that both name the same metrics); this table sits in the config layer so that a recipe is
checked when it loads, before anything trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["max", "min"]

CLASSIFY = ("binary", "multiclass")
NUMERIC = ("regression", "ordinal")


@dataclass(frozen=True)
class MetricName:
    name: str
    tasks: tuple[str, ...]  # tasks it can be computed for
    direction: Direction  # "max": higher is better
    summary: str
    default_for: tuple[str, ...] = ()  # tasks that report it without being asked (metrics.extra)


METRIC_NAMES: dict[str, MetricName] = {
    m.name: m
    for m in (
        MetricName(
            "auc",
            (*CLASSIFY, "multilabel"),
            "max",
            "ROC AUC: of submit.target_class (binary: its one probability), else macro one-vs-rest; "
            "multilabel: mean column-wise AUC (RANZCR)",
            CLASSIFY,
        ),
        MetricName("accuracy", CLASSIFY, "max", "share of rows whose most probable class is true", CLASSIFY),
        MetricName(
            "f1_macro", ("multilabel",), "max", "macro F1, per-class thresholds searched", ("multilabel",)
        ),
        MetricName("f1_macro_05", ("multilabel",), "max", "macro F1 at threshold 0.5", ("multilabel",)),
        MetricName(
            "auc_macro",
            ("multilabel",),
            "max",
            "mean column-wise ROC AUC (RANZCR CLiP), the main metric of a multilabel probability submission",
            ("multilabel",),
        ),
        MetricName(
            "dice", ("segmentation",), "max", "mean Dice per image (both empty = 1)", ("segmentation",)
        ),
        MetricName(
            "qwk",
            ("multiclass", "ordinal"),
            "max",
            "quadratic weighted kappa (APTOS, DR): multiclass of the most probable class, ordinal of the "
            "prediction rounded to the nearest grade",
            ("ordinal",),
        ),
        MetricName(
            "pauc",
            CLASSIFY,
            "max",
            "partial ROC AUC above a TPR floor (metrics.pauc_min_tpr, 0.8), in 0..0.2 as ISIC 2024 scores it",
        ),
        MetricName(
            "logloss",
            (*CLASSIFY, "multilabel"),
            "min",
            "log loss; multilabel: the weighted mean of the columns' log losses (metrics.logloss_weights, "
            "RSNA ICH: any x2)",
        ),
        MetricName(
            "pf1",
            CLASSIFY,
            "max",
            "probabilistic F1 (RSNA breast cancer): F1 with the probabilities as soft counts",
        ),
        MetricName("rmse", NUMERIC, "min", "root mean squared error", NUMERIC),
        MetricName("mae", NUMERIC, "min", "mean absolute error", NUMERIC),
        MetricName("r2", NUMERIC, "max", "coefficient of determination", ("regression",)),
    )
}

# What evaluate adds beside the named metrics (not selectable in metrics.extra): segmentation's pixel
# sweep and image-level head.
DERIVED: dict[str, Direction] = {
    "dice_best": "max",
    "pixel_threshold_best": "max",
    "cls_auc": "max",
    "cls_f1": "max",
    "cls_threshold": "max",
}


def metrics_for_task(task: str) -> list[str]:
    """The metric names a task can compute (what metrics.extra, metrics.main and checkpoints may name)."""
    return [name for name, spec in METRIC_NAMES.items() if task in spec.tasks]


def default_metrics(task: str) -> list[str]:
    """The metrics a task reports without metrics.extra."""
    return [name for name, spec in METRIC_NAMES.items() if task in spec.default_for]


def base_name(name: str) -> str | None:
    """The registry name a reported key derives from: auc_20 -> auc, auc_rank -> auc (None if none)."""
    if name in METRIC_NAMES or name in DERIVED:
        return name
    candidates = [n for n in (*METRIC_NAMES, *DERIVED) if name.startswith(f"{n}_")]
    return max(candidates, key=len) if candidates else None


def metric_direction(name: str) -> Direction | None:
    """ "max" or "min" for a reported key (subset and rank suffixes included; losses are "min"); None
    when the name is no known metric."""
    base = base_name(name)
    if base in METRIC_NAMES:
        return METRIC_NAMES[base].direction
    if base in DERIVED:
        return DERIVED[base]
    if name.endswith("loss") or name.startswith("val_"):
        return "min"
    return None


def check_metric(name: str, task: str, key: str) -> None:
    """ValueError (a recipe validation message) when `name` is not a metric of `task`."""
    if name not in METRIC_NAMES:
        raise ValueError(f"{key} '{name}' is not a known metric; known: {', '.join(METRIC_NAMES)}")
    if task not in METRIC_NAMES[name].tasks:
        raise ValueError(
            f"{key} '{name}' does not apply to task '{task}': choose one of {', '.join(metrics_for_task(task))}"
        )
