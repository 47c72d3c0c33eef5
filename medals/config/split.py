"""The `split` section: how rows are assigned to cross-validation folds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medals.config.base import Strict


class SplitConfig(Strict):
    # hpa1: multilabel-stratified over duplicate groups, competition and external rows apart (column
    # = the 0/1 external flag); hpa3: 2*n_folds+1 stratified chunks, fold k validates on chunks 2k and
    # 2k+1, the last chunk is a hold-out (fold -2) used for prevalence thresholds.
    method: Literal[
        "kfold", "stratified", "grouped", "stratified_grouped", "multilabel", "fixed", "hpa1", "hpa3"
    ] = "stratified"
    clean_external: bool = False  # hpa1: drop external rows duplicating a train row with other labels
    n_folds: int = Field(5, ge=2)
    column: str | None = None  # for "fixed": the column whose values map to folds
    mapping: dict[str, int] | None = None  # for "fixed": value -> fold (default: value % n_folds)
    seed: int | None = None  # default: the recipe seed
    # Only training rows matching this pandas query get folds, e.g. 'has_mask == 1'; the others are left
    # out of training and evaluation.
    query: str | None = None
    # Training rows matching this pandas query train in every fold and are never validated on
    # (fold -1), e.g. "is_extra == 1" for external images with pseudo masks.
    train_only: str | None = None
