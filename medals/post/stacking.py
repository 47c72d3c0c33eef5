"""Classification stacking as the SIIM-ACR pneumothorax 2nd place does it.

Each model's out-of-fold probability that an image has a finding, their mean and every pairwise
difference feed a small logistic regression, itself trained k-fold on the OOF rows: its own OOF
predictions score the stack honestly, and the test prediction is the mean of its k models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from medals.errors import MedalsError

# L2 strength of the stacker: the features are a handful of strongly correlated probabilities, so a
# modest C keeps the weights from trading huge opposite coefficients on near-identical columns.
DEFAULT_C = 0.1


def _pairs(count: int) -> list[tuple[int, int]]:
    """Index pairs (i, j), i < j, in the order the difference columns appear."""
    return list(combinations(range(count), 2))


def stack_features(probs: np.ndarray) -> np.ndarray:
    """[N, M] model probabilities -> [N, M + 1 + M(M-1)/2]: the columns, their mean, p_i - p_j for i < j."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise MedalsError(
            f"stacking needs probabilities as [N, M] with M >= 1 models, got shape {probs.shape}"
        )
    i, j = np.array(_pairs(probs.shape[1]), dtype=np.int64).reshape(-1, 2).T
    return np.concatenate([probs, probs.mean(axis=1, keepdims=True), probs[:, i] - probs[:, j]], axis=1)


def feature_names(model_names: Sequence[str]) -> list[str]:
    """Names of stack_features' columns: the model names, "mean", then "a-b" for each pair a before b."""
    names = [str(name) for name in model_names]
    return [*names, "mean", *(f"{names[i]}-{names[j]}" for i, j in _pairs(len(names)))]


def _check_features(features: np.ndarray, what: str) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise MedalsError(f"{what} must be a 2-D [N, F] array, got shape {features.shape}")
    bad = ~np.isfinite(features)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise MedalsError(f"{what} hold NaN or infinite values in {len(rows)} rows (first: row {rows[0]})")
    return features


@dataclass
class Stacker:
    """The k fold stackers, their out-of-fold predictions ``oof``, each training row's fold, the width."""

    models: list[LogisticRegression]
    oof: np.ndarray
    folds: np.ndarray
    n_features: int

    def predict(self, features_test: np.ndarray) -> np.ndarray:
        """Mean over the fold stackers of P(positive) for each test row."""
        features_test = _check_features(features_test, "test stacking features")
        if features_test.shape[1] != self.n_features:
            raise MedalsError(
                f"test stacking features have {features_test.shape[1]} columns, "
                f"the stacker was trained on {self.n_features}"
            )
        return np.mean([model.predict_proba(features_test)[:, 1] for model in self.models], axis=0)


def fit_stacker(
    features: np.ndarray, truth: np.ndarray, n_folds: int = 5, seed: int = 0, C: float = DEFAULT_C
) -> Stacker:
    """Logistic-regression stackers on ``n_folds`` stratified folds of the OOF rows (features, 0/1 truth)."""
    features = _check_features(features, "stacking features")
    truth = np.asarray(truth).ravel()
    if len(truth) != len(features):
        raise MedalsError(f"{len(truth)} true labels but {len(features)} rows of stacking features")
    values = np.unique(truth)
    if not np.isin(values, [0, 1]).all():
        raise MedalsError(f"stacking truth must be 0/1, got values {values[:5].tolist()}")
    truth = truth.astype(np.int64)
    counts = np.bincount(truth, minlength=2)
    if (counts == 0).any():
        raise MedalsError(f"stacking truth holds only class {int(values[0])}: a stacker needs both classes")
    if n_folds < 2 or n_folds > counts.min():
        raise MedalsError(
            f"n_folds={n_folds} must be between 2 and the rarer class's count ({int(counts.min())})"
        )
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    oof = np.empty(len(truth))
    folds = np.empty(len(truth), dtype=np.int64)
    models = []
    for fold, (train, valid) in enumerate(splitter.split(features, truth)):
        model = LogisticRegression(C=C, solver="lbfgs", max_iter=1000)
        model.fit(features[train], truth[train])
        oof[valid] = model.predict_proba(features[valid])[:, 1]
        folds[valid] = fold
        models.append(model)
    return Stacker(models=models, oof=oof, folds=folds, n_features=features.shape[1])
