"""Pointwise kernels, one pass each: brightness/contrast (one op, or a chain of them), gamma, Gaussian
noise, the final normalisation.

Exactness: eager rounds after every operation; a kernel may contract x * a + b into one fused
multiply-add and GPU division may differ by an ulp, so results agree to within 2 ulp at the values'
magnitude (the tests state the bound), not bit for bit. Gamma is computed in float64 as the eager op
is and truncated to a level (equal levels but where the curve is within 1e-9 of an integer); the noise kernel draws its normals with Triton's Philox (tl.randn), so it
follows the same distribution as the eager op, not the same numbers.
"""

from __future__ import annotations

import torch

from medals.augment.gpu.kernels import BLOCK, sample_block, tl, triton

if triton is not None:

    @triton.jit
    def _brightness_contrast(x_ptr, out_ptr, alpha_ptr, beta_ptr, per_sample, hi, BLOCK_SIZE: tl.constexpr):
        sample, offsets, inside = sample_block(per_sample, BLOCK_SIZE)
        base = sample * per_sample
        x = tl.load(x_ptr + base + offsets, mask=inside)
        alpha = tl.load(alpha_ptr + sample)
        beta = tl.load(beta_ptr + sample)
        y = tl.minimum(tl.maximum(x * alpha + beta, 0.0), hi)
        tl.store(out_ptr + base + offsets, y, mask=inside)

    @triton.jit
    def _brightness_contrast_chain(
        x_ptr, out_ptr, alpha_ptr, beta_ptr, on_ptr, per_sample, n, hi,
        STEPS: tl.constexpr, BLOCK_SIZE: tl.constexpr,
    ):  # fmt: skip
        sample, offsets, inside = sample_block(per_sample, BLOCK_SIZE)
        base = sample * per_sample
        y = tl.load(x_ptr + base + offsets, mask=inside)
        for k in tl.static_range(STEPS):  # op k of the chain, where it picked this sample
            alpha = tl.load(alpha_ptr + k * n + sample)
            beta = tl.load(beta_ptr + k * n + sample)
            on = tl.load(on_ptr + k * n + sample)
            y = tl.where(on != 0, tl.minimum(tl.maximum(y * alpha + beta, 0.0), hi), y)
        tl.store(out_ptr + base + offsets, y, mask=inside)

    @triton.jit
    def _normalize(x_ptr, out_ptr, mean_ptr, std_ptr, plane, channels, scale, BLOCK_SIZE: tl.constexpr):
        image_channel, offsets, inside = sample_block(plane, BLOCK_SIZE)
        base = image_channel * plane
        channel = image_channel % channels
        x = tl.load(x_ptr + base + offsets, mask=inside)
        mean = tl.load(mean_ptr + channel)
        std = tl.load(std_ptr + channel)
        tl.store(out_ptr + base + offsets, (x / scale - mean) / std, mask=inside)

    @triton.jit
    def _gamma(x_ptr, out_ptr, gamma_ptr, per_sample, hi, BLOCK_SIZE: tl.constexpr):
        sample, offsets, inside = sample_block(per_sample, BLOCK_SIZE)
        base = sample * per_sample
        x = tl.load(x_ptr + base + offsets, mask=inside).to(tl.float64)
        gamma = tl.load(gamma_ptr + sample)  # float64
        level = tl.minimum(tl.maximum(x, 0.0), hi) / hi
        # pow as exp2(gamma * log2(level)) in float64 (log2(0) = -inf gives 0, log2(1) = 0 gives 1):
        # within ~1e-15 relative of pow, so a level truncates differently only where the curve lies
        # that close to an integer. (libdevice's pow has no interpreter version to test against.)
        curve = tl.exp2(gamma * tl.log2(level)) * hi
        tl.store(out_ptr + base + offsets, tl.floor(curve).to(tl.float32), mask=inside)

    @triton.jit
    def _gauss_noise(
        x_ptr, out_ptr, std_ptr, mean_ptr, seed, per_sample, plane, shared, hi, BLOCK_SIZE: tl.constexpr
    ):
        sample, offsets, inside = sample_block(per_sample, BLOCK_SIZE)
        base = sample * per_sample
        x = tl.load(x_ptr + base + offsets, mask=inside)
        # One normal per element, or per pixel shared by the channels (per_channel=False).
        stream = tl.where(shared != 0, sample * plane + offsets % plane, base + offsets)
        noise = tl.randn(seed, stream) * tl.load(std_ptr + sample) + tl.load(mean_ptr + sample)
        tl.store(out_ptr + base + offsets, tl.minimum(tl.maximum(x + noise, 0.0), hi), mask=inside)


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


def brightness_contrast_chain(
    x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, on: torch.Tensor, hi: float
) -> torch.Tensor:
    """K brightness/contrast steps in one pass: step k maps sample i to clamp(x * alpha[k, i] + beta[k, i],
    0, hi) where on[k, i], else leaves it (alpha, beta, on: [K, B] on x's device)."""
    n = x.shape[0]
    per_sample = x[0].numel()
    out = torch.empty_like(x)
    alpha = alpha.to(device=x.device, dtype=torch.float32).contiguous()
    beta = beta.to(device=x.device, dtype=torch.float32).contiguous()
    on = on.to(device=x.device, dtype=torch.int8).contiguous()
    grid = (triton.cdiv(per_sample, BLOCK), n)
    _brightness_contrast_chain[grid](
        x, out, alpha, beta, on, per_sample, n, float(hi), STEPS=alpha.shape[0], BLOCK_SIZE=BLOCK
    )
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


def gamma_curve(x: torch.Tensor, gamma: torch.Tensor, hi: float) -> torch.Tensor:
    """floor(hi * (clamp(x, 0, hi) / hi) ** gamma[sample]) of [B, C, H, W] float32, in float64, one pass."""
    n = x.shape[0]
    per_sample = x[0].numel()
    out = torch.empty_like(x)
    gamma = gamma.to(device=x.device, dtype=torch.float64).contiguous()
    _gamma[(triton.cdiv(per_sample, BLOCK), n)](x, out, gamma, per_sample, float(hi), BLOCK_SIZE=BLOCK)
    return out


def gauss_noise(
    x: torch.Tensor, std: torch.Tensor, mean: torch.Tensor, seed: int, per_channel: bool, hi: float
) -> torch.Tensor:
    """clamp(x + N(0, 1) * std[sample] + mean[sample], 0, hi), the normals drawn in the kernel from seed."""
    n, c, h, w = x.shape
    per_sample = c * h * w
    out = torch.empty_like(x)
    std = std.to(device=x.device, dtype=torch.float32).contiguous()
    mean = mean.to(device=x.device, dtype=torch.float32).contiguous()
    grid = (triton.cdiv(per_sample, BLOCK), n)
    shared = 0 if per_channel else 1
    _gauss_noise[grid](x, out, std, mean, int(seed), per_sample, h * w, shared, float(hi), BLOCK_SIZE=BLOCK)
    return out
