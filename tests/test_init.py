"""`medals init` on folders it has never seen: the three demo competitions and two real data sets (nuclei
tiles as segmentation, scikit-learn's digits as multi-class), each followed by a short `medals run` whose
submission validates; labels as they come; and bad folders stopped with one sentence."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from medals.cli import main
from medals.config import load_recipe
from medals.demo.cells import generate_cells
from medals.demo.chest import generate_chest
from medals.demo.melanoma import generate_melanoma
from medals.files import read_json
from tests.test_real_nuclei import stardist_images

FAST = [
    "model.pretrained=false",
    "train.epochs=1",
    "split.n_folds=2",
    "train.progress=false",
    "train.num_workers=0",
    "--device",
    "cpu",
]


def init(folder: Path, *overrides: str) -> dict:
    assert main(["init", str(folder), *overrides]) == 0
    return yaml.safe_load((folder / "recipe.yaml").read_text())


def run(folder: Path, tmp_path: Path, *overrides: str) -> pd.DataFrame:
    """`medals run` on the written recipe; the submission, checked against the sample's ids."""
    run_dir = tmp_path / "run"
    assert main(["run", str(folder / "recipe.yaml"), f"run_dir={run_dir}", *overrides, *FAST]) == 0
    recipe = load_recipe(folder / "recipe.yaml")
    sub = pd.read_csv(run_dir / recipe.submit.file, dtype=str, keep_default_na=False)
    sample = pd.read_csv(folder / recipe.data.sample_submission, dtype=str, keep_default_na=False)
    assert list(sub.columns) == list(sample.columns)
    assert sorted(sub.iloc[:, 0]) == sorted(sample.iloc[:, 0])
    return sub


@pytest.mark.slow
def test_init_then_run_on_the_melanoma_demo(tmp_path):
    data = tmp_path / "data"
    generate_melanoma(data, n_train=80, n_test=20, size=48, seed=3)
    tree = init(data)
    assert tree["task"] == "binary" and tree["data"]["label_column"] == "target"
    assert tree["data"]["classes"] == ["0", "1"]
    assert (
        tree["data"]["image_path"] == "train/{id}.jpg" and tree["data"]["test_image_path"] == "test/{id}.jpg"
    )
    assert tree["data"]["group_column"] == "patient_id" and tree["split"]["method"] == "stratified_grouped"
    assert tree["data"]["meta"]["categorical"] == ["sex", "anatom_site_general_challenge"]
    assert set(tree["data"]["meta"]["numeric"]) == {"age_approx"} and tree["model"]["head"] == "meta"
    assert tree["submit"] == {"kind": "probability"}  # P(target == 1), the one sigmoid
    text = (data / "recipe.yaml").read_text()
    assert "# the sample submission's first column" in text  # every choice says why
    sub = run(data, tmp_path)
    assert pd.to_numeric(sub["target"]).between(0, 1).all()


@pytest.mark.slow
def test_init_then_run_on_the_cells_demo(tmp_path):
    data = tmp_path / "data"
    generate_cells(data, n_train=60, n_test=12, size=48, seed=3)
    tree = init(data)
    assert tree["task"] == "multilabel" and tree["data"]["label_column"] == "Target"
    assert tree["data"]["test_csv"] == "sample_submission.csv"  # HPA lists its test ids there
    assert tree["data"]["channels"] == ["red", "green", "blue", "yellow"]
    assert tree["data"]["image_path"] == "train/{id}_{channel}.png" and tree["model"]["in_chans"] == 4
    assert tree["split"]["method"] == "multilabel" and tree["submit"]["kind"] == "multilabel"
    sub = run(data, tmp_path)
    assert all(all(t.isdigit() for t in v.split()) for v in sub["Predicted"])


@pytest.mark.slow
def test_init_then_run_on_the_chest_demo(tmp_path):
    data = tmp_path / "data"
    generate_chest(data, n_train=40, n_test=8, size=64, seed=3)
    tree = init(data)
    assert tree["task"] == "segmentation" and tree["data"]["mask_column"] == "EncodedPixels"
    assert tree["data"]["train_csv"] == "train-rle.csv" and tree["data"]["rle_format"] == "siim"
    assert tree["model"]["arch"] == "unet" and tree["model"]["in_chans"] == 1
    run(data, tmp_path)


def nuclei_folder(root: Path, tile: int = 64) -> None:
    """The real stardist nuclei image cut into tiles: uint16 TIFFs, mask PNGs in masks/, no label column."""
    image, mask = stardist_images()
    for folder in ("train", "test", "masks"):
        (root / folder).mkdir(parents=True)
    train, test = [], []
    n = image.shape[0] // tile
    for k in range(n * n):
        ty, tx = divmod(k, n)
        window = np.s_[ty * tile : (ty + 1) * tile, tx * tile : (tx + 1) * tile]
        ident = f"tile{k:02d}"
        split = "test" if k % 8 == 7 else "train"
        tifffile.imwrite(root / split / f"{ident}.tif", image[window])
        if split == "train":
            cv2.imwrite(str(root / "masks" / f"{ident}.png"), mask[window].astype(np.uint8) * 255)
        (test if split == "test" else train).append(ident)
    pd.DataFrame({"id": train}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": test}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": test, "EncodedPixels": ""}).to_csv(root / "sample_submission.csv", index=False)


@pytest.mark.slow
def test_init_then_run_on_real_nuclei_tiles(tmp_path):
    data = tmp_path / "nuclei"
    nuclei_folder(data)
    tree = init(data)
    assert tree["task"] == "segmentation" and tree["data"]["mask_path"] == "masks/{id}.png"
    assert tree["data"]["image_path"] == "train/{id}.tif" and tree["data"]["rle_format"] == "column"
    assert tree["data"]["cache_size"] == tree["train"]["image_size"] == 64  # TIFFs decoded once by prepare
    sub = run(data, tmp_path)
    assert sub["EncodedPixels"].str.len().gt(0).any()  # nuclei found in some held-out tile


def digits_folder(root: Path, n: int = 360, grades: bool = False) -> None:
    """scikit-learn's real 8x8 handwritten digits as PNGs; integer labels (or a 4-grade column)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    (root / "images").mkdir(parents=True)
    ids = [f"d{k:04d}" for k in range(n)]
    for ident, image in zip(ids, digits.images[:n], strict=True):
        cv2.imwrite(str(root / "images" / f"{ident}.png"), (image * 255 / 16).astype(np.uint8))
    labels = digits.target[:n]
    cut = n * 5 // 6
    if grades:
        pd.DataFrame({"id": ids[:cut], "grade": labels[:cut] // 3}).to_csv(root / "train.csv", index=False)
        pd.DataFrame({"id": ids[cut:], "target": 0.5}).to_csv(root / "sample_submission.csv", index=False)
    else:
        pd.DataFrame({"id": ids[:cut], "label": labels[:cut]}).to_csv(root / "train.csv", index=False)
        pd.DataFrame({"id": ids[cut:], "label": 0}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"id": ids[cut:]}).to_csv(root / "test.csv", index=False)


@pytest.mark.slow
def test_init_then_run_on_real_digits_with_an_integer_label_column(tmp_path):
    data = tmp_path / "digits"
    digits_folder(data)
    tree = init(data)
    assert tree["task"] == "multiclass" and tree["data"]["classes"] == [str(k) for k in range(10)]
    assert tree["submit"]["kind"] == "label"  # the submission names the digit
    assert tree["train"]["image_size"] == 32 and tree["train"]["checkpoints"][0]["metric"] == "accuracy"
    sub = run(data, tmp_path)
    assert set(sub["label"]) <= {str(k) for k in range(10)}


@pytest.mark.slow
def test_a_summed_target_submits_p_grade_at_least_2(tmp_path):
    data = tmp_path / "grades"
    digits_folder(data, grades=True)
    tree = init(data)
    assert tree["data"]["label_column"] == "grade" and tree["data"]["classes"] == ["0", "1", "2", "3"]
    sub = run(data, tmp_path, "submit.target_classes=[2, 3]")
    test = pd.read_parquet(tmp_path / "run" / "test.parquet").set_index("id")
    expected = test["p_2"].astype(float) + test["p_3"].astype(float)
    got = pd.to_numeric(sub.set_index("id")["target"])
    np.testing.assert_allclose(got.loc[expected.index].to_numpy(), expected.to_numpy(), rtol=1e-6)


@pytest.mark.slow
def test_a_two_class_folder_is_a_binary_task_with_one_logit(tmp_path):
    data = tmp_path / "even"
    digits_folder(data)
    frame = pd.read_csv(data / "train.csv")
    frame.assign(label=frame["label"] % 2 == 0).to_csv(data / "train.csv", index=False)  # True / False
    pd.read_csv(data / "sample_submission.csv").assign(label=0.5).to_csv(
        data / "sample_submission.csv", index=False
    )
    tree = init(data)
    assert tree["task"] == "binary" and tree["data"]["classes"] == ["False", "True"]
    assert tree["submit"]["kind"] == "probability"
    assert load_recipe(data / "recipe.yaml").loss is None  # the task's default: BCE on the one logit
    sub = run(data, tmp_path)
    test = pd.read_parquet(tmp_path / "run" / "test.parquet")
    assert [c for c in test.columns if c.startswith("p_")] == ["p_0"]  # P(True)
    assert read_json(tmp_path / "run" / "labels.json") == {"classes": ["False", "True"], "num_classes": 1}
    metrics = read_json(tmp_path / "run" / "metrics.json")["pooled"]
    assert 0.0 <= metrics["auc"] <= 1.0 and 0.0 <= metrics["accuracy"] <= 1.0
    probs = pd.to_numeric(sub["label"])
    assert probs.between(0, 1).all() and probs.nunique() > 1


def test_a_mostly_numeric_column_is_not_a_numeric_feature(tmp_path):
    # prepare rejects a numeric meta column with any other value: one "unknown" age keeps it out.
    data = tmp_path / "data"
    generate_melanoma(data, n_train=40, n_test=10, size=32, seed=3)
    frame = pd.read_csv(data / "train.csv", dtype=str, keep_default_na=False)
    assert set(init(data)["data"]["meta"]["numeric"]) == {"age_approx"}
    frame.loc[0, "age_approx"] = "unknown"
    frame.to_csv(data / "train.csv", index=False)
    tree = init(data, "--force")
    assert "age_approx" not in (tree["data"]["meta"] or {}).get("numeric", {})
    load_recipe(data / "recipe.yaml")


def test_integer_and_boolean_class_lists_are_the_csv_cells_text():
    from medals.config import recipe_from_dict

    tree = {"name": "t", "task": "multiclass", "data": {"classes": [0, 1, 2.0]}}
    assert recipe_from_dict(tree, "t").data.classes == ["0", "1", "2"]
    tree["data"]["classes"] = [False, True]
    assert recipe_from_dict(tree, "t").data.classes == ["False", "True"]


def test_a_sample_submission_that_does_not_match_the_test_ids_stops_before_training(tmp_path, capsys):
    data = tmp_path / "data"
    generate_melanoma(data, n_train=40, n_test=10, size=32, seed=3)
    init(data)
    sample = pd.read_csv(data / "sample_submission.csv")
    sample.iloc[:2, 0] = ["ISIC_nope1", "ISIC_nope2"]
    sample.to_csv(data / "sample_submission.csv", index=False)
    capsys.readouterr()
    run_dir = tmp_path / "run"
    assert main(["run", str(data / "recipe.yaml"), f"run_dir={run_dir}", *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "lists 2 id(s) that are not test images" in err and "ISIC_nope1" in err
    assert not (run_dir / "fold0").exists()  # stopped before the first fold trained


def _error(folder: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["init", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medals: error: ") and err.count("\n") == 0
    return err


def test_bad_folders_get_one_sentence(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "has no CSV file" in _error(empty, capsys)

    data = tmp_path / "data"
    digits_folder(data, n=24)
    frame = pd.read_csv(data / "train.csv")
    frame.assign(other=1).to_csv(data / "train.csv", index=False)
    pd.read_csv(data / "sample_submission.csv").rename(columns={"label": "y"}).to_csv(
        data / "sample_submission.csv", index=False
    )
    err = _error(data, capsys)
    assert "2 candidate target columns ('label', 'other')" in err and "data.label_column=NAME" in err
    # The override settles it.
    assert main(["init", str(data), "data.label_column=label"]) == 0

    frame.to_csv(data / "train.csv", index=False)
    pd.read_csv(data / "sample_submission.csv").rename(columns={"y": "label"}).to_csv(
        data / "sample_submission.csv", index=False
    )
    for path in (data / "images").iterdir():
        path.unlink()
    assert "no image file under" in _error(data, capsys)

    (data / "sample_submission.csv").unlink()
    assert "has no sample submission" in _error(data, capsys)


def test_an_unreadable_image_is_named(tmp_path, capsys):
    data = tmp_path / "data"
    digits_folder(data, n=12)
    (data / "images" / "d0000.png").write_bytes(b"not a png")
    err = _error(data, capsys)
    assert "d0000.png" in err


def test_init_does_not_overwrite_a_recipe(tmp_path, capsys):
    data = tmp_path / "data"
    digits_folder(data, n=12)
    init(data)
    err = _error(data, capsys)
    assert "exists: pass --force" in err
    assert main(["init", str(data), "--force"]) == 0
