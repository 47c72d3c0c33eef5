"""train.sampler: rare-class up-sampling and class balancing of the training rows.

Weights: each class gets one (``class_weights``), each row the largest among its labels
(``row_weights``), so a row carrying a rare class is drawn as often as that class asks, whatever its
common labels. ``EpochSampler`` turns the row weights into one epoch's order, drawn from a generator
seeded with the epoch's seed: the same (seed, fold, epoch) gives the same rows in the same order, so a
resumed epoch repeats itself, and every DDP rank draws the same global order and takes its slice of
each batch (medals.runtime.sharding), as with a plain shuffle.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Sampler

from medals.config import SamplerConfig
from medals.errors import MedalsError


def label_matrix(rows: pd.DataFrame, task: str, num_classes: int) -> np.ndarray:
    """[N, K] 0/1 class membership of the training rows (binary: the two classes)."""
    from medals.data.dataset import _multi_hot

    if task == "multilabel":
        return _multi_hot(rows, num_classes)
    if task in ("binary", "multiclass"):
        if "label" not in rows.columns:
            raise MedalsError(f"train.sampler needs the {task} table's 'label' column")
        count = 2 if task == "binary" else num_classes
        labels = rows["label"].to_numpy(dtype=np.int64)
        if len(labels) and (labels.min() < 0 or labels.max() >= count):
            raise MedalsError(f"train.sampler: a label lies outside 0..{count - 1}")
        return np.eye(count, dtype=np.float32)[labels]
    raise MedalsError(f"train.sampler weighs rows by their class labels: task '{task}' has none")


def class_weights(matrix: np.ndarray, cfg: SamplerConfig) -> np.ndarray:
    """[K] weights: class_balanced (max count / count) ** power; rare_classes factor or 1."""
    counts = matrix.sum(axis=0)
    k = matrix.shape[1]
    if cfg.name == "class_balanced":
        top = counts.max() if counts.size else 0.0
        # A class no training row has gets no weight: no row can carry it.
        safe = np.where(counts > 0, counts, 1.0)
        return np.where(counts > 0, (top / safe) ** cfg.power, 1.0)
    if cfg.classes is not None:
        bad = [c for c in cfg.classes if not 0 <= c < k]
        if bad:
            raise MedalsError(f"train.sampler.classes: {bad[0]} is not a class index (0..{k - 1})")
        rare = np.zeros(k, dtype=bool)
        rare[list(cfg.classes)] = True
    else:
        assert cfg.below is not None
        rare = (counts > 0) & (counts < cfg.below * max(len(matrix), 1))
    return np.where(rare, cfg.factor, 1.0)


def row_weights(matrix: np.ndarray, cfg: SamplerConfig) -> np.ndarray:
    """[N] float64: the largest class weight among each row's labels (1 for a row without labels)."""
    weights = class_weights(matrix, cfg)
    carried = np.where(matrix > 0, weights[None, :], 0.0)
    out = carried.max(axis=1) if matrix.shape[1] else np.zeros(len(matrix))
    return np.where(matrix.sum(axis=1) > 0, out, 1.0).astype(np.float64)


def sampling_weights(rows: pd.DataFrame, task: str, num_classes: int, cfg: SamplerConfig | None):
    """The training rows' weights under train.sampler, or None without one."""
    if cfg is None:
        return None
    return row_weights(label_matrix(rows, task, num_classes), cfg)


class EpochSampler(Sampler[int]):
    """One epoch of row indices drawn by weight: "weighted" (``num_samples`` draws with replacement,
    P(row) proportional to its weight) or "repeat" (row i round(w_i) times, at least once, shuffled)."""

    def __init__(self, weights: np.ndarray, mode: str, seed: int, num_samples: int | None = None) -> None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 1 or not len(weights) or not np.all(np.isfinite(weights)) or weights.min() < 0:
            raise MedalsError("train.sampler: the row weights must be finite, non-negative, one per row")
        if weights.sum() <= 0:
            raise MedalsError("train.sampler: every row has weight 0")
        self.mode = mode
        self.seed = int(seed)
        if mode == "repeat":
            self.copies = np.maximum(np.rint(weights), 1).astype(np.int64)
            self.length = int(self.copies.sum())
        else:
            self.weights = torch.as_tensor(weights)
            self.length = int(num_samples or len(weights))

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        # A fresh generator per pass: iterating twice gives the same epoch (no hidden state runs on).
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        if self.mode == "repeat":
            index = np.repeat(np.arange(len(self.copies)), self.copies)
            order = torch.randperm(len(index), generator=generator).numpy()
            yield from index[order].tolist()
        else:
            draws = torch.multinomial(self.weights, self.length, replacement=True, generator=generator)
            yield from draws.tolist()
