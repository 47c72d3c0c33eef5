"""submit for numbers: a regression value per row (optionally clipped to the training range), or an
ordinal grade per row cut from the prediction at cut-points fitted on OOF to maximise QWK."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.errors import MedalsError
from medals.stages.common import say
from medals.stages.truth import class_truth


def value_submission(recipe: Recipe, train: pd.DataFrame, test: pd.DataFrame, columns: list[str]):
    """The regression output per row; submit.clip "train" keeps it within the training targets' range."""
    from medals.post.submission import probability_submission

    values = test["p_0"].to_numpy(dtype=np.float64)
    if recipe.submit.clip == "train":
        targets = train["target"].to_numpy(dtype=np.float64)
        low, high = float(np.nanmin(targets)), float(np.nanmax(targets))
        clipped = int(((values < low) | (values > high)).sum())
        values = np.clip(values, low, high)
        say(f"submit: {clipped} predictions clipped to the training range [{low:g}, {high:g}]")
    return probability_submission(test["id"], values, columns)


def grade_prediction(recipe: Recipe, frame: pd.DataFrame, num_grades: int) -> np.ndarray:
    """A continuous prediction in class-index units: the ordinal output, or a multiclass model's
    expected grade sum_k k p_k."""
    from medals.post.ordinal import expected_grade

    if recipe.task == "ordinal":
        return frame["p_0"].to_numpy(dtype=np.float64)
    return expected_grade(frame[[f"p_{k}" for k in range(num_grades)]].to_numpy(dtype=np.float64))


def cutpoints(recipe: Recipe, train: pd.DataFrame, oof: pd.DataFrame | None, num_grades: int) -> np.ndarray:
    """submit.cutpoints: fitted on OOF ("oof"), the rounding midpoints ("round"), or the recipe's list."""
    from medals.post.ordinal import fit_cutpoints, midpoints

    rule = recipe.submit.cutpoints
    if rule == "round":
        return midpoints(num_grades)
    if isinstance(rule, list):
        cuts = np.asarray(rule, dtype=np.float64)
        if len(cuts) != num_grades - 1 or (np.diff(cuts) <= 0).any():
            raise MedalsError(
                f"submit.cutpoints must be {num_grades - 1} increasing numbers for {num_grades} grades, got {rule}"
            )
        return cuts
    if oof is None:
        raise MedalsError("submit.cutpoints is 'oof' but there are no OOF predictions: run `medals evaluate`")
    rows = train.set_index("id").loc[oof["id"].astype(str)].reset_index()
    truth = class_truth(recipe, rows, num_grades)
    return fit_cutpoints(truth, grade_prediction(recipe, oof, num_grades), num_grades)


def ordinal_submission(
    recipe: Recipe, train: pd.DataFrame, test: pd.DataFrame, oof: pd.DataFrame | None, labels: dict, columns
):
    """One grade (the class name, e.g. 0..4) per row: the prediction cut at the cut-points."""
    from medals.post.ordinal import apply_cutpoints
    from medals.post.submission import label_submission

    classes = labels["classes"]
    cuts = cutpoints(recipe, train, oof, len(classes))
    say("submit: ordinal cut-points " + " ".join(f"{c:.3f}" for c in cuts))
    grades = apply_cutpoints(grade_prediction(recipe, test, len(classes)), cuts)
    return label_submission(test["id"], np.asarray(classes, dtype=object)[grades], columns)
