"""The generated demo competitions: files, columns, determinism, masks, class balance, recipes."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from medals.config import load_recipe
from medals.data.rle import decode, decode_many
from medals.demo.cells import CELL_CHANNELS, generate_cells
from medals.demo.chest import chest_case, generate_chest
from medals.demo.draw import TRAIN
from medals.demo.melanoma import MELANOMA_CLASSES, generate_melanoma

SIZE = 48


@pytest.fixture(scope="module")
def melanoma(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("melanoma")
    generate_melanoma(out, n_train=120, n_test=20, size=SIZE, seed=3)
    return out


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cells")
    generate_cells(out, n_train=60, n_test=10, size=SIZE, seed=3)
    return out


@pytest.fixture(scope="module")
def chest(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("chest")
    generate_chest(out, n_train=40, n_test=10, size=SIZE, seed=3)
    return out


def test_melanoma_files_and_columns(melanoma: Path) -> None:
    train = pd.read_csv(melanoma / "train.csv")
    test = pd.read_csv(melanoma / "test.csv")
    sub = pd.read_csv(melanoma / "sample_submission.csv")
    meta = ["image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge"]
    assert list(train.columns) == [*meta, "diagnosis", "benign_malignant", "target"]
    assert list(test.columns) == meta
    assert list(sub.columns) == ["image_name", "target"]
    assert (len(train), len(test)) == (120, 20)
    assert sorted(sub["image_name"]) == sorted(test["image_name"])
    assert not set(train["image_name"]) & set(test["image_name"])
    assert not set(train["patient_id"]) & set(test["patient_id"])
    assert set(train["diagnosis"]) <= set(MELANOMA_CLASSES)
    assert train["anatom_site_general_challenge"].isna().any()
    assert ((train["diagnosis"] == "melanoma") == (train["target"] == 1)).all()
    for folder, names in (("train", train["image_name"]), ("test", test["image_name"])):
        image = cv2.imread(str(melanoma / folder / f"{names.iloc[0]}.jpg"), cv2.IMREAD_UNCHANGED)
        assert image.shape == (SIZE, SIZE, 3)
        assert len(list((melanoma / folder).glob("*.jpg"))) == len(names)


def test_melanoma_balance_patients_and_age(melanoma: Path) -> None:
    train = pd.read_csv(melanoma / "train.csv")
    assert (train["diagnosis"] == "melanoma").sum() == 30  # a quarter
    assert set(train["diagnosis"]) == set(MELANOMA_CLASSES)
    assert train["patient_id"].value_counts().max() >= 3  # several images per patient
    assert train["patient_id"].nunique() < len(train) / 2
    is_mel = train["diagnosis"] == "melanoma"
    assert train.loc[is_mel, "age_approx"].mean() > train.loc[~is_mel, "age_approx"].mean() + 5


def test_melanoma_lesions_are_darker_and_larger(melanoma: Path) -> None:
    train = pd.read_csv(melanoma / "train.csv")

    def dark_area(name: str) -> float:
        gray = cv2.imread(str(melanoma / "train" / f"{name}.jpg"), cv2.IMREAD_GRAYSCALE)
        return float((gray < 110).mean())

    mel = np.median([dark_area(n) for n in train.loc[train["diagnosis"] == "melanoma", "image_name"]])
    nevus = np.median([dark_area(n) for n in train.loc[train["diagnosis"] == "nevus", "image_name"]])
    assert mel > 3 * nevus + 0.02


def test_cells_files_and_labels(cells: Path) -> None:
    train = pd.read_csv(cells / "train.csv", dtype=str)
    sub = pd.read_csv(cells / "sample_submission.csv", dtype=str)
    assert list(train.columns) == ["Id", "Target"]
    assert list(sub.columns) == ["Id", "Predicted"]
    assert (len(train), len(sub)) == (60, 10)
    counts = np.zeros(5, int)
    for target in train["Target"]:
        labels = [int(v) for v in target.split()]
        assert 1 <= len(labels) <= 3 and len(set(labels)) == len(labels)
        counts[labels] += 1
    assert (counts >= 5).all()  # every class is present in a fair share of images
    for folder, ids in (("train", train["Id"]), ("test", sub["Id"])):
        assert len(list((cells / folder).glob("*.png"))) == 4 * len(ids)
        for channel in CELL_CHANNELS:
            image = cv2.imread(str(cells / folder / f"{ids.iloc[0]}_{channel}.png"), cv2.IMREAD_UNCHANGED)
            assert image.shape == (SIZE, SIZE) and image.dtype == np.uint8


def test_cells_green_follows_the_label(cells: Path) -> None:
    """Nucleoplasm puts the protein inside the nuclei; plasma membrane puts it far from them."""
    train = pd.read_csv(cells / "train.csv", dtype=str)

    def green_in_nuclei(image_id: str) -> float:
        blue = cv2.imread(str(cells / "train" / f"{image_id}_blue.png"), cv2.IMREAD_UNCHANGED)
        green = cv2.imread(str(cells / "train" / f"{image_id}_green.png"), cv2.IMREAD_UNCHANGED)
        return float(green[blue > 100].sum() / max(1, green.sum()))

    nucleo = [green_in_nuclei(i) for i, t in zip(train["Id"], train["Target"], strict=True) if t == "0"]
    membrane = [green_in_nuclei(i) for i, t in zip(train["Id"], train["Target"], strict=True) if t == "3"]
    assert nucleo and membrane
    assert min(nucleo) > 0.5 > max(membrane)


def test_chest_files_and_rle(chest: Path) -> None:
    rle = pd.read_csv(chest / "train-rle.csv", dtype=str)
    test = pd.read_csv(chest / "test.csv", dtype=str)
    sub = pd.read_csv(chest / "sample_submission.csv", dtype=str)
    assert list(rle.columns) == ["ImageId", "EncodedPixels"]
    assert list(test.columns) == ["ImageId"]
    assert list(sub.columns) == ["ImageId", "EncodedPixels"]
    assert (sub["EncodedPixels"] == "-1").all() and list(sub["ImageId"]) == list(test["ImageId"])
    assert (chest / "train-rle.csv").read_text().startswith("ImageId,EncodedPixels\n")

    ids = list(pd.unique(rle["ImageId"]))
    assert len(ids) == 40
    rows = rle.groupby("ImageId", sort=False)["EncodedPixels"].agg(list)
    positive = rows.map(lambda parts: parts != ["-1"])
    assert positive.sum() == 20  # exactly half
    assert (rows.map(len) == 2).sum() >= 2  # some positives come as two rows
    assert all(parts == ["-1"] or "-1" not in parts for parts in rows)

    for index, image_id in enumerate(ids):  # train-rle.csv lists the images in index order
        parts = rows[image_id]
        image = cv2.imread(str(chest / "train" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        assert image.shape == (SIZE, SIZE) and image.dtype == np.uint8
        redrawn, lungs, regions = chest_case(3, TRAIN, index, SIZE, 0 if parts == ["-1"] else len(parts))
        assert np.array_equal(redrawn, image)
        masks = [decode(part, (SIZE, SIZE), "siim") for part in parts]
        if parts == ["-1"]:
            masks = []
        assert len(regions) == len(masks)
        for mask, region in zip(masks, regions, strict=True):
            assert np.array_equal(mask, region)
            assert mask.sum() > 0.02 * SIZE * SIZE
            assert not (mask & ~lungs).any()  # inside the lung fields
        if len(masks) == 2:
            assert not (masks[0] & masks[1]).any()  # two separate regions
            union = decode_many(parts, (SIZE, SIZE), "siim")
            assert union.sum() == masks[0].sum() + masks[1].sum()
        if parts != ["-1"]:
            # The pneumothorax is clearly darker than the aerated lung around it.
            union = decode_many(parts, (SIZE, SIZE), "siim")
            assert image[union].mean() < image[lungs & ~union].mean() - 10
    assert len(list((chest / "test").glob("*.png"))) == 10


@pytest.mark.parametrize(
    ("generate", "csv"),
    [(generate_melanoma, "train.csv"), (generate_cells, "train.csv"), (generate_chest, "train-rle.csv")],
)
def test_generators_are_deterministic(tmp_path: Path, generate, csv: str) -> None:
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate(tmp_path / name, n_train=12, n_test=4, size=32, seed=seed)
    a, b, c = ((tmp_path / name / csv).read_bytes() for name in "abc")
    assert a == b
    assert a != c
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    files_a += sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jpg"))
    for rel in files_a[:8]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


@pytest.mark.parametrize("task", ["melanoma", "cells", "chest"])
def test_demo_recipes_load(task: str, tmp_path: Path) -> None:
    text = resources.files("medals.demo").joinpath(f"demo_{task}.yaml").read_text()
    assert text.startswith("#")
    path = tmp_path / f"demo_{task}.yaml"
    path.write_text(text)
    recipe = load_recipe(path)
    assert recipe.data_root == tmp_path.resolve()
    expected = {"melanoma": "multiclass", "cells": "multilabel", "chest": "segmentation"}[task]
    assert recipe.task == expected
    assert recipe.model.pretrained is False  # the demo runs offline
    if task == "melanoma":
        assert recipe.data.classes == list(MELANOMA_CLASSES)
        assert recipe.submit.target_class == "melanoma"
    if task == "cells":
        assert recipe.data.channels == list(CELL_CHANNELS) and recipe.model.in_chans == 4


@pytest.mark.parametrize(
    ("task", "generate"),
    [("melanoma", generate_melanoma), ("cells", generate_cells), ("chest", generate_chest)],
)
def test_demo_recipes_read_the_generated_data(task: str, generate, tmp_path: Path) -> None:
    """The recipe's paths and columns fit the folder its generator writes."""
    from medals.data.table import build_table

    generate(tmp_path, n_train=24, n_test=6, size=32, seed=1)
    path = tmp_path / f"demo_{task}.yaml"
    path.write_text(resources.files("medals.demo").joinpath(f"demo_{task}.yaml").read_text())
    table = build_table(load_recipe(path))
    assert (table["split"] == "train").sum() == 24
    assert (table["split"] == "test").sum() == 6
    if task == "chest":
        assert table.loc[table["split"] == "train", "has_mask"].sum() == 12
