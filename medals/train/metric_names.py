"""The values each epoch's log row holds, known before training, so checkpoint rules are checked up front.

A rule naming a metric the task does not compute (`qwk` for a multiclass AUC task) would otherwise fail
only after the first epoch of fold 0, when earlier folds may already have been cleared.
"""

from __future__ import annotations

from medals.config import Recipe
from medals.config.metric_names import default_metrics, metrics_for_task
from medals.errors import MedalsError
from medals.post.metrics import CLS_METRICS, TASK_METRICS
from medals.train.losses import term_names


def epoch_metric_names(recipe: Recipe) -> list[str]:
    """The log-row keys a checkpoint rule may pick (medals.train.epoch / validation build that row)."""
    # What medals.post.metrics._metrics computes: the task's own, then the registry's defaults, the
    # metrics asked for, and any registry metric of the task a checkpoint rule names.
    fits = metrics_for_task(recipe.task)
    rules = [rule.metric for rule in recipe.train.checkpoints if rule.metric in fits]
    asked = [*default_metrics(recipe.task), *recipe.metrics.extra, recipe.main_metric, *rules]
    task = list(
        dict.fromkeys([*TASK_METRICS.get(recipe.task, ()), *(name for name in asked if name in fits)])
    )
    names = ["train_loss", "val_loss", *task]
    for subset in recipe.metrics.subsets:
        names += [f"{key}_{subset}" for key in task]
    if recipe.task == "segmentation" and recipe.model.cls_head:
        names += list(CLS_METRICS)
    terms = term_names(recipe.loss, recipe.task)
    if len(terms) > 1:  # validation reports each term of a sum (val_focal, ...)
        names += [f"val_{name}" for name in terms]
    return names


def check_checkpoint_metrics(recipe: Recipe) -> None:
    """MedalsError naming the first train.checkpoints rule whose metric no epoch computes."""
    known = epoch_metric_names(recipe)
    for i, rule in enumerate(recipe.train.checkpoints):
        metric = rule.metric or recipe.main_metric
        if metric not in known:
            raise MedalsError(
                f"train.checkpoints[{i}].metric '{metric}' is not computed for task '{recipe.task}' "
                f"with this recipe: choose one of {', '.join(known)}"
            )
