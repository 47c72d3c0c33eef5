"""Competition metrics against sklearn or the competition's own formula, the OOF cut-point search against
plain rounding, and the metric registry as recipes see it (names, tasks, directions, load-time refusal)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    cohen_kappa_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from medals.config import recipe_from_dict
from medals.config.metric_names import METRIC_NAMES, metric_direction
from medals.errors import MedalsError
from medals.post import competition_metrics as cm
from medals.post.metric_registry import FUNCTIONS, metrics_for_task
from medals.post.metrics import score
from medals.post.ordinal import apply_cutpoints, expected_grade, fit_cutpoints, midpoints


def isic_2024_pauc(truth: np.ndarray, score: np.ndarray, min_tpr: float = 0.8) -> float:
    """The ISIC 2024 Kaggle scorer's formula: sklearn's McClish-standardised partial AUC up to
    max_fpr = 1 - min_tpr on flipped labels and negated scores, mapped back to the raw area."""
    max_fpr = 1 - min_tpr
    flipped = roc_auc_score(1 - truth, -score, max_fpr=max_fpr)
    return 0.5 * max_fpr**2 + (max_fpr - 0.5 * max_fpr**2) / (1.0 - 0.5) * (flipped - 0.5)


def test_qwk_matches_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(5):
        truth = rng.integers(0, 5, 300)
        pred = np.clip(truth + rng.integers(-2, 3, 300), 0, 4)
        assert cm.qwk(truth, pred, 5) == pytest.approx(cohen_kappa_score(truth, pred, weights="quadratic"))
    # Grades missing from one side, and a K larger than the grades seen, do not change kappa.
    truth, pred = np.array([0, 1, 1, 3, 3]), np.array([0, 1, 2, 3, 2])
    expected = cohen_kappa_score(truth, pred, weights="quadratic")
    assert cm.qwk(truth, pred) == pytest.approx(expected) == pytest.approx(cm.qwk(truth, pred, 9))
    assert np.isnan(cm.qwk([2, 2], [2, 2]))


def test_pauc_hand_worked_and_against_the_isic_2024_formula():
    # ROC of (0,0) (0,.5) (.5,.5) (.5,1) (1,1): TPR passes 0.8 only at FPR 0.5, so the area above the
    # floor is (1 - 0.5) * (1 - 0.8) = 0.1.
    truth, score = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    assert cm.pauc(truth, score) == pytest.approx(0.1)
    assert isic_2024_pauc(truth, score) == pytest.approx(0.1)
    # A perfect ranking scores the whole band, 1 - min_tpr; a reversed one nothing.
    assert cm.pauc(truth, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(0.2)
    assert cm.pauc(truth, np.array([0.9, 0.8, 0.2, 0.1])) == pytest.approx(0.0)
    rng = np.random.default_rng(1)
    for floor in (0.8, 0.5):
        truth = (rng.random(500) < 0.2).astype(int)
        score = np.round(rng.normal(truth * 1.2, 1.0), 1)  # rounded: ties make sloped ROC segments
        assert cm.pauc(truth, score, floor) == pytest.approx(isic_2024_pauc(truth, score, floor), abs=1e-9)
    assert np.isnan(cm.pauc(np.ones(3), np.arange(3)))


def test_weighted_logloss_hand_worked():
    # Columns (any, epidural), RSNA ICH weights (2, 1). Row losses: -ln .9, -ln .8 | -ln .6, -ln .7.
    truth = np.array([[1, 0], [0, 0]])
    probs = np.array([[0.9, 0.2], [0.4, 0.3]])
    any_ = (-np.log(0.9) - np.log(0.6)) / 2
    epidural = (-np.log(0.8) - np.log(0.7)) / 2
    assert cm.weighted_logloss(truth, probs, [2, 1]) == pytest.approx((2 * any_ + epidural) / 3)
    assert cm.weighted_logloss(truth, probs) == pytest.approx(log_loss(truth.ravel(), probs.ravel()))
    assert cm.binary_logloss([1, 0], [0.9, 0.4]) == pytest.approx(log_loss([1, 0], [0.9, 0.4]))
    probs3 = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert cm.multiclass_logloss([0, 2], probs3) == pytest.approx(log_loss([0, 2], probs3, labels=[0, 1, 2]))


def test_regression_errors_match_sklearn():
    rng = np.random.default_rng(2)
    truth = rng.uniform(0, 200, 100)
    pred = truth + rng.normal(0, 15, 100)
    assert cm.rmse(truth, pred) == pytest.approx(np.sqrt(mean_squared_error(truth, pred)))
    assert cm.mae(truth, pred) == pytest.approx(mean_absolute_error(truth, pred))
    assert cm.r2(truth, pred) == pytest.approx(r2_score(truth, pred))
    assert np.isnan(cm.r2([3.0, 3.0], [1.0, 2.0]))


def test_probabilistic_f1():
    # Hand-worked: tp = .9 + .6 = 1.5, fp = .2 + .3 = .5; precision .75, recall 1.5 / 2 = .75 -> .75.
    assert cm.probabilistic_f1([1, 1, 0, 0], [0.9, 0.6, 0.2, 0.3]) == pytest.approx(0.75)
    rng = np.random.default_rng(3)
    truth = (rng.random(50) < 0.3).astype(int)
    hard = (rng.random(50) < 0.4).astype(float)
    assert cm.probabilistic_f1(truth, hard) == pytest.approx(f1_score(truth, hard))  # 0/1: plain F1
    assert cm.probabilistic_f1([0, 0], [0.5, 0.5]) == 0.0


def test_mean_column_auc():
    rng = np.random.default_rng(4)
    truth = (rng.random((80, 3)) < 0.4).astype(int)
    probs = rng.random((80, 3)) + 0.3 * truth
    expected = np.mean([roc_auc_score(truth[:, k], probs[:, k]) for k in range(3)])
    assert cm.mean_column_auc(truth, probs) == pytest.approx(expected)


def test_oof_cutpoints_beat_plain_rounding():
    # A regressor that shrinks towards the mean (as MSE-trained models do): rounding under-calls the
    # high grades and over-calls the low ones; fitted cut-points recover much of that.
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 5, 600)
    pred = 2 + 0.55 * (truth - 2) + rng.normal(0, 0.35, 600)
    rounded = cm.qwk(truth, apply_cutpoints(pred, midpoints(5)), 5)
    cuts = fit_cutpoints(truth, pred, 5)
    fitted = cm.qwk(truth, apply_cutpoints(pred, cuts), 5)
    assert fitted > rounded + 0.02
    assert (np.diff(cuts) > 0).all() and len(cuts) == 4
    # Rounding of exact grades is already perfect: the midpoints stay.
    exact = np.array([0, 1, 2, 3, 4] * 4, dtype=float)
    assert fit_cutpoints(exact.astype(int), exact, 5).tolist() == midpoints(5).tolist()
    assert apply_cutpoints([0.49, 0.5, 3.7, 9.0], midpoints(5)).tolist() == [0, 1, 4, 4]
    assert expected_grade(np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])).tolist() == [0.5, 2.0]
    with pytest.raises(MedalsError, match="strictly increasing"):
        apply_cutpoints([1.0], [1.5, 0.5])


def test_registry_names_tasks_and_directions():
    assert set(FUNCTIONS) == set(METRIC_NAMES)
    assert metrics_for_task("regression") == ["rmse", "mae", "r2"]
    assert {"qwk", "rmse", "mae"} <= set(metrics_for_task("ordinal"))
    assert {"pauc", "pf1", "logloss", "auc"} <= set(metrics_for_task("binary"))
    assert metric_direction("rmse") == "min" and metric_direction("auc_20_rank") == "max"
    assert metric_direction("val_focal") == "min" and metric_direction("nonsense") is None


def test_a_metric_that_does_not_fit_the_task_is_refused_when_the_recipe_loads():
    with pytest.raises(MedalsError, match="metrics.extra\\[0\\] 'qwk' does not apply to task 'binary'"):
        recipe_from_dict({"name": "a", "task": "binary", "metrics": {"extra": ["qwk"]}}, "r.yaml")
    with pytest.raises(MedalsError, match="train.checkpoints\\[0\\].metric 'rmse' does not apply"):
        recipe_from_dict(
            {"name": "a", "task": "multilabel", "train": {"checkpoints": [{"metric": "rmse"}]}}, "r"
        )
    with pytest.raises(MedalsError, match="'kappa' is not a known metric"):
        recipe_from_dict({"name": "a", "task": "ordinal", "metrics": {"main": "kappa"}}, "r")
    with pytest.raises(MedalsError, match="logloss_weights names 'any', which is not one of the classes"):
        recipe_from_dict(
            {
                "name": "a",
                "task": "multilabel",
                "data": {"classes": ["epidural"]},
                "metrics": {"logloss_weights": {"any": 2}},
            },
            "r",
        )
    with pytest.raises(MedalsError, match="set submit.target_class"):
        recipe_from_dict({"name": "a", "task": "multiclass", "metrics": {"extra": ["pauc"]}}, "r")
    recipe = recipe_from_dict(
        {
            "name": "a",
            "task": "binary",
            "metrics": {"main": "logloss"},
            "train": {"checkpoints": [{"name": "b"}]},
            "infer": {"checkpoint": "b"},
        },
        "r",
    )
    assert recipe.train.checkpoints[0].mode == "min"  # lower log loss is better


def test_score_adds_the_extra_metrics_a_recipe_asks_for():
    rng = np.random.default_rng(6)
    truth = (rng.random(200) < 0.3).astype(int)
    probs = np.clip(rng.normal(0.3 + 0.3 * truth, 0.2), 0.01, 0.99)[:, None]
    recipe = recipe_from_dict(
        {
            "name": "a",
            "task": "binary",
            "metrics": {"extra": ["pauc", "pf1", "logloss"], "pauc_min_tpr": 0.5},
        },
        "r",
    )
    out = score(recipe, pd.DataFrame(index=range(200)), truth, probs, None)
    assert set(out) == {"auc", "accuracy", "pauc", "pf1", "logloss"}
    assert out["pauc"] == pytest.approx(isic_2024_pauc(truth, probs[:, 0], 0.5))
    assert out["logloss"] == pytest.approx(log_loss(truth, probs[:, 0]))
    ich = recipe_from_dict(
        {
            "name": "ich",
            "task": "multilabel",
            "data": {"classes": ["epidural", "any"]},
            "metrics": {"extra": ["logloss", "auc"], "logloss_weights": {"any": 2}},
        },
        "r",
    )
    multi = np.stack([truth, 1 - truth], axis=1)
    p2 = np.concatenate([probs, 1 - probs], axis=1)
    out = score(ich, pd.DataFrame(index=range(200)), multi, p2, None)
    assert out["logloss"] == pytest.approx(cm.weighted_logloss(multi, p2, [1, 2]))
    assert out["auc"] == pytest.approx(roc_auc_score(truth, probs[:, 0]))
    ordinal = recipe_from_dict({"name": "o", "task": "ordinal", "data": {"classes": [0, 1, 2]}}, "r")
    grades = np.array([0, 1, 2, 2])
    out = score(ordinal, pd.DataFrame(index=range(4)), grades, np.array([[0.2], [1.4], [2.6], [1.6]]), None)
    assert out["qwk"] == pytest.approx(cohen_kappa_score(grades, [0, 1, 2, 2], weights="quadratic"))
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean([0.04, 0.16, 0.36, 0.16])))
