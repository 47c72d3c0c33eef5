"""HueSaturationValue in one pass: RGB -> HSV, the per-sample shifts, HSV -> RGB, per pixel in registers.

The eager op (color.shift_hsv) makes about thirty full-size temporaries; this kernel reads the three
planes once and writes them once, with the same float32 operations in the same order (remainders as
torch's, the sign of the divisor), so it agrees with the eager op to float32 rounding: the tests bound
the difference at 4e-3 on the 0-255 scale (an ulp of a hue near 360 degrees, times the 255 / 60 slope
of a channel in the hue).
"""

from __future__ import annotations

import torch

from medals.augment.gpu.kernels import BLOCK, sample_block, tl, triton

if triton is not None:

    @triton.jit
    def _remainder(a, b):
        """torch.remainder for b > 0: C's fmod moved into [0, b)."""
        mod = a % b  # fmod: the sign of a
        return tl.where((mod != 0) & (mod < 0), mod + b, mod)

    @triton.jit
    def _channel(h6, n, v, vs):
        k = _remainder(n + h6, 6.0)
        f = tl.minimum(tl.maximum(tl.minimum(k, 4.0 - k), 0.0), 1.0)
        return tl.minimum(tl.maximum(v - vs * f, 0.0), 255.0)

    @triton.jit
    def _shift_hsv(x_ptr, out_ptr, hue_ptr, sat_ptr, val_ptr, plane, BLOCK_SIZE: tl.constexpr):
        sample, offsets, inside = sample_block(plane, BLOCK_SIZE)
        base = sample * 3 * plane
        r = tl.load(x_ptr + base + offsets, mask=inside, other=0.0)
        g = tl.load(x_ptr + base + plane + offsets, mask=inside, other=0.0)
        b = tl.load(x_ptr + base + 2 * plane + offsets, mask=inside, other=0.0)
        # RGB -> HSV (color.rgb_to_hsv)
        v = tl.maximum(tl.maximum(r, g), b)
        mn = tl.minimum(tl.minimum(r, g), b)
        delta = v - mn
        s = tl.where(v > 0, delta / tl.maximum(v, 1e-12), 0.0)
        d = tl.maximum(delta, 1e-12)
        h = tl.where(v == r, (g - b) / d, tl.where(v == g, 2.0 + (b - r) / d, 4.0 + (r - g) / d))
        h = tl.where(delta > 0, _remainder(h * 60.0, 360.0), 0.0)
        # the shifts (color.shift_hsv): hue already doubled, saturation already / 255
        h = _remainder(h + tl.load(hue_ptr + sample), 360.0)
        s = tl.where(s > 0, tl.minimum(tl.maximum(s + tl.load(sat_ptr + sample), 0.0), 1.0), s)
        v = tl.minimum(tl.maximum(v + tl.load(val_ptr + sample), 0.0), 255.0)
        # HSV -> RGB (color.hsv_to_rgb)
        h6 = _remainder(h, 360.0) / 60.0
        vs = v * s
        tl.store(out_ptr + base + offsets, _channel(h6, 5.0, v, vs), mask=inside)
        tl.store(out_ptr + base + plane + offsets, _channel(h6, 3.0, v, vs), mask=inside)
        tl.store(out_ptr + base + 2 * plane + offsets, _channel(h6, 1.0, v, vs), mask=inside)


def shift_hsv(x: torch.Tensor, hue2: torch.Tensor, sat: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] float32 RGB on 0-255, hue2 = 2 * the OpenCV hue shift (degrees), sat = shift / 255."""
    n, _, h, w = x.shape
    out = torch.empty_like(x)
    params = [t.to(device=x.device, dtype=torch.float32).contiguous() for t in (hue2, sat, val)]
    _shift_hsv[(triton.cdiv(h * w, BLOCK), n)](x, out, *params, h * w, BLOCK_SIZE=BLOCK)
    return out
