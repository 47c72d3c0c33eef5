"""Channel counts of source images from their headers, and how an image is fitted to model.in_chans.

Decided per case (README "Images: what prepare accepts"), so a problem is found in prepare naming the
source file, never at training time naming a cache file:

- gray (1-bit, 8-bit, 16-bit or float; 16-bit and float are min-max scaled to 8-bit by medals.data.io)
  with model.in_chans 3: the plane is repeated three times;
- palette (P mode) PNGs: expanded to RGB by the decoder (to RGBA when the palette has transparency);
- 4 channels with model.in_chans 3 (RGBA, gray + alpha, a palette with transparency): the alpha plane
  is dropped, and prepare says for how many images;
- any other count that differs from model.in_chans (a 2-channel TIFF or .npy, RGB with in_chans 1 or
  4, ...): refused, naming the first such source file and how many there are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from medals.data.io import CV2_EXTS, DICOM_EXTS, NPY_EXTS, TIFF_EXTS, read_image, split_selector
from medals.errors import MedalsError

# PIL modes as the decoder (cv2 IMREAD_UNCHANGED) returns them: palette -> RGB, gray + alpha -> BGRA, CMYK
# JPEG -> BGR; "P" with transparency is counted apart.
_PIL_CHANNELS = {
    "1": 1,
    "L": 1,
    "I": 1,
    "I;16": 1,
    "I;16B": 1,
    "I;16L": 1,
    "F": 1,
    "P": 3,
    "PA": 4,
    "LA": 4,
    "La": 4,
    "RGB": 3,
    "RGBA": 4,
    "RGBa": 4,
    "CMYK": 3,
    "YCbCr": 3,
}


def _pil_channels(path: str) -> int | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode == "P" and "transparency" in image.info:
                return 4
            return _PIL_CHANNELS.get(image.mode)
    except Exception:  # unreadable headers: the decode below names the file
        return None


def _array_channels(shape: tuple[int, ...]) -> int:
    """Channels of an array as medals.data.io lays it out (squeezed, planar C x H x W detected)."""
    if len(shape) > 3:
        shape = tuple(n for n in shape if n != 1)
    if len(shape) == 3:
        return int(shape[0]) if shape[2] > 4 and shape[0] <= 4 else int(shape[2])
    return 1


def _one_file(path: str) -> int | None:
    ext = os.path.splitext(path)[1].lower()
    if ext in CV2_EXTS:
        return _pil_channels(path)
    try:
        if ext in TIFF_EXTS:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return _array_channels(tuple(tif.series[0].shape))
        if ext in DICOM_EXTS:
            import pydicom

            return int(getattr(pydicom.dcmread(path, stop_before_pixels=True), "SamplesPerPixel", 1) or 1)
        if ext in NPY_EXTS:
            return _array_channels(np.load(path, mmap_mode="r", allow_pickle=False).shape)
    except Exception:
        return None
    return None


def source_channels(path: str) -> int:
    """The channel count read_image gives for `path`, from headers where the format allows."""
    parts = str(path).split("|")
    if len(parts) > 1 or split_selector(parts[0])[1] is not None:
        return len(parts)  # channel files (and plane selectors) are one plane each
    found = _one_file(parts[0])
    # Unknown modes and unreadable headers: decode, which raises the reader's sentence for a bad file.
    return found if found is not None else read_image(path).shape[2]


def fits(channels: int, in_chans: int) -> bool:
    return channels == in_chans or (in_chans == 3 and channels in (1, 4))


def fit_channels(image: np.ndarray, in_chans: int, path: str) -> np.ndarray:
    """An H x W x C uint8 image with `in_chans` channels: gray repeated, alpha dropped (see above)."""
    channels = image.shape[2]
    if channels == in_chans:
        return image
    if in_chans == 3 and channels == 1:
        return np.repeat(image, 3, axis=2)
    if in_chans == 3 and channels == 4:
        return np.ascontiguousarray(image[:, :, :3])
    raise MedalsError(f"image {path} has {channels} channels but model.in_chans is {in_chans}")


def check_channels(paths: Sequence[str], in_chans: int) -> dict[int, int]:
    """{channel count: number of images} of the source images; MedalsError naming the first image whose
    channels cannot be fitted to model.in_chans."""
    with ThreadPoolExecutor(max_workers=min(16, 4 * (os.cpu_count() or 1))) as pool:
        counts = list(pool.map(source_channels, paths))
    bad = [i for i, n in enumerate(counts) if not fits(n, in_chans)]
    if bad:
        first = paths[bad[0]]
        others = f" (and {len(bad) - 1} more images)" if len(bad) > 1 else ""
        raise MedalsError(
            f"image {first} has {counts[bad[0]]} channels but model.in_chans is {in_chans}{others}: "
            f"save the images with {in_chans} channels or set model.in_chans"
        )
    return {n: counts.count(n) for n in sorted(set(counts))}


def channel_notes(counts: dict[int, int], in_chans: int) -> list[str]:
    """What fitting the counted images to model.in_chans does, one line per conversion."""
    notes = []
    if in_chans == 3 and counts.get(4):
        notes.append(f"{counts[4]} images have 4 channels (RGBA): their alpha channel is dropped")
    return notes
