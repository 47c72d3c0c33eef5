"""How a new competition folder lays out its targets and submission rows, read the way `medals init` needs
it (the keys of medals/data/target_shapes.py and data.prediction_id):

- a sample with one column per class that the training CSV also has: data.target_layout wide;
- sample ids that are one image id joined to each of a few class names, the training CSV keyed alike
  (RSNA ICH: ID_<image>_<subtype>): data.target_layout long, data.long_key "{image}_{class}";
- sample ids that the training CSV lacks but that one or two columns of both CSVs spell
  (RSNA breast: "{patient_id}_{laterality}"): data.prediction_id, the images keyed by a unique column.

`infer_layout` returns what it found with the reason, and the training and test frames with one row per
image, as init reads the rest (task, images) from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path
from typing import Any

import pandas as pd

from medals.config import DataConfig
from medals.data.target_shapes import long_images, pivot_long
from medals.data.templates import render
from medals.errors import MedalsError

MAX_CLASSES = 50  # a long layout's key suffixes: a few class names, each on every image
SEPARATORS = ("_", "-", "")


@dataclass
class Layout:
    kind: str  # column, wide or long
    train: pd.DataFrame  # one row per image
    test: pd.DataFrame
    id_column: str  # the image id column of those frames
    classes: list[str] | None = None
    long_key: str | None = None
    prediction_id: str | None = None
    label_column: str | None = None  # long: the value column of each (image, class) row
    why: dict[str, str] = field(default_factory=dict)


def _long_classes(keys: pd.Series) -> list[str] | None:
    """The class suffixes of "<image>_<class>" keys when every image has each of a few classes once."""
    parts = keys.astype(str).str.rpartition("_")
    if not len(keys) or (parts[1] != "_").any():
        return None
    images, classes = parts[0], parts[2]
    order = list(dict.fromkeys(classes))
    count = len(order)
    complete = len(keys) == images.nunique() * count and (images.value_counts() == count).all()
    if not 2 <= count <= MAX_CLASSES or not complete or count >= len(keys) / 2 + 1:
        return None
    return order


def _wide(train: pd.DataFrame, sample: pd.DataFrame, names: dict[str, str], settings: dict) -> list[str]:
    values = [str(c) for c in sample.columns[1:]]
    missing = [c for c in values if c not in train.columns]
    if missing:
        raise MedalsError(
            f"{names['sample']} has {sample.shape[1]} columns and {len(missing)} of its value columns are not "
            f"columns of {names['train']} ({', '.join(map(repr, missing[:3]))}): medals writes one value "
            "column, or one column per class that the training CSV holds as 0/1 (data.target_layout wide)"
        )
    classes = [str(c) for c in settings.get("classes") or values]
    if set(classes) != set(values):
        raise MedalsError(
            f"data.classes {classes} are not the value columns of {names['sample']} ({', '.join(values)}): "
            "with data.target_layout wide the classes are those columns"
        )
    return classes


def _spells(test: pd.DataFrame, template: str, wanted: set[str]) -> bool:
    return set(render(template, test.to_dict("records"), "data.prediction_id")) == wanted


def _group_template(train, test, sample_ids: set[str], names: dict[str, str], value: str) -> str:
    """A template of one or two columns of both CSVs that spells the sample's ids from the test rows."""
    shared = [c for c in test.columns if c in train.columns and c != value]
    for column in shared:
        if _spells(test, "{" + column + "}", sample_ids):
            return "{" + column + "}"
    for first, second in permutations(shared, 2):
        for sep in SEPARATORS:
            template = "{" + first + "}" + sep + "{" + second + "}"
            if _spells(test, template, sample_ids):
                return template
    raise MedalsError(
        f"the ids of {names['sample']} are not a column of {names['train']}, and no column or pair of columns "
        "of both CSVs spells them: set data.id_column (the image id) and data.prediction_id (a template, "
        "e.g. '{patient_id}_{laterality}')"
    )


def _image_column(train: pd.DataFrame, test: pd.DataFrame, names: dict[str, str]) -> str:
    shared = [c for c in train.columns if c in test.columns]
    unique = [c for c in shared if train[c].is_unique and test[c].is_unique]
    ranked = sorted(unique, key=lambda c: 0 if "image" in c.lower() else 1 if "id" in c.lower() else 2)
    if not ranked:
        raise MedalsError(
            f"no column of both {names['train']} and {names['test']} names one image per row: set data.id_column"
        )
    return ranked[0]


def infer_layout(
    train: pd.DataFrame,
    test: pd.DataFrame,
    sample: pd.DataFrame,
    settings: dict[str, Any],
    names: dict[str, str],
    test_is_sample: bool,
) -> Layout:
    """The target layout, submission keys and per-image frames (names: 'train', 'test', 'sample' files)."""
    id_column = settings.get("id_column") or str(sample.columns[0])
    declared = settings.get("target_layout")
    if declared == "wide" or (declared is None and sample.shape[1] > 2):
        classes = _wide(train, sample, names, settings)
        layout = Layout("wide", train, test, id_column, classes)
        layout.why["target_layout"] = (
            f"one 0/1 column per class in {Path(names['train']).name} and {Path(names['sample']).name}"
        )
        return layout
    value = str(sample.columns[-1])
    if id_column in train.columns and declared in (None, "long"):
        long_key = settings.get("long_key")
        classes = settings.get("classes") or _long_classes(
            sample[id_column] if id_column in sample else train[id_column]
        )
        if declared == "long" or long_key or (classes and _long_classes(train[id_column]) is not None):
            if not classes:
                raise MedalsError(
                    f"{names['train']} looks long but its keys do not end in a few class names: set data.classes"
                )
            data = DataConfig(
                target_layout="long",
                long_key=long_key or "{image}_{class}",
                classes=classes,
                id_column=id_column,
            )
            label = settings.get("label_column") or value
            if label not in train.columns:
                raise MedalsError(
                    f"{names['train']} has no column '{label}' (the value of each image and class)"
                )
            wide = pivot_long(train, data, label, names["train"])
            images = long_images(test, data, names["test"]) if test_is_sample or id_column in test else test
            layout = Layout("long", wide, images, id_column, list(classes), data.long_key, label_column=label)
            layout.why["target_layout"] = (
                f"'{id_column}' joins an image id and one of {len(classes)} classes per row "
                f"('{sample[id_column].iloc[0]}'); pivoted to one row per image"
            )
            layout.why["long_key"] = "the image id, then the class after the last '_'"
            return layout
    sample_id = str(sample.columns[0])
    grouped = settings.get("id_column") is None and sample_id not in train.columns and not test_is_sample
    if settings.get("prediction_id") or grouped:
        template = settings.get("prediction_id") or _group_template(
            train, test, set(sample.iloc[:, 0].astype(str)), names, value
        )
        image = settings.get("id_column") or _image_column(train, test, names)
        layout = Layout("column", train, test, image, prediction_id=template)
        layout.why["prediction_id"] = (
            f"the sample's '{sample_id}' is {template} of {Path(names['test']).name}'s rows: several images, "
            "one row"
        )
        layout.why["id_column"] = f"names one image per row of both CSVs ('{sample_id}' names the group)"
        return layout
    return Layout("column", train, test, id_column)


def wide_task(frame: pd.DataFrame, classes: list[str], where: str, task: str | None) -> tuple[str, str]:
    """(task, why) of 0/1 class columns: one-hot rows are one multi-class label, others independent labels."""
    cells = frame[classes].astype(str).apply(lambda c: c.str.strip().str.replace(r"\.0$", "", regex=True))
    bad = sorted(set(cells.to_numpy().ravel()) - {"0", "1"})
    if bad:
        raise MedalsError(
            f"{where}: the class columns must hold 0 or 1 (found {', '.join(map(repr, bad[:3]))}); "
            "other targets: set data.label_column"
        )
    ones = (cells == "1").sum(axis=1)
    if task:
        return task, f"set on the command line ({len(classes)} class columns)"
    if (ones == 1).all():
        return (
            "multiclass",
            f"exactly one 1 per row among {len(classes)} class columns (one-hot): softmax; "
            "task=multilabel if the columns are independent",
        )
    return (
        "multilabel",
        f"{len(classes)} independent 0/1 columns ({int((ones != 1).sum())} rows not one-hot): a sigmoid each",
    )
