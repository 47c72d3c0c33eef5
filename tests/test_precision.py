from __future__ import annotations

import pytest
import torch

from medals.runtime.precision import resolve_precision


@pytest.mark.parametrize("precision", ["auto", "fp32", "bf16", "fp16"])
def test_cpu_always_runs_fp32(precision):
    assert resolve_precision(precision, "cpu") == (None, False)
    assert resolve_precision(precision, torch.device("cpu")) == (None, False)


@pytest.mark.parametrize(
    "precision, bf16_ok, expected",
    [
        ("auto", True, (torch.bfloat16, False)),
        ("auto", False, (torch.float16, True)),  # pre-Ampere: fp16 with a GradScaler
        ("bf16", True, (torch.bfloat16, False)),
        ("fp16", True, (torch.float16, True)),
        ("fp32", True, (None, False)),
    ],
)
def test_cuda_choices(monkeypatch, precision, bf16_ok, expected):
    # Decided from the device name and the bf16 capability alone, so it is testable without a GPU.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16_ok)
    assert resolve_precision(precision, "cuda:0") == expected
