"""MedianBlur in one launch for a batch whose samples have different kernel sizes.

The same bitwise search as the eager op (blur.median_blur): from the top bit down, the candidate
prefix | 2^b is at most the median exactly when no more than k*k // 2 neighbours lie below it. Here each
pixel counts its neighbours in registers (replicate border by clamped indices), reading its k*k window
from cache eight times; the eager op makes 8 * k*k passes over the whole batch. Integer arithmetic on
uint8 levels: bit-exact with the eager op and with cv2.medianBlur.
"""

from __future__ import annotations

import torch

from medals.augment.gpu.kernels import sample_block, tl, triton

MEDIAN_BLOCK = 256

if triton is not None:

    @triton.jit
    def _median(x_ptr, out_ptr, size_ptr, channels, height, width, BLOCK_SIZE: tl.constexpr):
        plane = height * width
        image_channel, offsets, inside = sample_block(plane, BLOCK_SIZE)  # row: sample * channels + channel
        y = offsets // width
        x = offsets % width
        base = image_channel * plane
        ksize = tl.load(size_ptr + image_channel // channels)
        pad = ksize // 2
        half = (ksize * ksize) // 2
        prefix = tl.zeros([BLOCK_SIZE], dtype=tl.int32)
        for bit in tl.static_range(7, -1, -1):
            candidate = prefix | (1 << bit)
            count = tl.zeros([BLOCK_SIZE], dtype=tl.int32)
            for dy in range(0, ksize):
                yy = tl.minimum(tl.maximum(y + dy - pad, 0), height - 1)
                for dx in range(0, ksize):
                    xx = tl.minimum(tl.maximum(x + dx - pad, 0), width - 1)
                    level = tl.load(x_ptr + base + yy * width + xx, mask=inside, other=0).to(tl.int32)
                    count += (level < candidate).to(tl.int32)
            prefix = tl.where(count <= half, candidate, prefix)
        tl.store(out_ptr + base + offsets, prefix.to(tl.uint8), mask=inside)


def median_levels(levels: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """The median of each sample's sizes[i] x sizes[i] window (odd sizes, already on the levels' device),
    [B, C, H, W] uint8 -> uint8."""
    n, c, h, w = levels.shape
    out = torch.empty_like(levels)
    sizes = sizes.to(dtype=torch.int32).contiguous()
    grid = (triton.cdiv(h * w, MEDIAN_BLOCK), n * c)
    _median[grid](levels, out, sizes, c, h, w, BLOCK_SIZE=MEDIAN_BLOCK)
    return out
