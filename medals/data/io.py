"""Read competition images of any common medical format as uint8 H x W x C arrays.

``path`` may join several single-channel files with "|" (e.g. the red, green, blue and yellow planes of a
protein-atlas image); they are stacked in the given order.

A channel file may end in a plane selector, "#r", "#g", "#b" or "#lum" (e.g. "external/x_yellow.jpg#r"):
when a colour file is read as one channel, the selector picks its red, green or blue plane or its
luminance (the default for a colour channel file, so "#lum" only states it). The HPAv18 external set
stores each protein-atlas channel as an RGB JPEG, and solutions differ in which plane they took for
yellow. ``split_paths`` strips selectors, so existence checks and header reads see plain file names.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from medals.errors import MedalsError

CV2_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}
TIFF_EXTS = {".tif", ".tiff"}
DICOM_EXTS = {".dcm", ".dicom"}
NPY_EXTS = {".npy"}


# Plane selectors a channel file may end in: index into RGB, or None for luminance.
PLANE_SELECTORS: dict[str, int | None] = {"r": 0, "g": 1, "b": 2, "lum": None}


def split_selector(part: str) -> tuple[str, str | None]:
    """(file, selector) of one channel file; selector None when the name carries none."""
    head, sep, tail = part.rpartition("#")
    if sep and head and tail in PLANE_SELECTORS:
        return head, tail
    return part, None


def split_paths(path: str) -> list[str]:
    """The channel files of a (possibly "|"-joined) image path, plane selectors ("#r", ...) removed."""
    return [split_selector(part)[0] for part in str(path).split("|")]


def _ext(path: str) -> str:
    return Path(path).suffix.lower()


def _check_exists(path: str) -> None:
    if not os.path.isfile(path):
        raise MedalsError(f"image file {path} does not exist")


def _unreadable(path: str, reason: str | None = None) -> MedalsError:
    detail = f" ({reason})" if reason else ""
    return MedalsError(f"cannot read image {path}: corrupt or unsupported file{detail}")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale any numeric image to uint8.

    uint8 passes unchanged. Other types (16-bit, float, int) are min-max scaled per image: the useful
    range of 16-bit fluorescence and medical images varies a lot from image to image (a dim nucleus
    stain may use 0..900 of 65535), so a fixed divisor would leave most images nearly black.
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    data = array.astype(np.float32)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(array.shape, np.uint8)
    lo = float(data[finite].min())
    hi = float(data[finite].max())
    data[~finite] = lo
    if hi <= lo:  # a constant image carries no contrast
        return np.zeros(array.shape, np.uint8)
    scaled = (data - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _as_hwc(array: np.ndarray, path: str) -> np.ndarray:
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim == 3:
        # TIFF stacks are sometimes stored planar (C, H, W); channels are never the largest axis.
        if array.shape[2] > 4 and array.shape[0] <= 4:
            return np.ascontiguousarray(np.moveaxis(array, 0, 2))
        return array
    raise _unreadable(path, f"unsupported array shape {array.shape}")


def _read_cv2(path: str) -> np.ndarray:
    # imdecode of the bytes works for any path and, with IMREAD_UNCHANGED, keeps 16-bit depth and alpha
    # and does not apply EXIF rotation (so the size agrees with the header that image_size reads).
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise _unreadable(path)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return _as_hwc(image, path)


def _read_tiff(path: str) -> np.ndarray:
    import tifffile

    try:
        image = tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types for bad files
        raise _unreadable(path, _short(exc)) from None
    image = np.squeeze(image) if image.ndim > 3 else image
    return _as_hwc(image, path)


def _read_dicom(path: str) -> tuple[np.ndarray, bool]:
    """Pixel values in modality units (RescaleSlope/Intercept applied) and whether MONOCHROME1."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
        values = apply_modality_lut(pixels, ds)
    except Exception as exc:  # invalid file, missing pixel data, unavailable decoder ...
        raise _unreadable(path, _short(exc)) from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise _unreadable(path, f"multi-frame DICOM with {frames} frames")
    monochrome1 = str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1"
    return _as_hwc(np.asarray(values), path), monochrome1


def _read_npy(path: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise _unreadable(path, _short(exc)) from None
    return _as_hwc(array, path)


def _format(path: str) -> tuple[Callable[[str], np.ndarray], Callable[[str], tuple[int, int]]]:
    """(reader in the native dtype, header sizer) for a file's extension; the file must exist."""
    _check_exists(path)
    ext = _ext(path)
    for exts, reader, sizer in _FORMATS:
        if ext in exts:
            return reader, sizer
    raise _unreadable(path, f"unknown extension '{ext}'")


def _read_raw(path: str) -> np.ndarray:
    """One file in its native dtype as H x W x C."""
    return _format(path)[0](path)


def _read_one(path: str) -> np.ndarray:
    """One file as uint8 H x W x C; .npy cache files are returned as stored."""
    ext = _ext(path)
    if ext in NPY_EXTS:
        _check_exists(path)
        return _read_npy(path)
    if ext in DICOM_EXTS:
        _check_exists(path)
        values, monochrome1 = _read_dicom(path)
        image = to_uint8(values)
        # MONOCHROME1 stores low values as white: invert so that bright means dense everywhere.
        return 255 - image if monochrome1 else image
    return to_uint8(_read_raw(path))


def _single_channel(image: np.ndarray, selector: str | None = None) -> np.ndarray:
    """A channel file holding colour is reduced to its luminance (some datasets save gray as RGB), or
    to the plane its selector names. A selector on a one-channel file is ignored (all planes are equal).
    """
    if image.shape[2] == 1:
        return image[:, :, 0]
    plane = PLANE_SELECTORS.get(selector) if selector else None
    if plane is not None and plane < image.shape[2]:
        return np.ascontiguousarray(image[:, :, plane])
    if image.shape[2] in (3, 4):
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)
    return image[:, :, 0]


def _check_same_size(parts: list[str], sizes: list[tuple[int, int]]) -> None:
    for part, size in zip(parts[1:], sizes[1:], strict=True):
        if size != sizes[0]:
            raise MedalsError(
                f"channel files of one image differ in size: {parts[0]} is {sizes[0][0]}x{sizes[0][1]} "
                f"but {part} is {size[0]}x{size[1]}"
            )


def read_image(path: str) -> np.ndarray:
    """Read an image (or "|"-joined channel files) as uint8 H x W x C (RGB order for colour files).

    A file with a plane selector ("x.jpg#r") is read as that one plane (H x W x 1 when alone).
    """
    selected = [split_selector(part) for part in str(path).split("|")]
    parts = [part for part, _ in selected]
    if len(parts) == 1:
        part, selector = selected[0]
        image = _read_one(part)
        return image if selector is None else _single_channel(image, selector)[:, :, None]
    planes = [_single_channel(_read_one(part), selector) for part, selector in selected]
    _check_same_size(parts, [plane.shape[:2] for plane in planes])
    return np.stack(planes, axis=-1)


def read_mask(path: str) -> np.ndarray:
    """Read a mask file as bool H x W: any channel > 0 (raw values, so instance ids count too)."""
    parts = split_paths(path)
    masks = [(_read_raw(part) > 0).any(axis=2) for part in parts]
    _check_same_size(parts, [mask.shape for mask in masks])
    return np.logical_or.reduce(masks)


# ---- sizes from headers ------------------------------------------------------------------


def _size_pil(path: str) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        # Whole-slide sized images: PIL refuses them by default, so decode instead.
        return _read_raw(path).shape[:2]
    except Exception as exc:
        raise _unreadable(path, _short(exc)) from None
    return height, width


def _size_tiff(path: str) -> tuple[int, int]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            shape = tuple(tif.series[0].shape)
    except Exception as exc:
        raise _unreadable(path, _short(exc)) from None
    # Same axis interpretation as reading: squeeze extra axes, planar (C, H, W) detected the same way.
    if len(shape) > 3:
        shape = tuple(n for n in shape if n != 1)
    if len(shape) == 3 and shape[2] > 4 and shape[0] <= 4:
        shape = shape[1:]
    if len(shape) not in (2, 3):
        raise _unreadable(path, f"unsupported array shape {shape}")
    return int(shape[0]), int(shape[1])


def _size_dicom(path: str) -> tuple[int, int]:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return int(ds.Rows), int(ds.Columns)
    except Exception as exc:
        raise _unreadable(path, _short(exc)) from None


def _size_npy(path: str) -> tuple[int, int]:
    try:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    except Exception as exc:
        raise _unreadable(path, _short(exc)) from None
    if len(shape) not in (2, 3):
        raise _unreadable(path, f"unsupported array shape {shape}")
    return int(shape[0]), int(shape[1])


# Each format's extensions, reader (native dtype, H x W x C) and header sizer (height, width).
_FORMATS = (
    (CV2_EXTS, _read_cv2, _size_pil),
    (TIFF_EXTS, _read_tiff, _size_tiff),
    (DICOM_EXTS, lambda path: _read_dicom(path)[0], _size_dicom),
    (NPY_EXTS, _read_npy, _size_npy),
)


def _size_one(path: str) -> tuple[int, int]:
    return _format(path)[1](path)


def image_size(path: str) -> tuple[int, int]:
    """(height, width) from the file headers, without decoding pixels where the format allows.

    Raises the same MedalsError as read_image for missing and corrupt (unparseable header) files.
    """
    parts = split_paths(path)
    sizes = [_size_one(part) for part in parts]
    _check_same_size(parts, sizes)
    return sizes[0]


def file_size(path: str) -> int:
    """Bytes on disk of an image; for "|"-joined channel files the sum."""
    total = 0
    for part in split_paths(path):
        _check_exists(part)
        total += os.path.getsize(part)
    return total
