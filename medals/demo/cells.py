"""The generated cells competition (Human Protein Atlas shape): 4-channel cell images with multi-label stains."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medals.demo.draw import TEST, TRAIN, clip_uint8, grid, image_rng, smooth_noise
from medals.files import write_csv

CELL_CLASSES = ("nucleoplasm", "nuclear membrane", "cytosol", "plasma membrane", "mitochondria")


CELL_CHANNELS = ("red", "green", "blue", "yellow")


def _cell_layout(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres [N, 2] (y, x) and radii [N], kept apart so cells touch but rarely overlap."""
    n_cells = int(rng.integers(3, 6))
    radius = size * rng.uniform(0.17, 0.22)
    centres: list[np.ndarray] = []
    for _ in range(300):
        if len(centres) == n_cells:
            break
        candidate = rng.uniform(0.15 * size, 0.85 * size, 2)
        if all(np.hypot(*(candidate - c)) > 1.5 * radius for c in centres):
            centres.append(candidate)
    radii = radius * rng.uniform(0.85, 1.15, len(centres))
    return np.array(centres, np.float32), radii.astype(np.float32)


def cell_images(rng: np.random.Generator, size: int, labels: list[int]) -> dict[str, np.ndarray]:
    """The four uint8 channels of one field of cells; the green pattern shows the given labels."""
    yy, xx = grid(size)
    centres, radii = _cell_layout(rng, size)
    n = len(centres)
    dy = yy[None] - centres[:, 0, None, None]
    dx = xx[None] - centres[:, 1, None, None]
    theta = np.arctan2(dy, dx)
    # Normalised distance to each cell's wobbly outline (1 on the plasma membrane).
    phase = rng.uniform(0, 2 * np.pi, (n, 2))[:, :, None, None]
    amp = rng.uniform(0.05, 0.15, (n, 2))[:, :, None, None]
    outline = 1 + amp[:, 0] * np.cos(2 * theta + phase[:, 0]) + amp[:, 1] * np.cos(3 * theta + phase[:, 1])
    q = np.hypot(dy, dx) / (radii[:, None, None] * outline)
    order = np.sort(q, axis=0)
    own = np.argmin(q, axis=0)
    q_own = order[0]
    cell = np.clip((1 - q_own) / 0.06, 0, 1)
    # Nuclei: smaller ellipses near each centre, oriented at random.
    shift = rng.uniform(-0.12, 0.12, (n, 2)) * radii[:, None]
    ny = dy - shift[:, 0, None, None]
    nx = dx - shift[:, 1, None, None]
    tilt = rng.uniform(0, np.pi, n)[:, None, None]
    a = radii[:, None, None] * rng.uniform(0.42, 0.5, n)[:, None, None]
    b = a * rng.uniform(0.7, 0.95, n)[:, None, None]
    u = nx * np.cos(tilt) + ny * np.sin(tilt)
    v = -nx * np.sin(tilt) + ny * np.cos(tilt)
    n_dist = np.take_along_axis(np.hypot(u / a, v / b), own[None], axis=0)[0]
    nucleus = np.clip((1 - n_dist) / 0.1, 0, 1) * (q_own < 1)
    cytoplasm = cell * (1 - nucleus)

    blue = nucleus * (0.65 + 0.08 * smooth_noise(rng, size, 10))
    fibres = np.zeros((size, size), np.uint8)
    for centre, radius in zip(centres, radii, strict=True):
        for angle in rng.uniform(0, 2 * np.pi, 14):
            end = centre + 1.2 * radius * np.array([np.sin(angle), np.cos(angle)])
            mid = (centre + end) / 2 + rng.normal(0, 0.15 * radius, 2)
            points = np.array([centre, mid, end])[:, ::-1].round().astype(np.int32)
            cv2.polylines(fibres, [points], False, 255, thickness=1, lineType=cv2.LINE_AA)
    red = cell * (0.12 + 0.45 * fibres.astype(np.float32) / 255)
    yellow = cell * (0.15 + 0.35 * np.exp(-(q_own**2) / 0.25)) * (1 - 0.6 * nucleus)
    yellow = yellow * (1 + 0.25 * smooth_noise(rng, size, 16))

    green = np.zeros((size, size), np.float32)
    if 0 in labels:  # nucleoplasm: the nucleus filled
        green += 0.55 * nucleus
    if 1 in labels:  # nuclear membrane: a thin bright ring on the nucleus outline
        green += 0.9 * np.exp(-(((n_dist - 1) / 0.12) ** 2)) * (q_own < 1)
    if 2 in labels:  # cytosol: an even haze in the cytoplasm
        green += 0.4 * cytoplasm
    if 3 in labels:  # plasma membrane: the cell outline, including where two cells touch
        touching = (order[1] - order[0] < 0.1) & (q_own < 1) if n > 1 else np.zeros_like(cell, bool)
        green += 0.9 * np.maximum(np.exp(-(((q_own - 0.96) / 0.06) ** 2)), touching)
    if 4 in labels:  # mitochondria: bright puncta scattered in the cytoplasm
        dots = np.zeros((size, size), np.float32)
        ys, xs = np.nonzero(cytoplasm > 0.5)
        if len(ys):
            pick = rng.choice(len(ys), size=min(len(ys), 18 * n), replace=False)
            dots[ys[pick], xs[pick]] = 1.0
        dots = cv2.GaussianBlur(dots, (0, 0), 0.8)
        green += np.clip(dots / (dots.max() + 1e-6) * 1.2, 0, 1)
    green *= rng.uniform(0.75, 1.0)

    channels = {"red": red, "green": green, "blue": blue, "yellow": yellow}
    out = {}
    for name, channel in channels.items():
        channel = channel + np.abs(rng.normal(0.02, 0.015, (size, size)))  # camera background
        out[name] = clip_uint8(255 * channel)
    return out


def _cell_labels(rng: np.random.Generator) -> list[int]:
    count = int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))
    return [int(v) for v in rng.choice(len(CELL_CLASSES), size=count, replace=False)]


def _hpa_id(rng: np.random.Generator) -> str:
    h = rng.integers(0, 256, 16, dtype=np.uint8).tobytes().hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def generate_cells(
    out_dir: Path, n_train: int = 360, n_test: int = 90, size: int = 96, seed: int = 0
) -> None:
    """HPA-like folder: train.csv (Id, Target), sample_submission.csv (Id, Predicted),
    train/{Id}_{red,green,blue,yellow}.png and test/ likewise (single-channel 8-bit PNGs).

    Target holds 1-3 space-separated label ids in random order, as in the HPA data.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng([seed, 1002])
    frames = {}
    for split, folder, n in ((TRAIN, "train", n_train), (TEST, "test", n_test)):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        ids, targets = [], []
        for index in range(n):
            image_id = _hpa_id(rng)
            labels = _cell_labels(rng)
            for name, channel in cell_images(image_rng(seed, split, index), size, labels).items():
                cv2.imwrite(str(out_dir / folder / f"{image_id}_{name}.png"), channel)
            ids.append(image_id)
            targets.append(" ".join(map(str, labels)))
        frames[folder] = pd.DataFrame({"Id": ids, "Target": targets})
    write_csv(out_dir / "train.csv", frames["train"])
    write_csv(out_dir / "sample_submission.csv", pd.DataFrame({"Id": frames["test"]["Id"], "Predicted": "0"}))
