"""Blurs with a per-sample kernel size: Blur (box), MotionBlur, MedianBlur, GaussianBlur.

Kernel sizes are odd and sampled like albumentations. Motion and Gaussian kernels are built per sample and
applied by one grouped conv with a reflect-101 border (as cv2.filter2D/sepFilter2D); the median uses a
replicate border like cv2.medianBlur and runs once per distinct kernel size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medals.data.gpu_augment.sampling import GpuOp, randint, uniform

CPU = torch.device("cpu")


def sample_odd(lo: int, hi: int, n: int, g: torch.Generator) -> torch.Tensor:
    """albumentations sample_odd_from_range, n times (on the CPU: kernel sizes steer Python code)."""
    lo = max(3, lo + (lo % 2 == 0))
    hi = max(3, hi + (hi % 2 == 0))
    hi = max(hi, lo)
    return lo + 2 * randint(n, 0, (hi - lo) // 2, g, CPU)


def gaussian_kernel_1d(sigma: float, ksize: int) -> np.ndarray:
    """albumentations create_gaussian_kernel_1d."""
    size = int(sigma * 3.5) * 2 + 1 if ksize == 0 else ksize
    size = size + 1 if size % 2 == 0 else size
    xs = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    k = np.exp(-0.5 * (xs / sigma) ** 2)
    return k / k.sum()


def motion_kernel(
    ksize: int, angle: float, direction: float, shift: tuple[float, float] | None
) -> np.ndarray:
    """albumentations create_motion_kernel with the random shift given (fractions in [-1, 1])."""
    direction = float(np.clip(direction, -1.0, 1.0))
    kernel = np.zeros((ksize, ksize), dtype=np.float32)
    center = ksize // 2
    rad = np.deg2rad(angle)
    dx, dy = np.cos(rad), np.sin(rad)
    half = ksize // 2
    if direction < 0:
        t0, t1 = float(-half), half * (1 - abs(direction))
    elif direction > 0:
        t0, t1 = -half * (1 - direction), float(half)
    else:
        t0, t1 = float(-half), float(half)
    t = np.linspace(t0, t1, ksize)
    xs, ys = center + dx * t, center + dy * t
    if shift is not None:
        xs = xs + shift[0] * half / 2
        ys = ys + shift[1] * half / 2
    xs = np.clip(np.round(xs), 0, ksize - 1).astype(int)
    ys = np.clip(np.round(ys), 0, ksize - 1).astype(int)
    kernel[ys, xs] = 1
    if not kernel.any():
        kernel[center, center] = 1
    return kernel / kernel.sum()


def filter_per_sample(x: torch.Tensor, kernels: list[np.ndarray]) -> torch.Tensor:
    """Correlate sample i with kernels[i] (2D, odd, may differ in size), reflect-101 border (cv2.filter2D)."""
    n, c, h, w = x.shape
    kmax = max(k.shape[0] for k in kernels)
    weight = np.zeros((n, kmax, kmax), dtype=np.float32)
    for i, k in enumerate(kernels):
        off = (kmax - k.shape[0]) // 2
        weight[i, off : off + k.shape[0], off : off + k.shape[1]] = k
    wt = torch.from_numpy(weight).to(x.device, x.dtype)
    wt = wt.unsqueeze(1).repeat_interleave(c, 0)  # [n*c, 1, k, k]
    pad = kmax // 2
    if pad >= min(h, w):
        raise ValueError(f"blur kernel {kmax} is too large for {h}x{w} images")
    xp = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(xp, wt, groups=n * c).reshape(n, c, h, w)


def median_blur(x: torch.Tensor, ksize: int, chunk_elems: int = 1 << 27) -> torch.Tensor:
    """cv2.medianBlur (replicate border) for one odd kernel size, in chunks of samples."""
    n, c, h, w = x.shape
    pad = ksize // 2
    per = max(1, chunk_elems // max(1, c * h * w * ksize * ksize))
    out = []
    for start in range(0, n, per):
        xp = F.pad(x[start : start + per], (pad, pad, pad, pad), mode="replicate")
        patches = xp.unfold(2, ksize, 1).unfold(3, ksize, 1)  # [b, c, h, w, k, k]
        out.append(patches.reshape(*patches.shape[:4], -1).median(-1).values)
    return torch.cat(out)


class Blur(GpuOp):
    """cv2.blur: a normalised box kernel of an odd size drawn per sample, reflect-101 border."""

    def __init__(self, p, blur_limit):
        super().__init__(p)
        self.blur_limit = tuple(blur_limit)

    def apply(self, x, m, g):
        sizes = sample_odd(*self.blur_limit, x.shape[0], g).tolist()
        kernels = [np.full((k, k), 1.0 / (k * k), dtype=np.float32) for k in sizes]
        return filter_per_sample(x, kernels), m


class MotionBlur(GpuOp):
    """albumentations' motion kernel (size, angle, direction, optional shift drawn per sample)."""

    def __init__(self, p, blur_limit, angle_range=(0, 360), direction_range=(-1.0, 1.0), allow_shifted=True):
        super().__init__(p)
        self.blur_limit = tuple(blur_limit)
        self.angle_range = tuple(angle_range)
        self.direction_range = tuple(direction_range)
        self.allow_shifted = bool(allow_shifted)

    def apply(self, x, m, g):
        n = x.shape[0]
        sizes = sample_odd(*self.blur_limit, n, g).tolist()
        angles = uniform(n, *self.angle_range, g, CPU).tolist()
        dirs = uniform(n, *self.direction_range, g, CPU).tolist()
        shifts = uniform(2 * n, -1.0, 1.0, g, CPU).reshape(n, 2).tolist()
        kernels = [
            motion_kernel(k, a, d, tuple(s) if self.allow_shifted else None)
            for k, a, d, s in zip(sizes, angles, dirs, shifts, strict=True)
        ]
        return filter_per_sample(x, kernels), m


class MedianBlur(GpuOp):
    def __init__(self, p, blur_limit):
        super().__init__(p)
        self.blur_limit = tuple(blur_limit)

    def apply(self, x, m, g):
        sizes = sample_odd(*self.blur_limit, x.shape[0], g).to(x.device)
        out = x.clone()
        for k in sizes.unique().tolist():
            idx = (sizes == k).nonzero().squeeze(1)
            out[idx] = median_blur(x[idx], int(k))
        return out, m


class GaussianBlur(GpuOp):
    """Kernel size drawn with randint over blur_limit then made odd, as albumentations does."""

    def __init__(self, p, blur_limit, sigma_limit):
        super().__init__(p)
        self.blur_limit = tuple(blur_limit)
        self.sigma_limit = tuple(sigma_limit)

    def apply(self, x, m, g):
        n = x.shape[0]
        sigmas = uniform(n, *self.sigma_limit, g, CPU).tolist()
        sizes = randint(n, *self.blur_limit, g, CPU).tolist()
        kernels = []
        for s, k in zip(sigmas, sizes, strict=True):
            k1 = gaussian_kernel_1d(s, int(k))
            kernels.append(np.outer(k1, k1))
        return filter_per_sample(x, kernels), m
