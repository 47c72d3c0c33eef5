from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medals.errors import MedalsError
from medals.post.blend import combine, combine_arrays, normalise_weights


def frame(ids, *columns) -> pd.DataFrame:
    data = {"id": ids}
    data.update({f"p_{k}": values for k, values in enumerate(columns)})
    return pd.DataFrame(data)


def test_mean_aligns_by_id():
    a = frame(["x", "y", "z"], [0.1, 0.5, 0.9], [0.9, 0.5, 0.1])
    b = frame(["z", "x", "y"], [0.3, 0.7, 0.1], [0.7, 0.3, 0.9])  # same ids, other order
    out = combine([a, b], method="mean")
    assert out["id"].tolist() == ["x", "y", "z"]
    assert list(out.columns) == ["id", "p_0", "p_1"]
    # x: (0.1 + 0.7) / 2, y: (0.5 + 0.1) / 2, z: (0.9 + 0.3) / 2
    assert out["p_0"].tolist() == pytest.approx([0.4, 0.3, 0.6])
    assert out["p_1"].tolist() == pytest.approx([0.6, 0.7, 0.4])


def test_weights_are_normalised():
    a = frame([1, 2], [0.0, 1.0])
    b = frame([1, 2], [1.0, 0.0])
    out = combine([a, b], weights=[3, 1])  # -> 0.75, 0.25
    assert out["p_0"].tolist() == pytest.approx([0.25, 0.75])
    assert out["id"].tolist() == ["1", "2"]  # ids are text
    assert normalise_weights(None, 4).tolist() == [0.25] * 4


def test_rank_uses_percentile_ranks_within_each_frame():
    ids = ["a", "b", "c", "d"]
    # Model 1 is confident, model 2 is on another scale; ranks put them on one footing.
    m1 = frame(ids, [0.01, 0.02, 0.03, 0.99])  # percentile ranks r / n: 1/4, 2/4, 3/4, 1
    m2 = frame(ids, [0.60, 0.50, 0.70, 0.65])  # 2/4, 1/4, 1, 3/4
    out = combine([m1, m2], method="rank")
    assert out["p_0"].tolist() == pytest.approx([3 / 8, 3 / 8, 7 / 8, 7 / 8])
    mean = combine([m1, m2], method="mean")
    # The plain mean lets model 1's 0.99 dominate: "d" ranks first there but ties with "c" by rank.
    assert mean["p_0"].idxmax() == 3
    weighted = combine([m1, m2], method="rank", weights=[1, 3])
    assert weighted["p_0"].tolist() == pytest.approx([0.4375, 0.3125, 0.9375, 0.8125])


def test_extra_columns_come_from_the_first_frame():
    a = frame(["x", "y"], [0.2, 0.4]).assign(fold=[0, 1])
    b = frame(["y", "x"], [0.6, 0.8]).assign(fold=[4, 4])
    out = combine([a, b])
    assert out["fold"].tolist() == [0, 1]
    assert out["p_0"].tolist() == pytest.approx([0.5, 0.5])


def test_mismatched_ids_are_named():
    a = frame([f"img{i}" for i in range(10)], np.linspace(0, 1, 10))
    b = frame([f"img{i}" for i in range(3)], np.linspace(0, 1, 3))
    with pytest.raises(
        MedalsError, match=r"frame 2 lacks 7 ids of frame 1 \(first: img3, img4, img5, img6, img7, \.\.\.\)"
    ):
        combine([a, b])
    c = frame([f"img{i}" for i in range(11)], np.linspace(0, 1, 11))
    with pytest.raises(MedalsError, match=r"frame 2 has 1 ids that frame 1 lacks \(first: img10\)"):
        combine([a, c])
    d = frame(["img0", "img0"], [0.1, 0.2])
    with pytest.raises(MedalsError, match="frame 2 repeats 1 ids"):
        combine([frame(["img0"], [0.1]), d])


def test_bad_arguments():
    a = frame(["x"], [0.5])
    with pytest.raises(MedalsError, match="unknown ensemble method 'median'"):
        combine([a, a], method="median")
    with pytest.raises(MedalsError, match="3 ensemble weights given for 2 models"):
        combine([a, a], weights=[1, 1, 1])
    with pytest.raises(MedalsError, match="non-negative"):
        combine([a, a], weights=[1, -1])
    with pytest.raises(MedalsError, match="sum to zero"):
        combine([a, a], weights=[0, 0])
    with pytest.raises(MedalsError, match="columns"):
        combine([a, frame(["x"], [0.5], [0.5])])
    with pytest.raises(MedalsError, match="no prediction frames"):
        combine([])


def test_combine_arrays_weighted_mean_in_chunks():
    rng = np.random.default_rng(0)
    a = rng.random((5, 4, 4)).astype(np.float16)
    b = rng.random((5, 4, 4)).astype(np.float16)
    out = combine_arrays([a, b], weights=[1, 3], chunk=2)  # chunk 2 splits 5 images as 2+2+1
    assert out.dtype == np.float32 and out.shape == (5, 4, 4)
    expected = 0.25 * a.astype(np.float32) + 0.75 * b.astype(np.float32)
    assert np.allclose(out, expected, atol=1e-6)
    assert np.allclose(combine_arrays([a, b]), (a.astype(np.float32) + b) / 2, atol=1e-3)
    with pytest.raises(MedalsError, match=r"array 2 has shape \(5, 4, 3\)"):
        combine_arrays([a, b[:, :, :3]])
