"""Fold assignment for the training rows of the table, one integer fold per row.

``split.query`` narrows the rows that get a fold (e.g. positive images only for a segmentation model);
the rows it leaves out are absent from folds.parquet, so training and evaluation never see them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from medals.config import Recipe
from medals.data.hpa_splits import clean_external
from medals.data.meta import value_key
from medals.errors import MedalsError


def split_seed(recipe: Recipe) -> int:
    return recipe.split.seed if recipe.split.seed is not None else recipe.seed


def multi_hot(labels: pd.Series, num_classes: int | None = None) -> np.ndarray:
    """Space-separated label ids ("0 5 12", "" for none) -> uint8 multi-hot [N, K]."""
    ids = [[int(t) for t in str(text).split()] if isinstance(text, str) else [] for text in labels]
    k = num_classes if num_classes is not None else max((max(i) for i in ids if i), default=-1) + 1
    out = np.zeros((len(ids), max(k, 1)), dtype=np.uint8)
    for row, row_ids in enumerate(ids):
        out[row, row_ids] = 1
    return out


def _num_classes(recipe: Recipe) -> int | None:
    data = recipe.data
    return data.num_classes if data.num_classes is not None else (len(data.classes) if data.classes else None)


def _strata(table: pd.DataFrame, recipe: Recipe) -> np.ndarray:
    """The single label a stratified split balances: the class, has_mask for segmentation, the grade
    (ordinal), or the target's quintile (regression)."""
    column = {"segmentation": "has_mask", "regression": "target", "ordinal": "target"}.get(
        recipe.task, "label"
    )
    if column not in table.columns:
        raise MedalsError(f"split.method '{recipe.split.method}' needs the table column '{column}'")
    if recipe.task == "regression":
        ranks = table[column].rank(method="first").to_numpy()
        return np.minimum((ranks - 1) * 5 // len(table), 4).astype(np.int64)
    return table[column].to_numpy()


def _groups(table: pd.DataFrame, recipe: Recipe) -> np.ndarray:
    if not recipe.data.group_column or "group" not in table.columns:
        raise MedalsError(
            f"split.method '{recipe.split.method}' needs data.group_column (e.g. the patient id column)"
        )
    return table["group"].astype(str).to_numpy()


# Fold numbers with a meaning of their own: -1 trains in every fold (split.train_only), -2 is a hold-out
# that no fold trains or validates on (hpa3's last chunk).
TRAIN_ONLY = -1
HOLDOUT = -2


def _duplicate_groups(table: pd.DataFrame) -> np.ndarray | None:
    """Duplicate groups from prepare (data.duplicates), else the group column, else none."""
    for column in ("dup_group", "group"):
        if column in table.columns:
            return table[column].astype(str).to_numpy()
    return None


def _external(table: pd.DataFrame, recipe: Recipe) -> np.ndarray:
    column = recipe.split.column
    if column is None:
        return np.zeros(len(table), dtype=bool)
    if column not in table.columns:
        raise MedalsError(f"split.column '{column}' (the external flag) is not a table column: keep it")
    return table[column].fillna(0).astype(int).to_numpy() == 1


def _hpa(table: pd.DataFrame, recipe: Recipe) -> np.ndarray:
    from medals.data.hpa_splits import hpa3_chunks, hpa3_fold_of_chunk, split_train_and_external

    if "labels" not in table.columns:
        raise MedalsError(f"split.method '{recipe.split.method}' needs task multilabel")
    labels = multi_hot(table["labels"], _num_classes(recipe))
    groups, seed, n_folds = _duplicate_groups(table), split_seed(recipe), recipe.split.n_folds
    if recipe.split.method == "hpa1":
        return split_train_and_external(labels, _external(table, recipe), groups, n_folds, seed)
    n_chunks = 2 * n_folds + 1
    folds = hpa3_fold_of_chunk(hpa3_chunks(labels, groups, n_chunks, seed), n_chunks)
    return np.where(folds < 0, HOLDOUT, folds)


def clean_external_rows(table: pd.DataFrame, recipe: Recipe, pairs: pd.DataFrame | None = None) -> np.ndarray:
    """Keep mask of hpa1's clean variant, the seed's rule: external images matched to competition images
    with different labels are dropped (hpa_splits.clean_external).

    Matched means a duplicate pair found by prepare (`pairs`: duplicates.parquet's id_a, id_b) when the
    table has them, else sharing a duplicate group (data.duplicates' dup_group or a group column).
    """
    keep = np.ones(len(table), dtype=bool)
    if not recipe.split.clean_external:
        return keep
    if pairs is not None and "dup_group" in table.columns:
        rows = pd.Series(np.arange(len(table)), index=table["id"].astype(str).to_numpy())
        a = rows.reindex(pairs["id_a"].astype(str).to_numpy()).to_numpy()
        b = rows.reindex(pairs["id_b"].astype(str).to_numpy()).to_numpy()
        inside = ~(np.isnan(a) | np.isnan(b))  # pairs with a row that split.query dropped, or a test row
        index_pairs = np.stack([a[inside], b[inside]], axis=1).astype(np.int64)
    else:
        groups = _duplicate_groups(table)
        if groups is None:
            return keep
        external = _external(table, recipe)
        members = pd.DataFrame({"group": groups, "row": np.arange(len(table))})
        crossed = members[external].merge(members[~external], on="group")
        index_pairs = crossed[["row_x", "row_y"]].to_numpy(np.int64)
    labels = multi_hot(table["labels"], _num_classes(recipe))
    return clean_external(labels, _external(table, recipe), index_pairs)


def _fixed(table: pd.DataFrame, recipe: Recipe) -> np.ndarray:
    split = recipe.split
    column = split.column
    if not column or column not in table.columns:
        raise MedalsError(f"split.method 'fixed' needs split.column naming a table column, got {column!r}")
    keys = [value_key(v) for v in table[column].tolist()]
    if split.mapping is not None:
        unmapped = list(dict.fromkeys(k for k in keys if k not in split.mapping))
        if unmapped:
            raise MedalsError(
                f"split.mapping has no fold for value(s) {', '.join(repr(k) for k in unmapped[:5])} "
                f"of column '{column}'"
            )
        folds = np.array([split.mapping[k] for k in keys], dtype=np.int64)
    else:
        try:
            folds = np.array([int(float(k)) % split.n_folds for k in keys], dtype=np.int64)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            bad = next(k for k in keys if k is None or not _is_number(k))
            raise MedalsError(
                f"column '{column}' has value {bad!r}, which is not a number to take modulo split.n_folds "
                "(give split.mapping)"
            ) from None
    outside = sorted({int(f) for f in folds if not 0 <= f < split.n_folds})
    if outside:
        raise MedalsError(
            f"split.mapping gives fold(s) {outside} outside 0..{split.n_folds - 1} (split.n_folds)"
        )
    empty = sorted(set(range(split.n_folds)) - set(folds.tolist()))
    if empty:
        raise MedalsError(f"split.method 'fixed' on column '{column}' leaves fold(s) {empty} without rows")
    return folds


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def make_folds(table_train: pd.DataFrame, recipe: Recipe) -> np.ndarray:
    """Fold index (0..n_folds-1) of each training row, deterministic for the split seed.

    ``stratified`` balances the class (multiclass), has_mask (segmentation) or, for multilabel tasks,
    the label set (the same as ``multilabel``).
    """
    split = recipe.split
    method = split.method
    n = len(table_train)
    seed = split_seed(recipe)
    if method == "fixed":
        return _fixed(table_train, recipe)
    if method in ("hpa1", "hpa3"):
        return _hpa(table_train, recipe)
    if method == "stratified" and recipe.task == "multilabel":
        method = "multilabel"

    x = np.zeros((n, 1))
    if method == "kfold":
        splitter, args = KFold(split.n_folds, shuffle=True, random_state=seed), (x,)
    elif method == "stratified":
        splitter, args = (
            StratifiedKFold(split.n_folds, shuffle=True, random_state=seed),
            (x, _strata(table_train, recipe)),
        )
    elif method == "grouped":
        splitter = GroupKFold(split.n_folds, shuffle=True, random_state=seed)
        args = (x, None, _groups(table_train, recipe))
    elif method == "stratified_grouped":
        if recipe.task == "multilabel":
            raise MedalsError(
                "split.method 'stratified_grouped' needs a single label; multilabel tasks use 'grouped'"
            )
        splitter = StratifiedGroupKFold(split.n_folds, shuffle=True, random_state=seed)
        args = (x, _strata(table_train, recipe), _groups(table_train, recipe))
    elif method == "multilabel":
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        if "labels" not in table_train.columns:
            raise MedalsError("split.method 'multilabel' needs the table column 'labels' (task multilabel)")
        splitter = MultilabelStratifiedKFold(n_splits=split.n_folds, shuffle=True, random_state=seed)
        args = (x, multi_hot(table_train["labels"], _num_classes(recipe)))
    else:  # pragma: no cover - the recipe's Literal type admits no other value
        raise MedalsError(f"unknown split.method '{method}'")

    folds = np.full(n, -1, dtype=np.int64)
    try:
        # sklearn only warns when a class has fewer members than folds; it raises when impossible.
        for fold, (_, valid) in enumerate(splitter.split(*args)):
            folds[valid] = fold
    except ValueError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise MedalsError(
            f"split.method '{method}' with split.n_folds={split.n_folds} is impossible on {n} rows: {reason}"
        ) from None
    return folds


def _matches(table_train: pd.DataFrame, query: str, key: str) -> np.ndarray:
    """Boolean row mask of a pandas query over the training rows; errors name the key."""
    try:
        keep = table_train.eval(query)
    except Exception as exc:  # pandas raises NameError, SyntaxError, ValueError, TypeError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedalsError(f"{key} '{query}' cannot be applied to the training rows: {reason}") from None
    # DataFrame.query would index with a non-boolean result (e.g. 'has_mask' on a 0/1 column) and pick
    # rows by label without complaint; insist on a true/false answer per row.
    if (
        not isinstance(keep, pd.Series)
        or not pd.api.types.is_bool_dtype(keep)
        or len(keep) != len(table_train)
    ):
        raise MedalsError(
            f"{key} '{query}' must give true or false for each training row (e.g. 'has_mask == 1')"
        )
    return keep.to_numpy()


def query_rows(table_train: pd.DataFrame, recipe: Recipe) -> pd.DataFrame:
    """The training rows that split.query keeps (all of them without a query), index reset."""
    query = recipe.split.query
    if not query:
        return table_train.reset_index(drop=True)
    rows = table_train[_matches(table_train, query, "split.query")].reset_index(drop=True)
    if rows.empty:
        raise MedalsError(f"split.query '{query}' keeps none of the {len(table_train)} training rows")
    return rows


def fold_table(table_train: pd.DataFrame, recipe: Recipe, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """id and fold of each training row that split.query keeps: the content of folds.parquet.

    `pairs` are prepare's duplicate pairs (duplicates.parquet), for split.clean_external.
    Rows matching split.train_only get fold -1: every fold trains on them and none validates on
    them (e.g. external images with pseudo masks).
    """
    rows = query_rows(table_train, recipe)
    rows = rows[clean_external_rows(rows, recipe, pairs)].reset_index(drop=True)
    only = recipe.split.train_only
    extra = _matches(rows, only, "split.train_only") if only else np.zeros(len(rows), dtype=bool)
    if extra.all():
        raise MedalsError(f"split.train_only '{only}' leaves no rows to validate on")
    folds = np.full(len(rows), -1, dtype=np.int64)
    folds[~extra] = make_folds(rows[~extra].reset_index(drop=True), recipe)
    return pd.DataFrame({"id": rows["id"].astype(str), "fold": folds})
