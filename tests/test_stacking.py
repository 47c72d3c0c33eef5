from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from medals.errors import MedalsError
from medals.post.stacking import DEFAULT_C, feature_names, fit_stacker, stack_features


def test_stack_features_columns_and_pair_order():
    probs = np.array([[0.9, 0.5, 0.2], [0.1, 0.4, 0.7]])
    features = stack_features(probs)
    # Columns, mean, then p0-p1, p0-p2, p1-p2.
    expected = np.array([[0.9, 0.5, 0.2, 1.6 / 3, 0.4, 0.7, 0.3], [0.1, 0.4, 0.7, 0.4, -0.3, -0.6, -0.3]])
    np.testing.assert_allclose(features, expected)
    assert feature_names(["a", "b", "c"]) == ["a", "b", "c", "mean", "a-b", "a-c", "b-c"]
    assert stack_features(probs[:, :1]).shape == (2, 2)  # one model: itself and its mean
    assert stack_features(np.zeros((3, 5))).shape[1] == len(feature_names("abcde")) == 5 + 1 + 10
    with pytest.raises(MedalsError, match=r"\[N, M\]"):
        stack_features(np.zeros(4))


def _toy(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Model 0 informative, model 1 pure noise, model 2 weakly informative."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < 0.3).astype(int)
    good = 1 / (1 + np.exp(-(3 * (truth - 0.5) + rng.normal(0, 1, n))))
    noise = rng.random(n)
    weak = 1 / (1 + np.exp(-(0.5 * (truth - 0.5) + rng.normal(0, 1, n))))
    return np.column_stack([good, noise, weak]), truth


def test_stacker_beats_worst_model_out_of_fold():
    probs, truth = _toy()
    stacker = fit_stacker(stack_features(probs), truth, n_folds=5, seed=0)
    single = [roc_auc_score(truth, probs[:, k]) for k in range(probs.shape[1])]
    stacked = roc_auc_score(truth, stacker.oof)
    assert stacked > min(single) + 0.2
    assert stacked > max(single) - 0.03  # the noise model does not drag it far below the best
    assert stacker.oof.shape == (len(truth),) and ((stacker.oof > 0) & (stacker.oof < 1)).all()
    assert sorted(np.bincount(stacker.folds).tolist()) == [60] * 5


def test_predict_is_mean_of_fold_models():
    probs, truth = _toy(seed=1)
    features = stack_features(probs)
    test = stack_features(np.random.default_rng(2).random((7, 3)))
    stacker = fit_stacker(features, truth, n_folds=4, seed=3)
    expected_test = np.zeros(len(test))
    expected_oof = np.zeros(len(truth))
    splitter = StratifiedKFold(n_splits=4, shuffle=True, random_state=3)
    for fold, (train, valid) in enumerate(splitter.split(features, truth)):
        model = LogisticRegression(C=DEFAULT_C, solver="lbfgs", max_iter=1000).fit(
            features[train], truth[train]
        )
        expected_test += model.predict_proba(test)[:, 1] / 4
        expected_oof[valid] = model.predict_proba(features[valid])[:, 1]
        assert (stacker.folds[valid] == fold).all()
    assert len(stacker.models) == 4
    np.testing.assert_allclose(stacker.predict(test), expected_test, rtol=1e-10)
    np.testing.assert_allclose(stacker.oof, expected_oof, rtol=1e-10)


def test_stacker_bad_input():
    probs, truth = _toy(n=50)
    features = stack_features(probs)
    with pytest.raises(MedalsError, match="only class 0"):
        fit_stacker(features, np.zeros(50))
    with pytest.raises(MedalsError, match="49 true labels but 50 rows"):
        fit_stacker(features, truth[:49])
    broken = features.copy()
    broken[7, 2] = np.nan
    with pytest.raises(MedalsError, match="NaN .* 1 rows .*row 7"):
        fit_stacker(broken, truth)
    with pytest.raises(MedalsError, match="must be 0/1"):
        fit_stacker(features, truth * 2)
    with pytest.raises(MedalsError, match="n_folds=5"):
        fit_stacker(features[:10], np.array([1] * 3 + [0] * 7))
    stacker = fit_stacker(features, truth, n_folds=3)
    with pytest.raises(MedalsError, match="4 columns, the stacker was trained on 7"):
        stacker.predict(features[:, :4])
    with pytest.raises(MedalsError, match="NaN"):
        stacker.predict(broken)
