"""Recipe-level metrics: subsets of the validation rows and per-fold percentile ranks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medals.config import recipe_from_dict
from medals.errors import MedalsError
from medals.post.metrics import roc_auc, score, score_pooled


def make_recipe(**metrics):
    return recipe_from_dict({"name": "m", "task": "multiclass", "metrics": metrics}, "test")


def test_subset_metrics_are_suffixed_and_use_only_their_rows():
    rows = pd.DataFrame({"is_ext": [0, 0, 0, 0, 1, 1]})
    truth = np.array([0, 1, 0, 1, 0, 1])
    score_1 = np.array([0.1, 0.9, 0.2, 0.8, 0.95, 0.05])  # external rows ranked backwards
    probs = np.stack([1 - score_1, score_1], axis=1)
    out = score(make_recipe(subsets={"20": "is_ext == 0"}), rows, truth, probs, positive=1)
    assert out["auc_20"] == 1.0
    assert out["auc"] == pytest.approx(roc_auc(truth, score_1))
    assert out["auc"] < 1.0 and "accuracy_20" in out


def test_rank_auc_pools_per_fold_ranks():
    # Each fold separates perfectly, but fold 1's scores are all lower than fold 0's:
    # pooled raw AUC suffers, pooled rank AUC does not.
    truth = np.array([0, 1, 0, 1])
    score_1 = np.array([0.6, 0.9, 0.1, 0.4])
    folds = np.array([0, 0, 1, 1])
    probs = np.stack([1 - score_1, score_1], axis=1)
    rows = pd.DataFrame({"x": range(4)})
    out = score_pooled(make_recipe(rank=True), rows, truth, probs, folds, positive=1)
    assert out["auc"] == pytest.approx(0.75)
    assert out["auc_rank"] == 1.0
    assert "accuracy_rank" not in out


def test_bad_subset_query_names_it():
    rows = pd.DataFrame({"a": [0, 1]})
    probs = np.array([[0.4, 0.6], [0.3, 0.7]])
    with pytest.raises(MedalsError, match="metrics.subsets.20 'is_ext == 0'"):
        score(make_recipe(subsets={"20": "is_ext == 0"}), rows, np.array([0, 1]), probs, positive=1)
