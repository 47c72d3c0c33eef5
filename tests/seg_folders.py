"""Tiny generated competition folders in the long segmentation layouts (real column names and file
layouts, generated images and masks): Severstal steel defects and UW-Madison GI tract."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medals.data.rle import encode

SEVERSTAL_CLASSES = ["1", "2", "3", "4"]
UW_CLASSES = ["large_bowel", "small_bowel", "stomach"]


def _masks(rng: np.random.Generator, n_classes: int, height: int, width: int, p: float) -> np.ndarray:
    """bool [C, H, W]: each class present with probability p, as one rectangle (classes may overlap)."""
    out = np.zeros((n_classes, height, width), dtype=bool)
    for k in range(n_classes):
        if rng.random() < p:
            h, w = rng.integers(height // 4, height // 2 + 1), rng.integers(width // 6, width // 3 + 1)
            y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
            out[k, y : y + h, x : x + w] = True
    return out


def _image(rng: np.random.Generator, masks: np.ndarray, scale: float) -> np.ndarray:
    """A noisy gray image on which each class's region has its own brightness (learnable, not trivial)."""
    image = rng.normal(60, 12, masks.shape[1:])
    for k, mask in enumerate(masks):
        image[mask] = 110 + 45 * k + rng.normal(0, 10, int(mask.sum()))
    return np.clip(image, 0, 255) * scale


def severstal(
    root: Path,
    train_form: str = "new",
    sample_form: str = "old",
    n_train: int = 24,
    n_test: int = 6,
    height: int = 32,
    width: int = 64,
    seed: int = 0,
) -> dict:
    """Severstal: train_images/, test_images/ (JPEG), train.csv in the newer form (ImageId,ClassId,
    EncodedPixels, rows only for present classes) or the older one (ImageId_ClassId,EncodedPixels, a row
    per image and class, empty cells), sample_submission.csv in the older key form ("0001.jpg_1", "1 1")
    or the newer ImageId,EncodedPixels,ClassId. RLE: column-major, 1-based starts. Returns the masks."""
    rng = np.random.default_rng(seed)
    for folder in ("train_images", "test_images"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    truth, rows = {}, []
    for i in range(n_train + n_test):
        split = "train" if i < n_train else "test"
        name = f"{i:04x}a{seed}.jpg"
        masks = _masks(rng, 4, height, width, 0.45 if i % 4 else 0.0)  # every 4th image without a defect
        cv2.imwrite(str(root / f"{split}_images" / name), _image(rng, masks, 1.0).astype(np.uint8))
        if split == "test":
            rows.append(name)
            continue
        truth[name] = masks
    train = []
    for name, masks in truth.items():
        for k, mask in enumerate(masks):
            rle = encode(mask, "column")
            if train_form == "old":
                train.append({"ImageId_ClassId": f"{name}_{k + 1}", "EncodedPixels": rle})
            elif rle:
                train.append({"ImageId": name, "ClassId": k + 1, "EncodedPixels": rle})
    pd.DataFrame(train).to_csv(root / "train.csv", index=False)
    if sample_form == "old":
        sample = pd.DataFrame(
            [{"ImageId_ClassId": f"{n}_{k}", "EncodedPixels": "1 1"} for n in rows for k in range(1, 5)]
        )
    else:
        sample = pd.DataFrame(
            [{"ImageId": n, "EncodedPixels": "1 1", "ClassId": k} for n in rows for k in range(1, 5)]
        )
    sample.to_csv(root / "sample_submission.csv", index=False)
    return truth


def uw_madison(
    root: Path,
    n_cases: int = 4,
    days: int = 2,
    slices: int = 4,
    size: int = 32,
    n_test_cases: int = 1,
    seed: int = 0,
    nested: bool = True,
) -> dict:
    """UW-Madison GI tract: train.csv (id,class,segmentation: a row per slice and class, the cell empty
    without a mask; RLE row-major, 1-based starts), 16-bit PNG slices named by their id under
    train/<case>/<case>_<day>/scans/ (or all in train/ and test/ with nested=False), a sample submission id,class,predicted over the test cases' slices."""
    rng = np.random.default_rng(seed)
    truth, train, sample = {}, [], []
    for case in range(1, n_cases + n_test_cases + 1):
        split = "train" if case <= n_cases else "test"
        for day in range(days):
            folder = (
                root / split / f"case{case}" / f"case{case}_day{day}" / "scans" if nested else root / split
            )
            folder.mkdir(parents=True, exist_ok=True)
            for s in range(1, slices + 1):
                ident = f"case{case}_day{day}_slice_{s:04d}"
                masks = _masks(rng, 3, size, size, 0.5)
                cv2.imwrite(str(folder / f"{ident}.png"), _image(rng, masks, 200.0).astype(np.uint16))
                for k, name in enumerate(UW_CLASSES):
                    if split == "train":
                        train.append({"id": ident, "class": name, "segmentation": encode(masks[k], "row")})
                    else:
                        sample.append({"id": ident, "class": name, "predicted": ""})
                if split == "train":
                    truth[ident] = masks
    pd.DataFrame(train).to_csv(root / "train.csv", index=False)
    pd.DataFrame(sample).to_csv(root / "sample_submission.csv", index=False)
    return truth
