"""Non-affine warps: OpticalDistortion (mode "camera"), GridDistortion, ElasticTransform.

Each draws per-sample parameters and maps output coordinates to source coordinates (cv2.remap
semantics, pixels) as a medals.augment.gpu.warp.Warp; borders and interpolation as there.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from medals.augment.elastic import coarse_factor, expected_max_abs_normal
from medals.augment.gpu.sampling import to_device, uniform
from medals.augment.gpu.warp import COORD, Warp, border_kind, interp_mode
from medals.augment.jitter import jitter_matrix


class _Remap(Warp):
    """Interpolation, border and fills from the albumentations op."""

    def __init__(self, p, op):
        super().__init__(p)
        self.mode = interp_mode(op.interpolation, "interpolation")
        self.mask_mode = interp_mode(op.mask_interpolation, "mask_interpolation")
        self.border = border_kind(op.border_mode)
        self.fill = op.fill
        self.fill_mask = op.fill_mask


def lookup(table: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-sample tables [n, L] read at coordinates q [n, H, W] with linear interpolation."""
    n, size = table.shape
    q = q.clamp(0, size - 1)
    if size == 1:
        return table[:, :1, None].expand_as(q).clone()
    i0 = q.floor().long().clamp(max=size - 2)
    t = q - i0
    flat = i0.reshape(n, -1)
    v0 = table.gather(1, flat).reshape(q.shape)
    v1 = table.gather(1, flat + 1).reshape(q.shape)
    return v0 + t * (v1 - v0)


class OpticalDistortion(_Remap):
    """mode "camera": cv2.initUndistortRectifyMap with camera [[W,0,W/2+dx],[0,H,H/2+dy]], k1 = k2 = k;
    dx, dy = round(U(shift_limit)) pixels (albumentations 0.4.6's shift_limit, medals.augment.legacy;
    0 unless the op sets it)."""

    def __init__(self, p, op):
        super().__init__(p, op)
        if op.mode != "camera":
            raise NotImplementedError("OpticalDistortion: only mode 'camera' is supported on the GPU path")
        self.distort_limit = tuple(op.distort_limit)
        self.shift_limit = tuple(getattr(op, "shift_limit", (0.0, 0.0)))

    def draw(self, n, h, w, g, device):
        k = uniform(n, *self.distort_limit, g, device).to(COORD).reshape(n, 1, 1)
        if self.shift_limit == (0.0, 0.0):
            return k, None
        # torch.round is round-half-even, as Python's round that 0.4.6 used
        shift = torch.round(uniform(2 * n, *self.shift_limit, g, torch.device("cpu"))).reshape(n, 2, 1, 1)
        return k, to_device(shift.to(COORD), device)

    def points(self, params, x, y, h, w):
        k, shift = params
        # empty newCameraMatrix: OpenCV's default new camera centres the principal point at (W-1)/2, so
        # the camera centre's shift moves every source coordinate by (dx, dy)
        u, v = (x - (w - 1) / 2) / w, (y - (h - 1) / 2) / h
        r2 = u * u + v * v
        factor = 1 + k * r2 + k * r2 * r2
        qx, qy = u * factor * w + w / 2, v * factor * h + h / 2
        if shift is not None:
            qx, qy = qx + shift[:, 0], qy + shift[:, 1]
        return qx, qy


class GridDistortion(_Remap):
    """albumentations' piecewise-linear axis maps from per-cell steps 1 + U(distort_limit)."""

    def __init__(self, p, op):
        super().__init__(p, op)
        self.num_steps = int(op.num_steps)
        self.distort_limit = tuple(op.distort_limit)
        self.normalized = bool(op.normalized)

    @staticmethod
    def _axis(size: int, steps: list[float], num_steps: int) -> np.ndarray:
        step = size // num_steps
        out = np.zeros(size, np.float64)
        prev = 0.0
        for i, s in enumerate(steps):
            start = i * step
            end = min(start + step, size)
            cur = prev + step * s
            if end > start:
                out[start:end] = np.linspace(prev, cur, end - start)
            prev = cur
        return out

    def draw(self, n, h, w, g, device):
        from albumentations.augmentations.geometric.functional import normalize_grid_distortion_steps

        k = self.num_steps + 1
        steps = (1 + uniform(2 * n * k, *self.distort_limit, g, torch.device("cpu"))).reshape(n, 2, k)
        xx, yy = [], []
        for i in range(n):
            sx, sy = steps[i, 0].tolist(), steps[i, 1].tolist()
            if self.normalized:
                norm = normalize_grid_distortion_steps((h, w), self.num_steps, sx, sy)
                sx, sy = norm["steps_x"], norm["steps_y"]
            xx.append(self._axis(w, sx, self.num_steps))
            yy.append(self._axis(h, sy, self.num_steps))
        return tuple(to_device(torch.from_numpy(np.stack(axes)).to(COORD), device) for axes in (xx, yy))

    def points(self, tables, x, y, h, w):
        return lookup(tables[0], x), lookup(tables[1], y)


def gaussian_smooth(f: torch.Tensor, sigma_y: float, sigma_x: float) -> torch.Tensor:
    """Separable Gaussian of f [N, 1, H, W], truncated at 4 sigma and to the image, reflect border."""
    h, w = f.shape[-2:]
    for sigma, dim in ((sigma_x, 3), (sigma_y, 2)):
        radius = max(1, min(int(4 * sigma + 0.5), h - 1, w - 1))
        xs = torch.arange(-radius, radius + 1, dtype=torch.float32, device=f.device)
        k = torch.exp(-0.5 * (xs / sigma) ** 2)
        k = k / k.sum()
        if dim == 3:
            f = F.conv2d(F.pad(f, (radius, radius, 0, 0), mode="reflect"), k.reshape(1, 1, 1, -1))
        else:
            f = F.conv2d(F.pad(f, (0, 0, radius, radius), mode="reflect"), k.reshape(1, 1, -1, 1))
    return f


def coarse_fields(
    n: int,
    c: int,
    h: int,
    w: int,
    sigma: float,
    dist: str,
    g: torch.Generator,
    device,
) -> torch.Tensor:
    """Smoothed noise fields (float32, before alpha) on their grid: [n, c, ceil(h / f), ceil(w / f)] for
    the grid factor f = coarse_factor (1 is the full-resolution construction: noise at every pixel,
    smoothed by the Gaussian of sigma). Read at image coordinates with `field_points`."""
    factor = coarse_factor(sigma, h, w)
    hc, wc = -(-h // factor), -(-w // factor)
    shape = (n, c, hc, wc)
    if dist == "gaussian":
        f = to_device(torch.randn(shape, generator=g, device=g.device, dtype=torch.float32), device)
        if factor == 1:
            f = f / f.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
        else:  # the full-resolution noise would be divided by its maximum over c*h*w draws
            f = f / expected_max_abs_normal(c * h * w)
    else:
        f = 2 * to_device(torch.rand(shape, generator=g, device=g.device, dtype=torch.float32), device) - 1
    if factor == 1:
        return gaussian_smooth(f.reshape(n * c, 1, h, w), sigma, sigma).reshape(n, c, h, w)
    # Smoothing white noise of variance v by a normalised 2-D Gaussian of sigmas (sy, sx) leaves variance
    # v / (4 pi sy sx). In grid cells the sigmas shrink by hc/h and wc/w, so the coarse noise is scaled by
    # sqrt(hc wc / (h w)) to keep the full-resolution field's variance v / (4 pi sigma^2).
    f = f * math.sqrt(hc * wc / (h * w))
    f = gaussian_smooth(f.reshape(n * c, 1, hc, wc), sigma * hc / h, sigma * wc / w)
    return f.reshape(n, c, hc, wc)


def field_points(fields: torch.Tensor, x: torch.Tensor, y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Fields on their grid [n, c, hc, wc] read bilinearly at image coordinates x, y [n, H, W] of an
    (h, w) image: [n, c, H, W]. At the pixel centres this is F.interpolate(bilinear, align_corners=False)
    of the grid to (h, w), so a full-resolution grid gives its own values."""
    grid = torch.stack([(2 * x + 1) / w - 1, (2 * y + 1) / h - 1], -1)
    return F.grid_sample(fields, grid, mode="bilinear", padding_mode="border", align_corners=False)


class ElasticTransform(_Remap):
    """Uniform or gaussian noise fields smoothed by a Gaussian of `sigma`, scaled by `alpha`.

    Approximations: the Gaussian is truncated at 4 sigma and to the image (cv2 uses a longer kernel).
    For sigma >= 2 * COARSE_SIGMA the noise is drawn on a grid coarser by f = floor(sigma / COARSE_SIGMA)
    (so sigma still spans >= 4 cells, and the grid keeps >= 16 cells a side), smoothed there, and
    upsampled bilinearly to the image: smoothing at full resolution would take a kernel of 8 sigma + 1
    taps per axis (401 at sigma 50) for a field that varies only over tens of pixels. The coarse noise
    amplitude is scaled so the field keeps the full-resolution construction's standard deviation (for
    gaussian noise, the division by the noise's maximum becomes one by that maximum's expected value);
    its correlation length is the same, and the bilinear upsampling loses about 1% of the variance. The
    fields are another realisation of the same random field, not the full-resolution one's values.
    Smaller sigmas keep the full-resolution construction unchanged.

    With alpha_affine > 0 (albumentations < 1.4, medals.augment.legacy) each sample also draws the
    random affine of that magnitude, applied before the field: an output pixel x reads the source at
    A^-1 (x + d(x)). The CPU path warps twice (cv2.warpAffine, then cv2.remap), interpolating twice and
    resolving the border at each warp; here the composed map is sampled once, its border resolved at
    the source, which differs only where x + d(x) leaves the affine-warped image (d is under a pixel at
    the melanoma recipes' alpha 3).
    """

    def __init__(self, p, op):
        super().__init__(p, op)
        self.alpha = float(op.alpha)
        self.sigma = float(op.sigma)
        self.same = bool(op.same_dxdy)
        self.dist = op.noise_distribution
        self.alpha_affine = float(getattr(op, "alpha_affine", 0.0))

    def draw(self, n, h, w, g, device):
        inverse = None
        if self.alpha_affine:  # drawn first, as 0.4.6 did
            offsets = uniform(6 * n, -self.alpha_affine, self.alpha_affine, g, torch.device("cpu"))
            inverse = to_device(inverse_affines(h, w, offsets.reshape(n, 3, 2).numpy()), device)
        c = 1 if self.same else 2
        return coarse_fields(n, c, h, w, self.sigma, self.dist, g, device) * self.alpha, inverse

    def points(self, params, x, y, h, w):
        fields, inverse = params
        d = field_points(fields, x, y, h, w)
        qx, qy = x + d[:, 0], y + d[:, -1]
        if inverse is None:
            return qx, qy
        a = inverse.to(COORD)[:, :2, :, None, None]
        return a[:, 0, 0] * qx + a[:, 0, 1] * qy + a[:, 0, 2], a[:, 1, 0] * qx + a[:, 1, 1] * qy + a[:, 1, 2]


def inverse_affines(h: int, w: int, offsets: np.ndarray) -> torch.Tensor:
    """Output -> source matrices [n, 3, 3] (float64) of the 0.4.6 random affines for offsets [n, 3, 2]."""
    out = []
    for moved in offsets:
        forward = np.vstack([jitter_matrix(h, w, moved), [0.0, 0.0, 1.0]])
        out.append(np.linalg.inv(forward))
    return torch.from_numpy(np.stack(out))
