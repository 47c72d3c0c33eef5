"""Shared pieces of every recipe section: the strict base model (unknown keys are errors) and the task names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Task = Literal["multiclass", "multilabel", "segmentation"]


RleFormat = Literal["siim", "row", "column"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
