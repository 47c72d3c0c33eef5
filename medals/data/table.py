"""Competition CSVs -> the normalised table: one row per image with labels, paths, sizes and meta features.

Every problem with the inputs (missing columns, unknown labels, missing or corrupt images, masks of the
wrong size) is found here, before any training starts, and reported as one MedalsError.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medals.config import DataConfig, Recipe
from medals.data.corrections import apply_label_corrections
from medals.data.csv import read_csv
from medals.data.io import image_size, read_mask, split_paths
from medals.data.labels import group_rle, multiclass_labels, multilabel_labels, numeric_targets, show_values
from medals.data.long_masks import (
    check_long,
    is_long,
    long_classes,
    pivot_masks,
    split_keys,
    with_unlisted_images,
)
from medals.data.meta import check_columns, meta_features, required_columns, value_key
from medals.data.target_shapes import reshape_frames
from medals.data.templates import render, resolve_paths, template_fields
from medals.errors import MedalsError

# Columns the table itself defines; a kept CSV column must not shadow one of them.
RESERVED = {
    "id",
    "split",
    "path",
    "height",
    "width",
    "label",
    "labels",
    "rle",
    "mask_path",
    "has_mask",
    "group",
    "target",
    "prediction_id",
}

# Tasks whose training rows carry a label column: one class, several classes, or a number.
LABELLED = ("binary", "multiclass", "multilabel", "regression", "ordinal")


# ---- reading the CSVs ----------------------------------------------------------------------


def _read_csv(path: Path, data: DataConfig) -> pd.DataFrame:
    # Ids, RLE strings and multilabel id lists stay text even when a column happens to look numeric.
    text_columns = [data.id_column, data.mask_column]
    return read_csv(path, dtype={name: str for name in text_columns if name})


def _template_fields(template: str, key: str) -> list[str]:
    return template_fields(template, f"data.{key}")


def _required(recipe: Recipe, split: str) -> list[str]:
    """CSV columns the recipe reads from the train or test CSV."""
    data = recipe.data
    names = [data.id_column]
    template, key = (
        (data.image_path, "image_path") if split == "train" else (data.test_image_path, "test_image_path")
    )
    templates = [(template, key)]
    if split == "train":
        if recipe.task in LABELLED:
            names.append(data.label_column)
        if recipe.task == "segmentation" and data.mask_column:
            names.append(data.mask_column)
        if is_long(data) and data.class_column:
            names.append(data.class_column)
        if recipe.task == "segmentation" and data.mask_path:
            templates.append((data.mask_path, "mask_path"))
        if data.group_column:
            names.append(data.group_column)
        if recipe.split.method == "fixed" and recipe.split.column:
            names.append(recipe.split.column)
        names += data.keep_columns
    if data.prediction_id:
        templates.append((data.prediction_id, "prediction_id"))
    for text, name in templates:
        names += [f for f in _template_fields(text, name) if f not in ("id", "channel")]
    if data.meta:
        names += required_columns(data.meta)
    return list(dict.fromkeys(names))


def _check_recipe(recipe: Recipe) -> None:
    data = recipe.data
    if recipe.task in LABELLED and not data.label_column:
        raise MedalsError(f"task '{recipe.task}' needs data.label_column (the CSV column holding the labels)")
    if recipe.task == "multilabel" and data.num_classes is None and not data.classes:
        raise MedalsError("task 'multilabel' needs data.num_classes or data.classes")
    if recipe.task == "segmentation" and not (data.mask_column or data.mask_path):
        raise MedalsError("task 'segmentation' needs data.mask_column (RLE) or data.mask_path (mask files)")
    check_long(data)
    if is_long(data) and not (recipe.task == "segmentation" and data.mask_column):
        raise MedalsError(
            "data.target_layout 'long' is read here for segmentation masks in data.mask_column "
            f"(task '{recipe.task}'{', mask files' if data.mask_path else ''})"
        )
    if recipe.split.method == "fixed":
        if not recipe.split.column:
            raise MedalsError(
                "split.method 'fixed' needs split.column (the column whose values give the folds)"
            )
        if recipe.split.column in RESERVED:
            raise MedalsError(
                f"split.column '{recipe.split.column}' clashes with the table column of that name"
            )
    for column in data.keep_columns:
        if column in RESERVED or column.startswith("meta_"):
            raise MedalsError(f"data.keep_columns: '{column}' clashes with a table column of that name")


def _train_frame(recipe: Recipe, frame: pd.DataFrame, path: str) -> pd.DataFrame:
    """The training rows after data.query, checked for columns and emptiness."""
    data = recipe.data
    check_columns(frame, _required(recipe, "train"), f"CSV file {path}")
    if data.query:
        try:
            frame = frame.query(data.query)
        except Exception as exc:  # pandas raises NameError, SyntaxError, ValueError, TypeError, ...
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MedalsError(f"data.query '{data.query}' cannot be applied to {path}: {reason}") from None
        if frame.empty:
            raise MedalsError(f"{path} has no rows after filtering with query '{data.query}'")
    if frame.empty:
        raise MedalsError(f"{path} has no rows")
    return frame.reset_index(drop=True)


def _source_frames(recipe: Recipe) -> tuple[pd.DataFrame, str, pd.DataFrame | None, str]:
    """(train frame, its name, test frame or None, its name): the CSVs, or a registered adapter's frames."""
    data = recipe.data
    if data.adapter:
        from medals.data.adapters import run_adapter

        train, test = run_adapter(recipe)
        return train, f"{data.adapter} train rows", test, f"{data.adapter} test rows"
    train_path = recipe.data_root / data.train_csv
    train = _read_csv(train_path, data)
    test, test_name = None, "test CSV"
    if data.test_csv is not None:
        test_path = recipe.data_root / data.test_csv
        test, test_name = _read_csv(test_path, data), str(test_path)
    return train, str(train_path), test, test_name


def _check_ids(frame: pd.DataFrame, id_column: str, csv_name: str, unique: bool) -> pd.DataFrame:
    ids = frame[id_column]
    if ids.isna().any():
        raise MedalsError(
            f"{csv_name} has {int(ids.isna().sum())} rows without a value in column '{id_column}'"
        )
    frame = frame.assign(**{id_column: ids.astype(str)})
    dup = frame[id_column][frame[id_column].duplicated()]
    if len(dup) and unique:
        raise MedalsError(
            f"{csv_name} column '{id_column}' has duplicate ids: {show_values(dup.unique().tolist())}"
        )
    return frame


# ---- labels ----------------------------------------------------------------------------------


# ---- paths and files ---------------------------------------------------------------------------


def _render_paths(frame: pd.DataFrame, template: str, key: str, recipe: Recipe) -> list[str]:
    data = recipe.data
    fields = _template_fields(template, key)
    channels = data.channels if key != "mask_path" else None
    if channels and "channel" not in fields:
        raise MedalsError(f"data.{key} '{template}' has no {{channel}} field although data.channels is set")
    if "channel" in fields and not channels:
        raise MedalsError(f"data.{key} '{template}' uses {{channel}} but data.channels is not set")
    columns = [f for f in dict.fromkeys(fields) if f not in ("id", "channel")]
    base = {f: frame[f].tolist() for f in columns}
    base["id"] = frame[data.id_column].tolist()
    rows = [dict(zip(base, values, strict=True)) for values in zip(*base.values(), strict=True)]
    if not channels:
        return resolve_paths(str(recipe.data_root), template, rows, f"data.{key}")
    per_channel = [
        resolve_paths(str(recipe.data_root), template, [{**r, "channel": c} for r in rows], f"data.{key}")
        for c in channels
    ]
    return ["|".join(parts) for parts in zip(*per_channel, strict=True)]


def _check_files_exist(paths: Sequence[str], root: Path) -> None:
    missing = [p for path in paths for p in split_paths(path) if not os.path.isfile(p)]
    if missing:
        total = sum(len(split_paths(p)) for p in paths)
        names = [os.path.relpath(p, root) if p.startswith(str(root)) else p for p in missing]
        raise MedalsError(
            f"{len(missing)} of {total} image files do not exist under {root} "
            f"(check data.image_path / test_image_path / mask_path), first: {show_values(names)}"
        )


def _parallel(fn: Callable[[str], Any], paths: Sequence[str]) -> list[Any]:
    # Header reads are I/O bound; threads overlap the waiting (the first error is re-raised in order).
    # Chunks keep the per-task overhead of the pool small next to a header read.
    workers = min(16, 4 * (os.cpu_count() or 1))
    chunks = [paths[i : i + 256] for i in range(0, len(paths), 256)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [out for chunk in pool.map(lambda c: [fn(p) for p in c], chunks) for out in chunk]


def _has_mask_file(path: str) -> int:
    return int(read_mask(path).any())


# ---- the table -----------------------------------------------------------------------------------


def _part(recipe: Recipe, frame: pd.DataFrame, split: str, csv_name: str) -> pd.DataFrame:
    """Columns that do not need the other split: id, split, path and the labels/masks."""
    data = recipe.data
    template, key = (
        (data.image_path, "image_path") if split == "train" else (data.test_image_path, "test_image_path")
    )
    n = len(frame)
    out = pd.DataFrame({"id": frame[data.id_column].astype(str).to_numpy(), "split": split})
    out["path"] = _render_paths(frame, template, key, recipe)
    if recipe.task in ("multiclass", "binary"):
        out["label"] = frame["__label"].to_numpy(np.int64) if split == "train" else np.full(n, -1, np.int64)
    elif recipe.task == "multilabel":
        out["labels"] = multilabel_labels(frame, data, csv_name) if split == "train" else [""] * n
    elif recipe.task in ("regression", "ordinal"):
        # regression: the value; ordinal: the class index as a number (what the model regresses on)
        out["target"] = frame["__target"].to_numpy(np.float64) if split == "train" else np.full(n, np.nan)
    else:
        if data.mask_column:
            out["rle"] = frame["__rle"].tolist() if split == "train" else [""] * n
        if data.mask_path:
            out["mask_path"] = (
                _render_paths(frame, data.mask_path, "mask_path", recipe) if split == "train" else ""
            )
        # With mask files only, has_mask is filled in by build_table once the masks have been read.
        has_mask = split == "train" and "__has_mask" in frame.columns
        out["has_mask"] = frame["__has_mask"].to_numpy(np.int64) if has_mask else np.zeros(n, np.int64)
    if data.prediction_id:
        rows = frame.assign(id=frame[data.id_column]).to_dict("records")
        out["prediction_id"] = render(data.prediction_id, rows, "data.prediction_id")
    if data.group_column:
        if data.group_column in frame.columns:
            keys = [value_key(v) for v in frame[data.group_column].tolist()]
            # A row without a group value is grouped with nobody but itself.
            out["group"] = [
                k if k is not None else f"__row_{i}" for k, i in zip(keys, out["id"], strict=True)
            ]
        else:
            out["group"] = ""
    kept = list(data.keep_columns)
    if recipe.split.method == "fixed" and recipe.split.column and recipe.split.column not in kept:
        kept.append(recipe.split.column)
    for column in kept:
        out[column] = frame[column].to_numpy() if column in frame.columns else np.nan
    return out


def build_table(recipe: Recipe) -> pd.DataFrame:
    """Read, check and normalise the competition CSVs into the table (see the module contract)."""
    train, train_name, test, test_name = _source_frames(recipe)
    # Long segmentation masks are pivoted below (medals.data.long_masks); other wide and long targets
    # become one label column here, and everything below reads the column layout.
    if not (recipe.task == "segmentation" and is_long(recipe.data)):
        train, test, data = reshape_frames(recipe, train, test, train_name, test_name)
        recipe = recipe.model_copy(update={"data": data})
    train = apply_label_corrections(recipe, train, train_name)
    _check_recipe(recipe)
    data = recipe.data
    root = recipe.data_root
    classes = None
    if is_long(data):  # (image, class) rows: the image id split from a combined key where there is one
        train = split_keys(train, data, train_name, data.classes)
    train = _train_frame(recipe, train, train_name)
    seg_rle = recipe.task == "segmentation" and data.mask_column
    train = _check_ids(train, data.id_column, train_name, unique=not seg_rle)
    if seg_rle and is_long(data):
        classes = long_classes(train, data, train_name)
        if data.unlisted_images == "no_mask":
            train = with_unlisted_images(train, data, root, classes[0])
        train, rle, has_mask = pivot_masks(train, data, classes, train_name)
        train["__rle"], train["__has_mask"] = rle, has_mask
    elif seg_rle:
        train, rle, has_mask = group_rle(train, data)
        train["__rle"], train["__has_mask"] = rle, has_mask

    if test is not None:
        if is_long(data):  # a test CSV (or the sample) with (image, class) rows: its images
            test = split_keys(test, data, test_name, classes or data.classes)
        check_columns(test, _required(recipe, "test"), f"CSV file {test_name}")
        test = _check_ids(test, data.id_column, test_name, unique=recipe.task != "segmentation")
        test = test.drop_duplicates(data.id_column, keep="first").reset_index(drop=True)

    if recipe.task in ("multiclass", "binary"):
        train["__label"], classes = multiclass_labels(train, data, train_name)
        if recipe.task == "binary" and len(classes) != 2:
            raise MedalsError(
                f"task binary needs 2 classes; {train_name} column '{data.label_column}' has {len(classes)} "
                f"({show_values(classes)}): use task multiclass"
            )
    elif recipe.task in ("regression", "ordinal"):
        train["__target"], classes = numeric_targets(train, data, train_name, recipe.task)
    parts = [_part(recipe, train, "train", train_name)]
    if test is not None and len(test):
        parts.append(_part(recipe, test, "test", test_name))

    paths = [p for part in parts for p in part["path"]]
    mask_paths = parts[0]["mask_path"].tolist() if "mask_path" in parts[0] else []
    _check_files_exist(paths + mask_paths, root)

    sizes = _parallel(image_size, paths)
    if mask_paths:
        mask_sizes = _parallel(image_size, mask_paths)
        for image, mask, size, msize in zip(
            parts[0]["path"], mask_paths, sizes[: len(mask_paths)], mask_sizes, strict=True
        ):
            if size != msize:
                raise MedalsError(
                    f"mask {mask} is {msize[0]}x{msize[1]} but its image {image} is {size[0]}x{size[1]}"
                )
        if not data.mask_column:
            parts[0]["has_mask"] = np.array(_parallel(_has_mask_file, mask_paths), dtype=np.int64)

    table = pd.concat(parts, ignore_index=True)
    table["height"] = np.array([s[0] for s in sizes], dtype=np.int64)
    table["width"] = np.array([s[1] for s in sizes], dtype=np.int64)

    if data.meta:
        test_paths = parts[1]["path"].tolist() if len(parts) > 1 else None
        train_feats, test_feats = meta_features(
            train,
            test if len(parts) > 1 else None,
            data.meta,
            parts[0]["path"].tolist(),
            test_paths,
            train_name=f"CSV file {train_name}",
            test_name=f"CSV file {test_name}",
        )
        feats = pd.concat([train_feats, test_feats], ignore_index=True)
        table = pd.concat([table, feats.reset_index(drop=True)], axis=1)

    front = ["id", "split", "path", "height", "width"]
    table = table[front + [c for c in table.columns if c not in front]]
    table.attrs["classes"] = resolved_classes(recipe) if classes is None else classes
    return table


def resolved_classes(recipe: Recipe, table: pd.DataFrame | None = None) -> list[str]:
    """The class names, index i = label i (multiclass) / label id i (multilabel); ["mask"] for segmentation."""
    data = recipe.data
    if recipe.task == "segmentation" and not is_long(data):
        return ["mask"]
    if recipe.task == "regression":
        return [data.label_column or "target"]
    if recipe.task == "segmentation":  # one output channel per class of the long layout
        if data.classes:
            return list(data.classes)
        if table is not None and table.attrs.get("classes"):
            return list(table.attrs["classes"])
        raise MedalsError("data.target_layout 'long' needs data.classes here (or run `medals prepare`)")
    if data.classes:
        return list(data.classes)
    if recipe.task == "multilabel":
        if data.num_classes is None:
            raise MedalsError("task 'multilabel' needs data.num_classes or data.classes")
        return [str(i) for i in range(data.num_classes)]
    if table is not None and table.attrs.get("classes"):
        return list(table.attrs["classes"])
    _check_recipe(recipe)
    frame, csv_name = _train_frame(recipe)
    return multiclass_labels(frame, data, csv_name)[1]
