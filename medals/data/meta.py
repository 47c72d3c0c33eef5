"""Tabular meta features (age, sex, site, images per patient, file size) as float32 ``meta_*`` columns.

The column order returned here is the model's meta input order, so it is fixed by the recipe:
numeric, mapped, categorical, group counts, file size, each in the order the recipe lists them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from medals.config import MetaConfig
from medals.data.io import file_size
from medals.errors import MedalsError


def value_key(value: object) -> str | None:
    """A CSV cell as the string a recipe uses for it: 1.0 -> "1", NaN -> None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def _keys(column: pd.Series) -> list[str | None]:
    return [value_key(v) for v in column.tolist()]


def required_columns(cfg: MetaConfig) -> list[str]:
    """The CSV columns the meta features read."""
    names = [*cfg.numeric, *cfg.mapped, *cfg.categorical, *cfg.group_counts]
    return list(dict.fromkeys(names))


def check_columns(frame: pd.DataFrame, names: Sequence[str], csv_name: str) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise MedalsError(f"{csv_name} has no column(s) {', '.join(repr(m) for m in missing)}")


def _numeric(frame: pd.DataFrame, col: str, scale: float, fill: float, csv_name: str) -> np.ndarray:
    values = pd.to_numeric(frame[col], errors="coerce")
    bad = frame[col][values.isna() & frame[col].notna()]
    if len(bad):
        shown = ", ".join(repr(v) for v in bad.unique()[:5])
        raise MedalsError(f"{csv_name} column '{col}' has non-numeric values: {shown}")
    out = values.to_numpy(dtype=np.float64) / scale
    return np.where(np.isnan(out), fill, out)


def _mapped(frame: pd.DataFrame, col: str, mapping: dict[str, float], fill: float) -> np.ndarray:
    return np.array([mapping.get(k, fill) if k is not None else fill for k in _keys(frame[col])])


def _group_counts(frame: pd.DataFrame, col: str) -> np.ndarray:
    keys = _keys(frame[col])
    counts = pd.Series([k for k in keys if k is not None]).value_counts().to_dict()
    # A missing value is shared with nobody: the row counts only itself.
    return np.log1p(np.array([counts[k] if k is not None else 1 for k in keys], dtype=np.float64))


def _file_sizes(paths: Sequence[str]) -> np.ndarray:
    return np.log(np.array([max(file_size(p), 1) for p in paths], dtype=np.float64))


def _sort_values(values: set[str]) -> list[str]:
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def _features(
    frame: pd.DataFrame,
    cfg: MetaConfig,
    paths: Sequence[str] | None,
    categories: dict[str, list[str]],
    csv_name: str,
) -> pd.DataFrame:
    columns: dict[str, np.ndarray] = {}

    def put(name: str, values: np.ndarray) -> None:
        if name in columns:
            raise MedalsError(f"meta feature '{name}' is configured twice (as {csv_name} column)")
        columns[name] = values

    for col, spec in cfg.numeric.items():
        put(f"meta_{col}", _numeric(frame, col, spec.scale, spec.fill, csv_name))
    for col, spec in cfg.mapped.items():
        put(f"meta_{col}", _mapped(frame, col, spec.values, spec.fill))
    for col in cfg.categorical:
        keys = _keys(frame[col])
        for value in categories[col]:
            put(f"meta_{col}_{value}", np.array([k == value for k in keys], dtype=np.float64))
        put(f"meta_{col}_nan", np.array([k is None for k in keys], dtype=np.float64))
    for col in cfg.group_counts:
        put(f"meta_{col}_count", _group_counts(frame, col))
    if cfg.file_size:
        if paths is None or len(paths) != len(frame):
            raise ValueError("file_size meta features need one image path per row")
        put("meta_file_size", _file_sizes(paths))
    out = pd.DataFrame(columns, index=frame.index)
    return out.astype(np.float32) if len(out.columns) else out


def meta_features(
    train: pd.DataFrame,
    test: pd.DataFrame | None,
    cfg: MetaConfig,
    paths_train: Sequence[str] | None = None,
    paths_test: Sequence[str] | None = None,
    train_name: str = "train CSV",
    test_name: str = "test CSV",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """float32 ``meta_*`` feature frames for train and test (same columns; test is empty when None).

    Categorical one-hot columns cover the sorted union of train and test values, so both frames have
    the same columns. ``paths_*`` are the image paths (needed for ``file_size``).
    """
    names = required_columns(cfg)
    check_columns(train, names, train_name)
    if test is not None:
        check_columns(test, names, test_name)
    categories = {}
    for col in cfg.categorical:
        seen = {k for k in _keys(train[col]) if k is not None}
        if test is not None:
            seen |= {k for k in _keys(test[col]) if k is not None}
        categories[col] = _sort_values(seen)
    train_feats = _features(train, cfg, paths_train, categories, train_name)
    if test is None:
        test_feats = train_feats.iloc[:0].copy()
    else:
        test_feats = _features(test, cfg, paths_test, categories, test_name)
    return train_feats, test_feats
