"""ensemble: several models' predictions (one recipe each) combined into one submission."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.errors import MedalsError
from medals.files import write_npy, write_parquet
from medals.layout import RunLayout
from medals.stages.common import require, say
from medals.stages.submit import write_recipe_submission


def run_ensemble(recipes: list[Recipe], method: str, weights: list[float] | None, out_dir: Path) -> Path:
    from medals.ensemble import combine, combine_arrays

    if weights is not None and len(weights) != len(recipes):
        raise MedalsError(f"--weights has {len(weights)} values for {len(recipes)} recipes")
    tasks = {recipe.task for recipe in recipes}
    if len(tasks) != 1:
        raise MedalsError(f"recipes of different tasks cannot be ensembled: {sorted(tasks)}")
    layouts = [RunLayout(recipe.run_path) for recipe in recipes]
    tests = [pd.read_parquet(require(layout.test_predictions, "predict")) for layout in layouts]
    first, first_layout = recipes[0], layouts[0]
    masks = None
    if first.task == "segmentation":
        if method != "mean":
            raise MedalsError("segmentation masks are ensembled by 'mean' only")
        _check_same_ids(tests, recipes)
        masks = combine_arrays([np.load(layout.test_masks) for layout in layouts], weights)
        test = tests[0][["id"]]
        write_npy(out_dir / "test_masks.npy", masks.astype(np.float16))
    else:
        test = combine(tests, method=method, weights=weights)
    write_parquet(out_dir / "test.parquet", test)
    oof = None
    if first.task == "multilabel" and all(layout.oof.exists() for layout in layouts):
        oofs = [pd.read_parquet(layout.oof).drop(columns="fold") for layout in layouts]
        oof = combine(oofs, method=method, weights=weights)
    say(f"ensemble: {method} of {len(recipes)} models: {', '.join(r.name for r in recipes)}")
    return write_recipe_submission(first, first_layout, test, masks, oof, out_dir / first.submit.file)


def _check_same_ids(frames: list[pd.DataFrame], recipes: list[Recipe]) -> None:
    reference = frames[0]["id"].tolist()
    for frame, recipe in zip(frames[1:], recipes[1:], strict=True):
        if frame["id"].tolist() != reference:
            raise MedalsError(f"recipe {recipe.name}: its test ids differ from those of {recipes[0].name}")
