"""Shared pieces of every recipe section: the strict base model (unknown keys are errors) and the task names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

# binary: one logit, sigmoid and BCE, of the second of two classes; multiclass: one logit per class, softmax.
Task = Literal["binary", "multiclass", "multilabel", "segmentation"]
LABEL_TASKS = ("binary", "multiclass")  # one class label per image (a "label" column in the table)


RleFormat = Literal["siim", "row", "column"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
