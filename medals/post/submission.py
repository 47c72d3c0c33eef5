"""Submission frames, and their validation against the competition's sample submission.

The writers take ``columns``, the two column names of the sample (their whitespace may be stripped);
``write_submission`` writes the sample's exact header, so e.g. SIIM's "ImageId, EncodedPixels" (with
its leading space) survives.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medals.data.rle import encode
from medals.errors import MedalsError
from medals.files import write_csv


def _check_columns(columns: Sequence[str]) -> tuple[str, str]:
    if len(columns) != 2:
        raise MedalsError(f"a submission needs 2 column names (id, value), got {list(columns)}")
    return str(columns[0]), str(columns[1])


def _ids(ids: Iterable, count: int) -> list[str]:
    ids = [str(value) for value in ids]
    if len(ids) != count:
        raise MedalsError(f"{len(ids)} ids for {count} predictions")
    return ids


def probability_submission(ids: Iterable, probs_1d: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
    """One probability per id (e.g. melanoma target)."""
    id_col, value_col = _check_columns(columns)
    probs = np.asarray(probs_1d, dtype=np.float64).ravel()
    return pd.DataFrame({id_col: _ids(ids, len(probs)), value_col: probs})


def label_submission(ids: Iterable, names: Sequence, columns: Sequence[str]) -> pd.DataFrame:
    """One class name per id (the predicted class of a multi-class task)."""
    id_col, value_col = _check_columns(columns)
    names = [str(name) for name in names]
    return pd.DataFrame({id_col: _ids(ids, len(names)), value_col: names})


def multilabel_submission(ids: Iterable, decisions: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
    """Space-separated ascending label ids of each row's positive classes ("" when none)."""
    id_col, value_col = _check_columns(columns)
    decisions = np.asarray(decisions, dtype=bool)
    if decisions.ndim != 2:
        raise MedalsError(f"multilabel decisions must be [N, K], got shape {decisions.shape}")
    labels = [" ".join(map(str, np.flatnonzero(row).tolist())) for row in decisions]
    return pd.DataFrame({id_col: _ids(ids, len(labels)), value_col: labels})


def rle_submission(
    ids: Iterable, masks: Iterable[np.ndarray], columns: Sequence[str], fmt: str
) -> pd.DataFrame:
    """One RLE per id, each mask at the size the competition scores (empty: "-1" for siim, else "")."""
    id_col, value_col = _check_columns(columns)
    encoded = [encode(mask, fmt) for mask in masks]
    return pd.DataFrame({id_col: _ids(ids, len(encoded)), value_col: encoded})


def read_sample(path: str | os.PathLike) -> pd.DataFrame:
    """The sample submission with every value as text, so ids like "007" keep their zeros."""
    path = Path(path)
    if not path.is_file():
        raise MedalsError(f"sample submission {path} does not exist")
    try:
        sample = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedalsError(f"sample submission {path} cannot be read as CSV ({reason})") from None
    if sample.shape[1] < 2:
        raise MedalsError(
            f"sample submission {path} has {sample.shape[1]} column(s); expected an id and a value"
        )
    return sample


def _few(values: Sequence) -> str:
    shown = ", ".join(str(value) for value in list(values)[:5])
    return shown + (", ..." if len(values) > 5 else "")


def _names(columns: Iterable) -> list[str]:
    return [str(name).strip() for name in columns]


def validate_submission(sub: pd.DataFrame, sample: pd.DataFrame, sample_path: str | os.PathLike) -> None:
    """Raise MedalsError (one sentence) unless ``sub`` has the sample's columns and exactly its ids.

    Column names are compared with surrounding whitespace stripped; ids are compared as text.
    """
    where = f"the sample submission {sample_path}"
    got, want = _names(sub.columns), _names(sample.columns)
    if got != want:
        missing = [name for name in want if name not in got]
        extra = [name for name in got if name not in want]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"lacks column(s) {', '.join(map(repr, missing))}")
            if extra:
                parts.append(f"has unexpected column(s) {', '.join(map(repr, extra))}")
            raise MedalsError(f"the submission {' and '.join(parts)} compared with {where}")
        raise MedalsError(f"the submission's columns {got} are not in the order of {where} ({want})")
    id_col = sub.columns[0]
    ids = sub[id_col].astype(str)
    sample_ids = sample[sample.columns[0]].astype(str)
    if sub[id_col].isna().any():
        raise MedalsError(
            f"the submission's id column '{want[0]}' has {int(sub[id_col].isna().sum())} empty values"
        )
    if sample_ids.is_unique:
        repeated = ids[ids.duplicated()].unique()
        if len(repeated):
            raise MedalsError(
                f"the submission repeats {len(repeated)} id(s) (first: {_few(repeated)}); {where} lists each once"
            )
    missing_ids = sample_ids[~sample_ids.isin(ids)].unique()
    if len(missing_ids):
        raise MedalsError(
            f"the submission lacks {len(missing_ids)} id(s) of {where} (first: {_few(missing_ids)})"
        )
    extra_ids = ids[~ids.isin(sample_ids)].unique()
    if len(extra_ids):
        raise MedalsError(
            f"the submission has {len(extra_ids)} id(s) not in {where} (first: {_few(extra_ids)})"
        )
    for column, name in zip(sub.columns, want, strict=True):
        empty = sub[column].isna()
        if empty.any():
            first = ids[empty].iloc[0]
            raise MedalsError(
                f"the submission's column '{name}' has {int(empty.sum())} missing (NaN) value(s), "
                f"first at id {first}"
            )


def write_submission(sub: pd.DataFrame, sample_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Validate against the sample, then write atomically in the sample's row order and exact header."""
    sample = read_sample(sample_path)
    validate_submission(sub, sample, sample_path)
    out = sub.copy()
    out.columns = list(sample.columns)
    sample_ids = sample[sample.columns[0]].astype(str)
    if sample_ids.is_unique:
        # Kaggle does not need the sample's row order, but keeping it makes files easy to compare.
        out = out.iloc[pd.Index(out.iloc[:, 0].astype(str)).get_indexer(sample_ids)].reset_index(drop=True)
    return write_csv(out_path, out)
