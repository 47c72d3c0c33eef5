"""train.sampler (medals.data.sampling): the weights follow the arithmetic of the config, the weighted
draws land within binomial bounds of it, the repeat mode is exact, and an epoch's order is a function of
its seed alone (a resumed epoch repeats it; DDP ranks slice one global order)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import Dataset

from medals.config import Recipe, SamplerConfig
from medals.data.sampling import EpochSampler, class_weights, label_matrix, row_weights, sampling_weights
from medals.errors import MedalsError
from medals.runtime.sharding import shard_batches
from medals.train.setup import fold_loader

N_COMMON, N_RARE = 90, 10  # rows 0..9 carry the rare class 1 (and 0), the others class 0 only


def _rows() -> pd.DataFrame:
    labels = ["0 1" if i < N_RARE else "0" for i in range(N_COMMON + N_RARE)]
    return pd.DataFrame({"id": [f"r{i}" for i in range(len(labels))], "labels": labels})


def _within_binomial(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_rare_class_weights_are_the_factor_on_rows_carrying_the_class():
    cfg = SamplerConfig(name="rare_classes", classes=[1], factor=4)
    matrix = label_matrix(_rows(), "multilabel", 3)
    assert class_weights(matrix, cfg).tolist() == [1.0, 4.0, 1.0]
    weights = row_weights(matrix, cfg)
    # the largest weight among a row's labels: a rare row's common label does not dilute it
    assert weights.tolist() == [4.0] * N_RARE + [1.0] * N_COMMON
    # "below": class 1 is on 10% of the rows, class 0 on all: only class 1 is under 20%
    below = SamplerConfig(name="rare_classes", below=0.2, factor=4)
    assert row_weights(matrix, below).tolist() == weights.tolist()
    assert row_weights(matrix, SamplerConfig(name="rare_classes", below=0.05)).tolist() == [1.0] * 100


def test_class_balanced_weights_and_rows_without_labels():
    rows = _rows()
    rows.loc[99, "labels"] = ""  # a row without labels weighs 1
    matrix = label_matrix(rows, "multilabel", 2)
    # counts: class 0 on 99 rows, class 1 on 10: weights (99 / count) ** power
    cfg = SamplerConfig(name="class_balanced", power=0.5)
    assert class_weights(matrix, cfg) == pytest.approx([1.0, math.sqrt(9.9)])
    assert row_weights(matrix, cfg)[[0, 50, 99]] == pytest.approx([math.sqrt(9.9), 1.0, 1.0])
    # multiclass: the weight of the row's one class
    table = pd.DataFrame({"label": [0, 0, 0, 1]})
    assert sampling_weights(table, "multiclass", 2, SamplerConfig(name="class_balanced")).tolist() == [
        1.0,
        1.0,
        1.0,
        3.0,
    ]
    assert sampling_weights(table, "multiclass", 2, None) is None


def test_weighted_draws_are_within_binomial_bounds_of_the_weights():
    weights = row_weights(
        label_matrix(_rows(), "multilabel", 2), SamplerConfig(name="rare_classes", classes=[1], factor=4)
    )
    n = 20_000
    draws = np.array(list(EpochSampler(weights, "weighted", seed=7, num_samples=n)))
    assert len(draws) == n and draws.min() >= 0 and draws.max() < 100
    # P(a rare row) = 10 * 4 / (10 * 4 + 90 * 1) = 40 / 130; each rare row 4 / 130, each common 1 / 130
    rare = int((draws < N_RARE).sum())
    assert _within_binomial(rare, n, 40 / 130)
    assert not _within_binomial(rare, n, 10 / 100)  # a plain shuffle's share is far outside
    counts = np.bincount(draws, minlength=100)
    # every row within bounds (Bonferroni over 100 rows: 4.5 sigma)
    assert all(_within_binomial(int(c), n, 4 / 130, 4.5) for c in counts[:N_RARE])
    assert all(_within_binomial(int(c), n, 1 / 130, 4.5) for c in counts[N_RARE:])


def test_repeat_mode_draws_each_row_round_weight_times():
    weights = np.array([4.0, 1.0, 2.4, 0.2])
    order = list(EpochSampler(weights, "repeat", seed=1))
    assert sorted(order) == [0, 0, 0, 0, 1, 2, 2, 3]  # round(w), at least once
    assert len(EpochSampler(weights, "repeat", seed=1)) == 8
    assert list(EpochSampler(weights, "repeat", seed=2)) != order


def test_an_epoch_is_a_function_of_its_seed():
    weights = np.linspace(1.0, 5.0, 50)
    sampler = EpochSampler(weights, "weighted", seed=11)
    first = list(sampler)
    assert list(sampler) == first  # iterating again (a resumed epoch) repeats the draws
    assert list(EpochSampler(weights, "weighted", seed=11)) == first
    assert list(EpochSampler(weights, "weighted", seed=12)) != first


class _Indices(Dataset):
    def __len__(self) -> int:
        return 100

    def __getitem__(self, index: int) -> dict:
        return {"index": index}


def _recipe(**sampler) -> Recipe:
    return Recipe.model_validate(
        {
            "name": "s",
            "task": "multilabel",
            "data": {"num_classes": 2},
            "train": {"batch_size": 8, "sampler": sampler},
        }
    )


def _batches(loader) -> list[list[int]]:
    return [batch["index"].tolist() for batch in loader]


def test_fold_loader_draws_by_weight_reproducibly_and_shards_one_global_order():
    recipe = _recipe(name="rare_classes", classes=[1], factor=4, mode="repeat")
    weights = sampling_weights(_rows(), "multilabel", 2, recipe.train.sampler)
    loader = fold_loader(recipe, _Indices(), shuffle=True, seed=5, weights=weights)
    batches = _batches(loader)
    assert len(loader) == len(batches) == 130 // 8  # 130 draws, the ragged last batch dropped
    drawn = np.bincount([i for b in batches for i in b], minlength=100)
    assert drawn.sum() == 128 and drawn[:N_RARE].max() == 4 and drawn[N_RARE:].max() == 1
    # the epoch's seed alone fixes its order: a resumed epoch rebuilds the same loader
    assert _batches(fold_loader(recipe, _Indices(), shuffle=True, seed=5, weights=weights)) == batches
    assert _batches(fold_loader(recipe, _Indices(), shuffle=True, seed=6, weights=weights)) != batches
    # DDP: each of 2 ranks takes its half of every global batch, together the single-process batches
    shards = [
        _batches(shard_batches(fold_loader(recipe, _Indices(), True, 5, weights), rank, 2)) for rank in (0, 1)
    ]
    assert [a + b for a, b in zip(*shards, strict=True)] == batches
    # without weights the plain shuffle is what it was
    plain = fold_loader(recipe, _Indices(), shuffle=True, seed=5)
    seen = [i for b in _batches(plain) for i in b]
    assert len(plain) == 12 and len(seen) == len(set(seen)) == 96  # each row at most once


def test_bad_sampler_settings_are_one_sentence():
    with pytest.raises(ValueError, match="exactly one of classes"):
        SamplerConfig(name="rare_classes")
    with pytest.raises(ValueError, match="drop num_samples"):
        SamplerConfig(name="class_balanced", mode="repeat", num_samples=10)
    matrix = label_matrix(_rows(), "multilabel", 2)
    with pytest.raises(MedalsError, match="train.sampler.classes: 5 is not a class index"):
        row_weights(matrix, SamplerConfig(name="rare_classes", classes=[5]))
    with pytest.raises(MedalsError, match="task 'segmentation' has none"):
        label_matrix(_rows(), "segmentation", 1)
    with pytest.raises(MedalsError, match="every row has weight 0"):
        EpochSampler(np.zeros(3), "weighted", seed=0)


def test_torch_generator_state_is_untouched():
    # The sampler draws from its own generator: the global torch RNG (augmentation) does not move.
    state = torch.get_rng_state()
    list(EpochSampler(np.ones(10), "weighted", seed=3))
    assert torch.equal(torch.get_rng_state(), state)
