"""Per-sample random draws from a torch.Generator, and the GpuOp base with its subset application.

Every draw is made on the generator's device (so a seeded generator gives the same stream wherever the
images live) and then moved to the images' device.
"""

from __future__ import annotations

import torch

MAX_VALUE = 255.0


def host_rand(n: int, g: torch.Generator) -> torch.Tensor:
    """n float64 draws from U[0, 1), left on the generator's device (the host, for a CPU generator): for
    choices the host acts on (which samples an op takes), so no value is read back from the images' device."""
    return torch.rand(n, generator=g, device=g.device, dtype=torch.float64)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on the images' device, copied without waiting for the device."""
    return t if t.device == device else t.to(device, non_blocking=True)


def rand(n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """n float64 draws from U[0, 1)."""
    return to_device(host_rand(n, g), device)


def uniform(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """n float64 draws from U[lo, hi)."""
    return lo + (hi - lo) * rand(n, g, device)


def randint(n: int, lo: int, hi: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """Integers in [lo, hi] inclusive (like random.randint)."""
    return to_device(torch.randint(int(lo), int(hi) + 1, (n,), generator=g, device=g.device), device)


def randint_between(lo: torch.Tensor, hi: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per-element integers in [lo, hi] inclusive."""
    u = rand(lo.numel(), g, lo.device).reshape(lo.shape)
    return (lo + torch.floor(u * (hi - lo + 1).double()).long()).clamp(max=hi)


class GpuOp:
    """One op: per-sample Bernoulli(p), then `apply` on the selected samples. Ops may write into the
    batch they are given."""

    def __init__(self, p: float):
        self.p = float(p)

    def __call__(
        self, x: torch.Tensor, m: torch.Tensor | None, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        chosen = host_rand(x.shape[0], g) < self.p  # decided on the host: no read from the device
        return apply_subset(self, chosen, x, m, g)

    def apply(
        self, x: torch.Tensor, m: torch.Tensor | None, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


def apply_subset(
    op: GpuOp, chosen: torch.Tensor, x: torch.Tensor, m: torch.Tensor | None, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """op.apply on the samples where `chosen` is true; the others pass through unchanged.

    `chosen` lives on the generator's device; with a host generator its indices are known on the host and
    copied to the images' device, so selecting a subset reads nothing back from the device.
    """
    idx = chosen.nonzero().squeeze(1)
    n = idx.numel()
    if n == 0:
        return x, m
    if n == x.shape[0]:
        return op.apply(x, m, g)
    idx = to_device(idx, x.device)
    xs, ms = op.apply(x[idx], None if m is None else m[idx], g)
    # In place: an op owns the batch it is given (GpuAugment hands its ops a copy), and a copy of the
    # whole batch for every op with p < 1 would cost more than most ops themselves.
    x.index_copy_(0, idx, xs)
    if m is not None:
        m.index_copy_(0, idx, ms)
    return x, m
