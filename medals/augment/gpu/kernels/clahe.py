"""CLAHE in three passes over memory instead of some sixty: levels (and 8-bit Lab), tile histograms, and
the blend of the four tile LUTs (and the way back to RGB).

1. `_levels`: each pixel rounded to its uint8 level; for RGB, OpenCV's fixed-point RGB -> Lab (the
   tables and integer steps of lab.rgb_to_lab), written as uint8 L, a, b planes.
2. `_tile_histograms`: one program per (sample, tile) counts its tile of the padded grid (reflect-101
   rows and columns at the bottom and right, as OpenCV pads for the histograms only) with
   tl.histogram.
3. The clipping, redistribution and LUTs stay in torch (clahe.tile_luts): [B, tiles, 256] is small.
4. `_blend`: per pixel the four nearest tile LUTs, blended with OpenCV's float32 weights in the eager
   op's order, rounded half to even; for RGB, lab.lab_to_rgb's integer steps back to RGB.

Integer steps are the eager op's exactly; the float32 blend is too, operation for operation, so under
the interpreter the result equals clahe.clahe_images bit for bit. On CUDA the compiler may contract a
multiply-add of the blend into one rounding, which can move a value sitting on a rounding boundary by
one level (the eager op's own tolerance against cv2).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from medals.augment.gpu.kernels import BLOCK, sample_block, tl, triton
from medals.augment.gpu.lab import BASE, LAB_SHIFT, LAB_SHIFT2, MIN_AB, _tables

BINS = 256
# lab.rgb_to_lab's integer constants
L_SCALE = (116 * 255 + 50) // 100
HALF = 1 << (LAB_SHIFT2 - 1)
L_OFFSET = HALF - (16 * 255 * (1 << LAB_SHIFT2) + 50) // 100
AB_OFFSET = (128 << LAB_SHIFT2) + HALF
# lab.lab_to_rgb's
X_OFFSET = -(128 * BASE // 500) - MIN_AB
Z_OFFSET = 128 * BASE // 200 - 1 - MIN_AB
RGB_SHIFT = LAB_SHIFT + 14 - 12

if triton is not None:

    @triton.jit
    def _rint(v):
        """Round half to even of float32 |v| < 2^22 (adding and taking away 1.5 * 2^23), as torch.round."""
        return (v + 12582912.0) - 12582912.0

    @triton.jit
    def _level(x_ptr, offsets, inside):
        x = tl.load(x_ptr + offsets, mask=inside, other=0.0)
        return _rint(tl.minimum(tl.maximum(x, 0.0), 255.0)).to(tl.int32)

    @triton.jit
    def _xyz_row(coef_ptr, row: tl.constexpr, r, g, b, cbrt_ptr, shift: tl.constexpr):
        c0 = tl.load(coef_ptr + row * 3)
        c1 = tl.load(coef_ptr + row * 3 + 1)
        c2 = tl.load(coef_ptr + row * 3 + 2)
        return tl.load(cbrt_ptr + ((r * c0 + g * c1 + b * c2 + (1 << (shift - 1))) >> shift))

    @triton.jit
    def _levels(
        x_ptr, out_ptr, gamma_ptr, cbrt_ptr, coef_ptr, plane, l_scale, l_offset, ab_offset,
        LAB: tl.constexpr, SHIFT: tl.constexpr, SHIFT2: tl.constexpr, BLOCK_SIZE: tl.constexpr,
    ):  # fmt: skip
        sample, offsets, inside = sample_block(plane, BLOCK_SIZE)
        if LAB:
            base = sample * 3 * plane + offsets
            r = tl.load(gamma_ptr + _level(x_ptr, base, inside), mask=inside, other=0)
            g = tl.load(gamma_ptr + _level(x_ptr, base + plane, inside), mask=inside, other=0)
            b = tl.load(gamma_ptr + _level(x_ptr, base + 2 * plane, inside), mask=inside, other=0)
            fx = _xyz_row(coef_ptr, 0, r, g, b, cbrt_ptr, SHIFT)
            fy = _xyz_row(coef_ptr, 1, r, g, b, cbrt_ptr, SHIFT)
            fz = _xyz_row(coef_ptr, 2, r, g, b, cbrt_ptr, SHIFT)
            lightness = tl.minimum(tl.maximum((fy * l_scale + l_offset) >> SHIFT2, 0), 255)
            a = tl.minimum(tl.maximum(((fx - fy) * 500 + ab_offset) >> SHIFT2, 0), 255)
            b = tl.minimum(tl.maximum(((fy - fz) * 200 + ab_offset) >> SHIFT2, 0), 255)
            tl.store(out_ptr + base, lightness.to(tl.uint8), mask=inside)
            tl.store(out_ptr + base + plane, a.to(tl.uint8), mask=inside)
            tl.store(out_ptr + base + 2 * plane, b.to(tl.uint8), mask=inside)
        else:
            base = sample * plane + offsets
            tl.store(out_ptr + base, _level(x_ptr, base, inside).to(tl.uint8), mask=inside)

    @triton.jit
    def _tile_histograms(
        levels_ptr, hist_ptr, sample_stride, height, width, tile_h, tile_w, tiles, tiles_x,
        BINS: tl.constexpr, BLOCK_SIZE: tl.constexpr,
    ):  # fmt: skip
        program = tl.program_id(0)  # sample * tiles + tile
        sample = program // tiles
        tile = program % tiles
        top = (tile // tiles_x) * tile_h
        left = (tile % tiles_x) * tile_w
        area = tile_h * tile_w
        hist = tl.zeros([BINS], dtype=tl.int32)
        for start in range(0, area, BLOCK_SIZE):
            idx = start + tl.arange(0, BLOCK_SIZE)
            inside = idx < area
            y = top + idx // tile_w
            x = left + idx % tile_w
            y = tl.where(y < height, y, 2 * height - 2 - y)  # reflect-101 padding rows
            x = tl.where(x < width, x, 2 * width - 2 - x)
            v = tl.load(levels_ptr + sample * sample_stride + y * width + x, mask=inside, other=0)
            hist += tl.histogram(v.to(tl.int32), BINS)
        # The lanes past the tile loaded 0 and were counted in bin 0 (tl.histogram's mask argument is
        # recent: this runs on older Triton releases too).
        padding = tl.cdiv(area, BLOCK_SIZE) * BLOCK_SIZE - area
        bins = tl.arange(0, BINS)
        tl.store(hist_ptr + program * BINS + bins, hist - tl.where(bins == 0, padding, 0))

    @triton.jit
    def _tile_coordinates(i, inv, tiles):
        f = i.to(tl.float32) * inv - 0.5
        t1 = tl.floor(f)
        a = f - t1
        t1 = t1.to(tl.int32)
        return tl.maximum(t1, 0), tl.minimum(t1 + 1, tiles - 1), 1.0 - a, a

    @triton.jit
    def _rgb_row(coef_ptr, row: tl.constexpr, x, y, z, inv_gamma_ptr, inside, shift: tl.constexpr):
        c0 = tl.load(coef_ptr + row * 3)
        c1 = tl.load(coef_ptr + row * 3 + 1)
        c2 = tl.load(coef_ptr + row * 3 + 2)
        linear = (x * c0 + y * c1 + z * c2 + (1 << (shift - 1))) >> shift
        linear = tl.minimum(tl.maximum(linear, 0), 4095)
        return tl.load(inv_gamma_ptr + linear, mask=inside, other=0).to(tl.float32)

    @triton.jit
    def _blend(
        levels_ptr, lut_ptr, out_ptr, y_ptr, fy_ptr, xz_ptr, inv_gamma_ptr, coef_ptr,
        plane, width, inv_y, inv_x, tiles_y, tiles_x, x_offset, z_offset,
        LAB: tl.constexpr, SHIFT: tl.constexpr, BINS: tl.constexpr, BLOCK_SIZE: tl.constexpr,
    ):  # fmt: skip
        sample, offsets, inside = sample_block(plane, BLOCK_SIZE)
        y1, y2, wy1, wy2 = _tile_coordinates(offsets // width, inv_y, tiles_y)
        x1, x2, wx1, wx2 = _tile_coordinates(offsets % width, inv_x, tiles_x)
        channels = 3 if LAB else 1
        base = sample * channels * plane + offsets
        level = tl.load(levels_ptr + base, mask=inside, other=0).to(tl.int32)
        lut = lut_ptr + sample * tiles_y * tiles_x * BINS + level
        l11 = tl.load(lut + (y1 * tiles_x + x1) * BINS, mask=inside, other=0.0)
        l12 = tl.load(lut + (y1 * tiles_x + x2) * BINS, mask=inside, other=0.0)
        l21 = tl.load(lut + (y2 * tiles_x + x1) * BINS, mask=inside, other=0.0)
        l22 = tl.load(lut + (y2 * tiles_x + x2) * BINS, mask=inside, other=0.0)
        top = l11 * wx1 + l12 * wx2
        bottom = l21 * wx1 + l22 * wx2
        v = tl.minimum(tl.maximum(_rint(top * wy1 + bottom * wy2), 0.0), 255.0)
        if LAB:
            lightness = v.to(tl.int32)
            a = tl.load(levels_ptr + base + plane, mask=inside, other=0).to(tl.int32)
            b = tl.load(levels_ptr + base + 2 * plane, mask=inside, other=0).to(tl.int32)
            yv = tl.load(y_ptr + lightness, mask=inside, other=0)
            fy = tl.load(fy_ptr + lightness, mask=inside, other=0)
            adiv = (a * (5 * 53687) + (1 << 7)) >> 13
            bdiv = (b * 41943 + (1 << 4)) >> 9
            xv = tl.load(xz_ptr + (adiv + fy + x_offset), mask=inside, other=0)
            zv = tl.load(xz_ptr + (fy - bdiv + z_offset), mask=inside, other=0)
            tl.store(
                out_ptr + base, _rgb_row(coef_ptr, 0, xv, yv, zv, inv_gamma_ptr, inside, SHIFT), mask=inside
            )
            g = _rgb_row(coef_ptr, 1, xv, yv, zv, inv_gamma_ptr, inside, SHIFT)
            tl.store(out_ptr + base + plane, g, mask=inside)
            b_out = _rgb_row(coef_ptr, 2, xv, yv, zv, inv_gamma_ptr, inside, SHIFT)
            tl.store(out_ptr + base + 2 * plane, b_out, mask=inside)
        else:
            tl.store(out_ptr + base, v, mask=inside)


def fits(x: torch.Tensor, tile_grid_size: tuple[int, int]) -> bool:
    """The kernels pad by one reflection (a pad of at most tiles - 1 < the side); smaller images go eager."""
    tiles_x, tiles_y = tile_grid_size
    return x.shape[1] in (1, 3) and x.shape[-2] > tiles_y and x.shape[-1] > tiles_x


@lru_cache(maxsize=8)
def _coefficients(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """lab's 12-bit RGB -> XYZ and XYZ -> RGB coefficients as int32 [9] tensors, once per device."""
    t = _tables(device)
    return tuple(
        torch.tensor([c for row in t[key] for c in row], dtype=torch.int32).to(device)
        for key in ("fwd", "inv")
    )


def padded_tile(size: int, tiles: int) -> int:
    """A tile's side: OpenCV pads a side that the grid does not divide by tiles - size % tiles."""
    return (size + (tiles - size % tiles if size % tiles else 0)) // tiles


def levels(x: torch.Tensor) -> torch.Tensor:
    """uint8 levels of float32 [B, C, H, W] on 0-255: for C == 3 (RGB) OpenCV's 8-bit L, a, b planes."""
    n, c, h, w = x.shape
    t = _tables(x.device)
    out = torch.empty(x.shape, dtype=torch.uint8, device=x.device)
    _levels[(triton.cdiv(h * w, BLOCK), n)](
        x, out, t["gamma"], t["cbrt"], _coefficients(x.device)[0], h * w, L_SCALE, L_OFFSET, AB_OFFSET,
        LAB=c == 3, SHIFT=LAB_SHIFT, SHIFT2=LAB_SHIFT2, BLOCK_SIZE=BLOCK,
    )  # fmt: skip
    return out


def tile_histograms(levels: torch.Tensor, tile_grid_size: tuple[int, int]) -> torch.Tensor:
    """int64 [B, tiles, 256]: the histograms of channel 0 (L, or the grey level) over the padded grid."""
    n, c, h, w = levels.shape
    tiles_x, tiles_y = tile_grid_size
    tiles = tiles_x * tiles_y
    hist = torch.empty((n, tiles, BINS), dtype=torch.int32, device=levels.device)
    tile_h, tile_w = padded_tile(h, tiles_y), padded_tile(w, tiles_x)
    _tile_histograms[(n * tiles,)](
        levels, hist, c * h * w, h, w, tile_h, tile_w, tiles, tiles_x, BINS=BINS, BLOCK_SIZE=BLOCK
    )
    return hist.long()


def blend(levels: torch.Tensor, lut: torch.Tensor, tile_grid_size: tuple[int, int]) -> torch.Tensor:
    """float32 [B, C, H, W]: each pixel's channel 0 through its four tile LUTs (lut: float32, flat
    [B * tiles * 256]), blended and rounded; for C == 3, with a and b, back to RGB."""
    n, c, h, w = levels.shape
    tiles_x, tiles_y = tile_grid_size
    t = _tables(levels.device)
    out = torch.empty(levels.shape, dtype=torch.float32, device=levels.device)
    # float32 1 / tile side, as OpenCV and clahe._tile_weights compute it
    inv_y = float(np.float32(1) / np.float32(padded_tile(h, tiles_y)))
    inv_x = float(np.float32(1) / np.float32(padded_tile(w, tiles_x)))
    _blend[(triton.cdiv(h * w, BLOCK), n)](
        levels, lut, out, t["y"], t["fy"], t["xz"], t["inv_gamma"], _coefficients(levels.device)[1],
        h * w, w, inv_y, inv_x, tiles_y, tiles_x, X_OFFSET, Z_OFFSET,
        LAB=c == 3, SHIFT=RGB_SHIFT, BINS=BINS, BLOCK_SIZE=BLOCK,
    )  # fmt: skip
    return out
