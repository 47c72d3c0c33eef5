"""Human Protein Atlas splits: multilabel-stratified folds that keep duplicate groups together.

- HPA1 (``split_train_and_external``): 5 multilabel-stratified folds, the competition rows and the
  external (HPAv18) rows split separately so that every fold holds both kinds in proportion;
  ``clean_external`` gives the "clean" variant's keep mask (external images that duplicate a
  competition image with a different label set are dropped).
- HPA3 (``hpa3_chunks``): 11 multilabel-stratified chunks; chunk 10 is the hold-out "test_val" (used
  for thresholds and ensemble weights) and fold k validates on chunks 2k and 2k+1
  (``hpa3_fold_of_chunk``).

Duplicate groups come from ``medals.data.hashing.duplicate_groups``: one integer per row, rows of one
group are duplicates of one another. Stratification sees one representative per group, labelled with the
union (OR) of its members' labels, and every member takes its group's fold.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from medals.errors import MedalsError

HPA3_CHUNKS = 11
TEST_VAL = -1


def _labels(labels_multi_hot: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels_multi_hot)
    if labels.ndim != 2:
        raise MedalsError(f"labels must be a multi-hot array [N, K], got shape {labels.shape}")
    return labels.astype(bool)


def _groups(groups: np.ndarray | None, n: int) -> np.ndarray:
    if groups is None:
        return np.arange(n)
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise MedalsError(f"groups must give one group per row ({n}), got shape {groups.shape}")
    return groups


def group_labels(labels_multi_hot: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(OR-ed multi-hot labels of each group [G, K], group index 0..G-1 of each row [N])."""
    labels = _labels(labels_multi_hot)
    _, inverse = np.unique(_groups(groups, len(labels)), return_inverse=True)
    inverse = inverse.ravel()
    merged = np.zeros((inverse.max() + 1 if len(inverse) else 0, labels.shape[1]), dtype=bool)
    np.logical_or.at(merged, inverse, labels)
    return merged.astype(np.uint8), inverse


def grouped_multilabel_folds(
    labels_multi_hot: np.ndarray, groups: np.ndarray | None, n_splits: int, seed: int = 0
) -> np.ndarray:
    """Fold (0..n_splits-1) of each row: iterative multilabel stratification over groups.

    Balances the label counts of the groups (each group counts once), so groups of different sizes make
    the row counts per fold a little uneven.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    labels = _labels(labels_multi_hot)
    merged, inverse = group_labels(labels, _groups(groups, len(labels)))
    if n_splits < 2:
        raise MedalsError(f"at least 2 folds are needed, got {n_splits}")
    if len(merged) < n_splits:
        raise MedalsError(f"{len(merged)} duplicate group(s) cannot fill {n_splits} folds")
    splitter = MultilabelStratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    group_fold = np.full(len(merged), -1, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rare classes with fewer groups than folds
        for fold, (_, valid) in enumerate(splitter.split(np.zeros((len(merged), 1)), merged)):
            group_fold[valid] = fold
    return group_fold[inverse]


def split_train_and_external(
    labels_multi_hot: np.ndarray,
    is_external: np.ndarray,
    groups: np.ndarray | None = None,
    n_folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """HPA1 folds: the competition rows and the external rows stratified separately, groups kept whole.

    A group with a competition member is split with the competition rows and its external members take
    its fold; the remaining external groups are stratified among themselves. Each fold therefore holds
    about 1/n_folds of each kind, and no duplicate group straddles two folds.
    """
    labels = _labels(labels_multi_hot)
    n = len(labels)
    external = np.asarray(is_external, dtype=bool)
    if external.shape != (n,):
        raise MedalsError(f"is_external must give one flag per row ({n}), got shape {external.shape}")
    groups = _groups(groups, n)
    _, group_index = np.unique(groups, return_inverse=True)
    group_index = group_index.ravel()

    folds = np.full(n, -1, dtype=np.int64)
    competition = ~external
    if competition.any():
        folds[competition] = grouped_multilabel_folds(
            labels[competition], group_index[competition], n_folds, seed
        )
        # external duplicates of a competition image follow that image's fold
        fold_of_group = np.full(group_index.max() + 1, -1, dtype=np.int64)
        fold_of_group[group_index[competition]] = folds[competition]
        folds[external] = fold_of_group[group_index[external]]
    rest = external & (folds < 0)
    if rest.any():
        folds[rest] = grouped_multilabel_folds(labels[rest], group_index[rest], n_folds, seed)
    return folds


def _pairs(pairs: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(pairs, pd.DataFrame):
        if not {"a", "b"} <= set(pairs.columns):
            raise MedalsError("a pair table needs the columns 'a' and 'b'")
        return pairs["a"].to_numpy(np.int64), pairs["b"].to_numpy(np.int64)
    array = np.asarray(pairs, dtype=np.int64).reshape(-1, 2) if np.size(pairs) else np.zeros((0, 2), np.int64)
    return array[:, 0], array[:, 1]


def clean_external(
    labels_multi_hot: np.ndarray, is_external: np.ndarray, pairs: pd.DataFrame | np.ndarray
) -> np.ndarray:
    """Keep mask [N] of HPA1's "clean" variant: False for an external row that duplicates a competition
    row (a pair from ``near_duplicate_pairs`` over the combined table) with a different label set."""
    labels = _labels(labels_multi_hot)
    external = np.asarray(is_external, dtype=bool)
    if external.shape != (len(labels),):
        raise MedalsError(
            f"is_external must give one flag per row ({len(labels)}), got shape {external.shape}"
        )
    a, b = _pairs(pairs)
    if len(a) and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= len(labels)):
        raise MedalsError(f"a pair refers to a row outside 0..{len(labels) - 1}")
    mixed = external[a] != external[b]
    ext = np.where(external[a], a, b)[mixed]
    comp = np.where(external[a], b, a)[mixed]
    differ = (labels[ext] != labels[comp]).any(axis=1)
    keep = np.ones(len(labels), dtype=bool)
    keep[ext[differ]] = False
    return keep


def hpa3_chunks(
    labels_multi_hot: np.ndarray, groups: np.ndarray | None = None, n_chunks: int = HPA3_CHUNKS, seed: int = 0
) -> np.ndarray:
    """HPA3's chunk (0..n_chunks-1) of each row: multilabel-stratified over duplicate groups."""
    return grouped_multilabel_folds(labels_multi_hot, groups, n_chunks, seed)


def hpa3_fold_of_chunk(chunk: int | np.ndarray, n_chunks: int = HPA3_CHUNKS) -> int | np.ndarray:
    """The fold that validates on a chunk (chunks 2k and 2k+1 -> fold k); -1 for the last chunk (test_val)."""
    chunks = np.asarray(chunk, dtype=np.int64)
    if ((chunks < 0) | (chunks >= n_chunks)).any():
        raise MedalsError(f"chunk ids must lie in 0..{n_chunks - 1}")
    folds = np.where(chunks == n_chunks - 1, TEST_VAL, chunks // 2)
    return int(folds) if folds.ndim == 0 else folds
