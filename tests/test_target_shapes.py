"""The long and wide target layouts (pivot on read, unpivot in the sample's rows) and path templates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medals.config import DataConfig
from medals.data.target_shapes import layout_submission, pivot_long, sample_ids, wide_target
from medals.data.templates import render, resolve_paths
from medals.errors import MedalsError
from medals.post.groups import aggregate


def test_a_long_key_splits_on_the_class_names_even_with_underscores_in_both():
    data = DataConfig(
        target_layout="long", long_key="{image}_{class}", classes=["large_bowel", "stomach"], id_column="id"
    )
    frame = pd.DataFrame(
        {
            "id": ["case1_day2_slice_0001_large_bowel", "case1_day2_slice_0001_stomach"],
            "segmentation": ["1 3", ""],
        }
    )
    wide = pivot_long(frame, data, "segmentation", "train.csv")
    assert wide["id"].tolist() == ["case1_day2_slice_0001"]
    assert wide[["large_bowel", "stomach"]].iloc[0].tolist() == ["1 3", ""]  # RLE text carried as it is


def test_a_class_column_pivots_rle_strings_and_unpivots_in_the_samples_rows():
    # Severstal's shape: one row per image and present class; absent pairs are empty masks.
    data = DataConfig(
        target_layout="long", class_column="ClassId", classes=["1", "2", "3"], id_column="ImageId"
    )
    train = pd.DataFrame(
        {"ImageId": ["a.jpg", "a.jpg", "b.jpg"], "ClassId": [3, 1, 2], "EncodedPixels": ["5 2", "1 1", "9 9"]}
    )
    wide = pivot_long(train, data, "EncodedPixels", "train.csv", fill="")
    assert wide.set_index("ImageId").loc["a.jpg", ["1", "2", "3"]].tolist() == ["1 1", "", "5 2"]
    with pytest.raises(MedalsError, match="no row for image 'a.jpg' and class '2'"):
        pivot_long(train, data, "EncodedPixels", "train.csv")

    sample = pd.DataFrame(
        {"ImageId": ["y.jpg", "x.jpg", "y.jpg"], "ClassId": ["2", "1", "1"], "EncodedPixels": "1 1"}
    )
    assert sample_ids(sample, data, "sample").tolist() == ["y.jpg", "x.jpg", "y.jpg"]
    values = np.array([["x1", "x2", "x3"], ["y1", "y2", "y3"]], dtype=object)
    sub = layout_submission(sample, ["x.jpg", "y.jpg"], values, ["1", "2", "3"], data)
    assert sub.values.tolist() == [["y.jpg", "2", "y2"], ["x.jpg", "1", "x1"], ["y.jpg", "1", "y1"]]


def test_a_wide_sample_must_have_the_class_columns():
    data = DataConfig(target_layout="wide", classes=["MEL", "NV"], id_column="image")
    sample = pd.DataFrame({"image": ["i"], "NV": [0], "MEL": [0]})
    assert sample_ids(sample, data, "sample").tolist() == ["i"]
    sub = layout_submission(sample, ["i"], np.array([[0.7, 0.3]]), ["MEL", "NV"], data)
    assert list(sub.columns) == ["image", "NV", "MEL"] and sub.iloc[0, 1:].tolist() == [0.3, 0.7]
    with pytest.raises(MedalsError, match="missing: 'NV'"):
        sample_ids(sample.drop(columns="NV"), data, "sample")
    frame = pd.DataFrame({"image": ["a", "b"], "MEL": [1, 0], "NV": [1, 1]})
    assert wide_target(frame, data, "multilabel", "t.csv") == ["0 1", "1"]
    with pytest.raises(MedalsError, match="row 1 has 2 ones"):
        wide_target(frame, data, "multiclass", "t.csv")


def test_templates_take_format_specs_and_find_nested_files_by_name(tmp_path):
    assert render("train/{id:05d}.png", [{"id": "17"}], "data.image_path") == ["train/00017.png"]
    with pytest.raises(MedalsError, match="formats 'id' as an integer"):
        render("{id:05d}.png", [{"id": "x7"}], "data.image_path")
    for folder in ("s1/r1", "s2/r2"):
        (tmp_path / "dicom" / folder).mkdir(parents=True)
    (tmp_path / "dicom/s1/r1/a.dcm").write_bytes(b"")
    (tmp_path / "dicom/s2/r2/b.dcm").write_bytes(b"")
    paths = resolve_paths(str(tmp_path), "dicom/**/{id}.dcm", [{"id": "b"}, {"id": "a"}, {"id": "c"}], "k")
    assert paths[:2] == [str(tmp_path / "dicom/s2/r2/b.dcm"), str(tmp_path / "dicom/s1/r1/a.dcm")]
    assert "**" in paths[2]  # not there: the existence check names it
    (tmp_path / "dicom/s2/r2/a.dcm").write_bytes(b"")
    with pytest.raises(MedalsError, match="two files are named a.dcm"):
        resolve_paths(str(tmp_path), "dicom/**/{id}.dcm", [{"id": "a"}], "k")


def test_prediction_groups_combine_their_images_by_mean_or_max():
    groups = ["10006_L", "10006_R", "10006_L", "10006_L"]
    probs = np.array([[0.2], [0.9], [0.4], [0.9]])
    ids, mean = aggregate(groups, probs, "mean")
    assert ids == ["10006_L", "10006_R"] and mean[:, 0].tolist() == pytest.approx([0.5, 0.9])
    assert aggregate(groups, probs, "max")[1][:, 0].tolist() == [0.9, 0.9]
