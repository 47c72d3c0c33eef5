"""Batched torch augmentation on the device, from the same `train.augment` spec as medals.data.augment_cpu.

`build_gpu_transform(spec, image_size, mean, std)` returns a GpuAugment: `aug(images, masks, generator)`
takes images [B, C, H, W] (uint8, or float on the 0-255 scale) and optional masks [B, 1, H, W] on any
device, applies every op of the spec with a per-sample Bernoulli(p) and per-sample parameters drawn from
the torch.Generator, then Resize(image_size) (bilinear without antialiasing like cv2.INTER_LINEAR; masks
nearest) and Normalize(mean, std, max 255). It returns (float32 images [B, C, S, S], masks or None).

The spec is first validated and normalised by albumentations 2.0.8 itself (augment_cpu.build_ops), so the
parameter ranges (symmetric limits, blur_limit rounding, child p weights of OneOf...) are read from the
albumentations objects and mean what they mean on the CPU path. Sampling follows albumentations 2.0.8:

- Transpose, VerticalFlip, HorizontalFlip: exact (Transpose needs square images).
- RandomBrightnessContrast: x * alpha + beta with alpha = 1 + U(contrast_limit), beta = U(brightness_limit)
  * 255 (brightness_by_max, the default) or * the image mean; ensure_safe_range as in albumentations;
  clipped to [0, 255]. No contrast centring (albumentations 2 does none either).
- HueSaturationValue: OpenCV uint8 semantics in continuous HSV (hue shift in OpenCV's 2-degree units,
  saturation and value shifts on the 0-255 scale, pixels with S == 0 keep S == 0); 1-channel images get
  the value shift only. Approximation: no uint8 rounding of the HSV planes.
- GaussNoise: N(mean, std) per pixel (per channel unless per_channel=False), std/mean drawn from
  std_range/mean_range as fractions of 255; noise_scale_factor < 1 draws the noise small and resizes it.
- MotionBlur, MedianBlur, GaussianBlur: per-sample kernel size (odd, sampled like albumentations);
  motion and Gaussian kernels are built per sample and applied by one grouped conv (reflect-101 border as
  cv2.filter2D/sepFilter2D); the median uses a replicate border like cv2.medianBlur, grouped by kernel size.
- Affine: albumentations' matrix (scale, keep_ratio, translate_percent/px truncated to whole pixels,
  rotate, shear about the pixel centre (W/2 - 0.5, H/2 - 0.5)), warped with affine_grid + grid_sample
  (images bilinear or nearest by `interpolation`, masks by `mask_interpolation`); border_mode 0 with
  `fill`/`fill_mask`, 1 replicate, 2/4 reflect. fit_output is not supported.
- CoarseDropout: hole counts/sizes/positions as albumentations (fractions of the side or pixels), numeric
  fill; masks are only filled when fill_mask is set (albumentations 2 default None: masks untouched).
- OneOf: Bernoulli(p) per sample, then one child per sample with probability proportional to the
  children's p; the chosen child is always applied (albumentations' force_apply).
- OpticalDistortion (mode "camera"), GridDistortion, ElasticTransform: displacement maps + grid_sample.
  Optical and grid maps follow albumentations' formulas; the elastic field is uniform/gaussian noise
  smoothed by a Gaussian of `sigma` truncated to the image (cv2 uses a longer kernel).
  Approximation for all three (and Affine with border 2/4): reflect-101 borders become grid_sample's
  "reflection" (mirror about the edge, half a pixel off OpenCV's reflect-101).

Everything runs in float on the 0-255 scale with clipping after the pixel ops, so the uint8 rounding
that the CPU path does between ops is not reproduced (differences below 1/255 after normalisation).
Not supported (NotImplementedError): CLAHE and any op not in SUPPORTED.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

MAX_VALUE = 255.0


def _rand(n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=g.device, dtype=torch.float64).to(device)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * _rand(n, g, device)


def _randint(n: int, lo: int, hi: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Integers in [lo, hi] inclusive (like random.randint)."""
    return torch.randint(int(lo), int(hi) + 1, (n,), generator=g, device=g.device).to(device)


def _randint_between(lo: torch.Tensor, hi: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per-element integers in [lo, hi] inclusive."""
    u = _rand(lo.numel(), g, lo.device).reshape(lo.shape)
    return (lo + torch.floor(u * (hi - lo + 1).double()).long()).clamp(max=hi)


class GpuOp:
    """One op: per-sample Bernoulli(p), then `apply` on the selected samples."""

    def __init__(self, p: float):
        self.p = float(p)

    def __call__(
        self, x: torch.Tensor, m: torch.Tensor | None, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        chosen = _rand(x.shape[0], g, x.device) < self.p
        return _apply_subset(self, chosen, x, m, g)

    def apply(
        self, x: torch.Tensor, m: torch.Tensor | None, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


def _apply_subset(
    op: GpuOp, chosen: torch.Tensor, x: torch.Tensor, m: torch.Tensor | None, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    idx = chosen.nonzero().squeeze(1)
    n = idx.numel()
    if n == 0:
        return x, m
    if n == x.shape[0]:
        return op.apply(x, m, g)
    xs, ms = op.apply(x[idx], None if m is None else m[idx], g)
    x = x.index_copy(0, idx, xs)
    if m is not None:
        m = m.index_copy(0, idx, ms)
    return x, m


# ----------------------------------------------------------------------------------------- dihedral


class Transpose(GpuOp):
    def apply(self, x, m, g):
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"Transpose on a batch needs square images, got {tuple(x.shape[-2:])}")
        return x.transpose(-2, -1), None if m is None else m.transpose(-2, -1)


class VerticalFlip(GpuOp):
    def apply(self, x, m, g):
        return x.flip(-2), None if m is None else m.flip(-2)


class HorizontalFlip(GpuOp):
    def apply(self, x, m, g):
        return x.flip(-1), None if m is None else m.flip(-1)


# ----------------------------------------------------------------------------------------- pixel ops


def brightness_contrast(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """albumentations 2 RandomBrightnessContrast.apply: clip(x * alpha + beta), beta in pixel units."""
    shape = (-1, 1, 1, 1)
    return (x * alpha.reshape(shape).to(x.dtype) + beta.reshape(shape).to(x.dtype)).clamp(0, MAX_VALUE)


class RandomBrightnessContrast(GpuOp):
    def __init__(self, p, brightness_limit, contrast_limit, brightness_by_max=True, ensure_safe_range=False):
        super().__init__(p)
        self.brightness_limit = tuple(brightness_limit)
        self.contrast_limit = tuple(contrast_limit)
        self.by_max = bool(brightness_by_max)
        self.safe = bool(ensure_safe_range)

    def apply(self, x, m, g):
        n = x.shape[0]
        alpha = 1.0 + _uniform(n, *self.contrast_limit, g, x.device)
        beta = _uniform(n, *self.brightness_limit, g, x.device)
        beta = beta * MAX_VALUE if self.by_max else beta * x.double().mean(dim=(1, 2, 3))
        if self.safe:
            pos = alpha > 0
            safe_beta = torch.where(pos, beta.clamp(0, MAX_VALUE), beta.clamp(max=MAX_VALUE))
            alpha = torch.where(
                pos,
                torch.minimum(alpha, (MAX_VALUE - safe_beta) / MAX_VALUE),
                torch.maximum(alpha, -safe_beta / MAX_VALUE),
            )
            beta = safe_beta
        return brightness_contrast(x, alpha, beta), m


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] RGB on 0-255 -> H in degrees [0, 360), S in [0, 1], V on 0-255."""
    r, gr, b = x.unbind(1)
    v, _ = x.max(1)
    mn, _ = x.min(1)
    delta = v - mn
    s = torch.where(v > 0, delta / v.clamp(min=1e-12), torch.zeros_like(v))
    d = delta.clamp(min=1e-12)
    h = torch.where(v == r, (gr - b) / d, torch.where(v == gr, 2.0 + (b - r) / d, 4.0 + (r - gr) / d))
    h = torch.where(delta > 0, (h * 60.0) % 360.0, torch.zeros_like(h))
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    h, s, v = hsv.unbind(1)
    h6 = (h % 360.0) / 60.0
    k = torch.stack([(5.0 + h6) % 6.0, (3.0 + h6) % 6.0, (1.0 + h6) % 6.0], 1)
    f = torch.minimum(k, 4.0 - k).clamp(0, 1)
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * f


def shift_hsv(x: torch.Tensor, hue: torch.Tensor, sat: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    """albumentations shift_hsv with OpenCV uint8 units (hue in 2-degree steps, sat/val on 0-255)."""
    shape = (-1, 1, 1)
    if x.shape[1] == 1:
        return (x + val.reshape(-1, 1, 1, 1).to(x.dtype)).clamp(0, MAX_VALUE)
    if x.shape[1] != 3:
        raise ValueError(f"HueSaturationValue needs 1 or 3 channels, got {x.shape[1]}")
    hsv = rgb_to_hsv(x)
    h, s, v = hsv.unbind(1)
    h = (h + 2.0 * hue.reshape(shape).to(x.dtype)) % 360.0
    s = torch.where(s > 0, (s + sat.reshape(shape).to(x.dtype) / MAX_VALUE).clamp(0, 1), s)
    v = (v + val.reshape(shape).to(x.dtype)).clamp(0, MAX_VALUE)
    return hsv_to_rgb(torch.stack([h, s, v], 1)).clamp(0, MAX_VALUE)


class HueSaturationValue(GpuOp):
    def __init__(self, p, hue_shift_limit, sat_shift_limit, val_shift_limit):
        super().__init__(p)
        self.limits = (tuple(hue_shift_limit), tuple(sat_shift_limit), tuple(val_shift_limit))

    def apply(self, x, m, g):
        n = x.shape[0]
        hue, sat, val = (_uniform(n, *lim, g, x.device) for lim in self.limits)
        return shift_hsv(x, hue, sat, val), m


class GaussNoise(GpuOp):
    def __init__(self, p, std_range, mean_range=(0.0, 0.0), per_channel=True, noise_scale_factor=1.0):
        super().__init__(p)
        self.std_range = tuple(std_range)
        self.mean_range = tuple(mean_range)
        self.per_channel = bool(per_channel)
        self.scale = float(noise_scale_factor)

    def apply(self, x, m, g):
        n, c, h, w = x.shape
        std = _uniform(n, *self.std_range, g, x.device).to(x.dtype) * MAX_VALUE
        mean = _uniform(n, *self.mean_range, g, x.device).to(x.dtype) * MAX_VALUE
        cn = c if self.per_channel else 1
        sh, sw = (h, w) if self.scale >= 1 else (max(1, int(h * self.scale)), max(1, int(w * self.scale)))
        noise = torch.randn((n, cn, sh, sw), generator=g, device=g.device, dtype=x.dtype).to(x.device)
        if (sh, sw) != (h, w):
            noise = F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)
        noise = noise * std.reshape(-1, 1, 1, 1) + mean.reshape(-1, 1, 1, 1)
        return (x + noise).clamp(0, MAX_VALUE), m


# ----------------------------------------------------------------------------------------- blurs


def sample_odd(lo: int, hi: int, n: int, g: torch.Generator) -> torch.Tensor:
    """albumentations sample_odd_from_range, n times (on the CPU: kernel sizes steer Python code)."""
    lo = max(3, lo + (lo % 2 == 0))
    hi = max(3, hi + (hi % 2 == 0))
    hi = max(hi, lo)
    return lo + 2 * _randint(n, 0, (hi - lo) // 2, g, torch.device("cpu"))


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


class MotionBlur(GpuOp):
    def __init__(self, p, blur_limit, angle_range=(0, 360), direction_range=(-1.0, 1.0), allow_shifted=True):
        super().__init__(p)
        self.blur_limit = tuple(blur_limit)
        self.angle_range = tuple(angle_range)
        self.direction_range = tuple(direction_range)
        self.allow_shifted = bool(allow_shifted)

    def apply(self, x, m, g):
        n = x.shape[0]
        cpu = torch.device("cpu")
        sizes = sample_odd(*self.blur_limit, n, g).tolist()
        angles = _uniform(n, *self.angle_range, g, cpu).tolist()
        dirs = _uniform(n, *self.direction_range, g, cpu).tolist()
        shifts = _uniform(2 * n, -1.0, 1.0, g, cpu).reshape(n, 2).tolist()
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
    def __init__(self, p, blur_limit, sigma_limit):
        super().__init__(p)
        self.blur_limit = tuple(blur_limit)
        self.sigma_limit = tuple(sigma_limit)

    def apply(self, x, m, g):
        n = x.shape[0]
        cpu = torch.device("cpu")
        sigmas = _uniform(n, *self.sigma_limit, g, cpu).tolist()
        sizes = _randint(n, *self.blur_limit, g, cpu).tolist()  # albumentations: randint, then made odd
        kernels = []
        for s, k in zip(sigmas, sizes, strict=True):
            k1 = gaussian_kernel_1d(s, int(k))
            kernels.append(np.outer(k1, k1))
        return filter_per_sample(x, kernels), m


# ----------------------------------------------------------------------------------------- geometry

_PADDING = {0: "zeros", 1: "border", 2: "reflection", 4: "reflection"}
_INTERP = {0: "nearest", 1: "bilinear"}


def _padding(border_mode: int) -> str:
    if border_mode not in _PADDING:
        raise NotImplementedError(
            f"border_mode {border_mode} (supported: 0 constant, 1 replicate, 2/4 reflect)"
        )
    return _PADDING[border_mode]


def _interp(flag: int, where: str) -> str:
    if flag not in _INTERP:
        raise NotImplementedError(f"{where} {flag} (supported: 0 nearest, 1 linear)")
    return _INTERP[flag]


def _sample(
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
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=t.device),
        torch.arange(w, dtype=torch.float64, device=t.device),
        indexing="ij",
    )
    pts = torch.stack([xs, ys, torch.ones_like(xs)], 0).reshape(3, -1)
    src = inv[:, :2] @ pts  # [n, 2, H*W]
    grid = pixel_maps_to_grid(src[:, 0].reshape(n, h, w), src[:, 1].reshape(n, h, w), h, w)
    return _sample(t, grid.to(dtype), mode, padding, fill)


class Affine(GpuOp):
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
        self.mode = _interp(op.interpolation, "interpolation")
        self.mask_mode = _interp(op.mask_interpolation, "mask_interpolation")
        self.padding = _padding(op.border_mode)
        self.fill = op.fill
        self.fill_mask = op.fill_mask

    def params(self, n: int, h: int, w: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
        if self.translate_px is not None:
            tx = _randint(n, *self.translate_px["x"], g, device).double()
            ty = _randint(n, *self.translate_px["y"], g, device).double()
        elif self.translate_percent is not None:
            tx = torch.trunc(_uniform(n, *self.translate_percent["x"], g, device) * w)
            ty = torch.trunc(_uniform(n, *self.translate_percent["y"], g, device) * h)
        else:
            tx = ty = torch.zeros(n, dtype=torch.float64, device=device)
        shear_x = -_uniform(n, *self.shear["x"], g, device)
        shear_y = -_uniform(n, *self.shear["y"], g, device)
        sx = _uniform(n, *self.scale["x"], g, device)
        sy = sx if self.keep_ratio else _uniform(n, *self.scale["y"], g, device)
        rot = _uniform(n, *self.rotate, g, device)
        return affine_matrices(h, w, sx, sy, rot, tx, ty, shear_x, shear_y)

    def apply(self, x, m, g):
        n, _, h, w = x.shape
        mat = self.params(n, h, w, g, x.device)
        x = warp_affine(x, mat, self.mode, self.padding, self.fill)
        if m is not None:
            m = warp_affine(m, mat, self.mask_mode, self.padding, self.fill_mask)
        return x, m


class _Remap(GpuOp):
    """Ops that build per-sample source maps (map_x, map_y) in pixels and remap image and mask."""

    def __init__(self, p, op):
        super().__init__(p)
        self.mode = _interp(op.interpolation, "interpolation")
        self.mask_mode = _interp(op.mask_interpolation, "mask_interpolation")
        self.padding = _padding(op.border_mode)
        self.fill = op.fill
        self.fill_mask = op.fill_mask

    def maps(self, n, h, w, g, device) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def apply(self, x, m, g):
        n, _, h, w = x.shape
        map_x, map_y = self.maps(n, h, w, g, x.device)
        dtype = x.dtype if x.dtype.is_floating_point else torch.float32
        grid = pixel_maps_to_grid(map_x, map_y, h, w).to(dtype)
        x = _sample(x, grid, self.mode, self.padding, self.fill)
        if m is not None:
            m = _sample(m, grid, self.mask_mode, self.padding, self.fill_mask)
        return x, m


def _pixel_grid(n: int, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=device),
        torch.arange(w, dtype=torch.float64, device=device),
        indexing="ij",
    )
    return xs.expand(n, h, w), ys.expand(n, h, w)


class OpticalDistortion(_Remap):
    """mode "camera": cv2.initUndistortRectifyMap with camera [[W,0,W/2],[0,H,H/2]], k1 = k2 = k."""

    def __init__(self, p, op):
        super().__init__(p, op)
        if op.mode != "camera":
            raise NotImplementedError("OpticalDistortion: only mode 'camera' is supported on the GPU path")
        self.distort_limit = tuple(op.distort_limit)

    def maps(self, n, h, w, g, device):
        k = _uniform(n, *self.distort_limit, g, device).reshape(n, 1, 1)
        xs, ys = _pixel_grid(n, h, w, device)
        # empty newCameraMatrix: OpenCV's default new camera centres the principal point at (W-1)/2
        u, v = (xs - (w - 1) / 2) / w, (ys - (h - 1) / 2) / h
        r2 = u * u + v * v
        factor = 1 + k * r2 + k * r2 * r2
        return u * factor * w + w / 2, v * factor * h + h / 2


class GridDistortion(_Remap):
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
        steps = (1 + _uniform(2 * n * k, *self.distort_limit, g, torch.device("cpu"))).reshape(n, 2, k)
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
        gx, gy = _pixel_grid(n, h, w, device)
        return gx + dx, gy + dy


class CoarseDropout(GpuOp):
    def __init__(self, p, op):
        super().__init__(p)
        for key in ("fill", "fill_mask"):
            if isinstance(getattr(op, key), str):
                raise NotImplementedError(f"CoarseDropout {key}={getattr(op, key)!r}: only numeric fills")
        self.num_holes = tuple(op.num_holes_range)
        self.h_range = tuple(op.hole_height_range)
        self.w_range = tuple(op.hole_width_range)
        self.fill = op.fill
        self.fill_mask = op.fill_mask

    def holes(self, n: int, h: int, w: int, g: torch.Generator, device) -> tuple[torch.Tensor, ...]:
        """(x0, y0, x1, y1, valid) each [n, max_holes]."""
        k = self.num_holes[1]
        count = _randint(n, *self.num_holes, g, device)
        if self.h_range[1] >= 1:
            lo_h = torch.full((n, k), int(self.h_range[0]), device=device)
            lo_w = torch.full((n, k), int(self.w_range[0]), device=device)
            hh = _randint_between(lo_h, torch.full_like(lo_h, int(min(self.h_range[1], h))), g)
            ww = _randint_between(lo_w, torch.full_like(lo_w, int(min(self.w_range[1], w))), g)
        else:
            hh = (h * _uniform(n * k, *self.h_range, g, device)).long().reshape(n, k)
            ww = (w * _uniform(n * k, *self.w_range, g, device)).long().reshape(n, k)
        y0 = _randint_between(torch.zeros_like(hh), h - hh, g)
        x0 = _randint_between(torch.zeros_like(ww), w - ww, g)
        valid = torch.arange(k, device=device)[None] < count[:, None]
        return x0, y0, x0 + ww, y0 + hh, valid

    def apply(self, x, m, g):
        n, _, h, w = x.shape
        x0, y0, x1, y1, valid = self.holes(n, h, w, g, x.device)
        ys = torch.arange(h, device=x.device).reshape(1, 1, h, 1)
        xs = torch.arange(w, device=x.device).reshape(1, 1, 1, w)
        e = (..., None, None)
        inside = (ys >= y0[e]) & (ys < y1[e]) & (xs >= x0[e]) & (xs < x1[e]) & valid[e]
        hole = inside.any(1, keepdim=True)  # [n, 1, H, W]
        fill = torch.as_tensor(self.fill, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
        x = torch.where(hole, fill, x)
        if m is not None and self.fill_mask is not None:
            fm = torch.as_tensor(self.fill_mask, device=m.device).to(m.dtype).reshape(1, -1, 1, 1)
            m = torch.where(hole, fm, m)
        return x, m


class OneOf(GpuOp):
    def __init__(self, p, children: list[GpuOp], weights: Sequence[float]):
        super().__init__(p)
        self.children = children
        w = torch.tensor(list(weights), dtype=torch.float64)
        self.weights = w / w.sum()

    def apply(self, x, m, g):
        n = x.shape[0]
        choice = torch.multinomial(
            self.weights.to(g.device).expand(n, -1), 1, replacement=True, generator=g
        ).squeeze(1)
        choice = choice.to(x.device)
        for i, child in enumerate(self.children):
            x, m = _apply_subset(child, choice == i, x, m, g)
        return x, m


# ----------------------------------------------------------------------------------------- building


def _simple(cls):
    def build(op):
        return cls(op.p)

    return build


def _attrs(cls, names):
    def build(op):
        return cls(op.p, *(getattr(op, k) for k in names))

    return build


def _with_op(cls):
    def build(op):
        return cls(op.p, op)

    return build


_BUILDERS = {
    "Transpose": _simple(Transpose),
    "VerticalFlip": _simple(VerticalFlip),
    "HorizontalFlip": _simple(HorizontalFlip),
    "RandomBrightnessContrast": _attrs(
        RandomBrightnessContrast,
        ["brightness_limit", "contrast_limit", "brightness_by_max", "ensure_safe_range"],
    ),
    "HueSaturationValue": _attrs(
        HueSaturationValue, ["hue_shift_limit", "sat_shift_limit", "val_shift_limit"]
    ),
    "GaussNoise": _attrs(GaussNoise, ["std_range", "mean_range", "per_channel", "noise_scale_factor"]),
    "MotionBlur": _attrs(MotionBlur, ["blur_limit", "angle_range", "direction_range", "allow_shifted"]),
    "MedianBlur": _attrs(MedianBlur, ["blur_limit"]),
    "GaussianBlur": _attrs(GaussianBlur, ["blur_limit", "sigma_limit"]),
    "Affine": _with_op(Affine),
    "OpticalDistortion": _with_op(OpticalDistortion),
    "GridDistortion": _with_op(GridDistortion),
    "ElasticTransform": _with_op(ElasticTransform),
    "CoarseDropout": _with_op(CoarseDropout),
}
SUPPORTED = (*_BUILDERS, "OneOf")


def _convert(op: Any) -> GpuOp:
    name = type(op).__name__
    if name == "OneOf":
        children = [_convert(t) for t in op.transforms]
        return OneOf(op.p, children, op.transforms_ps)
    if name not in _BUILDERS:
        raise NotImplementedError(
            f"augmentation op '{name}' has no GPU version (supported: {', '.join(SUPPORTED)})"
        )
    return _BUILDERS[name](op)


class GpuAugment:
    """Spec ops, then Resize(image_size) and Normalize(mean, std, max 255), on [B, C, H, W] batches."""

    def __init__(self, ops: list[GpuOp], image_size: int, mean: Sequence[float], std: Sequence[float]):
        self.ops = ops
        self.image_size = int(image_size)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)

    def __call__(
        self,
        images: torch.Tensor,
        masks: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if images.ndim != 4:
            raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
        if masks is not None and (masks.ndim != 4 or masks.shape[0] != images.shape[0]):
            raise ValueError(f"masks must be [B, 1, H, W] like the images, got {tuple(masks.shape)}")
        if len(self.mean) != images.shape[1] or len(self.std) != images.shape[1]:
            raise ValueError(f"mean/std have {len(self.mean)} values, the images {images.shape[1]} channels")
        if generator is None:
            generator = torch.Generator(device=images.device)
            generator.seed()
        x = images.float()
        m = masks
        for op in self.ops:
            x, m = op(x, m, generator)
        s = self.image_size
        if tuple(x.shape[-2:]) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=False)
            if m is not None:
                m = F.interpolate(m.float(), size=(s, s), mode="nearest").to(m.dtype)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
        return (x / MAX_VALUE - mean) / std, m


def build_gpu_transform(
    spec: list[dict] | None, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> GpuAugment:
    """The batched device pipeline for a `train.augment` spec (validated by albumentations first)."""
    from medals.data.augment_cpu import build_ops

    return GpuAugment([_convert(op) for op in build_ops(spec)], image_size, mean, std)
