"""The torch Dataset over a prepared table, and a reproducible DataLoader for it.

Per-row targets and meta features are decoded once in __init__, so __getitem__ only reads the image
(and mask), augments and converts.
"""

from __future__ import annotations

import random
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from medals.data.channels import fit_channels
from medals.data.io import read_image, read_mask
from medals.data.long_masks import decode_classes
from medals.data.rle import decode_many, is_empty
from medals.errors import MedalsError

TASKS = ("binary", "multiclass", "multilabel", "segmentation", "regression", "ordinal")


def meta_columns(table: pd.DataFrame) -> list[str]:
    """The meta feature columns in table order (the model's meta input order)."""
    return [str(c) for c in table.columns if str(c).startswith("meta_")]


def _require(table: pd.DataFrame, column: str, task: str) -> None:
    if column not in table.columns:
        raise MedalsError(f"the {task} table has no '{column}' column")


def _text(value: Any) -> str:
    """A cell as a stripped string; None / NaN / NA -> ""."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


def _multi_hot(table: pd.DataFrame, num_classes: int) -> np.ndarray:
    out = np.zeros((len(table), num_classes), dtype=np.float32)
    for row, (ident, text) in enumerate(zip(table["id"], table["labels"], strict=True)):
        for token in _text(text).split():
            try:
                label = int(token)
            except ValueError:
                raise MedalsError(
                    f"image {ident}: label '{token}' in column 'labels' is not an integer"
                ) from None
            if not 0 <= label < num_classes:
                raise MedalsError(f"image {ident}: label {label} is outside 0..{num_classes - 1}")
            out[row, label] = 1.0
    return out


class ImageDataset(Dataset):
    """Items are dicts: image [C,H,W] float32, index, target (and mask [1,H,W] for segmentation), meta."""

    def __init__(
        self,
        table: pd.DataFrame,
        task: str,
        num_classes: int,
        transform: Any,
        in_chans: int,
        rle_format: str = "siim",
        with_target: bool = True,
    ):
        if task not in TASKS:
            raise MedalsError(f"unknown task '{task}' (expected one of {', '.join(TASKS)})")
        for column in ("id", "path"):
            _require(table, column, task)
        self.task = task
        self.num_classes = num_classes
        self.transform = transform
        self.in_chans = in_chans
        self.rle_format = rle_format
        self.with_target = with_target
        self.ids = table["id"].astype(str).tolist()
        self.paths = table["path"].astype(str).tolist()
        self.meta_names = meta_columns(table)
        self.meta = table[self.meta_names].to_numpy(dtype=np.float32, copy=True) if self.meta_names else None

        self.labels: np.ndarray | None = None
        self.rles: list[str] | None = None
        self.mask_paths: list[str] | None = None
        self.sizes: np.ndarray | None = None  # original (height, width) per row
        if with_target:
            self._load_targets(table)

    def _load_targets(self, table: pd.DataFrame) -> None:
        if self.task in ("multiclass", "binary"):
            _require(table, "label", self.task)
            labels = table["label"].to_numpy(dtype=np.int64)
            count = 2 if self.task == "binary" else self.num_classes  # binary: one logit, labels 0 and 1
            bad = (labels < 0) | (labels >= count)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise MedalsError(f"image {self.ids[row]}: label {labels[row]} is outside 0..{count - 1}")
            self.labels = labels
        elif self.task == "multilabel":
            _require(table, "labels", self.task)
            self.labels = _multi_hot(table, self.num_classes)
        elif self.task in ("regression", "ordinal"):
            _require(table, "target", self.task)
            labels = table["target"].to_numpy(dtype=np.float32)
            if not np.isfinite(labels).all():
                row = int(np.flatnonzero(~np.isfinite(labels))[0])
                raise MedalsError(f"image {self.ids[row]}: target {labels[row]} is not a number")
            self.labels = labels
        else:
            if "rle" not in table.columns and "mask_path" not in table.columns:
                raise MedalsError("the segmentation table has neither an 'rle' nor a 'mask_path' column")
            if "rle" in table.columns:
                _require(table, "height", self.task)
                _require(table, "width", self.task)
            if "height" in table.columns and "width" in table.columns:
                self.sizes = table[["height", "width"]].to_numpy(dtype=np.int64)
            if "rle" in table.columns:
                self.rles = [_text(v) for v in table["rle"]]
            if "mask_path" in table.columns:
                self.mask_paths = [_text(v) for v in table["mask_path"]]

    def __len__(self) -> int:
        return len(self.paths)

    def _image(self, index: int) -> np.ndarray:
        path = self.paths[index]
        image = read_image(path)
        if image.ndim == 2:
            image = image[:, :, None]
        # Gray repeated to RGB, RGBA's alpha dropped (medals.data.channels; prepare checked the rest).
        return fit_channels(image, self.in_chans, path)

    def _mask(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """uint8 H x W mask at the read image's size (which is the cache size for cached images);
        H x W x C with C > 1 mask classes (one channel per class, as albumentations takes them)."""
        if self.num_classes > 1:
            return self._class_masks(index, size)
        mask_path = self.mask_paths[index] if self.mask_paths is not None else ""
        if mask_path:
            mask = read_mask(mask_path)
            original = tuple(self.sizes[index]) if self.sizes is not None else None
            # A mask file at the original size is fine for an image read from the resized cache.
            if mask.shape != size and mask.shape != original:
                raise MedalsError(
                    f"mask {mask_path} is {mask.shape[0]}x{mask.shape[1]} but its image "
                    f"{self.paths[index]} is {size[0]}x{size[1]}"
                )
        elif self.rles is not None and not is_empty(self.rles[index]):
            height, width = (int(v) for v in self.sizes[index])
            try:
                mask = decode_many(self.rles[index], (height, width), self.rle_format)
            except MedalsError as exc:
                raise MedalsError(f"image {self.ids[index]}: {exc}") from None
        else:
            return np.zeros(size, dtype=np.uint8)
        mask = mask.astype(np.uint8)
        if mask.shape != size:
            mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        return mask

    def _class_masks(self, index: int, size: tuple[int, int]) -> np.ndarray:
        if self.rles is None:
            raise MedalsError(
                "masks of several classes are read from RLE rows (data.mask_column), not mask files"
            )
        height, width = (int(v) for v in self.sizes[index])
        try:
            mask = decode_classes(self.rles[index], (height, width), self.rle_format, self.num_classes)
        except MedalsError as exc:
            raise MedalsError(f"image {self.ids[index]}: {exc}") from None
        mask = mask.astype(np.uint8)
        if mask.shape[:2] != size:
            mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        return mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self._image(index)
        segment = self.task == "segmentation" and self.with_target
        mask = self._mask(index, image.shape[:2]) if segment else None
        if self.transform is not None:
            out = self.transform(image=image, mask=mask) if segment else self.transform(image=image)
            image, mask = out["image"], out.get("mask")
        else:
            image = image.astype(np.float32) / 255.0
        if image.ndim == 2:
            image = image[:, :, None]
        item: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)),
            "index": index,
        }
        if segment:
            mask_t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))
            # [1, H, W] for one mask, [C, H, W] for one channel per class (H x W x C from the transform)
            mask_t = mask_t[None] if mask_t.ndim == 2 else mask_t.permute(2, 0, 1).contiguous()
            item["mask"] = mask_t
            item["target"] = (mask_t > 0).any().to(torch.float32)
        item.update(self.labels_and_meta(index))
        return item

    def labels_and_meta(self, index: int) -> dict[str, torch.Tensor]:
        """A classification row's target and the row's meta features, as tensors (what applies)."""
        out: dict[str, torch.Tensor] = {}
        if self.with_target and self.task in ("multiclass", "binary"):
            out["target"] = torch.tensor(self.labels[index], dtype=torch.int64)
        elif self.with_target and self.task == "multilabel":
            out["target"] = torch.from_numpy(self.labels[index])
        elif self.with_target and self.task in ("regression", "ordinal"):
            out["target"] = torch.tensor(self.labels[index], dtype=torch.float32)
        if self.meta is not None:
            out["meta"] = torch.from_numpy(self.meta[index])
        return out


# ---- loader -------------------------------------------------------------------------------


def _transform_of(dataset: Any) -> Any:
    """The albumentations transform of a dataset, looking through Subset-like wrappers."""
    while dataset is not None:
        if hasattr(dataset, "transform"):
            return dataset.transform
        dataset = getattr(dataset, "dataset", None)
    return None


def reseed_transform(dataset: Any, seed: int) -> None:
    """Seed the dataset's albumentations transform, looking through Subset-like wrappers."""
    # Albumentations 2 keeps its own RNG inside Compose and ignores the global seeds. Its
    # set_random_seed gives every op a generator seeded alike, so ops with the same p decide alike
    # (HorizontalFlip, VerticalFlip and Transpose at 0.5: all three or none); one stream shared by the
    # whole tree keeps their draws independent, as albumentations 0.x's global random did.
    transform = _transform_of(dataset)
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    elif hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: per-worker seeds derived from the loader's seeded generator.

    torch gives each worker base_seed + worker_id, with base_seed drawn from the loader's generator on
    every epoch, so workers differ from each other and across epochs yet repeat run to run.
    """
    # One OpenCV thread per worker: by default each worker's cv2 starts a thread per core, and N
    # workers on N cores then fight over N * N threads (a 16-core machine ran 3x slower that way).
    cv2.setNumThreads(1)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        reseed_transform(info.dataset, seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    collate_fn: Any = None,
    sampler: Any = None,
) -> DataLoader:
    """A DataLoader whose order and augmentations repeat for the same seed.

    Create it once per run and iterate it every epoch: with num_workers=0 the transform is seeded here
    and its RNG then runs on across epochs. ``sampler`` (e.g. medals.data.sampling.EpochSampler, seeded
    by its owner) replaces the shuffle.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    if num_workers == 0:
        reseed_transform(dataset, seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=seed_worker,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        collate_fn=collate_fn,
    )


def recipe_dataset(recipe, rows: pd.DataFrame, num_classes: int, train: bool, with_target: bool = True):
    """The dataset a recipe trains (train=True: with its augmentation) or evaluates on."""
    from medals.augment.cpu import build_transform, recipe_augment

    cfg = recipe.train
    spec = recipe_augment(recipe)
    transform = build_transform(
        spec, cfg.image_size, train, recipe.task, cfg.mean, cfg.std, normalize=cfg.normalize
    )
    return ImageDataset(
        rows,
        recipe.task,
        num_classes,
        transform,
        recipe.model.in_chans,
        rle_format=recipe.data.rle_format,
        with_target=with_target,
    )
