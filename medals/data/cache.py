"""A resized uint8 copy of every image: decoding a 1024 px JPEG or DICOM each epoch costs more than
training on a 256 px input, so prepare shrinks them once.

Two formats: ``npy`` (any number of channels, fastest to read) and ``png`` (8-bit, 1, 3 or 4 channels,
smaller on disk; from DICOM this is the usual DICOM -> PNG conversion, with the DICOM rules of
``read_image`` applied: rescale, min-max window, MONOCHROME1 inverted).
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
from medals.errors import MedalsError
from medals.files import atomic_write, write_npy

FORMATS = ("npy", "png")


def cache_name(image_id: str, fmt: str = "npy") -> str:
    """A file-system safe name for an id; ids that needed changes get a hash so they stay distinct."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", image_id)
    if safe != image_id or safe.startswith("."):
        safe = f"{safe}_{hashlib.sha1(image_id.encode()).hexdigest()[:8]}"
    return f"{safe}.{fmt}"


def cache_folder(size: int, fmt: str = "npy") -> str:
    """``<size>`` for npy (the original layout, so existing caches stay valid), ``<size>_<fmt>`` otherwise."""
    return str(size) if fmt == "npy" else f"{size}_{fmt}"


def cache_path(cache_dir: Path, size: int, split: str, image_id: str, fmt: str = "npy") -> Path:
    # Size and format are part of the path, so a cache of another size or format is never mistaken for this.
    return Path(cache_dir) / cache_folder(size, fmt) / split / cache_name(image_id, fmt)


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


def write_png(path: Path, image: np.ndarray, source: str = "") -> Path:
    """Write a uint8 H x W x C image (C 1, 3 or 4, RGB(A) order) as PNG, atomically."""
    channels = image.shape[2]
    if channels not in (1, 3, 4):
        raise MedalsError(
            f"image {source or path} has {channels} channels, which PNG cannot hold (1, 3 or 4): "
            "set data.cache_format to npy"
        )
    if channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif channels == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(".png", image if channels > 1 else image[:, :, 0])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 1/3/4-channel array
        raise MedalsError(f"cannot encode {source or path} as PNG")
    # imencode, not imwrite: the temporary file of an atomic write has no .png extension.
    return atomic_write(path, lambda tmp: tmp.write_bytes(encoded.tobytes()))


def _write_one(source: str, target: Path, size: int, fmt: str) -> None:
    if target.exists():  # written atomically, so an existing file is complete
        return
    image = np.ascontiguousarray(resize_square(read_image(source), size))
    if fmt == "png":
        write_png(target, image, source)
    else:
        write_npy(target, image)


def build_cache(
    table: pd.DataFrame, size: int, cache_dir: Path, workers: int | None = None, fmt: str = "npy"
) -> pd.DataFrame:
    """Write each image as a size x size uint8 .npy or .png (resumable: existing files are kept).

    Returns a copy of the table whose ``path`` points at the cache files, with the original path in
    ``source_path``; ``height``/``width`` keep the original image size.
    """
    if fmt not in FORMATS:
        raise MedalsError(f"cache format '{fmt}' is not one of {', '.join(FORMATS)}")
    targets = [
        cache_path(cache_dir, size, split, str(i), fmt)
        for i, split in zip(table["id"], table["split"], strict=True)
    ]
    if len(set(targets)) != len(targets):
        raise ValueError("build_cache needs unique (id, split) pairs")
    # A table that already points at a cache is re-cached from its originals.
    sources = table["source_path" if "source_path" in table.columns else "path"].tolist()
    # cv2 decoding and resizing release the GIL, so threads use all cores without pickling images.
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for _ in pool.map(lambda args: _write_one(*args, size, fmt), zip(sources, targets, strict=True)):
            pass
    out = table.copy()
    out["source_path"] = sources
    out["path"] = [str(t) for t in targets]
    return out
