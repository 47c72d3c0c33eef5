"""split: a fold number for every training row -> folds.parquet."""

from __future__ import annotations

import pandas as pd

from medals.config import Recipe
from medals.files import write_parquet
from medals.layout import RunLayout
from medals.stages.common import read_table, say


def run_split(recipe: Recipe, layout: RunLayout) -> None:
    from medals.data.splits import make_folds

    table = read_table(layout)
    train = table[table["split"] == "train"].reset_index(drop=True)
    folds = pd.DataFrame({"id": train["id"].astype(str), "fold": make_folds(train, recipe)})
    write_parquet(layout.folds, folds)
    sizes = folds["fold"].value_counts().sort_index().to_dict()
    say(f"split: {recipe.split.method} into {recipe.split.n_folds} folds, sizes {sizes}")
