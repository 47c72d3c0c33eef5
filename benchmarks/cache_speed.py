"""Training-data throughput from JPEG files vs the prepare stage's resized uint8 cache, side by side.

Both paths run the same dataset code and the same augmentation list (the task default) on one CPU
core; only where the pixels come from differs. Prints images/s for each and their ratio.

    python benchmarks/cache_speed.py [--n 200] [--source 768] [--size 256]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from medals.augment.cpu import build_transform
from medals.data.cache import build_cache
from medals.data.dataset import ImageDataset


def write_jpegs(folder: Path, n: int, side: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        # Smooth content with noise: JPEG sizes close to real photographs, not flat colour.
        base = cv2.resize(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8), (side, side))
        image = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"img{i:05d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        rows.append(
            {
                "id": f"img{i:05d}",
                "split": "train",
                "path": str(path),
                "height": side,
                "width": side,
                "label": i % 2,
            }
        )
    return pd.DataFrame(rows)


def images_per_second(table: pd.DataFrame, size: int, repeats: int = 2) -> float:
    transform = build_transform(None, size, train=True, task="multiclass", mean=None, std=None)
    dataset = ImageDataset(table, "multiclass", 2, transform, in_chans=3)
    dataset[0]  # warm up (imports, first allocation)
    start = time.perf_counter()
    for _ in range(repeats):
        for index in range(len(dataset)):
            dataset[index]
    return repeats * len(dataset) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="images")
    parser.add_argument("--source", type=int, default=768, help="side of the JPEG files")
    parser.add_argument("--size", type=int, default=256, help="network input side (and cache side)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table = write_jpegs(folder, args.n, args.source)
        start = time.perf_counter()
        cached = build_cache(table, args.size, folder / "cache", workers=1)
        cache_seconds = time.perf_counter() - start
        jpeg = images_per_second(table, args.size)
        npy = images_per_second(cached, args.size)
    print(f"{args.n} images, {args.source} px JPEG -> {args.size} px, default augmentation, 1 core")
    print(f"{'source':<28}{'images/s':>10}")
    print(f"{'JPEG decode + resize':<28}{jpeg:>10.1f}")
    print(f"{'uint8 cache (.npy)':<28}{npy:>10.1f}")
    print(f"cache / JPEG: {npy / jpeg:.1f}x (building the cache took {cache_seconds:.1f} s, once)")


if __name__ == "__main__":
    main()
