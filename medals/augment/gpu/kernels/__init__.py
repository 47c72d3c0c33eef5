"""Fused Triton kernels for the GPU data path's per-pixel steps: one pass over memory where eager PyTorch
makes several (pointwise: brightness/contrast, gamma, Gaussian noise, the final normalisation; hsv:
the HueSaturationValue round trip; median: MedianBlur). The eager ops stay the reference and the
fallback: the kernels run only on CUDA tensors with Triton installed, or on CPU tensors under
TRITON_INTERPRET=1, which is how the tests check them against the eager ops.

This module holds what every kernel module shares: the Triton import and the test of whether a tensor
can go through a kernel.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the eager ops serve
    triton = tl = None

BLOCK = 1024
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# False sends every op down its eager lines (benchmarks/augment_ops.py times both side by side).
ENABLED = True


def available(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> bool:
    """Whether the kernels can run on x (CUDA with Triton, or the interpreter on the CPU)."""
    if not ENABLED or triton is None or x.dtype != dtype or not x.is_contiguous():
        return False
    return x.is_cuda or (INTERPRET and x.device.type == "cpu")


if triton is not None:

    @triton.jit
    def sample_block(size, BLOCK_SIZE: tl.constexpr):
        """This program's grid row (axis 1: a sample, or a sample's channel) and its block of offsets
        (axis 0) within that row's `size` elements, with the mask of those inside it."""
        offsets = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        return tl.program_id(1), offsets, offsets < size
