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
import warnings
from collections.abc import Callable
from typing import Any

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
# Kernels that failed to compile or launch here, by name, with why: their ops run their eager lines.
FAILED: dict[str, str] = {}


def available(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> bool:
    """Whether the kernels can run on x (CUDA with Triton, or the interpreter on the CPU)."""
    if not ENABLED or triton is None or x.dtype != dtype or not x.is_contiguous():
        return False
    return x.is_cuda or (INTERPRET and x.device.type == "cpu")


def ready(name: str, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> bool:
    """Whether kernel `name` would run on x: the kernels can, and it has not failed here."""
    return name not in FAILED and available(x, dtype)


def attempt(name: str, x: torch.Tensor, kernel: Callable[..., Any], *args: Any, dtype=torch.float32) -> Any:
    """kernel(*args) when the kernels can run on x and kernel `name` has not failed here; else None, and
    the caller runs its eager lines.

    A Triton release that cannot compile a kernel (an older one, a lowering missing on this GPU) would
    otherwise stop a training run at its first batch: the failure is warned about once, kept in FAILED
    (benchmarks/kernel_check.py reports it) and that op runs eagerly from then on. Running out of device
    memory is not a kernel's failure and is raised.
    """
    if not ready(name, x, dtype):
        return None
    try:
        return kernel(*args)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:  # whatever the compiler raises, the eager lines still work
        text = str(exc).strip()
        FAILED[name] = f"{type(exc).__name__}: {text.splitlines()[0] if text else 'no message'}"
        warnings.warn(
            f"Triton kernel '{name}' failed here ({FAILED[name]}): its op runs eagerly", stacklevel=2
        )
        return None


if triton is not None:

    @triton.jit
    def sample_block(size, BLOCK_SIZE: tl.constexpr):
        """This program's grid row (axis 1: a sample, or a sample's channel) and its block of offsets
        (axis 0) within that row's `size` elements, with the mask of those inside it."""
        offsets = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
        return tl.program_id(1), offsets, offsets < size
