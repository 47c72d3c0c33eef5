"""The one way a report figure becomes PNG bytes: matplotlib on the Agg backend (files only, no display)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt  # noqa: E402

DPI = 90


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def subplots(*args, **kwargs):
    return plt.subplots(*args, **kwargs)


def marker_for(n_points: int) -> str:
    """A line of one or two points is invisible without markers; long series read better without."""
    return "o" if n_points <= 30 else ""
