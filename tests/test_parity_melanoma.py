"""Parity with the melanoma 1st-place code (haqishen/SIIM-ISIC-Melanoma-Classification-1st-Place-Solution).

Each figure below is worked out by hand from the solution's formulas (re-derived, not its code):

- dataset.get_meta_data: the training patient id is filled with 0 where it is missing, then
  n_images = log1p(images of that patient id), except -1 ids which count 1;
- evaluate.py: auc_all_rank ranks each fold's melanoma probability with pandas rank(pct=True), i.e.
  average rank r over the fold's count n; auc_20_rank takes the 2020 rows (is_ext == 0) FIRST and ranks
  them within each fold; ensemble.py ranks every member's submission the same way.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from medals.config import MetaConfig, recipe_from_dict
from medals.data.competitions.melanoma import melanoma_dirs, melanoma_frames
from medals.data.meta import meta_features
from medals.errors import MedalsError
from medals.post.blend import combine
from medals.post.metrics import percentile_rank, roc_auc, score_pooled

FOLDER = 32


def _write_kaggle(root: Path) -> None:
    """CSV files only: 2020 rows (one patient with 3 images, 2 rows without id) and external rows
    (2 without id, 3 with the set's "unknown" -1)."""
    main_dir, ext_dir = (root / d for d in melanoma_dirs(FOLDER))
    main_dir.mkdir(parents=True)
    ext_dir.mkdir(parents=True)
    pd.DataFrame(
        {
            "image_name": [f"A{i}" for i in range(6)],
            "patient_id": ["IP_1", "IP_1", "IP_1", None, None, "IP_2"],
            "diagnosis": ["nevus", "melanoma", "unknown", "nevus", "nevus", "unknown"],
            "tfrecord": [0, 1, 2, 3, 4, 5],
        }
    ).to_csv(main_dir / "train.csv", index=False)
    pd.DataFrame({"image_name": ["T0", "T1"], "patient_id": ["IP_9", None]}).to_csv(
        main_dir / "test.csv", index=False
    )
    pd.DataFrame(
        {
            "image_name": [f"E{i}" for i in range(5)],
            "patient_id": [None, "-1", None, "-1", "-1"],
            "diagnosis": ["NV", "MEL", "BCC", "NV", "NV"],
            "tfrecord": [0, 1, 2, 3, 4],
        }
    ).to_csv(ext_dir / "train.csv", index=False)


def _counts(root: Path, **params) -> tuple[np.ndarray, np.ndarray]:
    recipe = recipe_from_dict(
        {"name": "m", "task": "multiclass", "data": {"root": str(root)}}, str(root / "r.yaml")
    )
    train, test = melanoma_frames(recipe, folder=FOLDER, **params)
    feats, test_feats = meta_features(train, test, MetaConfig(group_counts=["patient_id"]))
    return feats["meta_patient_id_count"].to_numpy(), test_feats["meta_patient_id_count"].to_numpy()


def test_missing_patient_ids_are_one_pooled_patient(tmp_path):
    _write_kaggle(tmp_path)
    train, test = _counts(tmp_path)
    # The seed fills the 4 missing training ids (2 in 2020, 2 external) with 0: one patient of 4 images.
    log4, log3, log1 = math.log1p(4), math.log1p(3), math.log1p(1)
    assert log4 == pytest.approx(1.6094379)  # the 1.609
    expected = [log3, log3, log3, log4, log4, math.log1p(1)] + [log4, log1, log4, log1, log1]
    np.testing.assert_allclose(train, expected, rtol=0, atol=1e-6)  # float32 features
    # Test ids are not filled by the seed; a missing one counts alone here.
    np.testing.assert_allclose(test, [log1, log1], atol=1e-6)


def test_missing_patient_alone_keeps_medals_counting(tmp_path):
    _write_kaggle(tmp_path)
    train, _ = _counts(tmp_path, missing_patient="alone")
    log3, log1 = math.log1p(3), math.log1p(1)
    assert log1 == pytest.approx(0.6931472)  # medals' earlier figure on the same rows
    np.testing.assert_allclose(train, [log3, log3, log3, log1, log1, log1] + [log1] * 5, atol=1e-6)
    pooled, _ = _counts(tmp_path)
    assert np.abs(pooled - train).max() == pytest.approx(math.log1p(4) - math.log1p(1), abs=1e-6)


def test_missing_patient_option_is_checked(tmp_path):
    _write_kaggle(tmp_path)
    with pytest.raises(MedalsError, match="missing_patient must be one of pooled, alone, got 'zero'"):
        _counts(tmp_path, missing_patient="zero")


# ---- ranks -----------------------------------------------------------------------------------------


def test_percentile_rank_is_pandas_pct_rank():
    values = np.array([0.3, 0.1, 0.3, 0.9, 0.2])
    # pandas rank(pct=True): average ranks 3.5, 1, 3.5, 5, 2 over n = 5.
    assert percentile_rank(values).tolist() == pytest.approx([0.7, 0.2, 0.7, 1.0, 0.4])
    assert percentile_rank(values).tolist() == pytest.approx(pd.Series(values).rank(pct=True).tolist())


def _recipe(**metrics):
    return recipe_from_dict({"name": "m", "task": "multiclass", "metrics": metrics}, "test")


def test_auc_rank_uses_r_over_n_per_fold():
    # Fold 0 (n = 2): a positive below a negative. Fold 1 (n = 4): neg, pos, neg, pos by score.
    # Seed ranks r/n: positives 0.5, 0.5, 1.0; negatives 1.0, 0.25, 0.75 -> 4.5 of 9 pairs = 0.5.
    # (r-1)/(n-1) would give positives 0, 1/3, 1; negatives 1, 0, 2/3 -> 4 of 9 = 0.4444.
    truth = np.array([1, 0, 0, 1, 0, 1])
    score_1 = np.array([0.2, 0.7, 0.1, 0.2, 0.3, 0.4])
    folds = np.array([0, 0, 1, 1, 1, 1])
    probs = np.stack([1 - score_1, score_1], axis=1)
    out = score_pooled(_recipe(rank=True), pd.DataFrame(index=range(6)), truth, probs, folds, positive=1)
    assert out["auc_rank"] == pytest.approx(0.5, abs=1e-12)
    # The fixture tells the formulas apart: (r-1)/(n-1) ranks of the same folds score 4/9.
    minmax = np.concatenate([(rankdata(score_1[folds == f]) - 1) / ((folds == f).sum() - 1) for f in (0, 1)])
    assert roc_auc(truth, minmax) == pytest.approx(4 / 9, abs=1e-12)


def test_auc_20_rank_ranks_the_2020_rows_within_each_fold():
    # Fold 0: an external row (0.1), then 2020 rows x1 (0.2, neg), x2 (0.3, pos); fold 1: 2020 rows
    # y1 (0.5, pos), y2 (0.6, neg). Ranked among the 2020 rows: x1 .5, x2 1, y1 .5, y2 1 ->
    # positives {1, .5} vs negatives {.5, 1}: (1 + .5 + .5 + 0) / 4 = 0.5. Ranking the whole fold first
    # (x1 2/3, x2 1) and then dropping the external row gives (1 + .5 + 0 + 0) / 4 = 0.375.
    rows = pd.DataFrame({"is_ext": [1, 0, 0, 0, 0]})
    truth = np.array([0, 0, 1, 1, 0])
    score_1 = np.array([0.1, 0.2, 0.3, 0.5, 0.6])
    folds = np.array([0, 0, 0, 1, 1])
    probs = np.stack([1 - score_1, score_1], axis=1)
    recipe = _recipe(rank=True, subsets={"20": "is_ext == 0"})
    out = score_pooled(recipe, rows, truth, probs, folds, positive=1)
    assert out["auc_20_rank"] == pytest.approx(0.5, abs=1e-12)
    assert out["auc_20"] == pytest.approx(0.5)  # raw: 0.3 > 0.2, 0.3 < 0.6, 0.5 > 0.2, 0.5 < 0.6
    # An empty subset is NaN, as the raw subset metric is.
    empty = score_pooled(_recipe(rank=True, subsets={"none": "is_ext == 5"}), rows, truth, probs, folds, 1)
    assert math.isnan(empty["auc_none_rank"])


def test_rank_ensemble_is_the_mean_of_pct_ranks():
    # ensemble.py: sum over members of weight * target.rank(pct=True).
    ids = ["a", "b", "c"]
    m1 = pd.DataFrame({"id": ids, "p_0": [0.2, 0.9, 0.2]})  # ranks 1.5, 3, 1.5 over 3
    m2 = pd.DataFrame({"id": ids, "p_0": [0.3, 0.1, 0.2]})  # ranks 3, 1, 2 over 3
    out = combine([m1, m2], method="rank")["p_0"].to_numpy()
    np.testing.assert_allclose(out, [(0.5 + 1) / 2, (1 + 1 / 3) / 2, (0.5 + 2 / 3) / 2], rtol=0, atol=1e-12)


# ---- augmentation: albumentations 0.4.6's alpha_affine and shift_limit ---------------------------

# 0.4.6's ElasticTransform(alpha=3) defaults and OpticalDistortion(distort_limit=1.0) default shift.
ELASTIC = {
    "name": "ElasticTransform",
    "alpha": 3,
    "sigma": 50,
    "alpha_affine": 50,
    "border_mode": 4,
    "p": 1.0,
}


def _op(spec: dict):
    from medals.augment.cpu import build_ops

    return build_ops([spec])[0]


def _binomial_ok(count: int, n: int, p: float, sigmas: float = 4.5) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def _smooth(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    return np.stack(
        [127.5 + 120 * np.sin(2 * math.pi * (f * xx + 0.7 * yy)) for f in (0.6, 1.1, 1.7)], -1
    ).astype(np.uint8)


def test_alpha_affine_points_and_offsets_follow_0_4_6():
    from medals.augment.jitter import jitter_points as affine_points

    # c = (h // 2, w // 2) = (48, 48), s = 96 // 3 = 32: c + s, (c0 + s, c1 - s), c - s.
    assert affine_points(96, 96).tolist() == [[80, 80], [80, 16], [16, 16]]
    assert affine_points(60, 90).tolist() == [[50, 65], [50, 25], [10, 25]]  # (h, w) taken as (x, y)
    op = _op(ELASTIC)
    op.set_random_seed(3)
    pts = np.c_[affine_points(96, 96), np.ones(3)]
    offsets = []
    for _ in range(300):
        matrix = op.get_params_dependent_on_data({"shape": (96, 96)}, {})["affine"]
        offsets.append(pts @ matrix.T - pts[:, :2])  # where the affine sends the points, minus them
    offsets = np.concatenate(offsets).ravel()
    # Each of the 6 offsets is U(-50, 50): inside the bounds, half of them within +-25, mean near 0.
    assert np.abs(offsets).max() <= 50 + 1e-3
    assert _binomial_ok(int((np.abs(offsets) < 25).sum()), offsets.size, 0.5)
    assert abs(offsets.mean()) < 4.5 * 50 / math.sqrt(3 * offsets.size)
    assert _binomial_ok(int((offsets > 40).sum()), offsets.size, 0.1)


def test_alpha_affine_warps_before_the_elastic_remap():
    op = _op(ELASTIC)
    op.set_random_seed(5)
    image, mask = _smooth(64), (_smooth(64)[..., 0] > 128).astype(np.uint8)
    params = op.get_params_dependent_on_data({"shape": (64, 64)}, {})
    # 0.4.6: cv2.warpAffine with the op's interpolation and border, then cv2.remap of that.
    warped = cv2.warpAffine(image, params["affine"], (64, 64), flags=cv2.INTER_LINEAR, borderMode=4)
    expected = cv2.remap(warped, params["map_x"], params["map_y"], cv2.INTER_LINEAR, borderMode=4)
    np.testing.assert_array_equal(op.apply(image, **params), expected)
    got_mask = op.apply_to_mask(mask, **params)
    warped_mask = cv2.warpAffine(mask, params["affine"], (64, 64), flags=cv2.INTER_NEAREST, borderMode=4)
    np.testing.assert_array_equal(
        got_mask, cv2.remap(warped_mask, params["map_x"], params["map_y"], cv2.INTER_NEAREST, borderMode=4)
    )
    # The affine is most of the op: it moves the image by pixels, the alpha-3 field by ~0.01 px.
    fields = np.hypot(params["map_x"] - np.arange(64)[None], params["map_y"] - np.arange(64)[:, None])
    assert fields.max() < 0.1 and np.abs(op.apply(image, **params).astype(int) - image).mean() > 5
    # alpha_affine 0 is albumentations 2.0.8's op: no affine.
    plain = _op({**ELASTIC, "alpha_affine": 0})
    assert plain.get_params_dependent_on_data({"shape": (64, 64)}, {})["affine"] is None


def test_shift_limit_0_05_never_shifts_and_3_gives_rounded_pixels():
    from medals.augment.legacy import shifted_camera_maps

    spec = {
        "name": "OpticalDistortion",
        "distort_limit": 1.0,
        "shift_limit": 0.05,
        "border_mode": 4,
        "p": 1.0,
    }
    op = _op(spec)
    op.set_random_seed(0)
    draws = [op.get_params_dependent_on_data({"shape": (32, 32)}, {}) for _ in range(500)]
    assert {(d["dx"], d["dy"]) for d in draws} == {(0, 0)}  # round(U(-0.05, 0.05)) is always 0
    op = _op({**spec, "shift_limit": 3})
    op.set_random_seed(1)
    n = 3000
    shifts = np.array(
        [
            [d["dx"], d["dy"]]
            for d in (op.get_params_dependent_on_data({"shape": (32, 32)}, {}) for _ in range(n))
        ]
    )
    # round(U(-3, 3)): 0, +-1, +-2 each with probability 1/6, +-3 each 1/12.
    for value, p in {0: 1 / 6, 1: 1 / 6, -1: 1 / 6, 2: 1 / 6, -2: 1 / 6, 3: 1 / 12, -3: 1 / 12}.items():
        assert _binomial_ok(int((shifts == value).sum()), 2 * n, p), value
    # The shifted camera centre moves every source coordinate by (dx, dy).
    base_x, base_y = shifted_camera_maps((20, 24), 0.4, 0, 0)
    x, y = shifted_camera_maps((20, 24), 0.4, 2, -1)
    np.testing.assert_allclose(x - base_x, 2, atol=1e-3)
    np.testing.assert_allclose(y - base_y, -1, atol=1e-3)


def test_gpu_path_draws_and_applies_the_same_parameters():
    import torch

    from medals.augment.gpu import build_gpu_transform
    from medals.augment.gpu.warp import Stage, pixel_grid, resample
    from medals.augment.jitter import jitter_matrix as affine_matrix
    from medals.augment.jitter import jitter_points as affine_points
    from medals.augment.legacy import shifted_camera_maps

    g = torch.Generator().manual_seed(0)
    mean, std = (0.5,) * 3, (0.25,) * 3
    spec = {"name": "OpticalDistortion", "distort_limit": 0.4, "shift_limit": 3, "p": 1.0}
    optical = build_gpu_transform([spec], 24, mean, std).ops[0]
    k, shift = optical.draw(3000, 20, 24, g, "cpu")
    values = shift.reshape(-1).numpy()
    for value, p in {0: 1 / 6, 2: 1 / 6, -3: 1 / 12}.items():
        assert _binomial_ok(int((values == value).sum()), values.size, p), value
    mx, my = optical.points((k[:1], shift[:1]), *pixel_grid(1, 20, 24, "cpu"), 20, 24)
    rx, ry = shifted_camera_maps((20, 24), float(k[0]), int(shift[0, 0]), int(shift[0, 1]))
    np.testing.assert_allclose(mx[0].numpy(), rx, atol=1e-3)
    np.testing.assert_allclose(my[0].numpy(), ry, atol=1e-3)

    # ElasticTransform: the affine offsets are U(-50, 50); with no field (alpha 0) the op is cv2's
    # warpAffine of the same matrix.
    elastic = build_gpu_transform([{**ELASTIC, "alpha": 0.0}], 64, mean, std).ops[0]
    fields, inverse = elastic.draw(500, 64, 64, g, "cpu")
    corners = affine_points(64, 64)
    pts = np.c_[corners, np.ones(3)]
    moved = np.einsum("nij,kj->nki", np.linalg.inv(inverse.numpy())[:, :2], pts) - corners
    assert np.abs(moved).max() <= 50 + 1e-3
    assert _binomial_ok(int((np.abs(moved) < 25).sum()), moved.size, 0.5)
    offsets = np.array([[10.0, -20.0], [30.0, 5.0], [-15.0, 25.0]])
    from medals.augment.gpu.distortion import inverse_affines

    image = _smooth(64)
    ref = cv2.warpAffine(
        image, affine_matrix(64, 64, offsets), (64, 64), flags=cv2.INTER_LINEAR, borderMode=4
    )
    params = (torch.zeros(1, 2, 64, 64), inverse_affines(64, 64, offsets[None]))
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    got, _ = resample(x, None, [Stage(64, 64, [(elastic, None, params)])], (64, 64))
    diff = np.abs(got[0].permute(1, 2, 0).numpy() - ref)
    assert diff.max() < 2.0 and diff.mean() < 0.3, (diff.max(), diff.mean())  # cv2's 1/32 px weights
