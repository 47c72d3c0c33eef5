"""Dihedral ops: Transpose, VerticalFlip, HorizontalFlip. Exact, on images and masks alike.

Alone they move pixels by indexing; inside a fused run of warps they are coordinate maps like the others.
"""

from __future__ import annotations

from medals.augment.gpu.warp import Warp, fixed_matrix


class Dihedral(Warp):
    """A flip or transpose: whole pixels only, never outside the image."""

    mode = "nearest"
    border = "replicate"
    transparent = True


class Transpose(Dihedral):
    """Swap H and W; a batch shares one shape, so the images must be square."""

    def out_size(self, h, w):
        return w, h

    def inverse_matrix(self, params, h, w, device):
        return fixed_matrix([(0.0, 1.0, 0.0), (1.0, 0.0, 0.0)], device)

    def apply(self, x, m, g):
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"Transpose on a batch needs square images, got {tuple(x.shape[-2:])}")
        return x.transpose(-2, -1), None if m is None else m.transpose(-2, -1)


class VerticalFlip(Dihedral):
    def inverse_matrix(self, params, h, w, device):
        return fixed_matrix([(1.0, 0.0, 0.0), (0.0, -1.0, h - 1.0)], device)

    def apply(self, x, m, g):
        return x.flip(-2), None if m is None else m.flip(-2)


class HorizontalFlip(Dihedral):
    def inverse_matrix(self, params, h, w, device):
        return fixed_matrix([(-1.0, 0.0, w - 1.0), (0.0, 1.0, 0.0)], device)

    def apply(self, x, m, g):
        return x.flip(-1), None if m is None else m.flip(-1)
