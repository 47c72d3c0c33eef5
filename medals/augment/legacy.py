"""Two parameters that albumentations < 1.4 had and 2.0.8 removed, re-derived from what they did.

- ElasticTransform's ``alpha_affine`` (albumentations 0.4.6 - 1.3): before the elastic displacement,
  a random affine warp. Three points of the (h, w) image, with c = (h // 2, w // 2) and s = min(h, w)
  // 3 taken as (x, y) pairs: c + s, (c0 + s, c1 - s) and c - s, each coordinate moved by its own
  U(-alpha_affine, alpha_affine) pixels; the affine mapping the three points onto the moved ones warps
  the image (cv2.warpAffine, the op's interpolation, border and fill; masks nearest). At the melanoma
  recipe's 0.4.6 default (50 px) with alpha 3 and sigma 50, this warp is nearly all of the op: the
  smoothed elastic field moves pixels by about 0.01 px.
- OpticalDistortion's ``shift_limit`` (0.4.6): dx and dy = round(U(-shift_limit, shift_limit)), in
  pixels (Python rounding), added to the camera centre (w / 2 + dx, h / 2 + dy) of the undistortion
  map, i.e. the distortion is centred dx, dy pixels away. At the 0.4.6 default 0.05 the rounding gives
  0 every time, so the melanoma solution's OpticalDistortion never shifted.

The three points and their affine are medals.augment.jitter's (HPA3's ElasticAffine, the same affine
as an op of its own). The GPU path (medals.augment.gpu.distortion) draws the same parameters; it applies the affine and the
elastic field as one coordinate map (one interpolation) instead of two warps.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.geometric import functional as fgeometric
from pydantic import Field

from medals.augment.jitter import jitter_matrix


def draw_affine(height: int, width: int, alpha_affine: float, rng: np.random.Generator) -> np.ndarray:
    """One random affine of magnitude alpha_affine: six offsets U(-a, a), then jitter_matrix."""
    offsets = rng.uniform(-alpha_affine, alpha_affine, size=(3, 2)).astype(np.float32)
    return jitter_matrix(height, width, offsets)


def warp_affine(image: np.ndarray, matrix: np.ndarray, interpolation: int, border: int, fill) -> np.ndarray:
    """cv2.warpAffine of a 2x3 matrix at the image's own size (albumentations' helper: any channel
    count, a fill per channel)."""
    full = np.vstack([np.asarray(matrix, dtype=np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])
    return fgeometric.warp_affine(image, full, interpolation, fill, border, image.shape[:2])


def draw_shift(shift_limit: tuple[float, float], rng) -> tuple[int, int]:
    """0.4.6's centre shift: each of dx, dy = round(U(lo, hi)) pixels (rng: a random.Random)."""
    lo, hi = shift_limit
    return round(rng.uniform(lo, hi)), round(rng.uniform(lo, hi))


def shifted_camera_maps(shape: tuple[int, int], k: float, dx: int, dy: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2.initUndistortRectifyMap with camera [[w, 0, w/2 + dx], [0, h, h/2 + dy]], k1 = k2 = k."""
    height, width = shape
    camera = np.array([[width, 0, width / 2 + dx], [0, height, height / 2 + dy], [0, 0, 1]], dtype=np.float32)
    distortion = np.array([k, k, 0, 0, 0], dtype=np.float32)
    return cv2.initUndistortRectifyMap(camera, distortion, None, None, (width, height), cv2.CV_32FC1)


def symmetric(limit: float | tuple[float, float]) -> tuple[float, float]:
    """A limit as albumentations reads it: x -> (-x, x); a pair as it is."""
    if isinstance(limit, (int, float)):
        return (-abs(float(limit)), abs(float(limit)))
    lo, hi = limit
    return (float(lo), float(hi))


class ShiftedOpticalDistortion(A.OpticalDistortion):
    """albumentations' OpticalDistortion with 0.4.6's ``shift_limit`` (pixels; see the module docstring).

    shift_limit 0 (the default) is 2.0.8's op. medals builds it for every `{name: OpticalDistortion}`.
    """

    class InitSchema(A.OpticalDistortion.InitSchema):
        shift_limit: float | tuple[float, float]

    def __init__(
        self,
        distort_limit: tuple[float, float] | float = (-0.05, 0.05),
        interpolation: int = cv2.INTER_LINEAR,
        mask_interpolation: int = cv2.INTER_NEAREST,
        mode: Literal["camera", "fisheye"] = "camera",
        keypoint_remapping_method: Literal["direct", "mask"] = "mask",
        p: float = 0.5,
        border_mode: int = cv2.BORDER_CONSTANT,
        fill: tuple[float, ...] | float = 0,
        fill_mask: tuple[float, ...] | float = 0,
        shift_limit: tuple[float, float] | float = 0.0,
    ):
        super().__init__(
            distort_limit=distort_limit,
            interpolation=interpolation,
            mask_interpolation=mask_interpolation,
            mode=mode,
            keypoint_remapping_method=keypoint_remapping_method,
            p=p,
            border_mode=border_mode,
            fill=fill,
            fill_mask=fill_mask,
        )
        self.shift_limit = symmetric(shift_limit)
        if self.shift_limit != (0.0, 0.0) and mode != "camera":
            raise ValueError("shift_limit needs mode 'camera' (0.4.6 shifted the camera centre)")

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        if self.shift_limit == (0.0, 0.0):
            return super().get_params_dependent_on_data(params, data)
        k = self.py_random.uniform(*self.distort_limit)
        dx, dy = draw_shift(self.shift_limit, self.py_random)
        map_x, map_y = shifted_camera_maps(params["shape"][:2], k, dx, dy)
        return {"map_x": map_x, "map_y": map_y, "k": k, "dx": dx, "dy": dy}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return (*super().get_transform_init_args_names(), "shift_limit")


class AffineThenRemap:
    """Mixin for a remap distortion: warp by params["affine"] first when it is there (alpha_affine)."""

    interpolation: int
    mask_interpolation: int
    border_mode: int
    fill: Any
    fill_mask: Any

    def apply(self, img: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, **params: Any) -> np.ndarray:
        affine = params.get("affine")
        if affine is not None:
            img = warp_affine(img, affine, self.interpolation, self.border_mode, self.fill)
        return super().apply(img, map_x, map_y, **params)  # type: ignore[misc]

    def apply_to_mask(
        self, mask: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, **params: Any
    ) -> np.ndarray:
        affine = params.get("affine")
        if affine is not None:
            mask = warp_affine(mask, affine, self.mask_interpolation, self.border_mode, self.fill_mask)
        return super().apply_to_mask(mask, map_x, map_y, **params)  # type: ignore[misc]


AlphaAffine = Annotated[float, Field(ge=0)]
