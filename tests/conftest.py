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


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium, installed here when missing (as root, from the Debian archive): the report
    tests open the page in a real browser. Without root and outside CI the tests that need it are skipped."""
    import os
    import shutil
    import subprocess

    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, check=False)
        found = shutil.which("chromium")
        if found is None:  # a stale package index
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
            subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], capture_output=True, check=False)
            found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium could not be installed (apt-get install chromium) for the report tests")
        pytest.skip("Chromium is not installed and cannot be installed without root")
    return found


@pytest.fixture
def render(chromium, tmp_path_factory):
    """render(page) -> the page's DOM after its scripts ran, from headless Chromium."""
    import subprocess

    def run(page) -> str:
        profile = tmp_path_factory.mktemp("chromium-profile")
        done = subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                f"file://{page}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    return run
