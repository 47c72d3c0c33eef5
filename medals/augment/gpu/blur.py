"""Blurs with a per-sample kernel size: Blur (box), MotionBlur, MedianBlur, GaussianBlur.

Kernel sizes are odd and sampled like albumentations. Motion and Gaussian kernels are built per sample and
applied by one grouped conv with a reflect-101 border (as cv2.filter2D/sepFilter2D). The median equals
cv2.medianBlur on uint8 levels (replicate border; a bitwise search over the 8 bits of the value, no sort)
and runs once per distinct kernel size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import medals.augment.gpu.kernels as kernels
from medals.augment.gpu.kernels import median
from medals.augment.gpu.sampling import GpuOp, randint, to_device, uniform

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
    wt = to_device(torch.from_numpy(weight).to(x.dtype), x.device)
    wt = wt.unsqueeze(1).repeat_interleave(c, 0)  # [n*c, 1, k, k]
    pad = kmax // 2
    if pad >= min(h, w):
        raise ValueError(f"blur kernel {kmax} is too large for {h}x{w} images")
    xp = F.pad(x.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(xp, wt, groups=n * c).reshape(n, c, h, w)


def median_blur(x: torch.Tensor, ksize: int) -> torch.Tensor:
    """cv2.medianBlur (replicate border) for one odd kernel size, exact on the 0-255 levels.

    Values are rounded to uint8 levels first (cv2.medianBlur works on uint8; float inputs are on the
    0-255 scale). The median of the k*k neighbours is then found bit by bit, from the top: with the bits
    above b fixed (`prefix`), the candidate prefix | 2^b is at most the median exactly when no more than
    k*k // 2 neighbours lie below it. Each step counts, per pixel, the neighbours below the candidate
    over shifted views of the padded tensor: 8 * k*k elementwise compare-and-add passes on 1-byte data,
    with no sort and no unfolded copy.
    """
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"median kernel size must be odd and positive, got {ksize}")
    n, c, h, w = x.shape
    levels = x if x.dtype == torch.uint8 else x.round().clamp_(0, 255).to(torch.uint8)
    if ksize == 1:
        return levels.to(x.dtype)
    pad = ksize // 2
    xp = F.pad(levels, (pad, pad, pad, pad), mode="replicate")
    views = [xp[..., dy : dy + h, dx : dx + w] for dy in range(ksize) for dx in range(ksize)]
    area = ksize * ksize
    count_dtype = torch.uint8 if area <= 255 else torch.int16 if area <= 32767 else torch.int32
    count = torch.empty_like(levels, dtype=count_dtype)
    below = torch.empty_like(levels, dtype=torch.bool)
    prefix = torch.zeros_like(levels)
    for bit in range(7, -1, -1):
        candidate = prefix | (1 << bit)
        count.zero_()
        for view in views:
            torch.lt(view, candidate, out=below)
            count.add_(below)
        prefix = torch.where(count <= area // 2, candidate, prefix)
    return prefix.to(x.dtype)


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
        # sizes stay on the host: grouping by them needs no read back from the device
        sizes = sample_odd(*self.blur_limit, x.shape[0], g).cpu()
        levels = x if x.dtype == torch.uint8 else x.round().clamp(0, 255).to(torch.uint8)
        if kernels.ready("median", levels, torch.uint8):
            # one launch for every size (kernels.median), bit-exact with median_blur below
            on_device = to_device(sizes, x.device)
            out = kernels.attempt(
                "median", levels, median.median_levels, levels, on_device, dtype=torch.uint8
            )
            if out is not None:
                return out.to(x.dtype), m
        out = torch.empty_like(x)  # every sample gets one of the sizes
        for k in sizes.unique().tolist():
            idx = to_device((sizes == k).nonzero().squeeze(1), x.device)
            out[idx] = median_blur(levels[idx], int(k)).to(x.dtype)
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
