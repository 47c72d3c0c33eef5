"""Fused Triton kernels for the GPU data path's per-pixel steps: one pass over memory where eager PyTorch
makes several. The eager ops (color.brightness_contrast, GpuAugment's normalisation) stay the reference
and the fallback: these run only on CUDA tensors with Triton installed, or on CPU tensors under
TRITON_INTERPRET=1 (how the tests check them against the eager ops).

Exactness: eager rounds after every operation; a kernel may contract x * a + b into one fused
multiply-add and GPU division may differ by an ulp, so results agree to within 2 ulp at the values'
magnitude (the tests state the bound), not bit for bit.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the eager ops serve
    triton = None

BLOCK = 1024
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def available(x: torch.Tensor) -> bool:
    """Whether the kernels can run on x (CUDA with Triton, or the interpreter on the CPU)."""
    if triton is None or x.dtype != torch.float32 or not x.is_contiguous():
        return False
    return x.is_cuda or (INTERPRET and x.device.type == "cpu")


if triton is not None:

    @triton.jit
    def _brightness_contrast(x_ptr, out_ptr, alpha_ptr, beta_ptr, per_sample, hi, BLOCK_SIZE: tl.constexpr):
        pid = tl.program_id(0)
        sample = tl.program_id(1)
        offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        inside = offsets < per_sample
        base = sample * per_sample
        x = tl.load(x_ptr + base + offsets, mask=inside)
        alpha = tl.load(alpha_ptr + sample)
        beta = tl.load(beta_ptr + sample)
        y = tl.minimum(tl.maximum(x * alpha + beta, 0.0), hi)
        tl.store(out_ptr + base + offsets, y, mask=inside)

    @triton.jit
    def _normalize(x_ptr, out_ptr, mean_ptr, std_ptr, plane, channels, scale, BLOCK_SIZE: tl.constexpr):
        pid = tl.program_id(0)
        image_channel = tl.program_id(1)  # sample * channels + channel
        offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        inside = offsets < plane
        base = image_channel * plane
        channel = image_channel % channels
        x = tl.load(x_ptr + base + offsets, mask=inside)
        mean = tl.load(mean_ptr + channel)
        std = tl.load(std_ptr + channel)
        tl.store(out_ptr + base + offsets, (x / scale - mean) / std, mask=inside)


def brightness_contrast(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, hi: float) -> torch.Tensor:
    """clamp(x * alpha + beta, 0, hi) per sample of [B, C, H, W] float32, in one pass."""
    n = x.shape[0]
    per_sample = x[0].numel()
    out = torch.empty_like(x)
    alpha = alpha.to(device=x.device, dtype=torch.float32).contiguous()
    beta = beta.to(device=x.device, dtype=torch.float32).contiguous()
    grid = (triton.cdiv(per_sample, BLOCK), n)
    _brightness_contrast[grid](x, out, alpha, beta, per_sample, float(hi), BLOCK_SIZE=BLOCK)
    return out


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, scale: float) -> torch.Tensor:
    """(x / scale - mean[c]) / std[c] of [B, C, H, W] float32, in one pass."""
    n, channels, h, w = x.shape
    out = torch.empty_like(x)
    mean = mean.reshape(-1).to(device=x.device, dtype=torch.float32).contiguous()
    std = std.reshape(-1).to(device=x.device, dtype=torch.float32).contiguous()
    grid = (triton.cdiv(h * w, BLOCK), n * channels)
    _normalize[grid](x, out, mean, std, h * w, channels, float(scale), BLOCK_SIZE=BLOCK)
    return out
