from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from medals.config import recipe_from_dict
from medals.data.table import build_table, resolved_classes
from medals.errors import MedalsError


def _recipe(tmp_path: Path, task: str = "multiclass", **data):
    tree = {"name": "t", "task": task, "data": data, "source": str(tmp_path / "recipe.yaml")}
    if task == "segmentation":
        tree["model"] = {"arch": "unet"}
    return recipe_from_dict(tree, "test")


def _png(path: Path, h: int = 10, w: int = 12, value: int = 50, channels: int = 3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (h, w, channels) if channels > 1 else (h, w)
    cv2.imwrite(str(path), np.full(shape, value, np.uint8))


def _melanoma_like(tmp_path: Path) -> None:
    train = pd.DataFrame(
        {
            "image_name": ["a", "b", "c", "d", "e"],
            "diagnosis": ["nevus", "melanoma", "seborrheic keratosis", "nevus", "unknown"],
            "sex": ["male", "female", None, "male", "female"],
            "age_approx": [45.0, 90.0, None, 30.0, 60.0],
            "site": ["torso", "head/neck", None, "torso", "torso"],
            "patient_id": ["p1", "p1", "p2", "p1", None],
            "tfrecord": [0, 1, 2, 3, -1],
        }
    )
    test = pd.DataFrame(
        {
            "image_name": ["t1", "t2"],
            "sex": ["female", "male"],
            "age_approx": [18.0, None],
            "site": ["palms", "torso"],
            "patient_id": ["q1", "q1"],
        }
    )
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    for i, name in enumerate(train.image_name):
        _png(tmp_path / "train" / f"{name}.png", h=10 + i, w=12)
    for name in test.image_name:
        _png(tmp_path / "test" / f"{name}.png", h=8, w=9)


MEL = dict(
    id_column="image_name",
    label_column="diagnosis",
    label_map={"seborrheic keratosis": "BKL"},
    group_column="patient_id",
    meta={
        "numeric": {"age_approx": {"scale": 90.0, "fill": 0.0}},
        "mapped": {"sex": {"values": {"male": 1.0, "female": 0.0}, "fill": -1.0}},
        "categorical": ["site"],
        "group_counts": ["patient_id"],
        "file_size": True,
    },
)


def test_multiclass_table_with_meta(tmp_path):
    _melanoma_like(tmp_path)
    recipe = _recipe(tmp_path, **MEL, query="tfrecord >= 0")
    table = build_table(recipe)

    assert table["id"].tolist() == ["a", "b", "c", "d", "t1", "t2"]
    assert table["split"].tolist() == ["train"] * 4 + ["test"] * 2
    assert table.attrs["classes"] == ["BKL", "melanoma", "nevus"]
    assert resolved_classes(recipe, table) == ["BKL", "melanoma", "nevus"]
    assert table["label"].tolist() == [2, 1, 0, 2, -1, -1]
    assert table["height"].tolist() == [10, 11, 12, 13, 8, 8]
    assert table["width"].tolist() == [12, 12, 12, 12, 9, 9]
    assert table["path"][0] == str(tmp_path / "train" / "a.png")
    assert table["group"].tolist()[:4] == ["p1", "p1", "p2", "p1"]

    meta = [c for c in table.columns if c.startswith("meta_")]
    assert meta == [
        "meta_age_approx",
        "meta_sex",
        "meta_site_head/neck",
        "meta_site_palms",
        "meta_site_torso",
        "meta_site_nan",
        "meta_patient_id_count",
        "meta_file_size",
    ]
    assert all(table[c].dtype == np.float32 for c in meta)
    np.testing.assert_allclose(table["meta_age_approx"], [0.5, 1.0, 0.0, 1 / 3, 0.2, 0.0], rtol=1e-6)
    assert table["meta_sex"].tolist() == [1, 0, -1, 1, 0, 1]
    assert table["meta_site_torso"].tolist() == [1, 0, 0, 1, 0, 1]
    assert table["meta_site_palms"].tolist() == [0, 0, 0, 0, 1, 0]
    assert table["meta_site_nan"].tolist() == [0, 0, 1, 0, 0, 0]
    # counted within train (p1 three times after the query) and within test (q1 twice)
    np.testing.assert_allclose(
        table["meta_patient_id_count"], np.log1p([3, 3, 1, 3, 2, 2]).astype(np.float32)
    )
    sizes = [(tmp_path / "train" / f"{n}.png").stat().st_size for n in "abcd"]
    sizes += [(tmp_path / "test" / f"{n}.png").stat().st_size for n in ["t1", "t2"]]
    np.testing.assert_allclose(table["meta_file_size"], np.log(sizes).astype(np.float32))

    # the class list survives the parquet round trip through table.attrs
    table.to_parquet(tmp_path / "table.parquet")
    assert resolved_classes(recipe, pd.read_parquet(tmp_path / "table.parquet")) == [
        "BKL",
        "melanoma",
        "nevus",
    ]


def test_explicit_classes_and_numeric_labels(tmp_path):
    pd.DataFrame({"id": ["1", "2", "3"], "target": [0, 1, 10]}).to_csv(tmp_path / "train.csv", index=False)
    for i in "123":
        _png(tmp_path / "train" / f"{i}.png")
    table = build_table(_recipe(tmp_path, label_column="target", test_csv=None))
    assert table.attrs["classes"] == ["0", "1", "10"]  # numeric order, not text order
    assert table["label"].tolist() == [0, 1, 2]

    recipe = _recipe(tmp_path, label_column="target", test_csv=None, classes=["10", "1", "0"])
    assert build_table(recipe)["label"].tolist() == [2, 1, 0]


def test_labels_outside_class_list(tmp_path):
    _melanoma_like(tmp_path)
    recipe = _recipe(tmp_path, **{**MEL, "classes": ["melanoma", "nevus", "BKL"]})
    with pytest.raises(MedalsError) as err:
        build_table(recipe)
    message = str(err.value)
    assert "train.csv" in message and "'diagnosis'" in message and "'unknown'" in message
    assert "'nevus'" not in message.split(":")[-1]


def test_missing_columns_are_named(tmp_path):
    _melanoma_like(tmp_path)
    recipe = _recipe(
        tmp_path,
        **{**MEL, "label_column": "target", "meta": {"numeric": {"age": {}}, "categorical": ["site"]}},
    )
    with pytest.raises(MedalsError) as err:
        build_table(recipe)
    message = str(err.value)
    assert "train.csv" in message and "'target'" in message and "'age'" in message and "'site'" not in message


def test_missing_columns_in_test_csv(tmp_path):
    _melanoma_like(tmp_path)
    recipe = _recipe(tmp_path, **{**MEL, "meta": {"categorical": ["diagnosis"]}})
    with pytest.raises(MedalsError, match=r"test\.csv has no column\(s\) 'diagnosis'"):
        build_table(recipe)


def test_missing_image_files_in_one_error(tmp_path):
    _melanoma_like(tmp_path)
    for name in ["b", "d", "e"]:
        (tmp_path / "train" / f"{name}.png").unlink()
    with pytest.raises(MedalsError) as err:
        build_table(_recipe(tmp_path, **MEL))
    message = str(err.value)
    assert message.startswith("3 of 7 image files do not exist")
    assert "train/b.png" in message and "train/d.png" in message and "train/e.png" in message


def test_corrupt_image_is_named(tmp_path):
    _melanoma_like(tmp_path)
    (tmp_path / "train" / "c.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(MedalsError, match="corrupt or unsupported") as err:
        build_table(_recipe(tmp_path, **MEL))
    assert str(tmp_path / "train" / "c.png") in str(err.value)


def test_empty_after_query_and_bad_query(tmp_path):
    _melanoma_like(tmp_path)
    with pytest.raises(
        MedalsError, match=r"train\.csv has no rows after filtering with query 'tfrecord > 100'"
    ):
        build_table(_recipe(tmp_path, **MEL, query="tfrecord > 100"))
    with pytest.raises(MedalsError, match="data.query 'fold == 1' cannot be applied to .*train.csv"):
        build_table(_recipe(tmp_path, **MEL, query="fold == 1"))


def test_missing_csvs(tmp_path):
    _melanoma_like(tmp_path)
    with pytest.raises(MedalsError, match="CSV file .*other.csv does not exist"):
        build_table(_recipe(tmp_path, **MEL, test_csv="other.csv"))
    with pytest.raises(MedalsError, match="CSV file .*nope.csv does not exist"):
        build_table(_recipe(tmp_path, **MEL, train_csv="nope.csv"))


def test_duplicate_ids_for_classification(tmp_path):
    pd.DataFrame({"id": ["x", "y", "x"], "label": [0, 1, 0]}).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(MedalsError, match="duplicate ids: 'x'"):
        build_table(_recipe(tmp_path, label_column="label", test_csv=None))


def test_fixed_split_column_is_kept(tmp_path):
    _melanoma_like(tmp_path)
    tree = {
        "name": "t",
        "task": "multiclass",
        "data": MEL,
        "split": {"method": "fixed", "column": "tfrecord"},
        "source": str(tmp_path / "r.yaml"),
    }
    table = build_table(recipe_from_dict(tree, "test"))
    assert table["tfrecord"].tolist()[:5] == [0, 1, 2, 3, -1]
    assert all(math.isnan(v) for v in table["tfrecord"].tolist()[5:])
    # a row without a patient is a group of its own
    assert table["group"][4] == "__row_e"


def test_multilabel_with_channel_files(tmp_path):
    pd.DataFrame({"Id": ["00a", "00b"], "Target": ["5 0", "27"]}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"Id": ["0t"]}).to_csv(tmp_path / "test.csv", index=False)
    channels = ["red", "green", "blue", "yellow"]
    for split, ids in [("train", ["00a", "00b"]), ("test", ["0t"])]:
        for id_ in ids:
            for c in channels:
                _png(tmp_path / split / f"{id_}_{c}.png", h=16, w=16, channels=1)
    recipe = _recipe(
        tmp_path,
        "multilabel",
        id_column="Id",
        label_column="Target",
        num_classes=28,
        image_path="train/{id}_{channel}.png",
        test_image_path="test/{id}_{channel}.png",
        channels=channels,
    )
    table = build_table(recipe)
    assert table["id"].tolist() == ["00a", "00b", "0t"]  # ids stay text: leading zeros kept
    assert table["labels"].tolist() == ["0 5", "27", ""]
    parts = table["path"][0].split("|")
    assert parts == [str(tmp_path / "train" / f"00a_{c}.png") for c in channels]
    assert table.attrs["classes"] == [str(i) for i in range(28)]

    pd.DataFrame({"Id": ["00a"], "Target": ["3 28"]}).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(MedalsError, match=r"'Target' has 1 label ids that are not integers in 0\.\.27: '28'"):
        build_table(recipe)


def test_segmentation_rle_rows_are_grouped(tmp_path):
    # The SIIM header has a leading space; several rows of one image are OR-ed.
    (tmp_path / "train-rle.csv").write_text(
        "ImageId, EncodedPixels\nimg1, 5 3 10 2\nimg1, 40 4\nimg2, -1\nimg3, 1 1\n"
    )
    for name in ["img1", "img2", "img3"]:
        _png(tmp_path / "png" / f"{name}.png", h=16, w=16)
    recipe = _recipe(
        tmp_path,
        "segmentation",
        train_csv="train-rle.csv",
        test_csv=None,
        id_column="ImageId",
        mask_column="EncodedPixels",
        image_path="png/{id}.png",
    )
    table = build_table(recipe)
    assert table["id"].tolist() == ["img1", "img2", "img3"]
    assert table["rle"].tolist() == ["5 3 10 2|40 4", "-1", "1 1"]
    assert table["has_mask"].tolist() == [1, 0, 1]
    assert resolved_classes(recipe, table) == ["mask"]


def test_segmentation_mask_files(tmp_path):
    pd.DataFrame({"id": ["a", "b"]}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"id": ["t"]}).to_csv(tmp_path / "test.csv", index=False)
    for split, name in [("train", "a"), ("train", "b"), ("test", "t")]:
        _png(tmp_path / split / f"{name}.png", h=20, w=24)
    mask = np.zeros((20, 24), np.uint8)
    _png(tmp_path / "masks" / "a.png", h=20, w=24, value=0, channels=1)
    mask[3:6, 4:9] = 255
    cv2.imwrite(str(tmp_path / "masks" / "b.png"), mask)
    recipe = _recipe(tmp_path, "segmentation", mask_path="masks/{id}.png")
    table = build_table(recipe)
    assert table["mask_path"].tolist() == [
        str(tmp_path / "masks" / "a.png"),
        str(tmp_path / "masks" / "b.png"),
        "",
    ]
    assert table["has_mask"].tolist() == [0, 1, 0]

    _png(tmp_path / "masks" / "b.png", h=20, w=23, channels=1)
    with pytest.raises(MedalsError) as err:
        build_table(recipe)
    message = str(err.value)
    assert str(tmp_path / "masks" / "b.png") in message and str(tmp_path / "train" / "b.png") in message
    assert "20x23" in message and "20x24" in message


def test_template_with_csv_column(tmp_path):
    pd.DataFrame({"id": ["a"], "patient": [7], "label": ["x"]}).to_csv(tmp_path / "train.csv", index=False)
    _png(tmp_path / "7" / "a.png")
    recipe = _recipe(tmp_path, label_column="label", test_csv=None, image_path="{patient}/{id}.png")
    assert build_table(recipe)["path"][0] == str(tmp_path / "7" / "a.png")
    with pytest.raises(MedalsError, match="has no \\{channel\\} field"):
        build_table(
            _recipe(
                tmp_path, label_column="label", test_csv=None, image_path="{patient}/{id}.png", channels=["r"]
            )
        )


def test_binary_task_needs_exactly_two_classes(tmp_path):
    (tmp_path / "train").mkdir()
    for k in range(3):
        cv2.imwrite(str(tmp_path / "train" / f"i{k}.png"), np.zeros((8, 8), np.uint8))
    (tmp_path / "train.csv").write_text("id,grade\ni0,0\ni1,1\ni2,2\n")
    tree = {"name": "t", "task": "binary", "source": str(tmp_path / "r.yaml")}
    tree["data"] = {"label_column": "grade", "test_csv": None, "sample_submission": None}
    with pytest.raises(MedalsError, match="task binary needs 2 classes; .*train.csv column 'grade' has 3"):
        build_table(recipe_from_dict(tree, "t"))
