"""What a competition folder holds, read the way `medals init` needs it: its CSVs, the id and target
columns, the task and the submission's kind, metadata and grouping columns (images: inspect_images).

Each finding carries the reason it was chosen, which init writes beside the key. Where the folder leaves a
choice open (two candidate target columns, no sample submission), the error names the candidates and the
key that settles it, to pass as an override (`medals init DIR data.label_column=grade`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medals.data.csv import read_csv
from medals.data.inspect_layout import Layout, infer_layout, wide_task
from medals.data.inspect_long import LongLayout, find_long
from medals.data.inspect_numeric import numeric_target
from medals.data.labels import show_values
from medals.data.meta import value_key
from medals.errors import MedalsError

GROUP_NAMES = re.compile(r"patient|subject|group|case|study|individual|person", re.IGNORECASE)
RLE_NAMES = re.compile(r"encoded|pixel|rle|mask", re.IGNORECASE)
_RLE = re.compile(r"^\s*(-1|\d+(\s+\d+)*)?\s*$")
_LABEL_LIST = re.compile(r"^\s*\d+(\s+\d+)+\s*$")
MAX_CATEGORIES = 20  # a text column with more distinct values is an id or free text, not a category


@dataclass
class Finding:
    value: Any
    why: str


@dataclass
class Columns:
    """The tables of a competition folder and what their columns mean."""

    root: Path
    train_csv: str
    test_csv: str
    sample_submission: str
    train: pd.DataFrame
    test: pd.DataFrame
    sample: pd.DataFrame
    id_column: str
    task: Finding
    label_column: str | None = None
    mask_column: str | None = None
    mask_path: str | None = None
    classes: list[str] | None = None
    num_classes: int | None = None
    submit_kind: Finding | None = None
    target_class: str | None = None
    rle_format: Finding | None = None
    group_column: Finding | None = None
    numeric: dict[str, float] = field(default_factory=dict)  # column -> scale (its largest |value|)
    categorical: list[str] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)
    layout: Layout | None = None  # wide or long targets, prediction groups (medals/data/inspect_layout.py)
    long: LongLayout | None = None  # (image, class) rows of segmentation masks (medals.data.inspect_long)


def _read(path: Path) -> pd.DataFrame:
    """Every cell as the text it is (ids such as 007 and labels such as NA stay as written)."""
    return read_csv(path, dtype=str, keep_default_na=False)


def _pick(
    names: list[str], words: tuple[str, ...], exclude: tuple[str, ...], what: str, key: str, root: Path
):
    found = [
        n for n in names if any(w in n.lower() for w in words) and not any(x in n.lower() for x in exclude)
    ]
    if len(found) > 1:
        exact = [n for n in found if Path(n).stem.lower() in words]
        if len(exact) == 1:
            return exact[0]
        raise MedalsError(
            f"{root} has {len(found)} candidate {what} CSVs ({', '.join(found)}): set {key}=FILE"
        )
    return found[0] if found else None


def find_tables(root: Path, settings: dict[str, Any]) -> tuple[str, str, str]:
    """(train CSV, test CSV, sample submission), names relative to root; settings may name any of them."""
    if not root.is_dir():
        raise MedalsError(f"competition folder {root} does not exist")
    names = sorted(p.name for p in root.glob("*.csv"))
    if not names:
        raise MedalsError(
            f"{root} has no CSV file: medals init needs the training CSV and the sample submission"
        )
    train = settings.get("train_csv") or _pick(
        names, ("train",), ("sample",), "training", "data.train_csv", root
    )
    if train is None:
        raise MedalsError(f"{root} has no training CSV (a name with 'train' in it): set data.train_csv=FILE")
    sample = settings.get("sample_submission") or _pick(
        names,
        ("sample_submission", "sample", "submission"),
        (),
        "sample submission",
        "data.sample_submission",
        root,
    )
    if sample is None:
        raise MedalsError(
            f"{root} has no sample submission (a CSV named like sample_submission.csv): medals init reads the "
            "submission's format from it; set data.sample_submission=FILE"
        )
    test = settings.get("test_csv") or _pick(
        names, ("test",), ("sample", "train"), "test", "data.test_csv", root
    )
    return train, test or sample, sample


def read_columns(
    root: Path, settings: dict[str, Any], masks: Callable[[list[str]], str | None] = lambda ids: None
) -> Columns:
    """The folder's tables and columns; masks(training ids) gives the template of their mask files, if any."""
    train_csv, test_csv, sample_csv = find_tables(root, settings)
    train, sample = _read(root / train_csv), _read(root / sample_csv)
    test = sample if test_csv == sample_csv else _read(root / test_csv)
    layout = find_long(root, train_csv, train, sample_csv, sample, settings, _is_rle)
    if layout is not None:  # (image, class) rows of RLE masks
        cols = Columns(
            root,
            train_csv,
            test_csv,
            sample_csv,
            layout.train,
            layout.sample,
            layout.sample,
            layout.id_column,
            Finding("segmentation", layout.why["data.target_layout"]),
        )
        cols.mask_column, cols.long = layout.mask_column, layout
        # init reads images and ids through cols.layout: one row per image already
        cols.layout = Layout("column", layout.train, layout.sample, layout.id_column)
        cols.submit_kind = Finding("rle", "one RLE per row of the sample submission: its image and class")
        cols.why["label"] = f"'{layout.mask_column}' holds run-length encoded masks"
        return cols
    names = {"train": str(root / train_csv), "test": str(root / test_csv), "sample": str(root / sample_csv)}
    layout = infer_layout(train, test, sample, settings, names, test is sample)
    id_column = layout.id_column
    for frame, name in ((layout.train, train_csv), (layout.test, test_csv)):
        if id_column not in frame.columns:
            raise MedalsError(
                f"{root / name} has no column '{id_column}' (the sample submission's id column): set data.id_column"
            )
    test = layout.test  # still the sample itself when that lists the test ids one per row
    cols = Columns(
        root, train_csv, test_csv, sample_csv, layout.train, test, sample, id_column, Finding(None, "")
    )
    cols.layout = layout
    cols.mask_path = masks(layout.train[id_column].astype(str).tolist())
    if layout.kind == "column":
        _target(cols, settings)
    else:
        _per_class(cols, layout, settings)
    _metadata(cols, settings)
    return cols


def _per_class(cols: Columns, layout: Layout, settings: dict[str, Any]) -> None:
    """Wide and long targets: one 0/1 value per image and class, one probability per class submitted."""
    classes = list(layout.classes or [])
    cols.task = Finding(
        *wide_task(layout.train, classes, str(cols.root / cols.train_csv), settings.get("task"))
    )
    cols.classes = classes
    if layout.label_column:
        cols.label_column = layout.label_column
        cols.why["label"] = "the value of each image and class"
    where = (
        "a column each, in the sample's column order"
        if layout.kind == "wide"
        else "a row per image and class"
    )
    cols.submit_kind = Finding("probability", f"one probability per class, {where}")


def _same_name(name: str, columns) -> str | None:
    return next((c for c in columns if c.lower() == name.lower()), None)


def _is_rle(values: pd.Series, name: str) -> bool:
    """Run-length encoded masks: number pairs (pixel start, run length), or "-1"/"" for an empty mask.

    Label lists ("0 5 12") are number sequences too; they are told apart by the column's name, or by
    their numbers: a mask's pixel offsets run into the thousands, label ids do not.
    """
    values = values[~values.str.strip().isin(["", "-1"])]
    if not len(values) or not values.map(lambda v: bool(_RLE.match(v))).all():
        return False
    if RLE_NAMES.search(name):
        return True
    pairs = values.map(lambda v: len(v.split()) % 2 == 0).all()
    return bool(pairs and max(int(t) for v in values.head(200) for t in v.split()) >= 1000)


def _target(cols: Columns, settings: dict[str, Any]) -> None:
    value = cols.sample.columns[1]
    train, where = cols.train, cols.root / cols.train_csv
    chosen = settings.get("label_column") or settings.get("mask_column") or _same_name(value, train.columns)
    if chosen is None:
        test_columns = set(cols.test.columns) if cols.test is not cols.sample else set()
        candidates = [c for c in train.columns if c not in test_columns and c != cols.id_column]
        if not candidates and cols.mask_path:
            cols.why["label"] = f"mask files named after the ids ({cols.mask_path})"
            _segmentation(cols, None, cols.sample.iloc[:, 1].astype(str))
            return
        if not candidates:
            raise MedalsError(
                f"{where} has no column besides '{cols.id_column}' to learn, and no mask folder names files after "
                "its ids: set data.label_column"
            )
        if len(candidates) > 1:
            raise MedalsError(
                f"{where} has {len(candidates)} candidate target columns ({', '.join(map(repr, candidates))}) for "
                f"the submission's '{value}': set data.label_column=NAME"
            )
        chosen = candidates[0]
        cols.why["label"] = f"the one column of {cols.train_csv} not in {cols.test_csv}"
    else:
        cols.why["label"] = f"the submission's column '{value}' is a column of {cols.train_csv}"
    if chosen not in train.columns:
        raise MedalsError(f"{where} has no column '{chosen}'")
    labels = train[chosen].astype(str)
    if _is_rle(labels, chosen) or (RLE_NAMES.search(value) is not None and _is_rle(labels, value)):
        _segmentation(cols, chosen, labels)
    elif labels.map(lambda v: bool(_LABEL_LIST.match(v))).any():
        _multilabel(cols, chosen, labels)
    else:
        found = numeric_target(
            str(where), chosen, labels, cols.sample.iloc[:, 1], settings.get("task"), settings.get("classes")
        )
        if found is None:
            _multiclass(cols, chosen, labels, value)
        else:  # a regression value or ordinal grades (medals.data.inspect_numeric)
            cols.task, cols.label_column = Finding(found.task, found.why), chosen
            cols.classes = found.classes
            cols.submit_kind = Finding(found.submit_kind, found.kind_why)


def _segmentation(cols: Columns, column: str | None, labels: pd.Series) -> None:
    if column is None:
        cols.task = Finding(
            "segmentation", f"mask files {cols.mask_path}, the submission's value an RLE mask"
        )
    else:
        cols.task = Finding("segmentation", f"'{column}' holds run-length encoded masks")
        cols.mask_column = column
        cols.mask_path = None
    cols.submit_kind = Finding("rle", "the sample submission's value is a mask in RLE")
    if (labels.str.strip() == "-1").any() or (cols.sample.iloc[:, 1].str.strip() == "-1").any():
        cols.rle_format = Finding("siim", '"-1" marks an empty mask: SIIM-ACR\'s relative column-major RLE')
    else:
        cols.rle_format = Finding(
            "column", "absolute starts, column-major (most Kaggle RLE competitions); 'row' for row-major"
        )


def _multilabel(cols: Columns, column: str, labels: pd.Series) -> None:
    bad = labels[~labels.map(lambda v: v.strip() == "" or all(t.isdigit() for t in v.split()))]
    if len(bad):
        raise MedalsError(
            f"{cols.root / cols.train_csv} column '{column}' mixes label lists with other values: {show_values(bad.unique())}"
        )
    cols.task = Finding("multilabel", f"'{column}' holds space-separated label ids")
    cols.label_column = column
    cols.num_classes = max(int(t) for v in labels for t in v.split()) + 1
    cols.submit_kind = Finding("multilabel", "space-separated label ids per image, as the training labels")


def _multiclass(cols: Columns, column: str, labels: pd.Series, value: str) -> None:
    cells = [value_key(_number(v)) for v in labels if v.strip() != ""]
    classes = sorted(set(cells), key=_order)
    if len(classes) < 2:
        raise MedalsError(
            f"{cols.root / cols.train_csv} column '{column}' has {len(classes)} distinct value(s)"
        )
    if len(classes) == 2:
        cols.task = Finding("binary", f"'{column}' holds one of 2 classes: one logit, P('{classes[1]}')")
    else:
        cols.task = Finding("multiclass", f"'{column}' holds one of {len(classes)} classes per image")
    cols.label_column = column
    cols.classes = classes
    same = _same_name(value, [column]) is not None
    probabilities = _all_probabilities(cols.sample.iloc[:, 1])
    if same and len(classes) > 2 and not _fractional(cols.sample.iloc[:, 1]):
        cols.submit_kind = Finding(
            "label", f"the submission names one of the {len(classes)} classes per image"
        )
    elif probabilities and len(classes) == 2:
        cols.submit_kind = Finding("probability", f"the sample submission's values are P('{classes[1]}')")
    elif probabilities:
        cols.submit_kind = Finding("probability", "the sample submission's values are probabilities")
        cols.target_class = classes[-1]
        cols.why["target_class"] = (
            f"P(class '{classes[-1]}'): the last class; name another with submit.target_class, or sum several "
            "with submit.target_classes (e.g. [2, 3] for P(grade >= 2))"
        )
    else:
        cols.submit_kind = Finding("label", "the sample submission's values are class names")


def _number(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text.strip()
    return number if number == number else text


def _order(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def _all_probabilities(values: pd.Series) -> bool:
    numbers = pd.to_numeric(values, errors="coerce")
    return bool(numbers.notna().all() and numbers.between(0, 1).all())


def _fractional(values: pd.Series) -> bool:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(numbers) and (numbers != numbers.round()).any())


def _metadata(cols: Columns, settings: dict[str, Any]) -> None:
    """Columns in both the training and the test CSV (beside id and target): features and a group."""
    taken = {cols.id_column, cols.label_column, cols.mask_column, *(cols.classes or [])}
    if cols.test is cols.sample:
        shared: list[str] = []
    else:
        shared = [c for c in cols.train.columns if c in cols.test.columns and c not in taken]
    group = settings.get("group_column")
    if group is None:
        # A patient column of the training CSV alone (RANZCR's PatientID) still keeps folds apart.
        train_only = [c for c in cols.train.columns if c not in taken and c not in shared]
        repeated = [
            c for c in shared + train_only if GROUP_NAMES.search(c) and cols.train[c].duplicated().any()
        ]
        group = repeated[0] if repeated else None
    if group is not None:
        cols.group_column = Finding(group, f"'{group}' repeats across rows: its images stay in one fold")
    for column in shared:
        if column == group:
            continue
        train = cols.train[column]
        numbers = pd.to_numeric(train.replace("", None), errors="coerce").dropna()
        # Numeric only when every filled cell of both CSVs is a number: prepare rejects any other value.
        filled = pd.concat([train, cols.test[column]]).replace("", None).dropna()
        if len(numbers) and pd.to_numeric(filled, errors="coerce").notna().all():
            cols.numeric[column] = float(f"{max(numbers.abs().max(), 1e-12):.3g}")  # the scale
        elif 1 < train.nunique() <= MAX_CATEGORIES:
            cols.categorical.append(column)
