"""Labels as a competition's CSV gives them: class lists, multi-class and multi-label columns, RLE rows grouped per image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from medals.config import DataConfig
from medals.data.meta import value_key
from medals.errors import MedalsError

SHOWN = 5  # how many offending values an error message lists


def show_values(values: Sequence[Any]) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:SHOWN])
    return shown + (", ..." if len(values) > SHOWN else "")


def _sort_classes(values: set[str]) -> list[str]:
    try:
        return sorted(values, key=float)  # "2" before "10"
    except ValueError:
        return sorted(values)


def _mapped_labels(frame: pd.DataFrame, data: DataConfig) -> list[str | None]:
    keys = [value_key(v) for v in frame[data.label_column].tolist()]
    return [data.label_map.get(k, k) if k is not None else None for k in keys]


def multiclass_labels(frame: pd.DataFrame, data: DataConfig, csv_name: str) -> tuple[np.ndarray, list[str]]:
    labels = _mapped_labels(frame, data)
    classes = list(data.classes) if data.classes else _sort_classes({x for x in labels if x is not None})
    index = {name: i for i, name in enumerate(classes)}
    bad = [x for x in labels if x not in index]
    if bad:
        values = list(dict.fromkeys("(missing)" if x is None else x for x in bad))
        raise MedalsError(
            f"{csv_name} column '{data.label_column}' has {len(bad)} labels outside the class list "
            f"[{show_values(classes)}]: {show_values(values)}"
        )
    return np.array([index[x] for x in labels], dtype=np.int64), classes


def num_label_classes(data: DataConfig) -> int | None:
    return data.num_classes if data.num_classes is not None else (len(data.classes) if data.classes else None)


def multilabel_labels(frame: pd.DataFrame, data: DataConfig, csv_name: str) -> list[str]:
    k = num_label_classes(data)
    out, bad = [], []
    for raw in frame[data.label_column].tolist():
        text = value_key(raw) or ""
        ids = set()
        for token in text.split():
            try:
                value = int(token)
            except ValueError:
                value = None
            if value is None or not 0 <= value < k:
                bad.append(token)
            else:
                ids.add(value)
        out.append(" ".join(str(i) for i in sorted(ids)))
    if bad:
        raise MedalsError(
            f"{csv_name} column '{data.label_column}' has {len(bad)} label ids that are not integers in "
            f"0..{k - 1}: {show_values(list(dict.fromkeys(bad)))}"
        )
    return out


def _rle_part(value: Any) -> str:
    return (value_key(value) or "").strip()


def group_rle(frame: pd.DataFrame, data: DataConfig) -> tuple[pd.DataFrame, list[str], list[int]]:
    """One row per id; the RLE strings of all rows of an id joined with "|" (their masks are OR-ed)."""
    joined = frame.groupby(data.id_column, sort=False)[data.mask_column].agg(
        lambda parts: "|".join(_rle_part(p) for p in parts)
    )
    first = frame.drop_duplicates(data.id_column, keep="first").reset_index(drop=True)
    rle = joined.reindex(first[data.id_column]).tolist()
    has_mask = [int(any(p not in ("", "-1") for p in text.split("|"))) for text in rle]
    return first, rle, has_mask


def numeric_targets(
    frame: pd.DataFrame, data: DataConfig, csv_name: str, task: str
) -> tuple[np.ndarray, list[str]]:
    """(float target per row, classes): regression's numbers, or ordinal's class index per row (the
    grades ordered as data.classes, else by value)."""
    if task == "ordinal":
        index, classes = multiclass_labels(frame, data, csv_name)
        if len(classes) < 2:
            raise MedalsError(
                f"task ordinal needs 2 or more grades; {csv_name} column '{data.label_column}' has {len(classes)}"
            )
        return index.astype(np.float64), classes
    raw = frame[data.label_column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        shown = list(
            dict.fromkeys("(missing)" if value_key(v) is None else str(v) for v in raw[bad].tolist())
        )
        raise MedalsError(
            f"{csv_name} column '{data.label_column}' has {int(bad.sum())} values that are not numbers, "
            f"which task regression needs: {show_values(shown)}"
        )
    return values, [str(data.label_column)]
