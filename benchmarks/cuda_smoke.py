"""A two-epoch fold on CUDA with every per-device default (GPU data path, prefetch thread, bf16,
channels_last) on generated JPEGs: checks the GPU path end to end in a few seconds.

    python benchmarks/cuda_smoke.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medals.config import Recipe  # noqa: E402
from medals.runtime.settings import resolve_runtime
from medals.train.loop import train_fold  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        rows = []
        for i in range(96):
            image = np.clip(rng.normal(60 + 60 * (i % 3), 20, size=(96, 96, 3)), 0, 255).astype(np.uint8)
            path = Path(tmp) / f"{i}.jpg"
            cv2.imwrite(str(path), image)
            rows.append({"id": str(i), "path": str(path), "label": i % 3, "fold": i % 2})
        recipe = Recipe.model_validate(
            {
                "name": "smoke",
                "task": "multiclass",
                "data": {"classes": ["a", "b", "c"]},
                "model": {"backbone": "resnet18"},
                "train": {
                    "epochs": 2,
                    "batch_size": 16,
                    "image_size": 64,
                    "num_workers": 2,
                    "progress": False,
                },
            }
        )
        print(resolve_runtime(recipe, "cuda"), flush=True)
        start = time.perf_counter()
        result = train_fold(recipe, pd.DataFrame(rows), 0, Path(tmp) / "fold0", "cuda", num_classes=3)
        print(f"cuda smoke: {result} in {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
