"""The generated chest competition (SIIM-ACR pneumothorax shape): grayscale chest images with RLE masks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medals.data.rle import encode
from medals.demo.draw import TEST, TRAIN, clip_uint8, grid, image_rng, smooth_noise
from medals.files import write_csv


def _lung_distance(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ay: float, ax: float, lateral: int
) -> np.ndarray:
    """Normalised distance to an egg-shaped lung outline (1 on it): wider at the base, and
    flattened on the mediastinal side (``lateral`` is -1 for the image-left lung, +1 for the right)."""
    t = np.clip((yy - cy) / ay, -1, 1)
    width = ax * (0.72 + 0.28 * t)
    medial = (xx - cx) * lateral < 0
    width = np.where(medial, width * 0.8, width)
    return np.hypot((xx - cx) / width, (yy - cy) / ay)


def chest_case(
    seed: int, split: int, index: int, size: int, n_regions: int
) -> tuple[np.ndarray, np.ndarray, list]:
    """Render one chest film: (uint8 image, bool lung fields, list of bool pneumothorax regions).

    ``n_regions`` 0: no pneumothorax; 1: one crescent; 2: one in each lung (two RLE rows).
    """
    rng = image_rng(seed, split, index)
    yy, xx = grid(size)
    s = float(size)
    image = np.full((size, size), 18.0, np.float32)
    # Soft tissue: a rounded box (superellipse) with broad shoulders.
    body = (np.abs(xx - s / 2) / (0.47 * s)) ** 3 + (np.abs(yy - 0.62 * s) / (0.64 * s)) ** 3
    body_alpha = np.clip((1 - body) / 0.12, 0, 1)
    image += body_alpha * (140 + 10 * smooth_noise(rng, size, 4))
    # Spine and mediastinum, then the heart: brighter than the soft tissue.
    image += 25 * np.exp(-(((xx - s / 2) / (0.05 * s)) ** 2)) * body_alpha
    heart = np.hypot((xx - 0.55 * s) / (0.17 * s), (yy - 0.68 * s) / (0.15 * s))
    heart_alpha = np.clip((1 - heart) / 0.3, 0, 1)

    lungs = []
    cy = s * rng.uniform(0.46, 0.5)
    ay = s * rng.uniform(0.32, 0.36)
    for lateral in (-1, 1):
        cx = s * (0.5 + lateral * rng.uniform(0.21, 0.24))
        ax = s * rng.uniform(0.18, 0.2)
        lungs.append((cy + rng.normal(0, 0.01 * s), cx, ay, ax, lateral))

    # Vessels: thin lines fanning out from each hilum; drawn once, removed where the lung collapsed.
    vessels = np.zeros((size, size), np.uint8)
    for ly, lx, lay, lax, lateral in lungs:
        hilum = np.array([lx - lateral * 0.5 * lax, ly + 0.1 * lay])
        for _ in range(24):
            angle = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(0.3, 1.0) * lay
            end = hilum + length * np.array([np.cos(angle), np.sin(angle)])
            mid = (hilum + end) / 2 + rng.normal(0, 0.04 * s, 2)
            points = np.array([hilum, mid, end]).round().astype(np.int32)
            cv2.polylines(vessels, [points], False, 255, thickness=1, lineType=cv2.LINE_AA)
    texture = cv2.GaussianBlur(vessels.astype(np.float32) / 255, (0, 0), 0.6)
    texture += 0.15 * smooth_noise(rng, size, 24)

    lung_field = np.zeros((size, size), bool)
    air = np.zeros((size, size), np.float32)
    free_air = np.zeros((size, size), np.float32)
    compressed = np.zeros((size, size), np.float32)
    pleura = np.zeros((size, size), np.float32)
    regions = []
    sides = rng.permutation(2)[:n_regions]
    for side, (ly, lx, lay, lax, lateral) in enumerate(lungs):
        dist = _lung_distance(yy, xx, ly, lx, lay, lax, lateral)
        lung_field |= dist < 1
        air = np.maximum(air, np.clip((1 - dist) / 0.08, 0, 1))
        if side in sides:
            # The collapsed lung: a smaller lung pulled towards the hilum and the base, leaving a
            # crescent of free air along the lateral wall and the apex.
            f = rng.uniform(0.45, 0.65)
            cy_c = ly + (1 - f) * lay * 0.8
            cx_c = lx - lateral * (1 - f) * lax * 0.8
            inner = _lung_distance(yy, xx, cy_c, cx_c, f * lay, f * lax, lateral)
            region = (dist < 1) & (inner >= 1)
            regions.append(region)
            free_air = np.maximum(free_air, region.astype(np.float32))
            compressed = np.maximum(compressed, (inner < 1).astype(np.float32))
            pleura += np.exp(-(((inner - 1) / 0.04) ** 2)) * (dist < 1)
    air *= 1 - 0.7 * heart_alpha
    # Aerated lung is dark with vessel markings; free air (pneumothorax) is darker still and has
    # none, bounded by the bright visceral pleural line; the collapsed lung is denser.
    soft = cv2.GaussianBlur(free_air, (0, 0), 0.7)
    image -= air * (75 + 45 * texture * (1 - soft))
    image -= 60 * soft * air
    image += air * (15 * compressed + 45 * np.clip(pleura, 0, 1))
    image += 30 * heart_alpha * body_alpha

    # Ribs: curved bright bands over each side.
    ribs = np.zeros((size, size), np.float32)
    thickness = max(1, round(s / 40))
    for lateral in (-1, 1):
        for k in range(8):
            centre = (round(s / 2 + lateral * 0.02 * s), round(s * (0.12 + 0.085 * k)))
            axes = (round(0.38 * s), round(0.12 * s))
            start, end = (180, 270) if lateral < 0 else (270, 360)
            cv2.ellipse(ribs, centre, axes, rng.uniform(-4, 4) + 12 * lateral, start, end, 1.0, thickness)
    ribs = cv2.GaussianBlur(ribs, (0, 0), 0.8)
    image += 28 * ribs * body_alpha

    image += rng.normal(0, 5, (size, size)).astype(np.float32)
    image = cv2.GaussianBlur(image, (0, 0), 0.5)
    gain, gamma = rng.uniform(0.9, 1.1), rng.uniform(0.85, 1.15)
    image = 255 * (np.clip(image * gain, 0, 255) / 255) ** gamma
    return clip_uint8(image), lung_field, regions


def _chest_id(rng: np.random.Generator, split: int, index: int) -> str:
    return f"1.2.276.0.7230010.3.1.4.8323329.{10000 * (split + 1) + index}.{rng.integers(1517874000, 1517876000)}.{rng.integers(100000, 999999)}"


def generate_chest(
    out_dir: Path, n_train: int = 300, n_test: int = 80, size: int = 96, seed: int = 0
) -> None:
    """SIIM-ACR-like folder: train-rle.csv (ImageId, EncodedPixels; "-1" when empty, one row per
    region, images in index order), test.csv (ImageId), sample_submission.csv (ImageId,
    EncodedPixels "-1"), train/{ImageId}.png and test/{ImageId}.png (8-bit grayscale).

    Half the images have a pneumothorax; a third of those have one in each lung, written as two rows.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng([seed, 1003])
    rows = []
    test_ids = []
    for split, folder, n in ((TRAIN, "train", n_train), (TEST, "test", n_test)):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        positive = rng.permutation(n) < (n + 1) // 2
        bilateral = rng.random(n) < 1 / 3
        for index in range(n):
            image_id = _chest_id(rng, split, index)
            n_regions = int(positive[index]) * (1 + int(bilateral[index]))
            image, _, regions = chest_case(seed, split, index, size, n_regions)
            cv2.imwrite(str(out_dir / folder / f"{image_id}.png"), image)
            if split == TEST:
                test_ids.append(image_id)
            elif regions:
                rows.extend((image_id, encode(region, fmt="siim")) for region in regions)
            else:
                rows.append((image_id, "-1"))
    write_csv(out_dir / "train-rle.csv", pd.DataFrame(rows, columns=["ImageId", "EncodedPixels"]))
    write_csv(out_dir / "test.csv", pd.DataFrame({"ImageId": test_ids}))
    write_csv(out_dir / "sample_submission.csv", pd.DataFrame({"ImageId": test_ids, "EncodedPixels": "-1"}))
