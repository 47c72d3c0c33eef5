"""Metric name -> (function, tasks, direction): the functions behind medals.config.metric_names, which holds
each name's tasks and direction for recipe validation (the config layer cannot import this one).

`metrics_for_task(task)` lists what a task may name in metrics.main, metrics.extra and checkpoint rules;
`compute(names, task, truth, preds, context)` scores the named metrics on validation rows. The task's own
metrics (auc and accuracy of a classifier, F1 of multilabel, Dice) come from medals.post.metrics; this
module computes the others, and every metric of the regression and ordinal tasks.

Shapes: binary probs [N, 1] (P(second class)) or [N]; multiclass [N, K] and integer labels; multilabel
[N, K] multi-hot; regression [N, 1] values in the target's units; ordinal [N, 1] predictions in
class-index units and integer class indices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from medals.config.metric_names import METRIC_NAMES, MetricName, default_metrics
from medals.config.metric_names import metrics_for_task as _names_for_task
from medals.errors import MedalsError
from medals.post import competition_metrics as cm


@dataclass
class MetricContext:
    """What some metrics need beside truth and predictions."""

    positive: int | None = None  # multiclass: the class index scored by pauc / pf1 (submit.target_class)
    pauc_min_tpr: float = 0.8
    logloss_weights: np.ndarray | None = None  # multilabel: one weight per column
    num_grades: int | None = None  # ordinal: K (grades 0..K-1); None: the largest true grade + 1
    extra: dict = field(default_factory=dict)


def _flat(preds: np.ndarray) -> np.ndarray:
    return np.asarray(preds, dtype=np.float64).reshape(len(preds), -1)[:, -1]


def _positive_score(task: str, truth, preds, ctx: MetricContext) -> tuple[np.ndarray, np.ndarray]:
    """(0/1 truth, score) of the scored class: binary's one probability, or multiclass's target class."""
    if task == "binary":
        return (np.asarray(truth).ravel() == 1).astype(float), _flat(preds)
    preds = np.asarray(preds)
    positive = ctx.positive if ctx.positive is not None else (1 if preds.shape[1] == 2 else None)
    if positive is None:
        raise MedalsError("pauc and pf1 of a multiclass task score one class: set submit.target_class")
    return (np.asarray(truth).ravel() == positive).astype(float), preds[:, positive]


def grades_of(preds, ctx: MetricContext, truth) -> np.ndarray:
    """Ordinal predictions rounded to the nearest grade, within 0..K-1."""
    top = (ctx.num_grades or int(np.max(truth)) + 1) - 1
    return np.clip(np.rint(_flat(preds)), 0, top).astype(np.int64)


def _qwk(task, truth, preds, ctx):
    if task == "multiclass":
        return cm.qwk(truth, np.asarray(preds).argmax(axis=1), np.asarray(preds).shape[1])
    return cm.qwk(truth, grades_of(preds, ctx, truth), ctx.num_grades)


def _logloss(task, truth, preds, ctx):
    if task == "binary":
        return cm.binary_logloss(np.asarray(truth).ravel() == 1, _flat(preds))
    if task == "multiclass":
        return cm.multiclass_logloss(truth, preds)
    return cm.weighted_logloss(truth, preds, ctx.logloss_weights)


def _auc(task, truth, preds, ctx):
    if task != "multilabel":  # binary and multiclass AUC: medals.post.metrics.task_metrics
        raise MedalsError(f"auc of task '{task}' is among the task's own metrics")
    return cm.mean_column_auc(truth, preds)


FUNCTIONS: dict[str, Callable[[str, np.ndarray, np.ndarray, MetricContext], float] | None] = {
    # None: the task's own metric, computed by medals.post.metrics.task_metrics for every task it fits.
    "auc": _auc,
    "accuracy": None,
    "f1_macro": None,
    "f1_macro_05": None,
    "auc_macro": None,
    "dice": None,
    "qwk": _qwk,
    "pauc": lambda task, truth, preds, ctx: cm.pauc(
        *_positive_score(task, truth, preds, ctx), ctx.pauc_min_tpr
    ),
    "logloss": _logloss,
    "pf1": lambda task, truth, preds, ctx: cm.probabilistic_f1(*_positive_score(task, truth, preds, ctx)),
    "rmse": lambda task, truth, preds, ctx: cm.rmse(truth, _flat(preds)),
    "mae": lambda task, truth, preds, ctx: cm.mae(truth, _flat(preds)),
    "r2": lambda task, truth, preds, ctx: cm.r2(truth, _flat(preds)),
}
if set(FUNCTIONS) != set(METRIC_NAMES):  # the two tables must name the same metrics
    raise RuntimeError(f"metric functions {sorted(FUNCTIONS)} differ from names {sorted(METRIC_NAMES)}")


@dataclass(frozen=True)
class Metric:
    spec: MetricName
    function: Callable | None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.spec.tasks

    @property
    def direction(self) -> str:
        return self.spec.direction


METRICS: dict[str, Metric] = {name: Metric(spec, FUNCTIONS[name]) for name, spec in METRIC_NAMES.items()}


def metrics_for_task(task: str) -> list[str]:
    """The metric names `task` can compute (metrics.main, metrics.extra, checkpoint rules, compare)."""
    return _names_for_task(task)


def compute(names: list[str], task: str, truth, preds, ctx: MetricContext) -> dict[str, float]:
    """The named metrics (each once, in order) that have a function here; the task's own are skipped."""
    out: dict[str, float] = {}
    for name in dict.fromkeys(names):
        metric = METRICS.get(name)
        if metric is None or task not in metric.tasks:
            raise MedalsError(f"metric '{name}' does not apply to task '{task}'")
        if metric.function is None or (name == "auc" and task != "multilabel"):
            continue
        out[name] = float(metric.function(task, truth, preds, ctx))
    return out


def numeric_metrics(task: str, truth, preds, ctx: MetricContext) -> dict[str, float]:
    """The metrics regression and ordinal tasks report without being asked."""
    return compute(default_metrics(task), task, truth, preds, ctx)
