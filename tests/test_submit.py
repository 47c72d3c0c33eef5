from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medals.data.rle import decode
from medals.errors import MedalsError
from medals.post.submission import (
    multilabel_submission,
    probability_submission,
    read_sample,
    rle_submission,
    validate_submission,
    write_submission,
)


@pytest.fixture
def siim_sample(tmp_path):
    path = tmp_path / "sample_submission.csv"
    # The real SIIM header has a space after the comma.
    path.write_text("ImageId, EncodedPixels\nimg_b,-1\nimg_a,-1\nimg_c,-1\n")
    return path


@pytest.fixture
def melanoma_sample(tmp_path):
    path = tmp_path / "sample.csv"
    path.write_text("image_name,target\n007,0\n010,0\n")
    return path


def test_probability_submission():
    sub = probability_submission(np.array([7, 10]), np.array([0.25, 0.75]), ["image_name", "target"])
    assert list(sub.columns) == ["image_name", "target"]
    assert sub["image_name"].tolist() == ["7", "10"]
    assert sub["target"].tolist() == [0.25, 0.75]
    with pytest.raises(MedalsError, match="3 ids for 2 predictions"):
        probability_submission(["a", "b", "c"], np.array([0.1, 0.2]), ["id", "p"])


def test_multilabel_submission_sorted_ids_and_empty():
    decisions = np.array(
        [[False, True, False, True], [False, False, False, False], [True, False, False, False]]
    )
    sub = multilabel_submission(["x", "y", "z"], decisions, ["Id", "Predicted"])
    assert sub["Predicted"].tolist() == ["1 3", "", "0"]
    with pytest.raises(MedalsError, match="2 column names"):
        multilabel_submission(["x"], decisions[:1], ["Id"])


def test_rle_submission_formats():
    full = np.zeros((4, 4), dtype=bool)
    full[0, 0:3] = True  # row-major pixels 1..3, column-major 1, 5, 9
    empty = np.zeros((4, 4), dtype=bool)
    siim = rle_submission(["a", "b"], [full, empty], ["ImageId", "EncodedPixels"], "siim")
    assert siim["EncodedPixels"].tolist() == ["0 1 3 1 3 1", "-1"]
    row = rle_submission(["a", "b"], [full, empty], ["ImageId", "EncodedPixels"], "row")
    assert row["EncodedPixels"].tolist() == ["1 3", ""]
    assert (decode(siim["EncodedPixels"][0], (4, 4), "siim") == full).all()


def test_read_sample_keeps_ids_as_text(melanoma_sample, tmp_path):
    sample = read_sample(melanoma_sample)
    assert sample["image_name"].tolist() == ["007", "010"]
    with pytest.raises(MedalsError, match="does not exist"):
        read_sample(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(MedalsError, match="cannot be read as CSV"):
        read_sample(empty)
    one_column = tmp_path / "one.csv"
    one_column.write_text("id\n1\n")
    with pytest.raises(MedalsError, match="1 column"):
        read_sample(one_column)


def test_validate_column_names(siim_sample):
    sample = read_sample(siim_sample)
    ok = pd.DataFrame({"ImageId": ["img_a", "img_b", "img_c"], "EncodedPixels": ["-1", "1 2", "-1"]})
    validate_submission(ok, sample, siim_sample)  # stripped names match " EncodedPixels"
    wrong = ok.rename(columns={"EncodedPixels": "Pixels"})
    with pytest.raises(
        MedalsError, match="lacks column\\(s\\) 'EncodedPixels' and has unexpected column\\(s\\) 'Pixels'"
    ):
        validate_submission(wrong, sample, siim_sample)
    with pytest.raises(MedalsError, match="not in the order"):
        validate_submission(ok[["EncodedPixels", "ImageId"]], sample, siim_sample)


def test_validate_ids_and_values(siim_sample):
    sample = read_sample(siim_sample)
    base = {"ImageId": ["img_a", "img_b", "img_c"], "EncodedPixels": ["-1", "-1", "-1"]}
    missing = pd.DataFrame({key: values[:1] for key, values in base.items()})
    with pytest.raises(
        MedalsError, match=r"lacks 2 id\(s\) of the sample submission .* \(first: img_b, img_c\)"
    ):
        validate_submission(missing, sample, siim_sample)
    extra = pd.DataFrame({"ImageId": [*base["ImageId"], "img_z"], "EncodedPixels": ["-1"] * 4})
    with pytest.raises(MedalsError, match=r"has 1 id\(s\) not in .* \(first: img_z\)"):
        validate_submission(extra, sample, siim_sample)
    repeated = pd.DataFrame({"ImageId": [*base["ImageId"], "img_a"], "EncodedPixels": ["-1"] * 4})
    with pytest.raises(MedalsError, match=r"repeats 1 id\(s\) \(first: img_a\)"):
        validate_submission(repeated, sample, siim_sample)
    holes = pd.DataFrame({"ImageId": base["ImageId"], "EncodedPixels": ["-1", None, "-1"]})
    with pytest.raises(
        MedalsError, match=r"column 'EncodedPixels' has 1 missing \(NaN\) value\(s\), first at id img_b"
    ):
        validate_submission(holes, sample, siim_sample)


def test_write_submission_keeps_exact_header_and_sample_order(siim_sample, tmp_path):
    masks = [np.zeros((4, 4), dtype=bool) for _ in range(3)]
    masks[2][1, 1] = True
    sub = rle_submission(["img_a", "img_b", "img_c"], masks, ["ImageId", "EncodedPixels"], "siim")
    out = write_submission(sub, siim_sample, tmp_path / "out" / "submission.csv")
    text = out.read_text().splitlines()
    assert text == ["ImageId, EncodedPixels", "img_b,-1", "img_a,-1", "img_c,5 1"]
    assert [p.name for p in out.parent.iterdir()] == ["submission.csv"]  # no temporary file left


def test_write_submission_refuses_invalid(melanoma_sample, tmp_path):
    sub = probability_submission(["007"], np.array([0.3]), ["image_name", "target"])
    target = tmp_path / "submission.csv"
    with pytest.raises(MedalsError, match=r"lacks 1 id\(s\).*\(first: 010\)"):
        write_submission(sub, melanoma_sample, target)
    assert not target.exists()
    good = probability_submission(["010", "007"], np.array([0.9, 0.3]), ["image_name", "target"])
    write_submission(good, melanoma_sample, target)
    written = pd.read_csv(target, dtype={"image_name": str})
    assert written["image_name"].tolist() == ["007", "010"]
    assert written["target"].tolist() == [0.3, 0.9]
