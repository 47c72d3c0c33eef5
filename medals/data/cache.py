"""A resized uint8 .npy copy of every image: decoding a 1024 px JPEG or DICOM each epoch costs more than
training on a 256 px input, so prepare shrinks them once.
"""

from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medals.data.io import read_image
from medals.files import write_npy


def cache_name(image_id: str) -> str:
    """A file-system safe name for an id; ids that needed changes get a hash so they stay distinct."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", image_id)
    if safe != image_id or safe.startswith("."):
        safe = f"{safe}_{hashlib.sha1(image_id.encode()).hexdigest()[:8]}"
    return f"{safe}.npy"


def cache_path(cache_dir: Path, size: int, split: str, image_id: str) -> Path:
    # The size is part of the path, so a cache of another size is never mistaken for this one.
    return Path(cache_dir) / str(size) / split / cache_name(image_id)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """H x W x C -> size x size x C with INTER_AREA (aspect ratio not kept, as the models see squares)."""
    if image.shape[:2] == (size, size):
        return image
    if image.shape[2] <= 4:
        resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    else:  # cv2.resize takes at most 4 channels with INTER_AREA; do them in groups
        groups = [image[:, :, i : i + 4] for i in range(0, image.shape[2], 4)]
        resized = np.concatenate(
            [
                _as_3d(cv2.resize(np.ascontiguousarray(g), (size, size), interpolation=cv2.INTER_AREA))
                for g in groups
            ],
            axis=2,
        )
    return _as_3d(resized)


def _as_3d(image: np.ndarray) -> np.ndarray:
    return image[:, :, None] if image.ndim == 2 else image


def _write_one(source: str, target: Path, size: int) -> None:
    if target.exists():  # written atomically, so an existing file is complete
        return
    write_npy(target, np.ascontiguousarray(resize_square(read_image(source), size)))


def build_cache(table: pd.DataFrame, size: int, cache_dir: Path, workers: int | None = None) -> pd.DataFrame:
    """Write each image as a size x size uint8 .npy (resumable: existing files are kept).

    Returns a copy of the table whose ``path`` points at the cache files, with the original path in
    ``source_path``; ``height``/``width`` keep the original image size.
    """
    targets = [
        cache_path(cache_dir, size, split, str(i))
        for i, split in zip(table["id"], table["split"], strict=True)
    ]
    if len(set(targets)) != len(targets):
        raise ValueError("build_cache needs unique (id, split) pairs")
    # A table that already points at a cache is re-cached from its originals.
    sources = table["source_path" if "source_path" in table.columns else "path"].tolist()
    # cv2 decoding and resizing release the GIL, so threads use all cores without pickling images.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for _ in pool.map(lambda args: _write_one(*args, size), zip(sources, targets, strict=True)):
            pass
    out = table.copy()
    out["source_path"] = sources
    out["path"] = [str(t) for t in targets]
    return out
