"""A tiny UNet learns real nuclei: the stardist package's DSB2018 image cut into 64x64 tiles.

The tiles go through the whole engine as a competition folder would: 16-bit TIFF images, PNG mask
files, a fixed fold column, training and test prediction; Dice is measured on tiles never trained on.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from medals.config import load_recipe
from medals.post.metrics import mean_dice
from medals.stages.pipeline import run_stages

pytestmark = pytest.mark.slow

TILE = 64


def stardist_images() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("stardist")
    if spec is None:
        pytest.skip("the stardist package (real nuclei image) is not installed")
    folder = Path(spec.submodule_search_locations[0]) / "data" / "images"
    return tifffile.imread(folder / "img2d.tif"), tifffile.imread(folder / "mask2d.tif") > 0


def write_tiles(root: Path) -> dict[str, np.ndarray]:
    image, mask = stardist_images()
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows, truth = [], {}
    n = image.shape[0] // TILE
    for ty in range(n):
        for tx in range(n):
            tile_id = f"t{ty}_{tx}"
            window = np.s_[ty * TILE : (ty + 1) * TILE, tx * TILE : (tx + 1) * TILE]
            tifffile.imwrite(root / "images" / f"{tile_id}.tif", image[window])  # uint16, as acquired
            cv2.imwrite(str(root / "masks" / f"{tile_id}.png"), mask[window].astype(np.uint8) * 255)
            # Held out: the bottom-right quarter of the field of view, never seen in training.
            held_out = ty >= n * 3 // 4 and tx >= n // 2
            rows.append({"id": tile_id, "held_out": held_out, "block": (ty * n + tx) % 2})
            truth[tile_id] = mask[window]
    table = pd.DataFrame(rows)
    table[~table["held_out"]].drop(columns="held_out").to_csv(root / "train.csv", index=False)
    test = table[table["held_out"]][["id"]]
    test.to_csv(root / "test.csv", index=False)
    test.assign(EncodedPixels="-1").rename(columns={"id": "ImageId"}).to_csv(
        root / "sample_submission.csv", index=False
    )
    return truth


def test_tiny_unet_segments_real_nuclei(tmp_path):
    truth = write_tiles(tmp_path)
    recipe_path = tmp_path / "nuclei.yaml"
    recipe_path.write_text(
        yaml.safe_dump(
            {
                "name": "nuclei",
                "task": "segmentation",
                "run_dir": str(tmp_path / "run"),
                "data": {
                    "image_path": "images/{id}.tif",
                    "test_image_path": "images/{id}.tif",
                    "mask_path": "masks/{id}.png",
                    "rle_format": "row",
                },
                "split": {"method": "fixed", "column": "block", "n_folds": 2},
                "model": {
                    "arch": "unet",
                    "backbone": "resnet18",
                    "in_chans": 1,
                    "decoder": {"decoder_channels": [64, 32, 16, 16, 8]},
                },
                "train": {
                    # Batch 4 at lr 2e-3 (84 steps) learns from every seed tried: held-out Dice 0.91-0.955
                    # over recipe seeds 0-7 with independent flip draws. At lr 1e-3 seed 0 stalled with
                    # probabilities near 0.5 (Dice 0.37); batch 8 at 3e-3 (36 steps) depended on the order.
                    "epochs": 12,
                    "batch_size": 4,
                    "image_size": TILE,
                    "lr": 0.002,
                    "folds": [0],
                    "progress": False,
                    "augment": [
                        {"name": "HorizontalFlip", "p": 0.5},
                        {"name": "VerticalFlip", "p": 0.5},
                        {"name": "RandomRotate90", "p": 0.5},
                    ],
                    "mean": [0.5],
                    "std": [0.25],
                },
                "submit": {"file": "submission.csv"},
            }
        )
    )
    recipe = load_recipe(recipe_path)
    layout = run_stages(recipe, ["prepare", "split", "train", "predict", "submit"], device="cpu")
    ids = pd.read_parquet(layout.test_predictions)["id"]
    probs = np.load(layout.test_masks).astype(np.float32)
    expected = np.stack([truth[tile_id] for tile_id in ids])
    dice = mean_dice(probs > 0.5, expected)
    assert dice >= 0.6, f"held-out Dice {dice:.3f}"
    assert (layout.root / "submission.csv").exists()
