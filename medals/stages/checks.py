"""Everything a recipe can be checked for before any stage does work or deletes anything.

medals.stages.pipeline calls `check_before_work` before it writes even config.yaml, so a setting that
would fail late (a checkpoint rule on a metric the task does not compute, a metrics.subsets query that
does not parse, a weights file that is not there, pretrained weights with no cache and no network, an
image that cannot feed model.in_chans) leaves the run folder exactly as it was, finished folds included.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.errors import MedalsError
from medals.stages.common import fold_ids
from medals.stages.layout import RunLayout

# Columns the table defines, with a stand-in value, for queries checked on the CSV before prepare made it.
_TABLE_STANDINS = {
    "split": "train",
    "path": "",
    "height": 0,
    "width": 0,
    "label": 0,
    "labels": "",
    "rle": "",
    "mask_path": "",
    "has_mask": 0,
    "group": "",
    "fold": 0,
}


def check_before_work(
    recipe: Recipe,
    layout: RunLayout,
    wanted: Collection[str],
    state: Callable[[str], str],
    force: Collection[str] = (),
) -> None:
    """Raise the first problem's MedalsError; `state(stage)` is a stage's state ('done', 'stale', ...),
    asked only where a check depends on it (it may cost a digest)."""
    from medals.train.metric_names import check_checkpoint_metrics

    check_checkpoint_metrics(recipe)
    if "train" in wanted:
        fold_ids(recipe)  # train.folds inside 0..n_folds-1
    # The table the later stages will read: the one there, unless prepare is about to make another.
    prepared = layout.table.exists() and ("prepare" not in wanted or state("prepare") == "done")
    check_queries(recipe, _query_rows(recipe, layout, prepared))
    if _will_train(recipe, layout, wanted, state, force):
        check_model_weights(recipe)
        if prepared:
            check_table_channels(recipe, layout)
    neighbours = recipe.submit.neighbours
    if neighbours is not None and "submit" in wanted and ("submit" in force or state("submit") != "done"):
        _check_weights(
            recipe, neighbours.backbone, neighbours.pretrained, neighbours.weights, "submit.neighbours"
        )


def _will_train(
    recipe: Recipe,
    layout: RunLayout,
    wanted: Collection[str],
    state: Callable[[str], str],
    force: Collection[str],
) -> bool:
    """Whether a model is about to be built with its initial weights (a fold or a search candidate)."""
    if "search" in wanted and recipe.policy_search is not None:
        if "search" in force or state("search") != "done":
            return True
    if "train" not in wanted:
        return False
    if "train" in force or any(not layout.checkpoint(fold, "final").exists() for fold in fold_ids(recipe)):
        return True
    return state("train") != "done"  # every fold finished: trained again only under another config


# ---- weights ---------------------------------------------------------------------------------


def check_model_weights(recipe: Recipe) -> None:
    model = recipe.model
    _check_weights(recipe, model.backbone, model.pretrained, model.weights, "model")


def _check_weights(
    recipe: Recipe, backbone: str, pretrained: bool, weights: str | None, section: str
) -> None:
    """A local weights file must exist; hub weights must be cached or the hub reachable (medals.models.hub)."""
    from medals.models.factory import weights_file
    from medals.models.hub import check_pretrained

    if weights:
        weights_file(recipe, weights, f"{section}.weights")
        return
    if not pretrained:
        return
    smp_native = False
    if section == "model" and recipe.task == "segmentation":
        from medals.models.segmenter import smp_encoder_name

        smp_native = not smp_encoder_name(backbone).startswith("tu-")
    check_pretrained(backbone, f"{section}.pretrained", smp_native)


# ---- queries -----------------------------------------------------------------------------------


def _queries(recipe: Recipe) -> list[tuple[str, str]]:
    """(key, pandas query) of every query over the training rows, metrics.subsets first."""
    out = [(f"metrics.subsets.{name}", query) for name, query in recipe.metrics.subsets.items()]
    out += [("split.query", recipe.split.query), ("split.train_only", recipe.split.train_only)]
    if recipe.submit.neighbours is not None:
        out.append(("submit.neighbours.reference_query", recipe.submit.neighbours.reference_query))
    return [(key, query) for key, query in out if query]


def _query_rows(recipe: Recipe, layout: RunLayout, prepared: bool) -> tuple[pd.DataFrame, str, bool] | None:
    """(training rows, where they come from, whether from the CSV) for the queries; None: nothing to
    check them on yet (no table, and a CSV that prepare will report on itself)."""
    if not _queries(recipe):
        return None
    if prepared:
        try:
            table = pd.read_parquet(layout.table)
        except Exception:  # a damaged table: the stage that reads it says so
            return None
        rows = table[table["split"] == "train"].reset_index(drop=True)
        if "fold" not in rows.columns:
            rows["fold"] = 0
        return rows, str(layout.table), False
    data = recipe.data
    if data.adapter:
        return None
    from medals.data.csv import read_csv

    path = recipe.data_root / data.train_csv
    try:
        frame = read_csv(path)
        frame = frame.query(data.query) if data.query else frame
    except Exception:  # missing, unreadable, a bad data.query: prepare's own sentence comes first
        return None
    kept = [*data.keep_columns, *([recipe.split.column] if recipe.split.column else [])]
    rows = frame[[c for c in dict.fromkeys(kept) if c in frame.columns]].reset_index(drop=True)
    rows.insert(0, "id", frame[data.id_column].astype(str).to_numpy() if data.id_column in frame else "")
    for column, value in _TABLE_STANDINS.items():
        rows[column] = value
    return rows, str(path), True


def check_queries(recipe: Recipe, found: tuple[pd.DataFrame, str, bool] | None) -> None:
    """Each query parsed and evaluated on the training rows: one boolean per row, or a MedalsError."""
    if found is None:
        return
    rows, source, from_csv = found
    for key, query in _queries(recipe):
        try:
            result = rows.eval(query)
        except Exception as exc:  # pandas raises NameError, SyntaxError, ValueError, TypeError, ...
            name = getattr(exc, "name", None) or str(exc)
            if from_csv and "meta_" in str(name):
                continue  # meta features exist only in the table prepare makes
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MedalsError(
                f"{key} '{query}' cannot be evaluated on the training rows of {source}: {reason}"
            ) from None
        if not isinstance(result, pd.Series) or len(result) != len(rows):
            raise MedalsError(f"{key} '{query}' does not give one true/false value per row of {source}")
        try:
            np.asarray(result, dtype=bool)
        except (TypeError, ValueError):
            raise MedalsError(f"{key} '{query}' gives values that are not true/false on {source}") from None


# ---- images -----------------------------------------------------------------------------------


def check_table_channels(recipe: Recipe, layout: RunLayout) -> None:
    """The prepared table's source images against model.in_chans (it may have changed since prepare)."""
    from medals.data.channels import check_channels

    try:
        table = pd.read_parquet(layout.table, columns=None)
    except Exception:
        return
    column = "source_path" if "source_path" in table.columns else "path"
    check_channels(table[column].astype(str).tolist(), recipe.model.in_chans)
