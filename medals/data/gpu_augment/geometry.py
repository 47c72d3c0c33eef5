"""Affine warps, and the grid_sample machinery that the distortions share.

Border modes: 0 constant (with `fill` / `fill_mask`), 1 replicate, 2/4 reflect. Approximation: reflect-101
borders become grid_sample's "reflection" (mirror about the edge, half a pixel off OpenCV's reflect-101).
Interpolation: 0 nearest, 1 bilinear.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from medals.data.gpu_augment.sampling import GpuOp, randint, uniform

_PADDING = {0: "zeros", 1: "border", 2: "reflection", 4: "reflection"}
_INTERP = {0: "nearest", 1: "bilinear"}


def padding_mode(border_mode: int) -> str:
    """cv2 border mode -> grid_sample padding_mode."""
    if border_mode not in _PADDING:
        raise NotImplementedError(
            f"border_mode {border_mode} (supported: 0 constant, 1 replicate, 2/4 reflect)"
        )
    return _PADDING[border_mode]


def interp_mode(flag: int, where: str) -> str:
    """cv2 interpolation flag -> grid_sample mode."""
    if flag not in _INTERP:
        raise NotImplementedError(f"{where} {flag} (supported: 0 nearest, 1 linear)")
    return _INTERP[flag]


def sample(
    t: torch.Tensor, grid: torch.Tensor, mode: str, padding: str, fill: float | Sequence[float]
) -> torch.Tensor:
    """grid_sample with a constant fill for zeros padding; keeps t's dtype."""
    src = t.to(grid.dtype)
    out = F.grid_sample(src, grid, mode=mode, padding_mode=padding, align_corners=False)
    fills = torch.as_tensor(fill, dtype=grid.dtype, device=t.device).reshape(1, -1, 1, 1)
    if padding == "zeros" and bool((fills != 0).any()):
        inside = F.grid_sample(
            torch.ones_like(src[:, :1]), grid, mode=mode, padding_mode="zeros", align_corners=False
        )
        out = out + (1 - inside) * fills
    if t.dtype.is_floating_point:
        return out.to(t.dtype)
    return out.round().to(t.dtype)


def pixel_maps_to_grid(map_x: torch.Tensor, map_y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Source pixel coordinates [n, H, W] (cv2.remap maps) -> grid_sample grid (align_corners=False)."""
    return torch.stack([(2 * map_x + 1) / w - 1, (2 * map_y + 1) / h - 1], -1)


def pixel_grid(n: int, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) pixel coordinates, float64 [n, H, W] each (expanded views)."""
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=device),
        torch.arange(w, dtype=torch.float64, device=device),
        indexing="ij",
    )
    return xs.expand(n, h, w), ys.expand(n, h, w)


def affine_matrices(
    h: int,
    w: int,
    scale_x: torch.Tensor,
    scale_y: torch.Tensor,
    rotate: torch.Tensor,
    tx: torch.Tensor,
    ty: torch.Tensor,
    shear_x: torch.Tensor | None = None,
    shear_y: torch.Tensor | None = None,
) -> torch.Tensor:
    """albumentations create_affine_transformation_matrix per sample ([n, 3, 3] float64, forward map)."""
    n = rotate.shape[0]
    dev = rotate.device
    eye = torch.eye(3, dtype=torch.float64, device=dev).expand(n, 3, 3)
    cx, cy = w / 2 - 0.5, h / 2 - 0.5
    to_origin = eye.clone()
    to_origin[:, 0, 2], to_origin[:, 1, 2] = -cx, -cy
    back = eye.clone()
    back[:, 0, 2], back[:, 1, 2] = cx, cy
    sc = eye.clone()
    sc[:, 0, 0], sc[:, 1, 1] = scale_x.double(), scale_y.double()
    r = torch.deg2rad(rotate.double() % 360)
    rot = eye.clone()
    rot[:, 0, 0], rot[:, 0, 1] = torch.cos(r), torch.sin(r)
    rot[:, 1, 0], rot[:, 1, 1] = -torch.sin(r), torch.cos(r)
    sh = eye.clone()
    if shear_x is not None and shear_y is not None:
        sh[:, 0, 1] = torch.tan(torch.deg2rad(shear_x.double()))
        sh[:, 1, 0] = torch.tan(torch.deg2rad(shear_y.double()))
    tr = eye.clone()
    tr[:, 0, 2], tr[:, 1, 2] = tx.double(), ty.double()
    return back @ tr @ sh @ rot @ sc @ to_origin


def warp_affine(
    t: torch.Tensor, matrix: torch.Tensor, mode: str = "bilinear", padding: str = "zeros", fill: Any = 0.0
) -> torch.Tensor:
    """cv2.warpAffine(t, matrix[:2]) per sample (forward pixel matrices [n, 3, 3]), same output size."""
    n, _, h, w = t.shape
    inv = torch.linalg.inv(matrix)
    dtype = t.dtype if t.dtype.is_floating_point else torch.float32
    xs, ys = pixel_grid(1, h, w, t.device)
    pts = torch.stack([xs[0], ys[0], torch.ones_like(xs[0])], 0).reshape(3, -1)
    src = inv[:, :2] @ pts  # [n, 2, H*W]
    grid = pixel_maps_to_grid(src[:, 0].reshape(n, h, w), src[:, 1].reshape(n, h, w), h, w)
    return sample(t, grid.to(dtype), mode, padding, fill)


class Affine(GpuOp):
    """albumentations' Affine matrix, warped with affine_grid-style sampling.

    scale (keep_ratio), translate_percent / translate_px (truncated to whole pixels), rotate and shear
    about the pixel centre (W/2 - 0.5, H/2 - 0.5); images by `interpolation`, masks by
    `mask_interpolation`. fit_output and balanced_scale are not supported.
    """

    def __init__(self, p, op):
        super().__init__(p)
        if op.fit_output:
            raise NotImplementedError("Affine(fit_output=True) is not supported on the GPU path")
        if op.balanced_scale:
            raise NotImplementedError("Affine(balanced_scale=True) is not supported on the GPU path")
        self.scale = op.scale
        self.keep_ratio = bool(op.keep_ratio)
        self.translate_percent = op.translate_percent
        self.translate_px = op.translate_px
        self.rotate = tuple(op.rotate)
        self.shear = op.shear
        self.mode = interp_mode(op.interpolation, "interpolation")
        self.mask_mode = interp_mode(op.mask_interpolation, "mask_interpolation")
        self.padding = padding_mode(op.border_mode)
        self.fill = op.fill
        self.fill_mask = op.fill_mask

    def params(self, n: int, h: int, w: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
        if self.translate_px is not None:
            tx = randint(n, *self.translate_px["x"], g, device).double()
            ty = randint(n, *self.translate_px["y"], g, device).double()
        elif self.translate_percent is not None:
            tx = torch.trunc(uniform(n, *self.translate_percent["x"], g, device) * w)
            ty = torch.trunc(uniform(n, *self.translate_percent["y"], g, device) * h)
        else:
            tx = ty = torch.zeros(n, dtype=torch.float64, device=device)
        shear_x = -uniform(n, *self.shear["x"], g, device)
        shear_y = -uniform(n, *self.shear["y"], g, device)
        sx = uniform(n, *self.scale["x"], g, device)
        sy = sx if self.keep_ratio else uniform(n, *self.scale["y"], g, device)
        rot = uniform(n, *self.rotate, g, device)
        return affine_matrices(h, w, sx, sy, rot, tx, ty, shear_x, shear_y)

    def apply(self, x, m, g):
        n, _, h, w = x.shape
        mat = self.params(n, h, w, g, x.device)
        x = warp_affine(x, mat, self.mode, self.padding, self.fill)
        if m is not None:
            m = warp_affine(m, mat, self.mask_mode, self.padding, self.fill_mask)
        return x, m
