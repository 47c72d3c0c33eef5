"""split: a fold number for every training row (those split.query keeps) -> folds.parquet."""

from __future__ import annotations

from medals.config import Recipe
from medals.files import write_parquet
from medals.stages.common import read_run_parquet, read_table, say
from medals.stages.layout import RunLayout


def run_split(recipe: Recipe, layout: RunLayout) -> None:
    from medals.data.splits import fold_table

    table = read_table(layout)
    train = table[table["split"] == "train"].reset_index(drop=True)
    # The clean split (split.clean_external) needs prepare's duplicate pairs, where it found some.
    pairs = read_run_parquet(layout, layout.duplicates) if layout.duplicates.exists() else None
    folds = fold_table(train, recipe, pairs)
    write_parquet(layout.folds, folds)
    sizes = folds["fold"].value_counts().sort_index().to_dict()
    kept = f" ({len(folds)} of {len(train)} training rows match split.query)" if recipe.split.query else ""
    say(f"split: {recipe.split.method} into {recipe.split.n_folds} folds, sizes {sizes}{kept}")
