"""Colour ops on the 0-255 scale: RandomBrightnessContrast, RandomGamma and HueSaturationValue."""

from __future__ import annotations

import torch

import medals.augment.gpu.kernels as kernels
from medals.augment.gpu.kernels import hsv as hsv_kernel
from medals.augment.gpu.kernels import pointwise
from medals.augment.gpu.sampling import MAX_VALUE, GpuOp, host_rand, to_device, uniform

CPU = torch.device("cpu")


def brightness_contrast(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """albumentations 2 RandomBrightnessContrast.apply: clip(x * alpha + beta), beta in pixel units.

    On CUDA with Triton, one fused pass (kernels.pointwise); this eager form is its reference.
    """
    if (
        out := kernels.attempt(
            "brightness_contrast", x, pointwise.brightness_contrast, x, alpha, beta, MAX_VALUE
        )
    ) is not None:
        return out
    shape = (-1, 1, 1, 1)
    return (x * alpha.reshape(shape).to(x.dtype) + beta.reshape(shape).to(x.dtype)).clamp(0, MAX_VALUE)


class RandomBrightnessContrast(GpuOp):
    """x * alpha + beta with alpha = 1 + U(contrast_limit), beta = U(brightness_limit) * 255.

    beta is scaled by 255 with brightness_by_max (the default), else by the image mean; ensure_safe_range
    as in albumentations; clipped to [0, 255]. No contrast centring (albumentations 2 does none either).
    """

    def __init__(self, p, brightness_limit, contrast_limit, brightness_by_max=True, ensure_safe_range=False):
        super().__init__(p)
        self.brightness_limit = tuple(brightness_limit)
        self.contrast_limit = tuple(contrast_limit)
        self.by_max = bool(brightness_by_max)
        self.safe = bool(ensure_safe_range)

    def apply(self, x, m, g):
        alpha, beta = self.draw(x.shape[0], g, x.device, x)
        return brightness_contrast(x, alpha, beta), m

    def draw(
        self, n: int, g: torch.Generator, device: torch.device, x: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, beta) in float64 for n samples on `device`; x (the samples) is read only when the
        brightness is scaled by the image mean (brightness_by_max false)."""
        alpha = 1.0 + uniform(n, *self.contrast_limit, g, device)
        beta = uniform(n, *self.brightness_limit, g, device)
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
        return alpha, beta


class FusedBrightnessContrast:
    """Consecutive RandomBrightnessContrast ops (brightness scaled by 255) as one pass on CUDA with Triton
    (kernels.pointwise.brightness_contrast_chain); elsewhere they run one by one.

    Each op's choice of samples and its parameters are drawn in order exactly as op by op (on the host,
    from the same generator), so the result is the one the ops give one after another.
    """

    def __init__(self, ops: list[RandomBrightnessContrast]):
        if any(not op.by_max for op in ops):
            raise ValueError("only ops with brightness_by_max fuse: the others read the image mean")
        self.ops = list(ops)

    def __repr__(self) -> str:
        return f"FusedBrightnessContrast({len(self.ops)} ops)"

    def __call__(self, x, m, g):
        if not kernels.ready("brightness_contrast_chain", x):
            for op in self.ops:
                x, m = op(x, m, g)
            return x, m
        n, steps = x.shape[0], len(self.ops)
        alpha = torch.ones((steps, n), dtype=torch.float64)
        beta = torch.zeros((steps, n), dtype=torch.float64)
        on = torch.zeros((steps, n), dtype=torch.int8)
        for k, op in enumerate(self.ops):
            picked = (host_rand(n, g) < op.p).nonzero().squeeze(1)  # GpuOp.__call__'s draw
            if picked.numel():
                alpha[k, picked], beta[k, picked] = op.draw(picked.numel(), g, CPU)
                on[k, picked] = 1
        alpha, beta, on = (to_device(t, x.device) for t in (alpha, beta, on))
        chain = pointwise.brightness_contrast_chain
        if (
            out := kernels.attempt("brightness_contrast_chain", x, chain, x, alpha, beta, on, MAX_VALUE)
        ) is None:
            out = x  # the kernel failed here: the same steps eagerly
            for k in range(steps):
                stepped = brightness_contrast(out, alpha[k], beta[k])
                out = torch.where(on[k].bool().reshape(-1, 1, 1, 1), stepped, out)
        return out, m


def fuse_brightness_contrast(items: list) -> list:
    """items with each run of two or more fusable RandomBrightnessContrast ops as one FusedBrightnessContrast."""
    out: list = []
    run: list[RandomBrightnessContrast] = []
    for item in [*items, None]:
        if isinstance(item, RandomBrightnessContrast) and item.by_max:
            run.append(item)
            continue
        out.extend([FusedBrightnessContrast(run)] if len(run) >= 2 else run)
        run = []
        if item is not None:
            out.append(item)
    return out


def gamma_curve(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """albumentations' uint8 gamma: a table 255 * (v / 255) ** gamma, truncated to an integer.

    On CUDA with Triton, one fused pass (kernels.pointwise.gamma_curve); this eager form is its reference.
    """
    if (out := kernels.attempt("gamma", x, pointwise.gamma_curve, x, gamma, MAX_VALUE)) is not None:
        return out
    # In float64 like numpy's table: float32 lands just under an integer often enough to truncate a level.
    exponent = gamma.reshape(-1, 1, 1, 1).double()
    curve = (x.double().clamp(0, MAX_VALUE) / MAX_VALUE).pow(exponent) * MAX_VALUE
    return torch.floor(curve).to(x.dtype)


class RandomGamma(GpuOp):
    """gamma = U(gamma_limit) / 100 per sample, applied as albumentations' uint8 lookup table."""

    def __init__(self, p, gamma_limit):
        super().__init__(p)
        self.gamma_limit = tuple(gamma_limit)

    def apply(self, x, m, g):
        gamma = uniform(x.shape[0], *self.gamma_limit, g, x.device) / 100.0
        return gamma_curve(x, gamma), m


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
    """albumentations shift_hsv with OpenCV uint8 units (hue in 2-degree steps, sat/val on 0-255).

    On CUDA with Triton, 3-channel batches take one fused pass (kernels.hsv); this eager form is its
    reference.
    """
    shape = (-1, 1, 1)
    if x.shape[1] == 1:
        return (x + val.reshape(-1, 1, 1, 1).to(x.dtype)).clamp(0, MAX_VALUE)
    if x.shape[1] != 3:
        raise ValueError(f"HueSaturationValue needs 1 or 3 channels, got {x.shape[1]}")
    # the shifts in float32: hue in degrees, saturation on 0-1, value on 0-255 (the kernel's units too)
    hue2, sat, val = 2.0 * hue.to(x.dtype), sat.to(x.dtype) / MAX_VALUE, val.to(x.dtype)
    if (out := kernels.attempt("hsv", x, hsv_kernel.shift_hsv, x, hue2, sat, val)) is not None:
        return out
    hsv = rgb_to_hsv(x)
    h, s, v = hsv.unbind(1)
    h = (h + hue2.reshape(shape)) % 360.0
    s = torch.where(s > 0, (s + sat.reshape(shape)).clamp(0, 1), s)
    v = (v + val.reshape(shape)).clamp(0, MAX_VALUE)
    return hsv_to_rgb(torch.stack([h, s, v], 1)).clamp(0, MAX_VALUE)


class HueSaturationValue(GpuOp):
    """OpenCV uint8 semantics in continuous HSV.

    Hue shift in OpenCV's 2-degree units, saturation and value shifts on the 0-255 scale, pixels with
    S == 0 keep S == 0; 1-channel images get the value shift only. Approximation: no uint8 rounding of
    the HSV planes.
    """

    def __init__(self, p, hue_shift_limit, sat_shift_limit, val_shift_limit):
        super().__init__(p)
        self.limits = (tuple(hue_shift_limit), tuple(sat_shift_limit), tuple(val_shift_limit))

    def apply(self, x, m, g):
        n = x.shape[0]
        hue, sat, val = (uniform(n, *lim, g, x.device) for lim in self.limits)
        return shift_hsv(x, hue, sat, val), m
