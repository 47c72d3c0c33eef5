"""Non-affine warps: OpticalDistortion (mode "camera"), GridDistortion, ElasticTransform.

Each builds per-sample source maps (cv2.remap semantics, pixels) and samples image and mask with
grid_sample; borders and interpolation as in geometry (reflect-101 approximated by "reflection").
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medals.data.gpu_augment.geometry import (
    interp_mode,
    padding_mode,
    pixel_grid,
    pixel_maps_to_grid,
    sample,
)
from medals.data.gpu_augment.sampling import GpuOp, uniform


class _Remap(GpuOp):
    """Ops that build per-sample source maps (map_x, map_y) in pixels and remap image and mask."""

    def __init__(self, p, op):
        super().__init__(p)
        self.mode = interp_mode(op.interpolation, "interpolation")
        self.mask_mode = interp_mode(op.mask_interpolation, "mask_interpolation")
        self.padding = padding_mode(op.border_mode)
        self.fill = op.fill
        self.fill_mask = op.fill_mask

    def maps(self, n, h, w, g, device) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def apply(self, x, m, g):
        n, _, h, w = x.shape
        map_x, map_y = self.maps(n, h, w, g, x.device)
        dtype = x.dtype if x.dtype.is_floating_point else torch.float32
        grid = pixel_maps_to_grid(map_x, map_y, h, w).to(dtype)
        x = sample(x, grid, self.mode, self.padding, self.fill)
        if m is not None:
            m = sample(m, grid, self.mask_mode, self.padding, self.fill_mask)
        return x, m


class OpticalDistortion(_Remap):
    """mode "camera": cv2.initUndistortRectifyMap with camera [[W,0,W/2],[0,H,H/2]], k1 = k2 = k."""

    def __init__(self, p, op):
        super().__init__(p, op)
        if op.mode != "camera":
            raise NotImplementedError("OpticalDistortion: only mode 'camera' is supported on the GPU path")
        self.distort_limit = tuple(op.distort_limit)

    def maps(self, n, h, w, g, device):
        k = uniform(n, *self.distort_limit, g, device).reshape(n, 1, 1)
        xs, ys = pixel_grid(n, h, w, device)
        # empty newCameraMatrix: OpenCV's default new camera centres the principal point at (W-1)/2
        u, v = (xs - (w - 1) / 2) / w, (ys - (h - 1) / 2) / h
        r2 = u * u + v * v
        factor = 1 + k * r2 + k * r2 * r2
        return u * factor * w + w / 2, v * factor * h + h / 2


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

    def maps(self, n, h, w, g, device):
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
        xt = torch.from_numpy(np.stack(xx)).to(device)
        yt = torch.from_numpy(np.stack(yy)).to(device)
        return xt[:, None, :].expand(n, h, w), yt[:, :, None].expand(n, h, w)


class ElasticTransform(_Remap):
    """Uniform or gaussian noise fields smoothed by a Gaussian of `sigma`, scaled by `alpha`.

    Approximation: the Gaussian is truncated at 4 sigma and to the image (cv2 uses a longer kernel).
    """

    def __init__(self, p, op):
        super().__init__(p, op)
        self.alpha = float(op.alpha)
        self.sigma = float(op.sigma)
        self.same = bool(op.same_dxdy)
        self.dist = op.noise_distribution

    def maps(self, n, h, w, g, device):
        c = 1 if self.same else 2
        shape = (n, c, h, w)
        if self.dist == "gaussian":
            f = torch.randn(shape, generator=g, device=g.device, dtype=torch.float32).to(device)
            f = f / f.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
        else:
            f = 2 * torch.rand(shape, generator=g, device=g.device, dtype=torch.float32).to(device) - 1
        radius = max(1, min(int(4 * self.sigma + 0.5), h - 1, w - 1))
        xs = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
        k = torch.exp(-0.5 * (xs / self.sigma) ** 2)
        k = k / k.sum()
        f = f.reshape(n * c, 1, h, w)
        f = F.conv2d(F.pad(f, (radius, radius, 0, 0), mode="reflect"), k.reshape(1, 1, 1, -1))
        f = F.conv2d(F.pad(f, (0, 0, radius, radius), mode="reflect"), k.reshape(1, 1, -1, 1))
        f = (f.reshape(n, c, h, w) * self.alpha).double()
        dx, dy = (f[:, 0], f[:, 0]) if self.same else (f[:, 0], f[:, 1])
        gx, gy = pixel_grid(n, h, w, device)
        return gx + dx, gy + dy
