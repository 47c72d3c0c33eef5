"""`medals init` on long segmentation targets: one row per (image, class), the mask an RLE.

Told apart from one-row-per-image masks by the training CSV: besides the RLE column, a column with a
few distinct values repeated over the images (Severstal's ClassId, UW-Madison's class), or a single key
column whose values all end in "_<class>" over a few classes (the older ImageId_ClassId). The sample
submission keys its rows the same way, or the other (Severstal's older sample "0001.jpg_1" for a newer
ImageId,ClassId training CSV). The RLE's pixel order is read from the masks' shapes where the images are
not square (a true mask decodes to few connected regions, the wrong order to stripes); on square
images both orders give blobs, and init asks for data.rle_format.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from medals.data.long_masks import DEFAULT_KEY, split_keys, unlisted_ids
from medals.data.rle import decode, is_empty
from medals.errors import MedalsError

MAX_CLASSES = 20
_KEY = re.compile(r"^(?P<image>.+)_(?P<cls>[^_]+)$")
SHAPE_SAMPLE = 60  # masks decoded per order to tell row- from column-major


@dataclass
class LongLayout:
    """What init writes for a long segmentation folder (data keys), and why."""

    keys: dict[str, Any]  # target_layout, class_column / key_column / long_key, classes
    id_column: str  # data.id_column
    mask_column: str
    train: pd.DataFrame  # the training rows with the image id in id_column
    sample: pd.DataFrame  # the sample's rows with the image id in id_column
    why: dict[str, str] = field(default_factory=dict)


def _pairs(values: pd.Series) -> bool:
    """Cells that are all empty or "start length" number pairs, some of several runs (not label lists)."""
    filled = values[values.str.strip() != ""]
    if not len(filled):
        return False
    tokens = filled.str.split()
    even = tokens.map(lambda t: len(t) % 2 == 0 and all(x.isdigit() for x in t)).all()
    return bool(even and tokens.map(len).max() >= 4)


def _classes(values: list[str]) -> list[str]:
    try:
        return sorted(set(values), key=float)
    except ValueError:
        return sorted(set(values))


def _key_form(frame: pd.DataFrame, column: str) -> list[str] | None:
    """The classes of a column whose every value is "<image>_<class>" over at most MAX_CLASSES classes,
    each image having several rows; None otherwise."""
    keys = frame[column].astype(str)
    parsed = keys.str.extract(_KEY)
    if parsed["image"].isna().any():
        return None
    classes = parsed["cls"].unique().tolist()
    if not 1 < len(classes) <= MAX_CLASSES or not parsed["image"].duplicated().any():
        return None
    return _classes(classes)


def _class_column(
    frame: pd.DataFrame, candidates: list[str], id_column: str | None
) -> tuple[str, str] | None:
    """(image column, class column) of a frame whose class has its own column."""
    for image in [id_column] if id_column else candidates:
        for column in candidates:
            if column == image or image not in frame.columns:
                continue
            values = frame[column].astype(str)
            if values.nunique() <= MAX_CLASSES and values.nunique() < frame[image].nunique():
                if frame[image].duplicated().any():
                    return image, column
    return None


def find_long(
    root,
    train_csv: str,
    train: pd.DataFrame,
    sample_csv: str,
    sample: pd.DataFrame,
    settings: dict,
    is_rle: Callable,
) -> LongLayout | None:
    """The long segmentation layout of the folder, or None when its training CSV is not one."""
    if settings.get("target_layout") not in (None, "long"):
        return None
    rle = [c for c in train.columns if is_rle(train[c].astype(str), c) or _pairs(train[c].astype(str))]
    mask = settings.get("mask_column") or (rle[0] if rle else None)
    if mask is None or mask not in train.columns:
        return None
    others = [c for c in train.columns if c != mask]
    keys: dict[str, Any] = {"target_layout": "long"}
    why = {"data.target_layout": ""}
    class_column = settings.get("class_column")
    parts = (
        (settings.get("id_column") or others[0], class_column)
        if class_column
        else _class_column(train, others, settings.get("id_column"))
    )
    if parts is not None:
        id_column, class_column = parts
        classes = train[class_column].astype(str).tolist()
        keys["class_column"] = class_column
        why["data.target_layout"] = f"one row per image and '{class_column}' in {train_csv}"
    else:
        key = settings.get("id_column") or others[0]
        if len(others) != 1 or (found := _key_form(train, key)) is None:
            return None
        id_column, classes = key, found
        keys["long_key"] = settings.get("long_key") or DEFAULT_KEY
        why["data.target_layout"] = f"{train_csv}'s '{key}' joins image and class ('{train[key].iloc[0]}')"
    sample = sample.rename(columns=lambda c: str(c).strip())
    sample_classes = _sample_form(sample, id_column, class_column, keys, sample_csv, root)
    classes = settings.get("classes") or _classes([*classes, *sample_classes])
    keys["classes"] = [str(c) for c in classes]
    why["data.classes"] = (
        f"the {len(classes)} classes of {train_csv} and the sample submission; channel i = class i"
    )
    from medals.config import DataConfig

    data = DataConfig(id_column=id_column, mask_column=mask, **keys)
    split_train = split_keys(train, data, str(root / train_csv), keys["classes"])
    split_sample = split_keys(sample, data, str(root / sample_csv), keys["classes"])
    return LongLayout(keys, id_column, mask, split_train, split_sample, why)


def _sample_form(sample: pd.DataFrame, id_column: str, class_column: str | None, keys: dict, name: str, root):
    """The classes the sample asks for; sets data.key_column / long_key where it keys rows differently."""
    if class_column and id_column in sample.columns and class_column in sample.columns:
        return sample[class_column].astype(str).tolist()
    first = sample.columns[0]
    found = _key_form(sample, first) if len(sample) else None
    if found is None:
        raise MedalsError(
            f"{root / name} keys its rows by neither '{id_column}' and '{class_column or 'a class column'}' nor a "
            f"'<image>_<class>' column: set data.key_column=COLUMN and data.long_key (e.g. '{{image}}_{{class}}')"
        )
    if first != id_column:
        keys["key_column"] = first
    keys.setdefault("long_key", DEFAULT_KEY)
    return found


def rle_order(rles: pd.Series, size: tuple[int, int], column: str, csv: str) -> tuple[str, str]:
    """(data.rle_format, why) read from the masks' shapes on images of `size` (height, width)."""
    texts = [str(v) for v in rles if not is_empty(v) and isinstance(v, str) and v.strip()][:SHAPE_SAMPLE]
    if any(t.strip() == "-1" for t in rles.astype(str)):
        return "siim", '"-1" marks an empty mask: SIIM-ACR\'s relative column-major RLE'
    height, width = size
    counts = {}
    for fmt in ("row", "column"):
        total = 0
        for text in texts:
            try:
                total += ndimage.label(decode(text, (height, width), fmt))[1]
            except MedalsError:  # runs past the image in this order: not it
                total = np.inf
                break
        counts[fmt] = total
    if height != width and texts:
        best, other = sorted(counts, key=counts.get)
        if counts[best] * 1.5 <= counts[other]:
            order = (
                "top to bottom, then left to right"
                if best == "column"
                else "left to right, then top to bottom"
            )
            return (
                best,
                f"the masks decode to compact regions in {best}-major order ({order}), to stripes in the other",
            )
    raise MedalsError(
        f"{csv} column '{column}' reads as compact masks in both pixel orders ({height}x{width} images): set data.rle_format=column "
        "(pixels numbered top to bottom, then left to right) or data.rle_format=row (left to right, then top to bottom)"
    )


def unlisted_images(root, layout: LongLayout, template: str, train_ids: list[str]) -> int:
    """How many image files of the training template's folder the long CSV does not list, where it lists
    only present masks (no empty cells); 0 otherwise, or where the template is not a plain `folder/{id}`."""
    cells = layout.train[layout.mask_column].astype(str).str.strip()
    if (cells.isin(["", "-1", "nan"])).any():
        return 0  # every (image, class) pair has its row: the CSV lists the maskless images too
    try:
        return len(unlisted_ids(root, template, set(train_ids)))
    except MedalsError:
        return 0
