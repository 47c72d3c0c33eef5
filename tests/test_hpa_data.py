"""HPA data: the adapter (Kaggle + HPAv18 external + label corrections), plane selectors, normalisation."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from medals.augment.cpu import build_transform
from medals.config import recipe_from_dict
from medals.data import stats
from medals.data.competitions.hpa import CHANNELS, hpa_frames
from medals.data.io import image_size, read_image, split_paths
from medals.data.stats import channel_stats
from medals.data.table import build_table
from medals.errors import MedalsError

SIZE = 16
TRAIN_IDS = ["t0", "t1", "t2"]
TEST_IDS = ["s0", "s1"]
EXT_IDS = ["10_1_A1_1", "10_2_B2_1"]


def _grey(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)


def _rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture()
def hpa_root(tmp_path):
    for folder in ("train", "test", "external"):
        (tmp_path / folder).mkdir()
    seed = 0
    for folder, ids in (("train", TRAIN_IDS), ("test", TEST_IDS)):
        for id_ in ids:
            for channel in CHANNELS:
                seed += 1
                cv2.imwrite(str(tmp_path / folder / f"{id_}_{channel}.png"), _grey(seed))
    for id_ in EXT_IDS:
        for channel in CHANNELS:
            seed += 1
            # PNG, not JPEG, so that plane values survive exactly; the extension is a parameter.
            cv2.imwrite(str(tmp_path / "external" / f"{id_}_{channel}.png"), _rgb(seed)[:, :, ::-1])
    pd.DataFrame({"Id": TRAIN_IDS, "Target": ["0", "1 2", "27"]}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"Id": TEST_IDS, "Predicted": ["0", "0"]}).to_csv(
        tmp_path / "sample_submission.csv", index=False
    )
    pd.DataFrame({"Id": EXT_IDS, "Target": ["5", "7 8"]}).to_csv(tmp_path / "ext.csv", index=False)
    pd.DataFrame({"Id": [EXT_IDS[1], "t0"], "Target": ["9", "3 4"]}).to_csv(tmp_path / "fix.csv", index=False)
    return tmp_path


def _recipe(root, normalize="fixed", **params):
    tree = {
        "name": "hpa",
        "task": "multilabel",
        "source": str(root / "r.yaml"),
        "data": {
            "adapter": "hpa",
            "adapter_params": {"external_csv": "ext.csv", "external_ext": "png", **params},
            "id_column": "Id",
            "label_column": "Target",
            "num_classes": 28,
            "image_path": "{image_path}",
            "test_image_path": "{image_path}",
            "keep_columns": ["is_external"],
        },
        "model": {"in_chans": 4},
        "train": {"normalize": normalize},
    }
    return recipe_from_dict(tree, "test")


def test_frames_columns_and_paths(hpa_root):
    train, test = hpa_frames(_recipe(hpa_root), external_csv="ext.csv", external_ext="png")
    assert train["Id"].tolist() == TRAIN_IDS + EXT_IDS
    assert train["is_external"].tolist() == [0, 0, 0, 1, 1]
    assert train["image_dir"].tolist() == ["train"] * 3 + ["external"] * 2
    assert train["channel_ext"].tolist() == ["png"] * 3 + ["png"] * 2
    assert test["Id"].tolist() == TEST_IDS and set(test["image_dir"]) == {"test"}
    kaggle = train["image_path"].iloc[0].split("|")
    assert [p.rsplit("_", 1)[1] for p in kaggle] == ["red.png", "green.png", "blue.png", "yellow.png"]
    external = train["image_path"].iloc[3].split("|")
    assert [p.rsplit(".", 1)[1] for p in external] == ["png#r", "png#g", "png#b", "png#r"]
    assert all(p.startswith(str(hpa_root)) for p in split_paths(train["image_path"].iloc[3]))
    lum, _ = hpa_frames(_recipe(hpa_root), external_csv="ext.csv", external_ext="png", yellow="lum")
    assert "#" not in lum["image_path"].iloc[3]
    no_ext, _ = hpa_frames(_recipe(hpa_root))
    assert no_ext["is_external"].tolist() == [0, 0, 0]


def test_yellow_selector_plane_and_luminance(hpa_root):
    yellow_file = hpa_root / "external" / f"{EXT_IDS[0]}_yellow.png"
    rgb = cv2.cvtColor(cv2.imread(str(yellow_file)), cv2.COLOR_BGR2RGB)
    for mode, expected in (
        ("plane:r", rgb[:, :, 0]),
        ("plane:g", rgb[:, :, 1]),
        ("plane:b", rgb[:, :, 2]),
        ("lum", cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)),
    ):
        train, _ = hpa_frames(_recipe(hpa_root), external_csv="ext.csv", external_ext="png", yellow=mode)
        image = read_image(train["image_path"].iloc[3])
        assert image.shape == (SIZE, SIZE, 4)
        np.testing.assert_array_equal(image[:, :, 3], expected)
    red_rgb = cv2.cvtColor(
        cv2.imread(str(hpa_root / "external" / f"{EXT_IDS[0]}_red.png")), cv2.COLOR_BGR2RGB
    )
    np.testing.assert_array_equal(image[:, :, 0], cv2.cvtColor(red_rgb, cv2.COLOR_RGB2GRAY))
    # A lone selected file reads as one plane; header reads and split_paths ignore the selector.
    np.testing.assert_array_equal(read_image(f"{yellow_file}#g")[:, :, 0], rgb[:, :, 1])
    assert read_image(f"{yellow_file}#g").shape == (SIZE, SIZE, 1)
    assert image_size(f"{yellow_file}#b") == (SIZE, SIZE)
    assert split_paths(f"{yellow_file}#lum|a#b.png") == [str(yellow_file), "a#b.png"]
    assert read_image(str(yellow_file)).shape == (SIZE, SIZE, 3)  # the default read is unchanged


def test_label_corrections(hpa_root):
    train, _ = hpa_frames(_recipe(hpa_root), external_csv="ext.csv", label_corrections="fix.csv")
    targets = dict(zip(train["Id"], train["Target"], strict=True))
    assert targets["t0"] == "3 4" and targets[EXT_IDS[1]] == "9"
    assert targets["t1"] == "1 2" and targets[EXT_IDS[0]] == "5"
    pd.DataFrame({"Id": ["zz1", "t1", "zz2"], "Target": ["1", "2", "3"]}).to_csv(
        hpa_root / "bad.csv", index=False
    )
    with pytest.raises(MedalsError, match=r"2 ids .*'zz1', 'zz2'"):
        hpa_frames(_recipe(hpa_root), label_corrections="bad.csv")


def test_missing_files_and_columns(hpa_root):
    with pytest.raises(MedalsError, match="nope.csv does not exist"):
        hpa_frames(_recipe(hpa_root), external_csv="nope.csv")
    pd.DataFrame({"Id": ["t0"]}).to_csv(hpa_root / "nolabel.csv", index=False)
    with pytest.raises(MedalsError, match="no column.*'Target'"):
        hpa_frames(_recipe(hpa_root), train_csv="nolabel.csv")
    with pytest.raises(MedalsError, match="yellow must be one of"):
        hpa_frames(_recipe(hpa_root), yellow="red")


def test_build_table_reads_four_channels(hpa_root):
    table = build_table(_recipe(hpa_root, label_corrections="fix.csv"))
    assert table["split"].tolist() == ["train"] * 5 + ["test"] * 2
    assert table["is_external"].tolist()[:5] == [0, 0, 0, 1, 1]
    assert table["labels"].tolist()[:5] == ["3 4", "1 2", "27", "5", "9"]
    assert (table["height"] == SIZE).all()
    for path in table["path"]:
        assert read_image(path).shape == (SIZE, SIZE, 4)
    first = read_image(table["path"].iloc[0])
    np.testing.assert_array_equal(first[:, :, 1], cv2.imread(str(hpa_root / "train" / "t0_green.png"), 0))
    (hpa_root / "external" / f"{EXT_IDS[1]}_yellow.png").unlink()
    with pytest.raises(MedalsError, match="1 of 28 image files do not exist"):
        build_table(_recipe(hpa_root))


def test_normalize_image_standardises_each_channel(hpa_root):
    table = build_table(_recipe(hpa_root))
    image = read_image(table["path"].iloc[3])
    transform = build_transform([], 12, True, "multilabel", normalize="image")
    out = transform(image=image)["image"]
    assert out.shape == (12, 12, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(0, 1)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1)), 1, atol=1e-3)
    flat = transform(image=np.full((SIZE, SIZE, 4), 7, np.uint8))["image"]
    assert np.all(flat == 0)
    fixed = build_transform([], 12, False, "multilabel")(image=image)["image"]
    assert abs(float(fixed.mean())) > 0.01  # "fixed" (the default) is not per-image
    with pytest.raises(MedalsError, match="normalize"):
        build_transform([], 12, False, "multilabel", normalize="bogus")


def test_recipe_dataset_uses_normalize(hpa_root):
    from medals.data.dataset import recipe_dataset

    recipe = _recipe(hpa_root, normalize="image")
    table = build_table(recipe)
    rows = table[table["split"] == "train"].reset_index(drop=True)
    dataset = recipe_dataset(recipe, rows, 28, train=False)
    image = dataset[0]["image"].numpy()
    assert image.shape == (4, 256, 256)  # train.image_size default
    np.testing.assert_allclose(image.mean(axis=(1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(image.std(axis=(1, 2)), 1, atol=1e-3)


def test_channel_stats_matches_numpy(hpa_root, monkeypatch):
    table = build_table(_recipe(hpa_root))
    paths = table["path"].tolist()
    mean, std = channel_stats(paths)
    stack = np.stack([read_image(p) for p in paths]).astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, stack.mean(axis=(0, 1, 2)), atol=1e-9)
    np.testing.assert_allclose(std, stack.std(axis=(0, 1, 2)), atol=1e-9)
    assert len(mean) == 4
    read = []
    monkeypatch.setattr(stats, "read_image", lambda path: read.append(path) or read_image(path))
    sub_mean, sub_std = channel_stats(paths, sample=3)
    monkeypatch.undo()
    assert len(paths) > 3 and len(set(read)) == len(read) == 3 and set(read) <= set(paths)
    assert (sub_mean, sub_std) == channel_stats(read)
    assert (sub_mean, sub_std) == channel_stats(paths, sample=3)  # the same seed, the same sample
    with pytest.raises(MedalsError):
        channel_stats([])
