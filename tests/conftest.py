"""Shared test fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine: one torch thread avoids OpenMP spin-waiting, which makes
    them up to 100x slower while another process holds the other core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def offline_timm(monkeypatch):
    """No hub here: timm's 'pretrained' weights are stood in for by a seeded random model, the same on
    every call, so two builds of one backbone get the same 'pretrained' tensors."""
    import timm

    real = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        torch.manual_seed(123)
        return real(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    return offline
