"""Long segmentation targets: one CSV row per (image, class), pivoted to one row per image and back.

Severstal steel (`ImageId,ClassId,EncodedPixels`, rows only for present classes; the older
`ImageId_ClassId,EncodedPixels` with a row for every pair) and UW-Madison GI tract
(`id,class,segmentation`, an empty cell for no mask) key their masks by image and class. On read the
rows of one image become one table row whose `rle` holds every class's RLE, in class order, joined by
CLASS_SEP (a class's own several RLEs stay "|"-joined and are OR-ed, as for one-class masks). On write
the sample submission's rows are filled in its own order, header and columns, one RLE per row.

The recipe declares the layout: `data.target_layout: long` with `data.class_column` (the class has its
own column) and/or `data.long_key` (one key such as "0001.jpg_1" = "{image}_{class}", in data.id_column
or, where a CSV has it instead, data.key_column); the training CSV and the sample submission may use
different forms.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medals.config import DataConfig
from medals.data.labels import show_values
from medals.data.meta import value_key
from medals.data.rle import decode_many, is_empty
from medals.errors import MedalsError

CLASS_SEP = ";"  # between the classes' RLEs of one image in the table's `rle` column
CLASS = "__class"  # the parsed class column, when the frame has no data.class_column


DEFAULT_KEY = "{image}_{class}"


def is_long(data: DataConfig) -> bool:
    return data.target_layout == "long"


def _long_key(data: DataConfig) -> str:
    return data.long_key or DEFAULT_KEY


def check_long(data: DataConfig) -> None:
    """The declaration is complete: a class column or a key, and a key format with {image} and {class}."""
    if not is_long(data):
        return
    if not (data.class_column or data.long_key or data.key_column):
        raise MedalsError(
            "data.target_layout 'long' needs data.class_column (the column naming each row's class) "
            "or data.long_key (how a key such as '0001.jpg_1' joins image and class: '{image}_{class}')"
        )
    fields = [name for _, name, _, _ in string.Formatter().parse(_long_key(data)) if name is not None]
    if sorted(fields) != ["class", "image"]:
        raise MedalsError(
            f"data.long_key '{data.long_key}' must hold {{image}} and {{class}} once each, e.g. '{{image}}_{{class}}'"
        )


def _key_regex(long_key: str, classes: Sequence[str] | None) -> re.Pattern:
    parts = []
    for literal, name, _, _ in string.Formatter().parse(long_key):
        parts.append(re.escape(literal))
        if name == "image":
            parts.append("(?P<image>.+)")
        elif name == "class":
            # With known classes the class is one of them (UW's "small_bowel" holds the separator);
            # otherwise the shortest tail after the last separator.
            alternatives = "|".join(re.escape(c) for c in sorted(classes or [], key=len, reverse=True))
            parts.append(f"(?P<class>{alternatives})" if classes else "(?P<class>.+?)")
    return re.compile("^" + "".join(parts) + "$")


def class_column_of(frame: pd.DataFrame, data: DataConfig) -> str:
    """The frame's column naming each row's class (data.class_column, or the one split from the key)."""
    if data.class_column and data.class_column in frame.columns:
        return data.class_column
    return CLASS


def key_column_of(frame: pd.DataFrame, data: DataConfig) -> str | None:
    """The column of a frame that joins image and class, or None where the frame has both as columns."""
    if data.class_column and data.class_column in frame.columns and data.id_column in frame.columns:
        return None
    if data.key_column and data.key_column in frame.columns:
        return data.key_column
    return data.id_column if data.id_column in frame.columns else None


def split_keys(
    frame: pd.DataFrame, data: DataConfig, name: str, classes: Sequence[str] | None = None
) -> pd.DataFrame:
    """The frame with the image id in data.id_column and a class column, split from the frame's key
    column by data.long_key where it has no separate image and class columns."""
    key = key_column_of(frame, data)
    if key is None:
        return frame
    pattern = _key_regex(_long_key(data), classes)
    keys = frame[key].astype(str)
    parsed = keys.str.extract(pattern)
    bad = keys[parsed["image"].isna()]
    if len(bad) and classes:
        # keys that read with any class at all: their classes are the ones outside the list
        loose = bad.str.extract(_key_regex(_long_key(data), None))["class"]
        if loose.notna().all():
            raise MedalsError(
                f"{name} column '{key}' has class values outside the classes [{show_values(classes)}]: "
                f"{show_values(list(dict.fromkeys(loose)))} (set data.classes to every class)"
            )
    if len(bad):
        over = f" with a class of [{show_values(classes)}]" if classes else ""
        raise MedalsError(
            f"{name} column '{key}' has {len(bad)} keys that do not read as data.long_key "
            f"'{_long_key(data)}'{over}: {show_values(bad.unique().tolist())}"
        )
    out = frame.copy()
    out[data.id_column] = parsed["image"].to_numpy()
    out[class_column_of(frame, data)] = parsed["class"].to_numpy()
    return out


def _class_text(values: pd.Series) -> list[str | None]:
    return [value_key(v) for v in values.tolist()]


def _sorted(values: set[str]) -> list[str]:
    try:
        return sorted(values, key=float)  # ClassId 2 before 10
    except ValueError:
        return sorted(values)


def long_classes(frame: pd.DataFrame, data: DataConfig, name: str) -> list[str]:
    """data.classes, checked against the frame's class values, or those values sorted (a note is the
    caller's): a value outside a declared list is the one-sentence error."""
    column = class_column_of(frame, data)
    if column not in frame.columns:
        raise MedalsError(f"{name} has no class column '{data.class_column}' (data.class_column)")
    values = _class_text(frame[column])
    if any(v is None for v in values):
        raise MedalsError(f"{name} column '{column}' has {values.count(None)} rows without a class")
    if not data.classes:
        return _sorted(set(values))
    outside = [v for v in dict.fromkeys(values) if v not in data.classes]
    if outside:
        raise MedalsError(
            f"{name} column '{column}' has class values outside data.classes [{show_values(data.classes)}]: "
            f"{show_values(outside)}"
        )
    return list(data.classes)


def pivot_masks(
    frame: pd.DataFrame, data: DataConfig, classes: Sequence[str], name: str
) -> tuple[pd.DataFrame, list[str], list[int]]:
    """(first row of each image, its classes' RLEs joined by CLASS_SEP, has_mask: any class present)."""
    column = class_column_of(frame, data)
    index = {c: k for k, c in enumerate(classes)}
    ids = frame[data.id_column].astype(str).tolist()
    per_image: dict[str, list[list[str]]] = {}
    for ident, cls, rle in zip(
        ids, _class_text(frame[column]), frame[data.mask_column].tolist(), strict=True
    ):
        parts = per_image.setdefault(ident, [[] for _ in classes])
        if cls not in index:
            raise MedalsError(f"{name} column '{column}' has the class {cls!r}, not one of {list(classes)}")
        if not is_empty(rle):
            parts[index[cls]].append(str(value_key(rle)).strip())
    first = frame.drop_duplicates(data.id_column, keep="first").reset_index(drop=True)
    order = first[data.id_column].astype(str).tolist()
    rle = [join_classes(["|".join(p) for p in per_image[i]]) for i in order]
    has_mask = [int(any(per_image[i])) for i in order]
    return first, rle, has_mask


def join_classes(rles: Sequence[str]) -> str:
    return CLASS_SEP.join(rles)


def split_classes(text: Any, num_classes: int) -> list[str]:
    """The per-class RLE strings of a table `rle` cell (an empty cell: every class empty)."""
    if is_empty(text):
        return [""] * num_classes
    parts = str(text).split(CLASS_SEP)
    if len(parts) != num_classes:
        raise MedalsError(
            f"a mask cell holds {len(parts)} classes' RLEs, not {num_classes}: {str(text)[:60]}"
        )
    return parts


def decode_classes(text: Any, shape: tuple[int, int], fmt: str, num_classes: int) -> np.ndarray:
    """bool [H, W, C]: each class's mask of a table `rle` cell (C = num_classes)."""
    height, width = int(shape[0]), int(shape[1])
    out = np.zeros((height, width, num_classes), dtype=bool)
    for k, part in enumerate(split_classes(text, num_classes)):
        if part:
            out[:, :, k] = decode_many(part, (height, width), fmt)
    return out


def _template_folder(template: str) -> tuple[str, str, str] | None:
    """(folder, prefix, suffix) of a template whose only field is {id}, in its file name; else None."""
    folder, _, name = template.replace("\\", "/").rpartition("/")
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    if fields != ["id"] or "{id}" not in name:
        return None
    prefix, _, suffix = name.partition("{id}")
    return folder, prefix, suffix


def unlisted_ids(root: Path, template: str, listed: set[str]) -> list[str]:
    """Ids of the files of template's folder (`train_images/{id}`) that are not in `listed`, sorted."""
    parts = _template_folder(template)
    if parts is None:
        raise MedalsError(
            f"data.unlisted_images needs data.image_path with {{id}} as its only field, in the file name "
            f"(e.g. 'train_images/{{id}}'), not '{template}'"
        )
    folder, prefix, suffix = parts
    where = Path(root) / folder
    if not where.is_dir():
        return []
    names = [p.name for p in where.iterdir() if p.is_file()]
    ids = [
        n[len(prefix) : len(n) - len(suffix)] for n in names if n.startswith(prefix) and n.endswith(suffix)
    ]
    return sorted(i for i in ids if i and i not in listed)


def with_unlisted_images(frame: pd.DataFrame, data: DataConfig, root: Path, empty_class: str) -> pd.DataFrame:
    """The long training rows plus one maskless row for each unlisted image (data.unlisted_images)."""
    ids = unlisted_ids(root, data.image_path, set(frame[data.id_column].astype(str)))
    if not ids:
        return frame
    extra = pd.DataFrame(
        {data.id_column: ids, class_column_of(frame, data): empty_class, data.mask_column: ""}
    )
    return pd.concat([frame, extra], ignore_index=True)


# ---- the sample submission ----------------------------------------------------------------------


def sample_pairs(
    sample: pd.DataFrame, data: DataConfig, classes: Sequence[str], path: Any
) -> tuple[list[str], np.ndarray, str]:
    """(image id of each sample row, its class index, the value column): the (image, class) the row asks for.

    The sample keys its rows by data.id_column and data.class_column, or by data.key_column; the value
    column is the one column left (Severstal's EncodedPixels, UW-Madison's predicted).
    """
    frame = sample.rename(columns=lambda c: str(c).strip())
    where = f"sample submission {path}"
    key = key_column_of(frame, data)
    parts = data.class_column in frame.columns and data.id_column in frame.columns
    if key is None and not parts:
        wanted = " and ".join(f"'{c}'" for c in (data.id_column, data.class_column) if c)
        raise MedalsError(
            f"{where} has columns {list(frame.columns)}: none is {wanted} or data.key_column, to key its rows "
            "by image and class"
        )
    keys = [data.id_column, data.class_column] if key is None else [key]
    if key is not None:
        frame = split_keys(frame, data, where, classes)
    values = [c for c in frame.columns if c not in {*keys, data.id_column, data.class_column, CLASS}]
    if len(values) != 1:
        raise MedalsError(
            f"{where} has {len(values)} columns besides {', '.join(map(repr, keys))} ({values}); a long "
            "submission has one value column"
        )
    column = class_column_of(frame, data)
    names = _class_text(frame[column])
    index = {c: k for k, c in enumerate(classes)}
    outside = [c for c in dict.fromkeys(names) if c not in index]
    if outside:
        raise MedalsError(
            f"{where} asks for classes {show_values(outside)} outside the classes {list(classes)}: "
            "set data.classes to every class"
        )
    ids = frame[data.id_column].astype(str).tolist()
    return ids, np.array([index[c] for c in names], dtype=np.int64), values[0]


def long_submission(
    sample: pd.DataFrame, data: DataConfig, classes: Sequence[str], path: Any, rles: dict[str, list[str]]
) -> pd.DataFrame:
    """The sample with its value column filled from rles (image id -> one RLE per class), rows as they are."""
    ids, class_index, value = sample_pairs(sample, data, classes, path)
    missing = [i for i in dict.fromkeys(ids) if i not in rles]
    if missing:
        raise MedalsError(
            f"sample submission {path} lists {len(missing)} image(s) without a prediction: {show_values(missing)}"
        )
    out = sample.copy()
    out.columns = [str(c).strip() for c in out.columns]
    out[value] = [rles[i][k] for i, k in zip(ids, class_index, strict=True)]
    return out


def check_long_sample(
    sample: pd.DataFrame, data: DataConfig, classes: Sequence[str], path: Any, test: pd.DataFrame
) -> None:
    """Before any training: every (image, class) row of the sample is a test image and a known class,
    and every test image is in the sample."""
    ids, _, _ = sample_pairs(sample, data, classes, path)
    test_ids = set(test["id"].astype(str))
    unknown = [i for i in dict.fromkeys(ids) if i not in test_ids]
    if unknown:
        raise MedalsError(
            f"sample submission {path} lists {len(unknown)} image(s) that are not test images of the table "
            f"(first: {show_values(unknown)}): check data.test_csv, data.key_format and data.test_image_path"
        )
    listed = set(ids)
    unlisted = [i for i in test["id"].astype(str) if i not in listed]
    if unlisted:
        raise MedalsError(
            f"{len(unlisted)} test image(s) are not in sample submission {path}: {show_values(unlisted)}"
        )
