"""Elastic displacement fields on a coarse grid, and the CPU path's ElasticTransform that uses them.

albumentations draws noise at every pixel and smooths it with cv2.GaussianBlur of sigma: at the
recipes' sigma 50 that is a 401-tap kernel per axis, about half of the melanoma list's CPU time, for a
field that varies only over tens of pixels. The same random field can be drawn on a grid coarser by
f = floor(sigma / 4) (so sigma still spans >= 4 cells; the grid keeps >= 16 cells a side), smoothed
there and upsampled bilinearly. Smoothing white noise of variance v by a normalised 2-D Gaussian of
sigmas (sy, sx) leaves variance v / (4 pi sy sx); in grid cells the sigmas shrink by hc/h and wc/w, so
the coarse noise is scaled by sqrt(hc wc / (h w)) to keep the full-resolution field's variance, and its
correlation length is the same. For gaussian noise, the full-resolution construction divides by the
noise's maximum over c*h*w draws; the coarse one divides by that maximum's expected value. The fields
are another realisation of the same random field, not the full-resolution one's values. Smaller sigmas
keep albumentations' construction unchanged. The GPU path (medals.augment.gpu.distortion) builds
its fields the same way.

One difference is deliberate: albumentations smooths with a replicate border, and with a kernel as wide
as the image (401 taps at sigma 50 on a 512 px image) the few edge pixels then carry a large share of
every edge-near value: the fields' standard deviation along the borders grows several-fold above the
interior's (4x the plane value over a 768 px image, mostly within a kernel radius of the edges). The
coarse fields use a reflect-101 border and keep the interior's statistics everywhere. At the melanoma
recipes' alpha 3 both move pixels by well under one pixel.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Literal

import albumentations as A
import cv2
import numpy as np

from medals.augment.legacy import AffineThenRemap, AlphaAffine, draw_affine

COARSE_SIGMA = 4.0  # elastic noise is smoothed on a grid where sigma spans at least this many cells
COARSE_MIN_CELLS = 16  # and that grid keeps at least this many cells along each side


def coarse_factor(sigma: float, h: int, w: int) -> int:
    """Downscale factor of the grid the elastic noise is drawn and smoothed on (1: full resolution)."""
    return max(1, min(int(sigma // COARSE_SIGMA), min(h, w) // COARSE_MIN_CELLS))


def expected_max_abs_normal(count: int) -> float:
    """E[max |Z_i|] over `count` standard normals: the Gumbel limit, mode + Euler's gamma * scale."""
    t = -NormalDist().inv_cdf(0.5 / count)  # P(|Z| > t) = 1 / count
    density = 2 * math.exp(-t * t / 2) / math.sqrt(2 * math.pi)  # of |Z| at t
    return t + 0.5772156649015329 / (count * density)


def coarse_fields(
    shape: tuple[int, int], sigma: float, channels: int, noise: str, rng: np.random.Generator, factor: int
) -> np.ndarray:
    """Smoothed noise fields [channels, h, w] (float32, before alpha) drawn on a grid coarser by factor."""
    h, w = shape
    hc, wc = -(-h // factor), -(-w // factor)
    if noise == "gaussian":
        fields = rng.standard_normal((channels, hc, wc), dtype=np.float32)
        fields /= expected_max_abs_normal(channels * h * w)
    else:
        fields = rng.uniform(-1, 1, size=(channels, hc, wc)).astype(np.float32)
    fields *= math.sqrt(hc * wc / (h * w))
    out = np.empty((channels, h, w), dtype=np.float32)
    for k in range(channels):
        # ksize (0, 0): OpenCV's own kernel for sigma, as albumentations asks for; a reflect-101 border
        # (see the module docstring for why not albumentations' replicate border).
        smooth = cv2.GaussianBlur(
            fields[k], (0, 0), sigmaX=sigma * wc / w, sigmaY=sigma * hc / h, borderType=cv2.BORDER_REFLECT_101
        )
        out[k] = cv2.resize(smooth, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


class CoarseElasticTransform(AffineThenRemap, A.ElasticTransform):
    """albumentations' ElasticTransform with its fields drawn on a coarse grid when sigma >= 8, and
    albumentations < 1.4's ``alpha_affine`` (medals.augment.legacy: a random affine warp first).

    Same arguments, parameters and warping (cv2.remap of image and mask); only the construction of the
    displacement fields differs, as the module docstring says. medals builds it for every
    `{name: ElasticTransform}` of a recipe. alpha_affine 0 (the default) is 2.0.8's op.
    """

    class InitSchema(A.ElasticTransform.InitSchema):
        alpha_affine: AlphaAffine

    def __init__(
        self,
        alpha: float = 1,
        sigma: float = 50,
        interpolation: int = cv2.INTER_LINEAR,
        approximate: bool = False,
        same_dxdy: bool = False,
        mask_interpolation: int = cv2.INTER_NEAREST,
        noise_distribution: Literal["gaussian", "uniform"] = "gaussian",
        keypoint_remapping_method: Literal["direct", "mask"] = "mask",
        border_mode: int = cv2.BORDER_CONSTANT,
        fill: tuple[float, ...] | float = 0,
        fill_mask: tuple[float, ...] | float = 0,
        p: float = 0.5,
        alpha_affine: float = 0.0,
    ):
        super().__init__(
            alpha=alpha,
            sigma=sigma,
            interpolation=interpolation,
            approximate=approximate,
            same_dxdy=same_dxdy,
            mask_interpolation=mask_interpolation,
            noise_distribution=noise_distribution,
            keypoint_remapping_method=keypoint_remapping_method,
            border_mode=border_mode,
            fill=fill,
            fill_mask=fill_mask,
            p=p,
        )
        self.alpha_affine = float(alpha_affine)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        # 0.4.6 drew the affine before the fields.
        affine = (
            draw_affine(height, width, self.alpha_affine, self.random_generator)
            if self.alpha_affine
            else None
        )
        factor = coarse_factor(self.sigma, height, width)
        if factor == 1 or self.approximate:
            return {**super().get_params_dependent_on_data(params, data), "affine": affine}
        channels = 1 if self.same_dxdy else 2
        fields = coarse_fields(
            (height, width), self.sigma, channels, self.noise_distribution, self.random_generator, factor
        )
        fields *= self.alpha
        dx, dy = (fields[0], fields[0]) if self.same_dxdy else (fields[0], fields[1])
        xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
        return {"map_x": xs + dx, "map_y": ys + dy, "affine": affine}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return (*super().get_transform_init_args_names(), "alpha_affine")
