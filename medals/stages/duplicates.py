"""Duplicate search in prepare (data.duplicates): perceptual hashes per plane, groups, test leaks.

Every row gets `dup_group` (rows of one group are near-duplicates, transitively); the pairs go to
duplicates.parquet and the test images that duplicate a labelled image to leaks.csv. Splits keep a
group in one fold; submit can average a test group's predictions or copy a leak's labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.files import write_csv, write_parquet
from medals.stages.common import say
from medals.stages.layout import RunLayout


def find_duplicates(recipe: Recipe, table: pd.DataFrame, layout: RunLayout) -> pd.DataFrame:
    from medals.data.hashing import (
        duplicate_groups,
        exact_duplicate_pairs,
        hash_table,
        near_duplicate_pairs,
    )

    cfg = recipe.data.duplicates
    found = []
    for kind in cfg.kinds:
        hashes = hash_table(table["path"].tolist(), kind, cfg.channels)
        if cfg.exact:
            found.append(exact_duplicate_pairs(hashes))
        else:
            found.append(near_duplicate_pairs(hashes, max_distance=cfg.max_distance))
    pairs = pd.concat(found, ignore_index=True).drop_duplicates(["a", "b"]).reset_index(drop=True)
    table = table.copy()
    table["dup_group"] = duplicate_groups(len(table), pairs)
    ids = table["id"].to_numpy()
    split = table["split"].to_numpy()
    named = pd.DataFrame(
        {
            "id_a": ids[pairs["a"]],
            "id_b": ids[pairs["b"]],
            "split_a": split[pairs["a"]],
            "split_b": split[pairs["b"]],
            "distance": pairs["distance"].to_numpy(),
        }
    )
    write_parquet(layout.duplicates, named)
    leaks = leak_table(table, pairs)
    write_csv(layout.leaks, leaks)
    groups = int(table["dup_group"].nunique())
    say(
        f"prepare: {len(named)} duplicate pairs ({', '.join(cfg.kinds)}), {len(table) - groups} images in "
        f"duplicate groups, {leaks['test_id'].nunique()} test images matching labelled ones -> leaks.csv"
    )
    return table


def leak_table(table: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """test_id, labelled_id, distance for every pair of a test and a training image, nearest first."""
    from medals.data.hashing import leaks

    is_test = (table["split"] == "test").to_numpy()
    # Position of each row among the test rows and among the training rows.
    position = np.where(is_test, np.cumsum(is_test) - 1, np.cumsum(~is_test) - 1)
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    mixed = is_test[a] != is_test[b]
    test_row = np.where(is_test[a], a, b)[mixed]
    labelled_row = np.where(is_test[a], b, a)[mixed]
    between = pd.DataFrame(
        {
            "a": position[test_row],
            "b": position[labelled_row],
            "distance": pairs["distance"].to_numpy()[mixed],
        }
    )
    ids = table["id"].astype(str)
    found = leaks(ids[is_test].tolist(), ids[~is_test].tolist(), between)
    return found[["test_id", "labelled_id", "distance"]]
