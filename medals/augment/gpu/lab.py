"""OpenCV's 8-bit sRGB <-> CIE Lab conversion (cv2.COLOR_RGB2LAB / COLOR_LAB2RGB on uint8), in torch.

OpenCV converts uint8 images with fixed-point arithmetic and lookup tables, not with the float formulas:

- forward: sRGB gamma from a 256-entry table (linear values scaled by 8), XYZ / white point by 12-bit
  integer coefficients, f(t) (cube root, or the linear toe below (6/29)^3) from a table scaled by 2^15,
  then L = 116 f(Y) - 16 rescaled to 0-255 and a = 500 (f(X) - f(Y)), b = 200 (f(Y) - f(Z)) offset by
  128, each rounded and saturated to uint8;
- inverse: tables for L -> (Y, f(Y)) and f -> X/Z on a 2^14 scale, 12-bit XYZ -> linear RGB
  coefficients and a 4096-entry inverse sRGB gamma table.

The tables here are rebuilt with the same float32 steps and the integer steps are the same, so the
results equal cv2's on every uint8 input (checked against cv2 on all 2^24 values both ways while writing
this; the tests check a grid of them). If a future OpenCV changed its tables, differences would be
rounding-sized (1-2 levels).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

_RGB2XYZ = (0.412453, 0.357580, 0.180423, 0.212671, 0.715160, 0.072169, 0.019334, 0.119193, 0.950227)
_XYZ2RGB = (3.240479, -1.53715, -0.498535, -0.969256, 1.875991, 0.041556, 0.055648, -0.204043, 1.057311)
_WHITE = (0.950456, 1.0, 1.088754)  # D65

LAB_SHIFT = 12  # XYZ coefficients
GAMMA_SHIFT = 3  # linear RGB from the forward gamma table
LAB_SHIFT2 = LAB_SHIFT + GAMMA_SHIFT  # f(t) table
BASE_SHIFT = 14  # inverse tables
BASE = 1 << BASE_SHIFT
INV_GAMMA_SIZE = 1 << 12
MIN_AB = -8145  # lowest f(Y) +- a/500, b/200 on the 2^14 scale


def _round(v: np.ndarray) -> np.ndarray:
    return np.rint(v).astype(np.int64)  # half to even, like cvRound


def _forward_tables() -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    f32 = np.float32
    x = (np.arange(256).astype(f32) / f32(255)).astype(np.float64)
    gamma = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(f32)
    gamma_tab = _round(f32(255 << GAMMA_SHIFT) * gamma)
    size = 256 * 3 // 2 * (1 << GAMMA_SHIFT)
    t = (np.arange(size).astype(f32) * (f32(1) / f32(255 << GAMMA_SHIFT))).astype(f32)
    f = np.where(t < f32(216 / 24389), t * f32(841 / 108) + f32(16 / 116), np.cbrt(t)).astype(f32)
    cbrt_tab = _round(f32(1 << LAB_SHIFT2) * f)
    coeffs = [[round((1 << LAB_SHIFT) * _RGB2XYZ[i * 3 + j] / _WHITE[i]) for j in range(3)] for i in range(3)]
    return gamma_tab, cbrt_tab, coeffs


def _inverse_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[list[int]]]:
    f32 = np.float32
    i = np.arange(256)
    y_low = _round((i * BASE * 20 * 9).astype(f32) / f32(17 * 29**3))
    fy_low = _round(f32(BASE) * (f32(16) / f32(116) + (i * 5).astype(f32) / f32(3 * 17 * 29)))
    fy = ((i * 100 * BASE).astype(f32) / f32(255 * 116) + f32(16 * BASE) / f32(116)).astype(f32)
    y_tab = np.where(i <= 20, y_low, _round(fy * fy * fy / f32(BASE * BASE)))
    fy_tab = np.where(i <= 20, fy_low, _round(fy))
    v = np.arange(MIN_AB, BASE * 9 // 4 + MIN_AB)
    toe = np.sign(v) * (np.abs(v * 108) // 841) - BASE * 16 // 116 * 108 // 841  # C division truncates
    xz_tab = np.where(v <= 3390, toe, v * v // BASE * v // BASE)
    x = (np.arange(INV_GAMMA_SIZE).astype(f32) * (f32(1) / f32(INV_GAMMA_SIZE))).astype(np.float64)
    inv_gamma = np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055).astype(f32)
    inv_gamma_tab = _round(f32(255) * inv_gamma)
    coeffs = [[round((1 << LAB_SHIFT) * _XYZ2RGB[r * 3 + c] * _WHITE[c]) for c in range(3)] for r in range(3)]
    return y_tab, fy_tab, xz_tab, inv_gamma_tab, coeffs


@lru_cache(maxsize=8)
def _tables(device: torch.device) -> dict:
    gamma, cbrt, fwd = _forward_tables()
    y_tab, fy_tab, xz_tab, inv_gamma, inv = _inverse_tables()

    def put(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int32)).to(device)

    return {
        "gamma": put(gamma),
        "cbrt": put(cbrt),
        "fwd": fwd,
        "y": put(y_tab),
        "fy": put(fy_tab),
        "xz": put(xz_tab),
        "inv_gamma": put(inv_gamma),
        "inv": inv,
    }


def lookup(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """table[idx] for a 1-D table and int32/int64 indices (index_select: much faster than table[idx])."""
    return table.index_select(0, idx.reshape(-1)).reshape(idx.shape)


def _weighted(planes: tuple[torch.Tensor, ...], coeffs: list[int], n: int) -> torch.Tensor:
    """CV_DESCALE(sum(c * plane), n): the integer dot product, rounded half up and shifted."""
    acc = planes[0] * coeffs[0]
    for plane, c in zip(planes[1:], coeffs[1:], strict=True):
        acc.add_(plane, alpha=c)
    acc.add_(1 << (n - 1))
    acc >>= n
    return acc


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """cv2.cvtColor(uint8 RGB, COLOR_RGB2LAB) on [B, 3, H, W] integer values 0-255 -> int32 [B, 3, H, W]."""
    t = _tables(rgb.device)
    lin = lookup(t["gamma"], rgb.to(torch.int32)).unbind(1)
    fx, fy, fz = (lookup(t["cbrt"], _weighted(lin, c, LAB_SHIFT)) for c in t["fwd"])
    half = 1 << (LAB_SHIFT2 - 1)
    lightness = fy * ((116 * 255 + 50) // 100)
    lightness.add_(half - (16 * 255 * (1 << LAB_SHIFT2) + 50) // 100)
    a = torch.sub(fx, fy).mul_(500).add_((128 << LAB_SHIFT2) + half)
    b = torch.sub(fy, fz).mul_(200).add_((128 << LAB_SHIFT2) + half)
    out = torch.stack([lightness, a, b], 1)
    out >>= LAB_SHIFT2
    return out.clamp_(0, 255)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """cv2.cvtColor(uint8 Lab, COLOR_LAB2RGB) on [B, 3, H, W] integer values 0-255 -> int32 [B, 3, H, W]."""
    t = _tables(lab.device)
    lightness, a, b = lab.to(torch.int32).unbind(1)
    y = lookup(t["y"], lightness)
    fy = lookup(t["fy"], lightness)
    # adiv = ((5 a 53687 + 2^7) >> 13) - 128 BASE / 500; bdiv = ((b 41943 + 2^4) >> 9) - 128 BASE / 200 + 1
    adiv = (a * (5 * 53687)).add_(1 << 7).bitwise_right_shift_(13)
    bdiv = (b * 41943).add_(1 << 4).bitwise_right_shift_(9)
    x = lookup(t["xz"], adiv.add_(fy).add_(-(128 * BASE // 500) - MIN_AB))
    z = lookup(t["xz"], torch.sub(fy, bdiv).add_(128 * BASE // 200 - 1 - MIN_AB))
    shift = LAB_SHIFT + BASE_SHIFT - 12
    out = [
        lookup(t["inv_gamma"], _weighted((x, y, z), c, shift).clamp_(0, INV_GAMMA_SIZE - 1)) for c in t["inv"]
    ]
    return torch.stack(out, 1)
