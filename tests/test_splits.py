from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medals.config import recipe_from_dict
from medals.data.splits import make_folds, multi_hot
from medals.errors import MedalsError


def _recipe(task: str = "multiclass", recipe_seed: int = 0, data: dict | None = None, **split):
    tree = {"name": "t", "task": task, "seed": recipe_seed, "split": split, "data": data or {}}
    if task == "segmentation":
        tree["model"] = {"arch": "unet"}
    return recipe_from_dict(tree, "test")


def _table(n: int = 100, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 2], [50, 30, 20])[:n]
    return pd.DataFrame(
        {
            "id": [f"i{i}" for i in range(n)],
            "label": rng.permutation(labels),
            "group": [f"p{g}" for g in rng.integers(0, 25, n)],
            "has_mask": rng.integers(0, 2, n),
        }
    )


GROUPED = {"group_column": "patient"}


@pytest.mark.parametrize(
    ("method", "data"),
    [("kfold", None), ("stratified", None), ("grouped", GROUPED), ("stratified_grouped", GROUPED)],
)
def test_deterministic_for_a_seed_and_seeds_differ(method, data):
    table = _table()
    a = make_folds(table, _recipe(recipe_seed=1, method=method, data=data))
    b = make_folds(table, _recipe(recipe_seed=1, method=method, data=data))
    c = make_folds(table, _recipe(recipe_seed=2, method=method, data=data))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sorted(set(a.tolist())) == [0, 1, 2, 3, 4]
    # split.seed wins over the recipe seed
    d = make_folds(table, _recipe(recipe_seed=9, method=method, data=data, seed=2))
    np.testing.assert_array_equal(c, d)


def test_kfold_sizes():
    folds = make_folds(_table(), _recipe(method="kfold"))
    assert np.bincount(folds).tolist() == [20] * 5


def test_stratified_is_balanced():
    table = _table()
    folds = make_folds(table, _recipe(method="stratified"))
    for fold in range(5):
        counts = np.bincount(table["label"][folds == fold], minlength=3)
        assert counts.tolist() == [10, 6, 4]


def test_stratified_segmentation_uses_has_mask():
    table = _table()
    folds = make_folds(table, _recipe("segmentation", method="stratified"))
    positives = [int(table["has_mask"][folds == f].sum()) for f in range(5)]
    total = int(table["has_mask"].sum())
    assert max(positives) - min(positives) <= 1 and sum(positives) == total


@pytest.mark.parametrize("method", ["grouped", "stratified_grouped"])
def test_groups_never_straddle_folds(method):
    table = _table()
    folds = make_folds(table, _recipe(method=method, data=GROUPED))
    per_group = pd.Series(folds).groupby(table["group"]).nunique()
    assert (per_group == 1).all()
    assert np.bincount(folds).min() > 0


def test_grouped_needs_group_column():
    with pytest.raises(MedalsError, match="needs data.group_column"):
        make_folds(_table().drop(columns="group"), _recipe(method="grouped"))


def test_impossible_stratification_is_one_sentence():
    table = pd.DataFrame({"id": list("abcd"), "label": [0, 0, 1, 1]})
    with pytest.raises(
        MedalsError, match="split.method 'stratified' with split.n_folds=5 is impossible on 4 rows"
    ):
        make_folds(table, _recipe(method="stratified"))


def test_multilabel_spreads_every_label():
    rng = np.random.default_rng(0)
    hot = rng.random((200, 6)) < [0.5, 0.3, 0.2, 0.1, 0.05, 0.05]
    labels = [" ".join(str(k) for k in np.flatnonzero(row)) for row in hot]
    table = pd.DataFrame({"id": [str(i) for i in range(200)], "labels": labels})
    np.testing.assert_array_equal(multi_hot(table["labels"], 6), hot)
    for method in ["multilabel", "stratified"]:  # stratified means multilabel for a multilabel task
        recipe = _recipe("multilabel", method=method, data={"num_classes": 6})
        folds = make_folds(table, recipe)
        np.testing.assert_array_equal(folds, make_folds(table, recipe))
        per_fold = np.stack([hot[folds == f].sum(0) for f in range(5)])
        expected = hot.sum(0) / 5
        assert np.all(np.abs(per_fold - expected) <= 1)


NEWFOLD = {"8": 0, "5": 0, "11": 0, "7": 1, "0": 1, "6": 1, "10": 2, "12": 2, "13": 2, "9": 3, "1": 3, "3": 3}
NEWFOLD |= {"14": 4, "2": 4, "4": 4}


def test_fixed_mapping_melanoma_newfold():
    table = pd.DataFrame({"id": [str(i) for i in range(15)], "tfrecord": list(range(15))})
    folds = make_folds(table, _recipe(method="fixed", column="tfrecord", mapping=NEWFOLD))
    assert folds[[2, 4, 5]].tolist() == [4, 4, 0]
    assert folds.tolist() == [1, 3, 4, 3, 4, 0, 1, 1, 0, 3, 2, 0, 2, 2, 4]


def test_fixed_default_modulo_and_float_values():
    table = pd.DataFrame({"id": [str(i) for i in range(10)], "tfrecord": [float(i) for i in range(10)]})
    folds = make_folds(table, _recipe(method="fixed", column="tfrecord"))
    assert folds.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]


def test_fixed_unmapped_value_is_named():
    table = pd.DataFrame({"id": list("abcdef"), "tfrecord": [0, 1, 2, 3, 4, 77]})
    mapping = {"0": 0, "1": 1, "2": 2, "3": 3, "4": 4}
    with pytest.raises(MedalsError, match="no fold for value\\(s\\) '77' of column 'tfrecord'"):
        make_folds(table, _recipe(method="fixed", column="tfrecord", mapping=mapping))
    with pytest.raises(MedalsError, match="leaves fold\\(s\\) \\[4\\] without rows"):
        make_folds(table.iloc[:4], _recipe(method="fixed", column="tfrecord", mapping=mapping))
    with pytest.raises(MedalsError, match="'x', which is not a number"):
        make_folds(table.assign(tfrecord=["x"] * 6), _recipe(method="fixed", column="tfrecord"))


# ---- split.query: folds over a subset of the training rows ----------------------------------------


def test_query_keeps_only_matching_rows_and_is_deterministic():
    from medals.data.splits import fold_table

    table = _table()
    recipe = _recipe("segmentation", method="kfold", query="has_mask == 1")
    folds = fold_table(table, recipe)
    positives = table.loc[table["has_mask"] == 1, "id"].tolist()
    assert folds["id"].tolist() == positives  # only the positives, in table order
    assert sorted(folds["fold"].unique().tolist()) == [0, 1, 2, 3, 4]
    assert folds["fold"].value_counts().max() - folds["fold"].value_counts().min() <= 1
    pd.testing.assert_frame_equal(folds, fold_table(table, recipe))
    # the same as splitting the subset by itself; without a query every row gets a fold
    subset = table[table["has_mask"] == 1].reset_index(drop=True)
    np.testing.assert_array_equal(folds["fold"].to_numpy(), make_folds(subset, recipe))
    assert len(fold_table(table, _recipe("segmentation", method="kfold"))) == len(table)


def test_query_with_stratified_and_grouped_methods():
    from medals.data.splits import fold_table

    table = _table()
    folds = fold_table(table, _recipe(method="stratified", query="label != 0"))
    assert set(table.set_index("id").loc[folds["id"], "label"]) == {1, 2}
    grouped = fold_table(table, _recipe(method="grouped", data=GROUPED, query="has_mask == 1", n_folds=3))
    merged = grouped.merge(table, on="id")
    assert (merged["has_mask"] == 1).all()
    assert merged.groupby("group")["fold"].nunique().max() == 1


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("no_such_column == 1", "split.query 'no_such_column == 1' cannot be applied"),
        ("has_mask ==", "split.query 'has_mask ==' cannot be applied"),
        ("has_mask", "must give true or false for each training row"),
        ("has_mask == 7", "keeps none of the 100 training rows"),
    ],
)
def test_query_errors_name_split_query(query, message):
    from medals.data.splits import fold_table

    with pytest.raises(MedalsError, match=message):
        fold_table(_table(), _recipe("segmentation", method="kfold", query=query))


def test_split_stage_writes_only_queried_rows(tmp_path, capsys):
    from medals.stages.layout import RunLayout
    from medals.stages.split import run_split

    table = _table(40)
    table["split"] = "train"
    test = pd.DataFrame({"id": ["t0", "t1"], "split": ["test", "test"], "has_mask": [0, 0]})
    layout = RunLayout(tmp_path)
    pd.concat([table, test], ignore_index=True).to_parquet(layout.table, index=False)
    run_split(_recipe("segmentation", method="stratified", query="has_mask == 1", n_folds=3), layout)
    folds = pd.read_parquet(layout.folds)
    assert set(folds["id"]) == set(table.loc[table["has_mask"] == 1, "id"])
    assert f"{len(folds)} of 40 training rows match split.query" in capsys.readouterr().out


def test_train_only_rows_get_fold_minus_one():
    from medals.data.splits import fold_table

    table = _table()
    table["is_extra"] = (np.arange(len(table)) % 4 == 0).astype(int)
    recipe = _recipe("segmentation", method="kfold", train_only="is_extra == 1")
    folds = fold_table(table, recipe)
    extra = table["is_extra"].to_numpy() == 1
    assert (folds["fold"].to_numpy()[extra] == -1).all()
    assert sorted(folds["fold"][~extra].unique().tolist()) == [0, 1, 2, 3, 4]
    rest = table[~extra].reset_index(drop=True)
    np.testing.assert_array_equal(folds["fold"].to_numpy()[~extra], make_folds(rest, recipe))
    with pytest.raises(MedalsError, match="split.train_only 'has_mask >= 0' leaves no rows"):
        fold_table(table, _recipe("segmentation", method="kfold", train_only="has_mask >= 0"))
    with pytest.raises(MedalsError, match="split.train_only 'nope == 1' cannot be applied"):
        fold_table(table, _recipe("segmentation", method="kfold", train_only="nope == 1"))
