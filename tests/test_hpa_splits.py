from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medals.data.hpa_splits import (
    clean_external,
    group_labels,
    grouped_multilabel_folds,
    hpa3_chunks,
    hpa3_fold_of_chunk,
    split_train_and_external,
)
from medals.errors import MedalsError

RATES = np.array([0.4, 0.25, 0.15, 0.1, 0.05])


def _labels(n: int, seed: int = 0) -> np.ndarray:
    """A planted multilabel distribution: class k with probability RATES[k], at least one label."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, len(RATES))) < RATES).astype(np.uint8)
    empty = labels.sum(axis=1) == 0
    labels[empty, rng.integers(0, len(RATES), empty.sum())] = 1
    return labels


def _groups(n: int, seed: int = 0) -> np.ndarray:
    """Mostly singletons, some pairs and triples of duplicates (about 18% of rows in a group)."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice([1] * 18 + [2, 3], size=n)
    return np.repeat(np.arange(n), sizes)[:n]


def _straddles(folds: np.ndarray, groups: np.ndarray) -> bool:
    return (pd.Series(folds).groupby(groups).nunique() > 1).any()


def test_group_labels_are_or_of_members():
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    merged, index = group_labels(labels, np.array(["x", "y", "x"]))
    assert merged.tolist() == [[1, 0, 1], [0, 1, 0]]
    assert index.tolist() == [0, 1, 0]


def test_grouped_folds_keep_groups_and_balance_labels():
    n = 1200
    labels, groups = _labels(n), _groups(n)
    # duplicates share labels (as the copies of one image do)
    labels = labels[pd.Series(np.arange(n)).groupby(groups).transform("first").to_numpy()]
    folds = grouped_multilabel_folds(labels, groups, 5, seed=3)
    assert set(folds.tolist()) == set(range(5))
    assert not _straddles(folds, groups)
    expected = labels.sum(axis=0) / 5

    def deviation(f: np.ndarray) -> np.ndarray:
        return np.abs(np.array([labels[f == k].sum(axis=0) for k in range(5)]) - expected)

    assert (deviation(folds) <= np.maximum(8, 0.12 * expected)).all()  # a group of 3 moves 3 rows
    # far closer to even than folds drawn at random per group
    random_folds = np.random.default_rng(0).integers(0, 5, groups.max() + 1)[groups]
    assert deviation(folds).sum() < 0.5 * deviation(random_folds).sum()
    sizes = np.bincount(folds)
    assert np.abs(sizes - n / 5).max() <= 0.08 * n / 5
    assert (grouped_multilabel_folds(labels, groups, 5, seed=3) == folds).all()
    assert not (grouped_multilabel_folds(labels, groups, 5, seed=4) == folds).all()


def test_train_and_external_split_separately_in_proportion():
    n_train, n_ext = 1000, 1500
    labels = _labels(n_train + n_ext, seed=1)
    is_external = np.arange(n_train + n_ext) >= n_train
    groups = np.arange(n_train + n_ext)
    # ten external images duplicate competition images (one group each)
    groups[n_train : n_train + 10] = np.arange(10) * 7
    folds = split_train_and_external(labels, is_external, groups, n_folds=5, seed=0)
    assert (folds >= 0).all() and not _straddles(folds, groups)
    assert (folds[n_train : n_train + 10] == folds[np.arange(10) * 7]).all()
    for kind, size in ((~is_external, n_train), (is_external, n_ext)):
        counts = np.bincount(folds[kind], minlength=5)
        assert np.abs(counts - size / 5).max() <= 0.1 * size / 5
    for kind in (~is_external, is_external):
        per_fold = np.array([labels[kind & (folds == f)].sum(axis=0) for f in range(5)])
        expected = labels[kind].sum(axis=0) / 5
        assert (np.abs(per_fold - expected) <= np.maximum(3, 0.12 * expected)).all()


def test_external_only_and_errors():
    labels = _labels(50)
    folds = split_train_and_external(labels, np.ones(50, bool), None, n_folds=5)
    assert set(folds.tolist()) == set(range(5))
    with pytest.raises(MedalsError, match="cannot fill"):
        grouped_multilabel_folds(labels[:3], None, 5)
    with pytest.raises(MedalsError, match="is_external"):
        split_train_and_external(labels, np.ones(3, bool))


def test_clean_variant_drops_external_duplicates_with_other_labels():
    labels = np.array([[1, 0], [0, 1], [1, 0], [1, 1], [0, 1], [1, 0]])
    is_external = np.array([False, False, True, True, True, True])
    # 2 matches train 0 with the same labels, 3 matches train 1 with other labels,
    # 4 and 5 are external duplicates of each other (not of a train image)
    pairs = pd.DataFrame({"a": [0, 1, 4], "b": [2, 3, 5], "distance": [1, 2, 0]})
    assert clean_external(labels, is_external, pairs).tolist() == [True, True, True, False, True, True]
    # pair order does not matter
    assert (
        clean_external(labels, is_external, np.array([[3, 1]])).tolist() == [True] * 3 + [False] + [True] * 2
    )
    assert clean_external(labels, is_external, np.zeros((0, 2))).all()


def test_hpa3_chunks_and_fold_mapping():
    n = 1100
    labels, groups = _labels(n, seed=2), _groups(n, seed=2)
    chunks = hpa3_chunks(labels, groups, seed=0)
    assert set(chunks.tolist()) == set(range(11))
    assert not _straddles(chunks, groups)
    sizes = np.bincount(chunks)
    assert sizes.max() - sizes.min() <= 0.15 * n / 11
    assert hpa3_fold_of_chunk(10) == -1
    assert [hpa3_fold_of_chunk(c) for c in range(10)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert hpa3_fold_of_chunk(np.array([0, 3, 10])).tolist() == [0, 1, -1]
    with pytest.raises(MedalsError):
        hpa3_fold_of_chunk(11)
    # The pipeline's roles for fold 2: validation on chunks 4 and 5, the hold-out (fold -2) never
    # trained on, every other chunk trained on (the rule medals.train.loop applies).
    from medals.data.splits import HOLDOUT

    folds = np.where(hpa3_fold_of_chunk(chunks) < 0, HOLDOUT, hpa3_fold_of_chunk(chunks))
    assert set(chunks[folds == 2].tolist()) == {4, 5}
    assert set(chunks[folds == HOLDOUT].tolist()) == {10}
    trained = (folds != 2) & (folds != HOLDOUT)
    assert (trained == ~np.isin(chunks, [4, 5, 10])).all()


def _clean_table() -> pd.DataFrame:
    # One duplicate group: external e1 has competition c1's labels, competition c2 has others;
    # external e2 shares no group with a competition image.
    return pd.DataFrame(
        {
            "id": ["c1", "c2", "e1", "e2"],
            "labels": ["1", "2", "1", "2"],
            "external": [0, 0, 1, 1],
            "dup_group": ["g", "g", "g", "h"],
        }
    )


def _clean_recipe(clean: bool = True):
    from medals.config import recipe_from_dict

    split = {"method": "hpa1", "column": "external", "clean_external": clean}
    return recipe_from_dict(
        {"name": "t", "task": "multilabel", "data": {"num_classes": 3}, "split": split}, "t"
    )


def test_clean_rows_follow_the_pairs_prepare_found():
    from medals.data.splits import clean_external_rows

    # e1 was matched to c1 only (same labels): kept, although its group also holds c2.
    pairs = pd.DataFrame({"id_a": ["c1", "c1"], "id_b": ["e1", "c2"]})
    assert clean_external_rows(_clean_table(), _clean_recipe(), pairs).tolist() == [True, True, True, True]
    # Matched to c2 as well (other labels): dropped, whatever c1 says. Pairs naming rows outside the
    # table (a test image, a row split.query dropped) are ignored.
    pairs = pd.DataFrame({"id_a": ["c1", "e1", "t9"], "id_b": ["e1", "c2", "e2"]})
    assert clean_external_rows(_clean_table(), _clean_recipe(), pairs).tolist() == [True, True, False, True]
    assert clean_external_rows(_clean_table(), _clean_recipe(clean=False), pairs).all()


def test_clean_rows_without_pairs_match_within_a_group():
    from medals.data.splits import clean_external_rows

    # No pair list: every competition image of e1's group counts as matched, and c2's labels differ.
    # (The rule before one rule served both paths kept e1, because c1 in its group had its labels.)
    assert clean_external_rows(_clean_table(), _clean_recipe(), None).tolist() == [True, True, False, True]
    same = _clean_table().assign(labels=["1", "1", "1", "2"])
    assert clean_external_rows(same, _clean_recipe(), None).all()
