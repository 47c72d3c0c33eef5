"""Numeric targets for `medals init`: a regression value (RSNA bone age in months) or ordinal grades scored
by quadratic weighted kappa (APTOS, diabetic retinopathy), told apart from class labels.

- Numbers with fractions, or more than MAX_CLASSES distinct values, are a regression target.
- Whole-number grades 0..K-1 (K >= 3) under a grade-like column name (diagnosis, level, ...) whose sample
  submission names one grade per row are ordinal; other small integers stay classes (multiclass).
- `task=regression`, `task=ordinal` or `task=multiclass` on the command line decides instead; a
  declaration the column cannot satisfy is refused with one sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from medals.data.labels import show_values
from medals.errors import MedalsError

MAX_CLASSES = 20  # more distinct numbers than this are a quantity, not classes
ORDINAL_NAMES = re.compile(r"diagnosis|grade|level|severity|stage", re.IGNORECASE)


def _numbers(labels: pd.Series) -> pd.Series | None:
    filled = labels[labels.str.strip() != ""]
    numbers = pd.to_numeric(filled, errors="coerce")
    return numbers if len(numbers) and numbers.notna().all() else None


def _integer_grades(numbers: pd.Series | None, from_zero: bool = True) -> list[str] | None:
    """The grades in order ("0", "1", ...) when the values are whole numbers (with from_zero: exactly
    0..K-1), else None."""
    if numbers is None or (numbers != numbers.round()).any():
        return None
    values = sorted(int(v) for v in numbers.unique())
    if from_zero and values != list(range(len(values))):
        return None
    return [str(v) for v in values]


@dataclass
class NumericTarget:
    task: str
    why: str
    submit_kind: str
    kind_why: str
    classes: list[str] | None = None


def numeric_target(
    where: str,
    column: str,
    labels: pd.Series,
    sample_values: pd.Series,
    task: str | None,
    classes: list | None = None,
) -> NumericTarget | None:
    """A regression or ordinal reading of the target column `labels` (text cells); None leaves it to
    the class-label rules. `where` names the CSV for messages; `task` is a task=... override, if any;
    `classes` a data.classes override (ordinal: the grades in order, for text grades)."""
    where = f"{where} column '{column}'"
    numbers = _numbers(labels)
    if task == "regression":
        if numbers is None:
            bad = labels[pd.to_numeric(labels, errors="coerce").isna()].unique()
            raise MedalsError(
                f"{where} has values that are not numbers ({show_values(bad)}), so task=regression cannot learn it"
            )
        return _regression(numbers, "task=regression was given")
    if task == "ordinal":
        if classes:  # the grades' order declared: every value must be one of them
            named = [str(c) for c in classes]
            unknown = sorted(set(labels[labels.str.strip() != ""]) - set(named))
            if unknown:
                raise MedalsError(f"{where} has values outside data.classes {named}: {show_values(unknown)}")
            return _ordinal(named, "task=ordinal and data.classes were given")
        grades = _integer_grades(numbers, from_zero=False)
        if grades is None:
            shown = show_values(sorted(labels.unique()))
            raise MedalsError(
                f"{where} holds {shown}, not whole-number grades: set data.classes=[...] in grade order "
                "for task=ordinal"
            )
        return _ordinal(grades, "task=ordinal was given")
    if task is not None or numbers is None:
        return None
    fractional = bool((numbers != numbers.round()).any())
    distinct = numbers.nunique()
    if fractional or distinct > MAX_CLASSES:
        why = "fractional numbers" if fractional else f"{distinct} distinct numbers (more than {MAX_CLASSES})"
        return _regression(numbers, f"'{column}' holds {why}")
    grades = _integer_grades(numbers)
    sample = pd.to_numeric(sample_values, errors="coerce")
    whole = bool(sample.notna().all() and (sample == sample.round()).all())
    if grades and len(grades) >= 3 and ORDINAL_NAMES.search(column) and whole:
        why = f"'{column}' holds the grades 0..{len(grades) - 1} and the submission one grade per image"
        return _ordinal(grades, why)
    return None


def _regression(numbers: pd.Series, why: str) -> NumericTarget:
    return NumericTarget(
        "regression",
        f"{why}: one output, trained on the standardised value (task=multiclass for classes)",
        "value",
        f"the submission's value is a number (training range {numbers.min():g}..{numbers.max():g})",
    )


def _ordinal(grades: list[str], why: str) -> NumericTarget:
    return NumericTarget(
        "ordinal",
        f"{why}: ordered grades, one regression output cut at cut-points fitted on OOF for QWK "
        "(task=multiclass for unordered classes)",
        "ordinal",
        "an integer grade per image, the prediction cut at the OOF cut-points",
        grades,
    )
