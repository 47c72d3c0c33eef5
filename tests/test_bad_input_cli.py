"""Bad competition input through the command line: one sentence on stderr, exit code 2, no traceback."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from medals.cli import main
from medals.demo.melanoma import generate_melanoma


@pytest.fixture()
def melanoma(tmp_path) -> Path:
    generate_melanoma(tmp_path, n_train=24, n_test=6, size=32, seed=3)
    recipe = tmp_path / "recipe.yaml"
    shutil.copy(resources.files("medals.demo").joinpath("demo_melanoma.yaml"), recipe)
    return recipe


def prepare_fails(recipe: Path, capsys, *overrides: str) -> str:
    run_dir = recipe.parent / "run"
    code = main(["prepare", str(recipe), f"run_dir={run_dir}", *overrides])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medals: error: "), err
    assert not (run_dir / "table.parquet").exists()  # nothing half-made is left to trust
    return lines[0]


def test_missing_image_files(melanoma, capsys):
    names = sorted(pd.read_csv(melanoma.parent / "train.csv")["image_name"])[:3]
    for name in names:
        (melanoma.parent / "train" / f"{name}.jpg").unlink()
    message = prepare_fails(melanoma, capsys)
    assert "3 " in message and names[0] in message


def test_corrupt_image(melanoma, capsys):
    name = pd.read_csv(melanoma.parent / "train.csv")["image_name"].iloc[5]
    path = melanoma.parent / "train" / f"{name}.jpg"
    path.write_bytes(b"this is not a jpeg")
    message = prepare_fails(melanoma, capsys)
    assert str(path) in message and "corrupt" in message


def test_csv_without_configured_columns(melanoma, capsys):
    message = prepare_fails(melanoma, capsys, "data.label_column=diag", "data.group_column=patient")
    assert "train.csv" in message and "'diag'" in message and "'patient'" in message


def test_labels_outside_class_list(melanoma, capsys):
    message = prepare_fails(melanoma, capsys, "data.classes=[nevus,melanoma,BKL]")
    assert "'unknown'" in message and "diagnosis" in message and "train.csv" in message


def test_empty_dataset_after_filtering(melanoma, capsys):
    message = prepare_fails(melanoma, capsys, "data.query=age_approx > 1000")
    assert "no rows after filtering" in message and "age_approx > 1000" in message


def test_mask_size_differs_from_image(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(4):
        cv2.imwrite(str(tmp_path / "images" / f"c{i}.png"), np.full((32, 32), 90, np.uint8))
        side = 16 if i == 2 else 32
        cv2.imwrite(str(tmp_path / "masks" / f"c{i}.png"), np.zeros((side, side), np.uint8))
    pd.DataFrame({"id": [f"c{i}" for i in range(4)]}).to_csv(tmp_path / "train.csv", index=False)
    recipe = tmp_path / "seg.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "seg",
                "task": "segmentation",
                "model": {"arch": "unet"},
                "data": {"test_csv": None, "image_path": "images/{id}.png", "mask_path": "masks/{id}.png"},
            }
        )
    )
    message = prepare_fails(recipe, capsys)
    assert "c2.png" in message and "16" in message and "32" in message
