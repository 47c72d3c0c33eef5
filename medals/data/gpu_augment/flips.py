"""Dihedral ops: Transpose, VerticalFlip, HorizontalFlip. Exact, on images and masks alike."""

from __future__ import annotations

from medals.data.gpu_augment.sampling import GpuOp


class Transpose(GpuOp):
    """Swap H and W; a batch shares one shape, so the images must be square."""

    def apply(self, x, m, g):
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"Transpose on a batch needs square images, got {tuple(x.shape[-2:])}")
        return x.transpose(-2, -1), None if m is None else m.transpose(-2, -1)


class VerticalFlip(GpuOp):
    def apply(self, x, m, g):
        return x.flip(-2), None if m is None else m.flip(-2)


class HorizontalFlip(GpuOp):
    def apply(self, x, m, g):
        return x.flip(-1), None if m is None else m.flip(-1)
