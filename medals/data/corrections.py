"""data.label_corrections: a CSV of id -> corrected labels, applied to the training rows.

The rules are those of HPA1's external-label correction (bestfitting's
s10_generate_correct_external_meta.py), re-derived:

- the file's ids go through ``id_replace`` (its train_extra.csv writes "10580/1610_C1_1" for the
  image "10580_1610_C1_1"); rows repeated in the file count once, an id with two different labels is an
  error;
- only rows matching ``rows`` (a pandas query; HPA1: the external images) are corrected;
- multilabel: for each class in ``keep_classes`` the original labels decide whether it is present
  (HPA1 keeps its own calls of the rare Peroxisomes, Endosomes, Lysosomes, Lipid droplets and
  Cytoplasmic bodies); a correction that leaves no label keeps the original labels; the result is the
  sorted label ids;
- the corrected labels replace ``data.label_column``, or go to ``column`` with the original kept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.config.data import LabelCorrections
from medals.data.csv import read_csv
from medals.errors import MedalsError

SHOWN = 5


def _label_ids(text: object, where: str) -> list[int]:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    try:
        return sorted({int(token) for token in str(text).split()})
    except ValueError:
        raise MedalsError(f"{where}: labels {text!r} are not space-separated integers") from None


def corrected_labels(original: object, new: object, keep: list[int], where: str) -> str:
    """One row's multilabel correction (the module's rules) as sorted, space-separated label ids."""
    before = _label_ids(original, where)
    after = set(_label_ids(new, where))
    for k in keep:
        if k in before:
            after.add(k)
        else:
            after.discard(k)
    return " ".join(str(v) for v in sorted(after or before))


def read_corrections(recipe: Recipe, cfg: LabelCorrections) -> pd.Series:
    """The file as a Series id -> label text (ids after id_replace, exact repeats dropped)."""
    path = recipe.data_root / cfg.path
    frame = read_csv(
        path,
        required=[cfg.id_column, cfg.label_column],
        dtype={cfg.id_column: str, cfg.label_column: str},
        who="data.label_corrections",
    )
    ids = frame[cfg.id_column].astype(str).str.strip()
    for old, new in cfg.id_replace.items():
        ids = ids.str.replace(old, new, regex=False)
    frame = pd.DataFrame({"id": ids, "labels": frame[cfg.label_column]}).drop_duplicates()
    clash = frame["id"][frame["id"].duplicated()].unique().tolist()
    if clash:
        raise MedalsError(
            f"data.label_corrections {path} gives different labels for one id, first: {clash[:SHOWN]}"
        )
    return frame.set_index("id")["labels"]


def apply_label_corrections(recipe: Recipe, train: pd.DataFrame, name: str) -> pd.DataFrame:
    """``train`` with data.label_corrections applied (the module's rules); unchanged without them."""
    cfg = recipe.data.label_corrections
    if cfg is None:
        return train
    data = recipe.data
    id_col, label_col = data.id_column, data.label_column
    for column in (id_col, label_col):
        if column is None or column not in train.columns:
            raise MedalsError(f"data.label_corrections: the {name} have no column {column!r} to correct")
    if cfg.keep_classes and recipe.task != "multilabel":
        raise MedalsError("data.label_corrections.keep_classes needs a multilabel task")
    fixes = read_corrections(recipe, cfg)
    eligible = pd.Series(True, index=train.index)
    if cfg.rows:
        try:
            eligible = train.eval(cfg.rows).astype(bool)
        except Exception as exc:
            raise MedalsError(
                f"data.label_corrections.rows {cfg.rows!r} cannot be applied to the {name}: {exc}"
            ) from None
    ids = train[id_col].astype(str).str.strip()
    hit = eligible & ids.isin(fixes.index)
    unknown = sorted(set(fixes.index) - set(ids[eligible]))
    if unknown and cfg.unknown_ids == "error":
        raise MedalsError(
            f"data.label_corrections {cfg.path} names {len(unknown)} ids that are no correctable "
            f"training row (set unknown_ids: ignore to skip them), first: {unknown[:SHOWN]}"
        )
    out = train.copy()
    labels = out[label_col].astype(object).copy()
    where = f"data.label_corrections {cfg.path}"
    for row in np.flatnonzero(hit.to_numpy()):
        new = fixes[ids.iloc[row]]
        if recipe.task == "multilabel":
            labels.iloc[row] = corrected_labels(labels.iloc[row], new, cfg.keep_classes, where)
        elif isinstance(new, str) and new.strip():
            labels.iloc[row] = new.strip()
    out[cfg.column or label_col] = labels
    return out
