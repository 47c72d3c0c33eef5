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
