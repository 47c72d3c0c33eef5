from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medals.data.hashing import leaks
from medals.errors import MedalsError
from medals.post.thresholds import (
    HPA3_GRID,
    average_duplicates,
    prevalence_thresholds,
    replace_leaks,
    train_prevalence,
)


def test_train_prevalence():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    assert train_prevalence(labels).tolist() == [0.75, 0.25, 0.0]


def test_prevalence_thresholds_hand_checked():
    probs = np.array(
        [
            [0.1, 0.9, 0.3, 0.5],
            [0.2, 0.8, 0.3, 0.5],
            [0.3, 0.7, 0.3, 0.5],
            [0.4, 0.6, 0.9, 0.1],
        ]
    )
    # class 0: 2 of 4 above -> between 0.2 and 0.3; class 1: 1 of 4 -> between 0.8 and 0.9;
    # class 2: rate 0 -> above the max; class 3: 3 of 4 -> between 0.1 and 0.5
    thresholds = prevalence_thresholds(probs, [0.5, 0.25, 0.0, 0.75])
    assert thresholds[0] == pytest.approx(0.25)
    assert thresholds[1] == pytest.approx(0.85)
    assert thresholds[2] > 0.9 and thresholds[2] == pytest.approx(0.9)
    assert thresholds[3] == pytest.approx(0.3)
    assert ((probs > thresholds).mean(axis=0) == [0.5, 0.25, 0.0, 0.75]).all()
    # rate 1: every score above the threshold
    assert (probs > prevalence_thresholds(probs, [1.0] * 4)).all()


def test_prevalence_thresholds_with_ties_take_the_nearest_count():
    probs = np.array([[0.1], [0.5], [0.5], [0.9]])
    # 2 of 4 asked: 0.5 is tied, so 1 or 3 positives are possible; the tie goes to fewer positives
    assert prevalence_thresholds(probs, [0.5])[0] == pytest.approx(0.7)
    # 3 of 4 is reachable exactly
    assert prevalence_thresholds(probs, [0.75])[0] == pytest.approx(0.3)
    # 0.6 of 4 = 2.4 positives: 3 is nearer than 1
    assert prevalence_thresholds(probs, [0.6])[0] == pytest.approx(0.3)


def test_prevalence_thresholds_on_a_grid_hpa3():
    rng = np.random.default_rng(0)
    probs = rng.random((1000, 3))
    thresholds = prevalence_thresholds(probs, [0.3, 0.05, 0.5], grid=HPA3_GRID)
    assert set(thresholds.tolist()) <= set(HPA3_GRID.tolist())
    assert np.abs((probs > thresholds).mean(axis=0) - [0.3, 0.05, 0.5]).max() < 0.02
    # every score above 0.99: the rate cannot be reached, the first nearest grid value is kept
    assert prevalence_thresholds(np.full((5, 1), 0.995), [0.0], grid=HPA3_GRID)[0] == 0.05
    with pytest.raises(MedalsError, match="0..1"):
        prevalence_thresholds(probs, [1.5, 0, 0])


def test_average_duplicates():
    probs = np.array([[0.2, 0.4], [0.6, 0.0], [0.9, 0.9], [0.4, 0.2]])
    groups = np.array([0, 0, 1, 0])
    averaged = average_duplicates(probs, groups)
    assert averaged[[0, 1, 3]] == pytest.approx(np.tile([[0.4, 0.2]], (3, 1)))
    assert averaged[2].tolist() == [0.9, 0.9]
    assert average_duplicates(probs, np.arange(4)) == pytest.approx(probs)


def test_replace_leaks_takes_the_nearest_labelled_match():
    pred = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)
    labelled = np.array([[0, 1, 1], [1, 1, 0], [1, 0, 1]], dtype=bool)
    pairs = pd.DataFrame({"a": [0, 0, 2], "b": [0, 1, 2], "distance": [5, 2, 9]})
    report = leaks(["t0", "t1", "t2"], ["l0", "l1", "l2"], pairs)
    out = replace_leaks(pred, report, labelled)
    assert out.tolist() == [[True, True, False], [False, True, False], [True, False, True]]
    assert pred.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]  # input untouched
    capped = replace_leaks(pred, report, labelled, max_distance=4)
    assert capped.tolist() == [[True, True, False], [False, True, False], [False, False, True]]
    # equal distances: the first labelled row wins
    tie = leaks(["t0"], ["l0", "l1"], pd.DataFrame({"a": [0, 0], "b": [1, 0], "distance": [0, 0]}))
    assert replace_leaks(pred[:1], tie, labelled[:2]).tolist() == [[False, True, True]]
    assert (replace_leaks(pred, report.iloc[:0], labelled) == pred).all()
