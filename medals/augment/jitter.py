"""ElasticAffine: the random affine that the ElasticTransform of albumentations 0.x applied first.

Before its elastic field, albumentations 0.x's ElasticTransform warped the image by the affine map that
sends three points to themselves plus a uniform jitter of up to ``alpha_affine`` pixels in each
coordinate: the centre (c = (h, w) // 2 in float32) plus and minus s = min(h, w) // 3 along the
diagonal, and the point c + (s, -s). albumentations 2 dropped ``alpha_affine``. HPA3's policies used
that op with alpha 1 and sigma 30..70, where the elastic field moves pixels by hundredths of a pixel,
so the affine is the whole effect (medals.augment.policy reproduces HPA3's op with this one alone).
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

from medals.errors import MedalsError


def jitter_points(height: int, width: int) -> np.ndarray:
    """The three anchor points [3, 2] (float32) of albumentations 0.x's random affine."""
    center = np.float32((height, width)) // 2
    side = min(height, width) // 3
    return np.float32([center + side, [center[0] + side, center[1] - side], center - side])


def jitter_matrix(height: int, width: int, jitter: np.ndarray) -> np.ndarray:
    """The 2x3 affine map taking the anchor points to themselves plus ``jitter`` [3, 2] (pixels)."""
    source = jitter_points(height, width)
    return cv2.getAffineTransform(source, (source + np.asarray(jitter)).astype(np.float32))


class ElasticAffine(A.DualTransform):
    """Warp by jitter_matrix with a jitter uniform in [-alpha_affine, alpha_affine] per coordinate."""

    def __init__(self, alpha_affine: float = 50.0, border_mode: int = cv2.BORDER_REFLECT_101, p: float = 0.5):
        super().__init__(p=p)
        self.alpha_affine = float(alpha_affine)
        self.border_mode = int(border_mode)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        jitter = self.random_generator.uniform(-self.alpha_affine, self.alpha_affine, size=(3, 2))
        return {"matrix": jitter_matrix(height, width, jitter)}

    def _warp(self, img: np.ndarray, matrix: np.ndarray, interpolation: int) -> np.ndarray:
        height, width = img.shape[:2]
        return cv2.warpAffine(img, matrix, (width, height), flags=interpolation, borderMode=self.border_mode)

    def apply(self, img: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        return self._warp(img, matrix, cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        return self._warp(mask, matrix, cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("alpha_affine", "border_mode")


def build_elastic_affine(kwargs: dict[str, Any], where: str) -> ElasticAffine:
    """The train.augment op `{name: ElasticAffine, alpha_affine: <pixels>, border_mode: <cv2 flag>, p}`."""
    unknown = set(kwargs) - {"alpha_affine", "border_mode", "p"}
    if unknown:
        raise MedalsError(
            f"{where}: unknown argument '{sorted(unknown)[0]}' (accepted: alpha_affine, border_mode, p)"
        )
    try:
        alpha = float(kwargs.get("alpha_affine", 50.0))
        p = float(kwargs.get("p", 0.5))
    except (TypeError, ValueError):
        raise MedalsError(f"{where}: alpha_affine and p must be numbers") from None
    if alpha < 0 or not 0 <= p <= 1:
        raise MedalsError(f"{where}: alpha_affine must be >= 0 and p in 0..1, got {alpha} and {p}")
    return ElasticAffine(alpha, int(kwargs.get("border_mode", cv2.BORDER_REFLECT_101)), p)
