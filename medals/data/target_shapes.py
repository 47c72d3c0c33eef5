"""How a competition lays out its targets (data.target_layout), and the one conversion each way.

- ``column``: one row per image, its label in one column (data.label_column), one value column in the
  submission. Everything else is converted to this on read.
- ``wide``: one row per image, one 0/1 column per class, named by data.classes (RANZCR CLiP: 11 catheter
  columns, several may be 1: multilabel; ISIC 2019: one-hot MEL..UNK, exactly one 1: multiclass). The
  submission has one probability column per class, in the sample's column order.
- ``long``: one row per (image, class). The key column (data.id_column) joins the two by data.long_key
  (RSNA ICH: ``ID_<image>_<subtype>`` is "{image}_{class}"), or the class has its own column
  (data.class_column: Severstal's ClassId, UW-Madison's class). `pivot_long` makes one row per image with
  one column per class, carrying the value column as it is (a 0/1 label, or an RLE string); the
  submission is unpivoted in the sample's own rows (`layout_submission`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from medals.config import DataConfig, Recipe
from medals.data.labels import show_values
from medals.data.meta import value_key
from medals.errors import MedalsError

TARGET = "__target"  # the column-layout label column that wide and long targets are converted to
IMAGE, CLASS = "__image", "__class"


def key_pattern(long_key: str, classes: Sequence[str] | None) -> re.Pattern:
    """A regex for data.long_key: {image} any text, {class} one of the classes (longest first)."""
    pieces = re.split(r"(\{image\}|\{class\})", long_key)
    out = []
    for piece in pieces:
        if piece == "{image}":
            out.append("(?P<image>.+)")
        elif piece == "{class}":
            names = sorted(classes or [], key=len, reverse=True)
            out.append("(?P<cls>" + ("|".join(map(re.escape, names)) if names else "[^_]+") + ")")
        else:
            out.append(re.escape(piece))
    return re.compile("".join(out))


def _keys(frame: pd.DataFrame, data: DataConfig, where: str) -> pd.DataFrame:
    """(image, class) of each row of a long frame."""
    if data.class_column:
        for name in (data.id_column, data.class_column):
            if name not in frame.columns:
                raise MedalsError(f"{where} has no column '{name}' (the long layout's image and class keys)")
        return pd.DataFrame(
            {
                IMAGE: [value_key(v) or "" for v in frame[data.id_column]],
                CLASS: [value_key(v) or "" for v in frame[data.class_column]],
            }
        )
    if data.id_column not in frame.columns:
        raise MedalsError(f"{where} has no column '{data.id_column}' (the long layout's key, data.id_column)")
    pattern = key_pattern(data.long_key or "{image}_{class}", data.classes)
    images, classes, bad = [], [], []
    for key in frame[data.id_column].astype(str):
        match = pattern.fullmatch(key)
        if match is None:
            bad.append(key)
            continue
        images.append(match["image"])
        classes.append(match["cls"])
    if bad:
        raise MedalsError(
            f"{where} column '{data.id_column}' has {len(bad)} key(s) that are not data.long_key "
            f"'{data.long_key}' over the classes [{show_values(data.classes or [])}]: {show_values(bad)}"
        )
    return pd.DataFrame({IMAGE: images, CLASS: classes})


def is_long(frame: pd.DataFrame, data: DataConfig) -> bool:
    """Whether a test frame (or a sample) has the long layout's rows, rather than one row per image."""
    if data.target_layout != "long":
        return False
    if data.class_column:
        return data.class_column in frame.columns
    pattern = key_pattern(data.long_key or "{image}_{class}", data.classes)
    keys = frame[data.id_column].astype(str) if data.id_column in frame.columns else pd.Series([], dtype=str)
    return bool(len(keys)) and all(pattern.fullmatch(k) for k in keys)


def pivot_long(
    frame: pd.DataFrame, data: DataConfig, value_column: str | None, where: str, fill: Any = None
) -> pd.DataFrame:
    """One row per image (first-appearance order): data.id_column holds the image id, one column per class
    holds the value column's cells as they are, other columns keep the image's first row. A missing
    (image, class) pair takes `fill`; with fill None every image must have every class."""
    keys = _keys(frame, data, where)
    classes = list(data.classes or [])
    unknown = sorted(set(keys[CLASS]) - set(classes))
    if unknown:
        raise MedalsError(
            f"{where} has classes {show_values(unknown)} outside data.classes [{show_values(classes)}]"
        )
    twice = keys.duplicated()
    if twice.any():
        first = keys[twice].iloc[0]
        raise MedalsError(
            f"{where} has image '{first[IMAGE]}' with class '{first[CLASS]}' on more than one row"
        )
    order = pd.unique(keys[IMAGE])
    values = frame[value_column].to_numpy(dtype=object) if value_column else np.ones(len(frame), dtype=object)
    grid = pd.DataFrame({IMAGE: keys[IMAGE], CLASS: keys[CLASS], "v": values})
    wide = grid.pivot(index=IMAGE, columns=CLASS, values="v").reindex(index=order, columns=classes)
    if fill is None and wide.isna().to_numpy().any():
        rows, cols = np.nonzero(wide.isna().to_numpy())
        raise MedalsError(
            f"{where} has no row for image '{wide.index[rows[0]]}' and class '{classes[cols[0]]}' "
            f"({len(rows)} (image, class) pairs missing)"
        )
    if fill is not None:
        wide = wide.astype(object).where(wide.notna(), fill)
    taken = {data.id_column, data.class_column, value_column}
    others = frame.drop(columns=[c for c in frame.columns if c in taken or c in classes])
    others = others.assign(**{IMAGE: keys[IMAGE].to_numpy()}).drop_duplicates(IMAGE).set_index(IMAGE)
    out = others.reindex(order).join(wide).reset_index(names=data.id_column)
    return out


def long_images(frame: pd.DataFrame, data: DataConfig, where: str) -> pd.DataFrame:
    """The images of a long test frame or sample, one row each in first-appearance order."""
    keys = _keys(frame, data, where)
    taken = {data.id_column, data.class_column}
    rest = frame.drop(columns=[c for c in frame.columns if c in taken]).assign(
        **{data.id_column: keys[IMAGE]}
    )
    return rest.drop_duplicates(data.id_column).reset_index(drop=True)


def wide_target(frame: pd.DataFrame, data: DataConfig, task: str, where: str) -> list[str]:
    """The column layout's labels of a wide frame: the class name (binary, multiclass: exactly one 1 per
    row) or the space-separated indices of the 1 columns (multilabel)."""
    classes = list(data.classes or [])
    missing = [c for c in classes if c not in frame.columns]
    if missing:
        raise MedalsError(
            f"{where} has no column(s) {show_values(missing)} of data.classes (its columns: "
            f"{show_values(list(frame.columns))}): with data.target_layout '{data.target_layout}' the classes "
            "are the 0/1 columns"
        )
    cells = frame[classes].map(value_key).to_numpy(dtype=object)
    bad = sorted({str(v) for v in cells.ravel() if v not in ("0", "1")})
    if bad:
        raise MedalsError(
            f"{where}: the class columns of data.classes must hold 0 or 1, found {show_values(bad)}"
        )
    ones = cells == "1"
    if task in ("binary", "multiclass"):
        counts = ones.sum(axis=1)
        wrong = np.flatnonzero(counts != 1)
        if len(wrong):
            raise MedalsError(
                f"{where} row {int(wrong[0]) + 1} has {int(counts[wrong[0]])} ones among the class columns: "
                f"task {task} (one-hot) needs exactly one per row; use task multilabel for independent columns"
            )
        return [classes[k] for k in ones.argmax(axis=1)]
    return [" ".join(str(k) for k in np.flatnonzero(row)) for row in ones]


def reshape_frames(
    recipe: Recipe, train: pd.DataFrame, test: pd.DataFrame | None, train_name: str, test_name: str
) -> tuple[pd.DataFrame, pd.DataFrame | None, DataConfig]:
    """The training and test frames in the column layout (segmentation: long pivoted to wide), and the
    data section that reads them."""
    data = recipe.data
    if data.target_layout == "column":
        return train, test, data
    if data.target_layout == "long":
        value = data.mask_column if recipe.task == "segmentation" else data.label_column
        if not value:
            key = "data.mask_column" if recipe.task == "segmentation" else "data.label_column"
            raise MedalsError(
                f"data.target_layout 'long' needs {key} (the value column of each image and class)"
            )
        if value not in train.columns:
            raise MedalsError(f"{train_name} has no column '{value}' (the long layout's value column)")
        fill = "" if recipe.task == "segmentation" else None  # an absent (image, class) row: no mask
        train = pivot_long(train, data, value, train_name, fill=fill)
        if test is not None and is_long(test, data):
            test = long_images(test, data, test_name)
    if recipe.task == "segmentation":
        return train, test, data.model_copy(update={"target_layout": "wide"})
    train = train.assign(**{TARGET: wide_target(train, data, recipe.task, train_name)})
    return train, test, data.model_copy(update={"label_column": TARGET, "target_layout": "column"})


def _value_columns(sample: pd.DataFrame) -> list[str]:
    return [str(c).strip() for c in sample.columns[1:]]


def sample_ids(sample: pd.DataFrame, data: DataConfig, where: str) -> pd.Series:
    """The image (or prediction group) each row of the sample submission is for, after checking that the
    sample's columns are the ones the layout writes."""
    names = [str(c).strip() for c in sample.columns]
    if data.target_layout == "wide":
        got, want = _value_columns(sample), list(data.classes or [])
        if set(got) != set(want):
            missing, extra = [c for c in want if c not in got], [c for c in got if c not in want]
            raise MedalsError(
                f"{where} has value columns that are not data.classes (missing: {show_values(missing) or '-'}; "
                f"extra: {show_values(extra) or '-'}): with data.target_layout 'wide' the sample holds one "
                "column per class"
            )
        return sample.iloc[:, 0].astype(str)
    if data.target_layout == "long":
        frame = sample.copy()
        frame.columns = names
        if data.class_column is None and sample.shape[1] != 2:
            raise MedalsError(
                f"{where} has {sample.shape[1]} columns ({', '.join(names)}); data.long_key needs 2"
            )
        return _keys(frame, data.model_copy(update={"id_column": names[0]}), where)[IMAGE]
    if sample.shape[1] != 2:
        raise MedalsError(
            f"{where} has {sample.shape[1]} columns ({', '.join(names)}); medals writes an id and one value "
            "(one column per class: data.target_layout wide)"
        )
    return sample.iloc[:, 0].astype(str)


def layout_submission(
    sample: pd.DataFrame, ids: Sequence[str], values: np.ndarray, classes: Sequence[str], data: DataConfig
) -> pd.DataFrame:
    """A wide or long submission with the sample's column names: values [N, K] holds each id's value per
    class (a probability, or an RLE string); a long one follows the sample's own rows."""
    names = [str(c).strip() for c in sample.columns]
    values = np.asarray(values, dtype=object)
    classes = list(classes)
    row_of = {str(ident): i for i, ident in enumerate(ids)}
    if data.target_layout == "wide":
        out = {names[0]: [str(i) for i in ids]}
        for name in names[1:]:
            out[name] = values[:, classes.index(name)].tolist()
        return pd.DataFrame(out)
    frame = sample.copy()
    frame.columns = names
    keys = _keys(frame, data.model_copy(update={"id_column": names[0]}), "the sample submission")
    unknown = [image for image in pd.unique(keys[IMAGE]) if image not in row_of]
    if unknown:
        raise MedalsError(f"no prediction for image(s) {show_values(unknown)} of the sample submission")
    rows = [row_of[image] for image in keys[IMAGE]]
    column = [classes.index(c) for c in keys[CLASS]]
    frame[names[-1]] = values[rows, column].tolist()
    return frame
