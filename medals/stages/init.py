"""init: a competition folder -> a commented starting recipe that runs as written.

The folder is read by medals.data.inspect (CSVs, columns, task, submission) and inspect_images (image
templates, format, size); each key of the recipe gets a comment saying why it has that value. Overrides
(`data.label_column=grade`) settle what the folder leaves open and are applied to the written recipe.
"""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path
from typing import Any

import yaml

from medals.config import apply_override, parse_override, recipe_from_dict
from medals.config.metric_names import metric_direction
from medals.config.recipe import MAIN_METRIC
from medals.data.inspect import Columns, Finding, read_columns
from medals.data.inspect_images import (
    DICOM_EXTS,
    TIFF_EXTS,
    Images,
    find_images,
    find_masks,
    given_images,
    index_files,
)
from medals.data.inspect_long import rle_order, unlisted_images
from medals.errors import MedalsError
from medals.files import write_text
from medals.stages.common import say

SIZES = (32, 64, 128, 224, 256, 384, 512)


def _image_size(side: int) -> int:
    return max([s for s in SIZES if s <= side] or [SIZES[0]])


def _backbone(task: str, size: int) -> tuple[str, str]:
    if task == "segmentation":
        return (
            "resnet34",
            "a UNet on segmentation_models_pytorch's resnet34 encoder: quick and strong at any size",
        )
    if size <= 64:
        return "resnet18", f"small images ({size} px): a small network"
    if size <= 256:
        return (
            "resnet34",
            f"{size} px: a mid-sized network; efficientnet_b3 or convnext_tiny for more capacity",
        )
    return "efficientnet_b0", f"{size} px: efficient at larger sizes; tf_efficientnet_b4/b5 for more capacity"


def _split(cols: Columns) -> tuple[str, str]:
    group = cols.group_column.value if cols.group_column else None
    if cols.task.value == "multilabel":
        extra = (
            f" (the group column '{group}' is not used: use grouped to keep its images together)"
            if group
            else ""
        )
        return "multilabel", "iterative stratification over the label sets" + extra
    if cols.task.value == "segmentation":
        if group:
            return "grouped", f"images of one '{group}' stay in one fold"
        return "stratified", "balances images with and without a mask across folds"
    balanced = {"regression": "the target's quintiles", "ordinal": "grades"}.get(cols.task.value, "classes")
    if group:
        return "stratified_grouped", f"{balanced} balanced, images of one '{group}' in one fold"
    return "stratified", f"{balanced} balanced across folds"


def _meta(cols: Columns) -> dict[str, Any] | None:
    if not (cols.numeric or cols.categorical):
        return None
    meta: dict[str, Any] = {}
    if cols.numeric:
        meta["numeric"] = {column: {"scale": scale, "fill": 0.0} for column, scale in cols.numeric.items()}
    if cols.categorical:
        meta["categorical"] = list(cols.categorical)
    return meta


def build_tree(root: Path, settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(recipe tree, comment per dotted key) for the folder at `root`."""
    index = index_files(root)
    cols = read_columns(root, settings, lambda ids: settings.get("mask_path") or find_masks(root, ids, index))
    train_images = _images(root, cols, "train", settings, index)
    test_images = _images(root, cols, "test", settings, index)
    train_ids = cols.train[cols.id_column].astype(str).drop_duplicates().tolist()
    if cols.long is not None:  # which pixel order the RLE counts in, from the masks' shapes
        fmt = settings.get("rle_format")
        found = (
            (fmt, "set on the command line")
            if fmt
            else rle_order(cols.train[cols.mask_column], train_images.size, cols.mask_column, cols.train_csv)
        )
        cols.rle_format = Finding(*found)
    task = cols.task.value
    side = min(train_images.size)
    size = _image_size(side)
    backbone, backbone_why = _backbone(task, size)
    why: dict[str, str] = {}

    data: dict[str, Any] = {
        "root": ".",
        "train_csv": cols.train_csv,
        "test_csv": cols.test_csv,
        "sample_submission": cols.sample_submission,
        "id_column": cols.id_column,
    }
    why["data.test_csv"] = (
        "the sample submission lists the test ids" if cols.test_csv == cols.sample_submission else ""
    )
    layout = cols.layout
    why["data.id_column"] = layout.why.get("id_column", "the sample submission's first column")
    if layout.kind != "column":
        data["target_layout"] = layout.kind
        why["data.target_layout"] = layout.why.get("target_layout", "")
    if layout.long_key:
        data["long_key"] = layout.long_key
        why["data.long_key"] = layout.why.get("long_key", "")
    if layout.prediction_id:
        data["prediction_id"] = layout.prediction_id
        why["data.prediction_id"] = layout.why.get("prediction_id", "")
        data["prediction_aggregate"] = "mean"
        why["data.prediction_aggregate"] = "a group's probability is its images' mean (or max)"
    found = [  # (key, value or None when absent, why)
        ("label_column", cols.label_column, cols.why.get("label", "")),
        (
            "classes",
            cols.classes,
            f"the {len(cols.classes or [])} values of '{cols.label_column}'; index i = p_i"
            if cols.layout.kind == "column"
            else f"the {len(cols.classes or [])} classes, in the sample's order; index i = p_i",
        ),
        ("num_classes", cols.num_classes, "the largest label id + 1"),
        ("mask_column", cols.mask_column, cols.why.get("label", "")),
        (
            "mask_path",
            cols.mask_path,
            "mask files named after the training ids (non-zero pixels are the mask)",
        ),
        ("rle_format", cols.rle_format and cols.rle_format.value, cols.rle_format and cols.rle_format.why),
        ("channels", train_images.channels, "one file per channel, stacked in this order"),
    ]
    for key, value, reason in found:
        if value:
            data[key] = value
            why[f"data.{key}"] = reason or ""
    seen = f"{train_images.extension} files, typically {train_images.size[0]}x{train_images.size[1]}"
    column = re.fullmatch(r"\{(\w+)\}", train_images.template)
    if column and test_images.template == train_images.template:
        data["path_column"] = column[1]
        why["data.path_column"] = f"{train_images.how}; {seen}"
    else:
        data["image_path"] = train_images.template
        data["test_image_path"] = test_images.template
        why["data.image_path"] = f"{train_images.how}; {seen}"
        why["data.test_image_path"] = test_images.how
    if cols.long is not None:
        data.update(cols.long.keys)
        why.update(cols.long.why)
        why["data.id_column"] = "the image id of each (image, class) row"
        unlisted = unlisted_images(root, cols.long, train_images.template, train_ids)
        if unlisted:
            data["unlisted_images"] = "no_mask"
            why["data.unlisted_images"] = (
                f"{unlisted} images of {os.path.dirname(train_images.template) or '.'}/ have no row in "
                f"{cols.train_csv}, which lists only masks present: they train as images without a mask"
            )
    if cols.group_column:
        data["group_column"] = cols.group_column.value
        why["data.group_column"] = cols.group_column.why
    if side > 1.5 * size or train_images.extension in DICOM_EXTS | TIFF_EXTS:
        data["cache_size"] = size
        why["data.cache_size"] = (
            "prepare decodes and resizes every image once; training reads the small copies"
        )
    meta = _meta(cols) if task in ("binary", "multiclass", "regression", "ordinal") else None
    if meta:
        data["meta"] = meta
        why["data.meta"] = "columns of both the training and the test CSV, fed to the model beside the image"

    method, method_why = _split(cols)
    model: dict[str, Any] = {"arch": "unet" if task == "segmentation" else "classifier", "backbone": backbone}
    why["model.backbone"] = backbone_why
    model["pretrained"] = True
    why["model.pretrained"] = "ImageNet weights from the timm hub; offline: false, or model.weights=FILE"
    model["in_chans"] = len(train_images.channels) if train_images.channels else train_images.in_chans
    why["model.in_chans"] = "channels of the images as read"
    if meta:
        model["head"] = "meta"
        model["meta_hidden"] = [64, 32]
        why["model.head"] = "image features and the metadata MLP joined before the classifier"
    metric = "accuracy" if cols.submit_kind.value == "label" else MAIN_METRIC[task]
    if task == "multilabel" and cols.submit_kind.value == "probability":
        metric = "auc_macro"  # probabilities are scored by their ranking: mean column-wise AUC (RANZCR)
    train = {
        "epochs": 10,
        "batch_size": 32 if size <= 256 else 16,
        "image_size": size,
        "optimizer": "adamw",
        "lr": 3.0e-4,
        "schedule": {"name": "warmup_cosine", "warmup_epochs": 1},
        "checkpoints": [{"name": "best", "metric": metric, "mode": metric_direction(metric) or "max"}],
    }
    why["train.image_size"] = (
        f"the largest of {', '.join(map(str, SIZES))} not above the images' side ({side} px)"
    )
    why["train.epochs"] = "a first run; more epochs and a larger size once the pipeline is known to work"
    why["train.checkpoints"] = f"the epoch with the best {metric}, as the submission is scored"
    infer = {"tta": 2, "checkpoint": "best"}
    why["infer.tta"] = "the image and its mirror; 8 (all flips and transposes) for images with no up or left"
    submit: dict[str, Any] = {"kind": cols.submit_kind.value}
    why["submit.kind"] = cols.submit_kind.why
    if task == "regression":
        submit["clip"] = "train"
        why["submit.clip"] = "predictions outside the training targets' range are clipped to it"
    if cols.long is not None:
        submit["mask_search"] = "oof"
        why["submit.mask_search"] = (
            "each class's pixel threshold, smallest region and empty-mask gate, best on OOF"
        )
    if cols.target_class is not None:
        submit["target_classes"] = [cols.target_class]
        why["submit.target_classes"] = cols.why.get("target_class", "")
    tree = {
        "name": re.sub(r"[^a-z0-9]+", "_", root.resolve().name.lower()).strip("_") or "competition",
        "task": task,
        "seed": 0,
        "data": data,
        "split": {"method": method, "n_folds": 5},
        "model": model,
        "train": train,
        "infer": infer,
        "submit": submit,
    }
    why["task"] = cols.task.why
    why["split.method"] = method_why
    return tree, why


def _images(root: Path, cols: Columns, split: str, settings: dict[str, Any], index) -> Images:
    """The images of one split: as data.image_path / test_image_path / path_column say, else found."""
    frame = cols.train if split == "train" else cols.test
    key = "image_path" if split == "train" else "test_image_path"
    template = settings.get(key) or (
        "{" + settings["path_column"] + "}" if settings.get("path_column") else None
    )
    if template:
        images = given_images(
            root, frame, cols.id_column, str(template), f"data.{key}", settings.get("channels")
        )
    else:
        name = cols.train_csv if split == "train" else cols.test_csv
        images = find_images(root, frame, cols.id_column, f"{name}'s ids", index, exclude="mask")
    say(f"init: {split} images: {images.template} ({images.how})")
    return images


def _render(tree: dict[str, Any], why: dict[str, str], prefix: str = "", indent: int = 0) -> list[str]:
    lines = []
    pad = "  " * indent
    for key, value in tree.items():
        path = f"{prefix}{key}"
        comment = f"  # {why[path]}" if why.get(path) else ""
        if isinstance(value, dict) and value and path not in ("train.schedule", "data.meta.numeric"):
            lines.append(f"{pad}{key}:{comment}")
            lines.extend(_render(value, why, f"{path}.", indent + 1))
        else:
            text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
            text = text.removesuffix("\n...").removesuffix("...").strip()
            lines.append(f"{pad}{key}: {text}{comment}")
    return lines


TEMPLATE_KEYS = ("image_path", "test_image_path", "mask_path", "prediction_id", "long_key")


def _template_override(text: str, path: list[str], value: Any) -> tuple[list[str], Any]:
    """A template key keeps its text: YAML would read `data.prediction_id={prediction_id}` as a mapping."""
    if len(path) == 2 and path[0] == "data" and path[1] in TEMPLATE_KEYS and not isinstance(value, str):
        return path, text.split("=", 1)[1]
    return path, value


def run_init(folder: Path, out: Path | None, overrides: list[str], force: bool = False) -> Path:
    root = folder.resolve()
    settings = {}
    parsed = [_template_override(text, *parse_override(text)) for text in overrides]
    for path, value in parsed:
        if path[0] == "data" and len(path) == 2:
            settings[path[1]] = value
        if path == ["task"]:  # a declared task decides how the target is read
            settings["task"] = value
    if isinstance(settings.get("classes"), list):
        settings["classes"] = [str(v) for v in settings["classes"]]
    tree, why = build_tree(root, settings)
    out = (out or root / "recipe.yaml").resolve()
    if out.exists() and not force:
        raise MedalsError(f"{out} exists: pass --force to overwrite it, or --out another file")
    tree["data"]["root"] = os.path.relpath(root, out.parent).replace(os.sep, "/")
    why["data.root"] = "the competition folder, relative to this file"
    for path, value in parsed:
        apply_override(tree, path, value)
    recipe_from_dict(tree, f"the recipe medals init wrote for {root}")  # it must load as written
    today = datetime.date.today().isoformat()
    header = [
        f"# Written by `medals init {folder}` on {today}: a starting recipe for this folder.",
        "# Each choice says why; change any key, or override it on the command line (key=value).",
        f"# Then: medals run {out.name}",
    ]
    write_text(out, "\n".join([*header, *_render(tree, why)]) + "\n")
    say(f"init: {tree['task']} from {tree['data']['train_csv']} ({why['task']}) -> {out}")
    say(f"init: next: medals run {out}")
    return out
