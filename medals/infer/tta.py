"""Dihedral test-time augmentation on [B, C, H, W] batches.

View i in 0..7: transpose H/W when i >= 4, then by i % 4: 0 nothing, 1 flip H (dim -2), 2 flip W (dim -1),
3 flip both. The eight views are the dihedral group of the square.
"""

from __future__ import annotations

import torch

_VIEWS = {1: [0], 2: [0, 2], 4: [0, 1, 2, 3], 8: list(range(8))}
_FLIPS = {0: (), 1: (-2,), 2: (-1,), 3: (-2, -1)}


def views_for(n: int) -> list[int]:
    """The view ids used for n TTA views: 1 identity, 2 adds the W flip, 4 all flips, 8 all views."""
    if n not in _VIEWS:
        raise ValueError(f"tta must be 1, 2, 4 or 8, got {n}")
    return list(_VIEWS[n])


def _check(i: int) -> None:
    if not 0 <= i < 8:
        raise ValueError(f"view must be in 0..7, got {i}")


def apply_view(x: torch.Tensor, i: int) -> torch.Tensor:
    """View i of x (the last two dims are H, W)."""
    _check(i)
    if i >= 4:
        x = x.transpose(-2, -1)
    dims = _FLIPS[i % 4]
    return torch.flip(x, dims) if dims else x


def invert_view(x: torch.Tensor, i: int) -> torch.Tensor:
    """Undo apply_view(., i) on a spatial output (e.g. a mask): flips are self-inverse, then transpose."""
    _check(i)
    dims = _FLIPS[i % 4]
    if dims:
        x = torch.flip(x, dims)
    return x.transpose(-2, -1) if i >= 4 else x


def merge(outputs: list[torch.Tensor], how: str = "mean") -> torch.Tensor:
    """Merge same-shaped per-view outputs (probabilities) by their mean or elementwise max."""
    if not outputs:
        raise ValueError("merge needs at least one output")
    if len(outputs) == 1:
        return outputs[0]
    stacked = torch.stack(outputs)
    if how == "mean":
        return stacked.mean(0)
    if how == "max":
        return stacked.amax(0)
    raise ValueError(f"merge must be 'mean' or 'max', got {how!r}")
