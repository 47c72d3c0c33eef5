"""Drawing helpers shared by the generated competitions: per-image random streams, smooth noise, soft blobs, ids."""

from __future__ import annotations

import cv2
import numpy as np

# Split codes mixed into the per-image seeds.
TRAIN = 0


TEST = 1


def image_rng(seed: int, split: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, split, index])


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each float32 [size, size]."""
    axis = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(axis, axis, indexing="ij")


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise with about ``cells`` blobs across, zero mean and unit std."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / (field.std() + 1e-6)


def blob(
    rng: np.random.Generator, size: int, cy: float, cx: float, radius: float, wobble: float, edge: float
) -> np.ndarray:
    """Soft star-shaped blob: radius(theta) = radius * (1 + sum of random harmonics), alpha in [0, 1]."""
    yy, xx = grid(size)
    dy, dx = yy - cy, xx - cx
    theta = np.arctan2(dy, dx)
    bound = np.ones_like(theta)
    for k in range(2, 9):
        bound += wobble * rng.normal() / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    bound = radius * np.clip(bound, 0.4, None)
    return np.clip((bound - np.hypot(dy, dx)) / edge + 0.5, 0.0, 1.0)


def clip_uint8(image: np.ndarray) -> np.ndarray:
    """Round and clip a float image in [0, 255] to uint8 (no rescaling, unlike medals.data.io.to_uint8)."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def decimal_ids(rng: np.random.Generator, n: int, digits: int) -> list[str]:
    """n distinct random decimal ids of ``digits`` digits, in draw order."""
    chosen = rng.choice(10**digits, size=n, replace=False)
    return [f"{int(v):0{digits}d}" for v in chosen]
