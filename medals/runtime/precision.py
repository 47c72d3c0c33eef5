"""Which autocast dtype to train and predict in, and whether fp16 needs a GradScaler.

On CPU everything runs in fp32 whatever train.precision says: CPU autocast (bf16) is slower than fp32
on most machines and changes the numbers, which is not what a recipe written for a GPU wants when it is
tried on a laptop. fp16 always goes with a GradScaler (its gradients underflow otherwise); bf16 has
fp32's range and needs none.
"""

from __future__ import annotations

import torch


def resolve_precision(precision: str, device: str | torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, use a GradScaler)."""
    if torch.device(device).type != "cuda" or precision == "fp32":
        return None, False
    if precision == "auto":
        # Pre-Ampere GPUs only emulate bf16 (slowly): they get fp16 with a scaler instead.
        precision = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    if precision == "bf16":
        return torch.bfloat16, False
    return torch.float16, True
