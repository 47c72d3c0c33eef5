"""Prediction groups (data.prediction_id): several images, one submission row (RSNA breast: every view of
one breast, `{patient_id}_{laterality}`). The images' probabilities are combined by mean or max
(data.prediction_aggregate), for the OOF metrics as for the submission, so CV scores what is submitted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.errors import MedalsError


def aggregate(groups: Sequence[str], values: np.ndarray, how: str) -> tuple[list[str], np.ndarray]:
    """(group ids in first-appearance order, values [G, ...] combined over each group's rows by `how`)."""
    values = np.asarray(values, dtype=np.float64)
    if len(groups) != len(values):
        raise MedalsError(f"{len(groups)} prediction groups for {len(values)} predictions")
    flat = pd.DataFrame(values.reshape(len(values), -1))
    combined = flat.groupby(pd.Series(list(groups), name="g"), sort=False).agg(how)
    return [str(g) for g in combined.index], combined.to_numpy().reshape((len(combined), *values.shape[1:]))


def group_rows(
    recipe: Recipe, rows: pd.DataFrame, truth: np.ndarray, probs: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Rows, truth and probabilities of images -> of their prediction groups (unchanged without groups).

    A group's truth is positive when any of its images is (binary and multilabel: they share the label
    in the competitions that group, one breast's cancer); a multiclass group takes its first image's class.
    """
    if not recipe.data.prediction_id:
        return rows, truth, probs
    groups = rows["prediction_id"].astype(str).tolist()
    ids, grouped = aggregate(groups, probs, recipe.data.prediction_aggregate)
    truth = np.asarray(truth)
    how = "first" if recipe.task == "multiclass" else "max"
    _, grouped_truth = aggregate(groups, truth, how)
    first = rows.assign(_g=groups).drop_duplicates("_g").set_index("_g").loc[ids].reset_index(drop=True)
    return first.assign(id=ids), grouped_truth.astype(truth.dtype), grouped
