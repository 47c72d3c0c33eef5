"""Shared pieces of every recipe section: the strict base model (unknown keys are errors) and the task names."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

# binary: one logit, sigmoid and BCE, of the second of two classes; multiclass: one logit per class, softmax.
# regression: one number per image (a "target" column in the table), standardised for training;
# ordinal: one grade per image of an ordered class list, regressed on the class index and cut into
# grades by cut-points fitted on OOF (medals.post.ordinal).
Task = Literal["binary", "multiclass", "multilabel", "segmentation", "regression", "ordinal"]
LABEL_TASKS = ("binary", "multiclass")  # one class label per image (a "label" column in the table)
NUMERIC_TASKS = ("regression", "ordinal")  # one regression output per image (a "target" column)


RleFormat = Literal["siim", "row", "column"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def without_later_defaults(values: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """A dumped section as the digests see it: the keys of `later` left out where they hold their default
    (settings added after runs existed, so runs made before them keep their digests and trained folds)."""
    return {key: value for key, value in values.items() if key not in later or value != later[key]}
