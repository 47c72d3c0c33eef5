"""CLAHE (albumentations 2.0.8 / cv2.createCLAHE) on batches, with a clip limit per sample.

albumentations draws clip_limit ~ U(clip_limit range) per call; 3-channel images go to Lab (cv2, uint8),
CLAHE equalises L and they come back to RGB; 1-channel images are equalised directly. Here each sample
draws its own clip limit from the generator and the whole batch is processed at once.

The algorithm is OpenCV's (imgproc/src/clahe.cpp) for 8-bit images, step for step:

- when H or W is not a multiple of the grid, the image is padded at the bottom and right by
  `tiles - size % tiles` rows / columns each (a whole extra tile row or column when that side already
  divides, as OpenCV does), reflect-101, for the histograms only;
- tile_grid_size is cv::Size(tiles_x, tiles_y) (columns first, whatever albumentations' docstring says);
- per tile a 256-bin histogram; clip limit = max(int(clipLimit * tileArea / 256), 1); the clipped excess
  is spread as excess // 256 on every bin plus the residual, one count on bins 0, step, 2 step...
  (step = max(256 // residual, 1)) until used up;
- LUT = round_half_even(cumsum * float32(255 / tileArea)), in float32;
- each pixel of the original image blends the LUTs of the four nearest tile centres bilinearly with
  OpenCV's float32 weights (x / tileWidth - 0.5, clamped at the borders), rounded to uint8.

Inputs are rounded to uint8 levels first (the GPU path runs in float between ops). The Lab conversions
reproduce OpenCV's 8-bit integer path (see lab.py). On the CPU the result has equalled cv2 exactly on
the images tried; float32 evaluation order (e.g. an FMA in a SIMD build of OpenCV) can still move a
value sitting on a rounding boundary by one level, and the tests allow 1-2 levels for that.
"""

from __future__ import annotations

import numpy as np
import torch

import medals.augment.gpu.kernels as kernels
from medals.augment.gpu.kernels import clahe as fused
from medals.augment.gpu.lab import lab_to_rgb, lookup, rgb_to_lab
from medals.augment.gpu.sampling import MAX_VALUE, GpuOp, uniform
from medals.augment.gpu.warp import COORD, fold

BINS = 256


def _reflect101_indices(n: int, size: int, device: torch.device) -> torch.Tensor:
    """Indices 0..size-1 mapped into 0..n-1 by BORDER_REFLECT_101."""
    return fold(torch.arange(size, dtype=COORD, device=device), n, "reflect101").long()


def _tile_weights(size: int, tile: int, tiles: int, device: torch.device):
    """OpenCV's interpolation coordinates along one axis: (tile1, tile2, weight1, weight2)."""
    # A float32 value as a Python scalar: the kernel takes it as an argument, with no copy to the device.
    inv = float(np.float32(1) / np.float32(tile))
    f = torch.arange(size, device=device, dtype=torch.float32) * inv - 0.5
    t1 = torch.floor(f)
    a = f - t1
    t1 = t1.long()
    return t1.clamp(min=0), (t1 + 1).clamp(max=tiles - 1), 1.0 - a, a


def clip_histograms(hist: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """OpenCV's clipping and redistribution of int64 histograms [B, T, 256] with limits [B]."""
    limit = limit.reshape(-1, 1, 1)
    clipped = (hist - limit).clamp(min=0).sum(-1, keepdim=True)
    hist = torch.minimum(hist, limit)
    batch = clipped // BINS
    residual = clipped - batch * BINS
    step = (BINS // residual.clamp(min=1)).clamp(min=1)
    bins = torch.arange(BINS, device=hist.device)
    extra = (residual > 0) & (bins % step == 0) & (bins // step < residual)
    return hist + batch + extra.long()


def tile_luts(hist: torch.Tensor, clip_limit: torch.Tensor, area: int) -> torch.Tensor:
    """OpenCV's LUTs from int64 tile histograms [B, T, 256] of tiles of `area` pixels: clip at
    max(int(clip * area / 256), 1) (no clipping where clip <= 0), redistribute, then
    round(cumsum * float32(255 / area)). Returns float32, flat [B * T * 256]."""
    clip = clip_limit.to(hist.device, torch.float64)
    limit = torch.trunc(clip * area / BINS).long().clamp(min=1)
    limit = torch.where(clip > 0, limit, torch.full_like(limit, area + 1))
    hist = clip_histograms(hist, limit)
    scale = float(np.float32(BINS - 1) / np.float32(area))  # float32-exact, passed as a kernel argument
    return torch.round(hist.cumsum(-1).to(torch.float32) * scale).clamp(0, MAX_VALUE).reshape(-1)


def clahe(planes: torch.Tensor, clip_limit: torch.Tensor, tile_grid_size: tuple[int, int] = (8, 8)):
    """cv2.createCLAHE(clip_limit[i], tile_grid_size).apply(planes[i]) for a batch of uint8-valued planes.

    planes: [B, H, W] integer values 0-255 (any dtype); clip_limit: [B] (<= 0: no clipping).
    Returns float32 [B, H, W] with integer values.
    """
    n, h, w = planes.shape
    dev = planes.device
    tiles_x, tiles_y = (int(v) for v in tile_grid_size)
    n_tiles = tiles_x * tiles_y
    itype = torch.int32 if n * n_tiles * BINS < 2**31 else torch.int64
    # pixel values offset by their sample's block of histogram bins / LUT entries
    v = (
        planes.to(itype)
        + torch.arange(0, n * n_tiles * BINS, n_tiles * BINS, device=dev, dtype=itype)[:, None, None]
    )
    src = v
    if h % tiles_y or w % tiles_x:
        src = src.index_select(1, _reflect101_indices(h, h + tiles_y - h % tiles_y, dev))
        src = src.index_select(2, _reflect101_indices(w, w + tiles_x - w % tiles_x, dev))
    hp, wp = src.shape[-2:]
    th, tw = hp // tiles_y, wp // tiles_x
    area = th * tw

    # histograms: one bincount over (sample, tile, value)
    row = (torch.arange(hp, device=dev) // th) * tiles_x
    col = torch.arange(wp, device=dev) // tw
    tile_of = ((row[:, None] + col[None, :]) * BINS).to(itype)
    # A fixed-size count (index_add_), not bincount, whose output size depends on the data's maximum and
    # so would read it back from the device.
    flat = (src + tile_of).reshape(-1)
    hist = torch.zeros(n * n_tiles * BINS, dtype=torch.int64, device=dev).index_add_(
        0, flat.long(), torch.ones_like(flat, dtype=torch.int64)
    )
    hist = hist.reshape(n, n_tiles, BINS)

    lut = tile_luts(hist, clip_limit, area)

    # bilinear blend of the four nearest tile LUTs at every pixel of the original image
    y1, y2, wy1, wy2 = _tile_weights(h, th, tiles_y, dev)
    x1, x2, wx1, wx2 = _tile_weights(w, tw, tiles_x, dev)

    def at(ty: torch.Tensor, tx: torch.Tensor) -> torch.Tensor:
        return lookup(lut, v + ((ty[:, None] * tiles_x + tx[None, :]) * BINS).to(itype))

    wx1, wx2, wy1, wy2 = wx1[None, None, :], wx2[None, None, :], wy1[None, :, None], wy2[None, :, None]
    top = at(y1, x1).mul_(wx1).add_(at(y1, x2).mul_(wx2))
    bottom = at(y2, x1).mul_(wx1).add_(at(y2, x2).mul_(wx2))
    return top.mul_(wy1).add_(bottom.mul_(wy2)).round_().clamp_(0, MAX_VALUE)


def _fused_clahe(x: torch.Tensor, clip_limit: torch.Tensor, tile_grid_size: tuple[int, int]) -> torch.Tensor:
    levels = fused.levels(x)
    hist = fused.tile_histograms(levels, tile_grid_size)
    tiles_x, tiles_y = tile_grid_size
    area = fused.padded_tile(x.shape[-2], tiles_y) * fused.padded_tile(x.shape[-1], tiles_x)
    return fused.blend(levels, tile_luts(hist, clip_limit, area), tile_grid_size)


def clahe_images(x: torch.Tensor, clip_limit: torch.Tensor, tile_grid_size: tuple[int, int]) -> torch.Tensor:
    """albumentations' fpixel.clahe per sample on [B, C, H, W] (C = 1 or 3, RGB) on the 0-255 scale.

    On CUDA with Triton, three fused passes (kernels.clahe); the eager lines below are their reference.
    """
    c = x.shape[1]
    if fused.fits(x, tile_grid_size):
        out = kernels.attempt("clahe", x, _fused_clahe, x, clip_limit, tile_grid_size)
        if out is not None:
            return out
    q = x.round().clamp(0, MAX_VALUE)
    if c == 1:
        return clahe(q[:, 0], clip_limit, tile_grid_size)[:, None].to(x.dtype)
    if c != 3:
        raise ValueError(f"CLAHE needs 1 or 3 channels, got {c}")
    lab = rgb_to_lab(q)
    lightness = clahe(lab[:, 0], clip_limit, tile_grid_size).to(lab.dtype)
    return lab_to_rgb(torch.cat([lightness[:, None], lab[:, 1:]], 1)).to(x.dtype)


class CLAHE(GpuOp):
    """Per-sample clip limit ~ U(clip_limit); applied in chunks of samples to bound the index memory."""

    def __init__(self, p, clip_limit, tile_grid_size=(8, 8), chunk_pixels: int = 1 << 24):
        super().__init__(p)
        self.clip_limit = tuple(clip_limit)
        self.tile_grid_size = tuple(int(v) for v in tile_grid_size)
        self.chunk_pixels = int(chunk_pixels)

    def apply(self, x, m, g):
        n, _, h, w = x.shape
        clip = uniform(n, *self.clip_limit, g, x.device)
        # chunks bound the eager op's index memory; the fused kernels need none
        fused_path = kernels.ready("clahe", x) and fused.fits(x, self.tile_grid_size)
        per = n if fused_path else max(1, self.chunk_pixels // (h * w))
        if per >= n:
            return clahe_images(x, clip, self.tile_grid_size), m
        parts = [
            clahe_images(x[s : s + per], clip[s : s + per], self.tile_grid_size) for s in range(0, n, per)
        ]
        return torch.cat(parts), m
