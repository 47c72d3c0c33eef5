"""Affine: albumentations' matrix per sample, as a coordinate map (medals.augment.gpu.warp)."""

from __future__ import annotations

import torch

from medals.augment.gpu.sampling import randint, uniform
from medals.augment.gpu.warp import Warp, border_kind, interp_mode


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


class Affine(Warp):
    """albumentations' Affine matrix per sample.

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
        self.border = border_kind(op.border_mode)
        self.fill = op.fill
        self.fill_mask = op.fill_mask

    def matrices(self, n: int, h: int, w: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
        """Forward pixel matrices [n, 3, 3] (float64), drawn like albumentations."""
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

    def draw(self, n, h, w, g, device):
        return torch.linalg.inv(self.matrices(n, h, w, g, device))

    def inverse_matrix(self, params, h, w, device):
        return params
