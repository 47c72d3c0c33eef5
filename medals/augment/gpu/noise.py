"""Additive noise: GaussNoise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import medals.augment.gpu.kernels as kernels
from medals.augment.gpu.kernels import pointwise
from medals.augment.gpu.sampling import MAX_VALUE, GpuOp, to_device, uniform


class GaussNoise(GpuOp):
    """N(mean, std) per pixel (per channel unless per_channel=False), clipped to [0, 255].

    std and mean are drawn per sample from std_range/mean_range as fractions of 255;
    noise_scale_factor < 1 draws the noise small and resizes it (bilinear) to the image.

    On CUDA with Triton and a host generator, full-size noise is drawn inside one fused pass
    (kernels.pointwise.gauss_noise, Philox seeded from the generator): the same distribution as the
    eager lines, which draw on the host and copy the noise over, not the same numbers.
    """

    def __init__(self, p, std_range, mean_range=(0.0, 0.0), per_channel=True, noise_scale_factor=1.0):
        super().__init__(p)
        self.std_range = tuple(std_range)
        self.mean_range = tuple(mean_range)
        self.per_channel = bool(per_channel)
        self.scale = float(noise_scale_factor)

    def apply(self, x, m, g):
        n, c, h, w = x.shape
        std = uniform(n, *self.std_range, g, x.device).to(x.dtype) * MAX_VALUE
        mean = uniform(n, *self.mean_range, g, x.device).to(x.dtype) * MAX_VALUE
        if self.scale >= 1 and g.device.type == "cpu" and kernels.ready("gauss_noise", x):
            # a host draw: reading the seed waits for nothing on the device
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
            args = (x, std, mean, seed, self.per_channel, MAX_VALUE)
            if (out := kernels.attempt("gauss_noise", x, pointwise.gauss_noise, *args)) is not None:
                return out, m
        cn = c if self.per_channel else 1
        sh, sw = (h, w) if self.scale >= 1 else (max(1, int(h * self.scale)), max(1, int(w * self.scale)))
        noise = to_device(torch.randn((n, cn, sh, sw), generator=g, device=g.device, dtype=x.dtype), x.device)
        if (sh, sw) != (h, w):
            noise = F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False)
        noise = noise * std.reshape(-1, 1, 1, 1) + mean.reshape(-1, 1, 1, 1)
        return (x + noise).clamp(0, MAX_VALUE), m
