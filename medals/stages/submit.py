"""submit: post-process test predictions into the competition's file, validated against its sample."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.data.long_masks import is_long
from medals.errors import MedalsError
from medals.files import read_csv_frame, read_npy
from medals.stages.common import (
    class_index,
    positive_index,
    read_labels,
    read_run_parquet,
    read_table,
    say,
)
from medals.stages.layout import RunLayout
from medals.stages.submit_masks import class_mask_submission, uses_class_masks
from medals.stages.submit_numeric import ordinal_submission, value_submission
from medals.stages.truth import class_truth


class TableRows:
    """The prepared table's train and test rows, read from table.parquet at most once per submission."""

    def __init__(self, layout: RunLayout):
        self.layout = layout

    @cached_property
    def table(self) -> pd.DataFrame:
        return read_table(self.layout)

    @cached_property
    def train(self) -> pd.DataFrame:
        return self.table[self.table["split"] == "train"].reset_index(drop=True)

    @cached_property
    def test(self) -> pd.DataFrame:
        return self.table[self.table["split"] == "test"].reset_index(drop=True)


def check_sample_submission(recipe: Recipe, layout: RunLayout) -> None:
    """Before any training: the sample submission exists, has an id and one value column, and lists
    exactly the test images of the prepared table, so a mismatch costs seconds, not a trained model."""
    from medals.data.target_shapes import sample_ids
    from medals.post.submission import read_sample

    if recipe.data.sample_submission is None:
        raise MedalsError("data.sample_submission is not set: a submission cannot be validated without it")
    path = recipe.data_root / recipe.data.sample_submission
    sample = read_sample(path)
    if is_long(recipe.data):  # (image, class) rows: their images and classes
        from medals.data.long_masks import check_long_sample

        return check_long_sample(
            sample, recipe.data, read_labels(layout)["classes"], path, TableRows(layout).test
        )
    # The image (or prediction group) of each sample row, its columns checked against data.target_layout.
    sample_rows = sample_ids(sample, recipe.data, f"sample submission {path}").astype(str)
    test = TableRows(layout).test
    test_ids = (test["prediction_id"] if recipe.data.prediction_id else test["id"]).astype(str)
    unknown = sample_rows[~sample_rows.isin(test_ids)].unique()
    if len(unknown):
        raise MedalsError(
            f"sample submission {path} lists {len(unknown)} id(s) that are not test images of the table "
            f"(first: {', '.join(unknown[:3])}): check data.test_csv and data.test_image_path"
        )
    unlisted = test_ids[~test_ids.isin(sample_rows)].unique()
    if len(unlisted):
        raise MedalsError(
            f"{len(unlisted)} test image(s) are not in sample submission {path} (first: {', '.join(unlisted[:3])})"
        )


def run_submit(recipe: Recipe, layout: RunLayout) -> Path:
    test = read_run_parquet(layout, layout.test_predictions, "predict")
    masks = (
        read_npy(layout.test_masks, layout.redo_hint(layout.test_masks))
        if recipe.task == "segmentation"
        else None
    )
    oof = read_run_parquet(layout, layout.oof) if layout.oof.exists() else None
    holdout = read_run_parquet(layout, layout.holdout) if layout.holdout.exists() else None
    return write_recipe_submission(
        recipe, layout, test, masks, oof, layout.in_run(recipe.submit.file), holdout=holdout
    )


def write_recipe_submission(
    recipe: Recipe,
    layout: RunLayout,
    test: pd.DataFrame,
    masks: np.ndarray | None,
    oof: pd.DataFrame | None,
    out_path: Path,
    holdout: pd.DataFrame | None = None,
) -> Path:
    """The submission of `test` (and `masks`); every post-processing input that comes from predictions
    (OOF thresholds, the hold-out's prevalence thresholds) is taken from `oof` and `holdout` as given,
    so an ensemble passes its combined frames; `layout` supplies only the table, labels and leaks."""
    from medals.post.submission import read_sample, write_submission

    if recipe.data.sample_submission is None:
        raise MedalsError("data.sample_submission is not set: a submission cannot be validated without it")
    sample_path = recipe.data_root / recipe.data.sample_submission
    sample = read_sample(sample_path)
    columns = [str(name).strip() for name in sample.columns[:2]]
    labels = read_labels(layout)
    rows = TableRows(layout)
    kind = recipe.submit_kind
    if recipe.data.prediction_id:
        test = _grouped(recipe, rows, test)
    if recipe.data.target_layout != "column" and recipe.task != "segmentation":
        sub = _per_class(recipe, test, labels, sample)
    elif kind == "probability":
        sub = _probability(recipe, test, labels, columns)
    elif kind == "label":
        sub = _label(test, labels, columns)
    elif kind == "multilabel":
        sub = _multilabel(recipe, layout, rows, test, oof, holdout, labels, columns)
    elif kind == "value":
        sub = value_submission(recipe, rows.train, test, columns)
    elif kind == "ordinal":
        sub = ordinal_submission(recipe, rows.train, test, oof, labels, columns)
    elif uses_class_masks(recipe, labels):
        sub = class_mask_submission(
            recipe, layout, rows, test, masks, oof, labels, sample, sample_path, _gate(recipe, test)
        )
    else:
        sub = _rle(recipe, rows, test, masks, columns)
    write_submission(sub, sample_path, out_path)
    say(f"submit: {len(sub)} rows -> {out_path}")
    return out_path


# The column of an ensemble's test frame that holds the combined probability each member submits.
SUBMITTED = "p_submitted"


def submitted_classes(recipe: Recipe, labels: dict) -> list[int]:
    """The class indices whose probabilities a probability submission sums: submit.target_classes, or
    the one of submit.target_class, or class 1 of a two-class task."""
    classes = labels["classes"]
    if recipe.task == "binary":
        return [0]  # its one probability, of the second class
    if recipe.submit.target_classes is not None:
        return [
            class_index(target, classes, "submit.target_classes") for target in recipe.submit.target_classes
        ]
    index = positive_index(recipe, classes)
    if index is None:
        if labels["num_classes"] != 2:
            raise MedalsError(
                "submit.target_class must name the class whose probability is submitted "
                "(or submit.target_classes the classes whose probabilities are summed)"
            )
        index = 1
    return [index]


def submitted_probability(recipe: Recipe, test: pd.DataFrame, labels: dict) -> np.ndarray:
    if SUBMITTED in test.columns:
        return test[SUBMITTED].to_numpy()
    columns = [f"p_{k}" for k in submitted_classes(recipe, labels)]
    return test[columns].to_numpy(dtype=np.float64).sum(axis=1)


def _probability(recipe: Recipe, test: pd.DataFrame, labels: dict, columns: list[str]) -> pd.DataFrame:
    from medals.post.submission import probability_submission

    return probability_submission(test["id"], submitted_probability(recipe, test, labels), columns)


def _grouped(recipe: Recipe, rows: TableRows, test: pd.DataFrame) -> pd.DataFrame:
    """Test predictions of images -> of their prediction groups (data.prediction_id), the submission's rows."""
    from medals.post.groups import aggregate

    groups = rows.test.set_index("id").loc[test["id"].astype(str), "prediction_id"].astype(str).tolist()
    columns = [c for c in test.columns if c != "id" and pd.api.types.is_numeric_dtype(test[c])]
    ids, values = aggregate(groups, test[columns].to_numpy(), recipe.data.prediction_aggregate)
    say(
        f"submit: {len(test)} test images -> {len(ids)} rows by data.prediction_id (their {recipe.data.prediction_aggregate})"
    )
    frame = pd.DataFrame(values, columns=columns)
    frame.insert(0, "id", ids)
    return frame


def _per_class(recipe: Recipe, test: pd.DataFrame, labels: dict, sample: pd.DataFrame) -> pd.DataFrame:
    """One probability per class, as data.target_layout lays them out (a column each, or a row each)."""
    from medals.data.target_shapes import layout_submission

    probs = test[[f"p_{k}" for k in range(labels["num_classes"])]].to_numpy(dtype=np.float64)
    if recipe.task == "binary":  # its one sigmoid is P(second class)
        probs = np.column_stack([1.0 - probs[:, 0], probs[:, 0]])
    return layout_submission(sample, test["id"].astype(str).tolist(), probs, labels["classes"], recipe.data)


def _label(test: pd.DataFrame, labels: dict, columns: list[str]) -> pd.DataFrame:
    """The most probable class's name per row (a competition that scores labels)."""
    from medals.post.submission import label_submission

    probs = test[[f"p_{k}" for k in range(labels["num_classes"])]].to_numpy()
    # binary: one probability, of the second class; multiclass: the most probable class
    chosen = (probs[:, 0] > 0.5).astype(int) if labels["num_classes"] == 1 else probs.argmax(axis=1)
    names = np.asarray(labels["classes"], dtype=object)[chosen]
    return label_submission(test["id"], names, columns)


def _multilabel(recipe, layout, rows, test, oof, holdout, labels, columns) -> pd.DataFrame:
    from medals.post.decisions import multilabel_decisions
    from medals.post.submission import multilabel_submission

    num_classes = labels["num_classes"]
    cols = [f"p_{k}" for k in range(num_classes)]
    probs = test[cols].to_numpy()
    if recipe.submit.average_duplicates:
        probs = _average_test_duplicates(rows, test["id"], probs)
    thresholds = _thresholds(recipe, rows, oof, holdout, probs, num_classes)
    say("submit: per-class thresholds " + " ".join(f"{t:.2f}" for t in thresholds))
    decisions = multilabel_decisions(probs, thresholds, recipe.submit.always_top1)
    if recipe.submit.neighbours is not None:
        from medals.stages.neighbours import apply_neighbours

        # None: CUDA when there is one, else the CPU.
        decisions, _ = apply_neighbours(recipe, layout, test["id"], decisions, None)
    if recipe.submit.replace_leaks:
        decisions = _replace_leaks(layout, rows, test["id"], decisions, num_classes)
    return multilabel_submission(test["id"], decisions, columns)


def _thresholds(recipe, rows, oof, holdout, test_probs, num_classes) -> np.ndarray:
    """Per-class thresholds: best F1 on OOF, a fixed number, or matched to a prevalence (HPA)."""
    from medals.post.metrics import search_thresholds
    from medals.post.thresholds import HPA3_GRID, prevalence_thresholds, train_prevalence

    rule = recipe.submit.threshold
    grid_name = recipe.submit.prevalence_grid or ("hpa3" if rule == "prevalence_holdout" else "exact")
    grid = HPA3_GRID if grid_name == "hpa3" else None
    cols = [f"p_{k}" for k in range(num_classes)]
    if not isinstance(rule, str):
        return np.full(num_classes, float(rule))
    if rule == "oof":
        if oof is None:
            raise MedalsError(
                "submit.threshold is 'oof' but there are no OOF predictions: run `medals evaluate`"
            )
        train = rows.train.set_index("id").loc[oof["id"]].reset_index()
        return search_thresholds(class_truth(recipe, train, num_classes), oof[cols].to_numpy())
    if rule == "prevalence_train":
        # HPA1: the test's predicted-positive rate of each class matches the training labels' rate.
        rates = train_prevalence(class_truth(recipe, rows.train, num_classes))
        return prevalence_thresholds(test_probs, rates, grid=grid)
    # prevalence_holdout (HPA3): thresholds at which the hold-out's predicted rate matches its true rate.
    if holdout is None:
        raise MedalsError(
            "submit.threshold is 'prevalence_holdout' but there are no hold-out predictions: "
            "use split.method hpa3 and run `medals evaluate`"
        )
    held = rows.train.set_index("id").loc[holdout["id"]].reset_index()
    rates = train_prevalence(class_truth(recipe, held, num_classes))
    return prevalence_thresholds(holdout[cols].to_numpy(), rates, grid=grid)


def _average_test_duplicates(rows: TableRows, ids: pd.Series, probs: np.ndarray) -> np.ndarray:
    from medals.post.thresholds import average_duplicates

    groups = _test_table(rows, ids, "submit.average_duplicates")["dup_group"].to_numpy()
    return average_duplicates(probs, groups)


def _replace_leaks(
    layout, rows: TableRows, ids: pd.Series, decisions: np.ndarray, num_classes: int
) -> np.ndarray:
    """Test images that duplicate a labelled image take its labels (nearest match first)."""
    from medals.data.splits import multi_hot
    from medals.post.thresholds import replace_leaks

    _test_table(rows, ids, "submit.replace_leaks")
    leaks = read_csv_frame(
        layout.leaks, layout.redo_hint(layout.leaks), dtype={"test_id": str, "labelled_id": str}
    )
    train = rows.train
    test_index = pd.Series(range(len(ids)), index=ids.astype(str).to_numpy())
    labelled_index = pd.Series(range(len(train)), index=train["id"].astype(str).to_numpy())
    leaks = leaks[leaks["test_id"].isin(test_index.index) & leaks["labelled_id"].isin(labelled_index.index)]
    leaks = leaks.assign(
        test_index=test_index.loc[leaks["test_id"]].to_numpy(),
        labelled_index=labelled_index.loc[leaks["labelled_id"]].to_numpy(),
    )
    out = replace_leaks(decisions, leaks, multi_hot(train["labels"], num_classes) > 0)
    say(f"submit: {int((out != decisions).any(axis=1).sum())} test predictions replaced by leaked labels")
    return out


def _test_table(rows: TableRows, ids: pd.Series, key: str) -> pd.DataFrame:
    table = rows.test
    if "dup_group" not in table.columns:
        raise MedalsError(f"{key} needs duplicate groups: set data.duplicates and run `medals prepare`")
    return table.set_index("id").loc[ids.astype(str)].reset_index()


def _rle(recipe, rows: TableRows, test, masks, columns) -> pd.DataFrame:
    from medals.post.decisions import threshold_masks
    from medals.post.submission import rle_submission

    keep = _gate(recipe, test)
    sizes = rows.test.set_index("id").loc[test["id"], ["height", "width"]].to_numpy()
    full = []
    for probs, (height, width), kept in zip(masks, sizes, keep, strict=True):
        if not kept:
            full.append(np.zeros((int(height), int(width)), dtype=bool))
            continue
        # Upsample probabilities, not decisions, so the mask edge is placed at full resolution.
        up = cv2.resize(probs.astype(np.float32), (int(width), int(height)), interpolation=cv2.INTER_LINEAR)
        full.append(threshold_masks(up[None], recipe.submit.pixel_threshold, recipe.submit.min_area)[0])
    return rle_submission(test["id"], full, columns, recipe.data.rle_format)


def _gate(recipe: Recipe, test: pd.DataFrame) -> np.ndarray:
    """Which images may keep a mask: image-level probability (p_cls) above submit.gate_threshold."""
    threshold = recipe.submit.gate_threshold
    if threshold is None:
        return np.ones(len(test), dtype=bool)
    if "p_cls" not in test:
        raise MedalsError(
            "submit.gate_threshold needs image-level probabilities: set model.cls_head or gate an ensemble"
        )
    kept = test["p_cls"].to_numpy() > threshold
    say(f"submit: gate keeps masks of {int(kept.sum())} of {len(kept)} images (p_cls > {threshold})")
    return kept
