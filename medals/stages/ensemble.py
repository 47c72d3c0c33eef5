"""ensemble: several models' predictions (one recipe each) combined into one submission."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medals.config import GateSpec, Recipe
from medals.errors import MedalsError
from medals.files import read_npy, write_json, write_npy, write_parquet
from medals.stages.common import read_labels, read_run_parquet, say
from medals.stages.layout import RunLayout
from medals.stages.submit import SUBMITTED, submitted_probability, write_recipe_submission

# What an ensemble's folder records of its members, for `medals report`.
ENSEMBLE_FILE = "ensemble.json"


def run_ensemble(
    recipes: list[Recipe],
    method: str,
    weights: list[float] | None,
    out_dir: Path,
    gate: tuple[list[Recipe], GateSpec] | None = None,
) -> Path:
    """Combine the members' test predictions; a gate stacks other models' image-level probabilities."""
    from medals.post.blend import combine, combine_arrays

    if weights is not None and len(weights) != len(recipes):
        raise MedalsError(f"--weights has {len(weights)} values for {len(recipes)} recipes")
    tasks = {recipe.task for recipe in recipes}
    if len(tasks) != 1:
        raise MedalsError(f"recipes of different tasks cannot be ensembled: {sorted(tasks)}")
    if method != "mean" and (
        recipes[0].task in ("regression", "ordinal") or recipes[0].submit_kind == "ordinal"
    ):
        raise MedalsError(
            "regression and ordinal predictions are ensembled by 'mean' only (ranks lose their units)"
        )
    layouts = [RunLayout(recipe.run_path) for recipe in recipes]
    tests = [read_run_parquet(layout, layout.test_predictions, "predict") for layout in layouts]
    first, first_layout = recipes[0], layouts[0]
    submitted_only = first.task in ("multiclass", "binary") and first.submit_kind == "probability"
    submitted_only = submitted_only and first.data.target_layout == "column"  # wide/long: every class
    if submitted_only:
        tests = _submitted_class_only(recipes, layouts, tests)
    masks = None
    if first.task == "segmentation":
        if method != "mean":
            raise MedalsError("segmentation masks are ensembled by 'mean' only")
        _check_same_ids(tests, recipes)
        masks = combine_arrays(
            _same_size(
                [read_npy(layout.test_masks, layout.redo_hint(layout.test_masks)) for layout in layouts]
            ),
            weights,
        )
        test = tests[0][["id"]].copy()
        write_npy(out_dir / "test_masks.npy", masks.astype(np.float16))
        if gate is None and all("p_cls" in frame for frame in tests):
            # The members' image-level probabilities, combined like their masks: the gate threshold
            # then applies to the ensemble's p_cls, not to one member's.
            test["p_cls"] = combine_arrays([frame["p_cls"].to_numpy() for frame in tests], weights)
        if gate is not None:
            test["p_cls"] = stacked_gate(gate[0], gate[1], test["id"])
            first = first.model_copy(
                update={"submit": first.submit.model_copy(update={"gate_threshold": gate[1].threshold})}
            )
    elif gate is not None:
        raise MedalsError("an ensemble gate is for segmentation recipes only")
    else:
        test = combine(tests, method=method, weights=weights)
        if submitted_only:
            test = test.rename(columns={"p_0": SUBMITTED})
    write_parquet(out_dir / "test.parquet", test)
    write_json(
        out_dir / ENSEMBLE_FILE,
        {
            "task": first.task,
            "method": method,
            "weights": weights,
            "members": {
                recipe.name: str(layout.root.resolve())
                for recipe, layout in zip(recipes, layouts, strict=True)
            },
            "gate": [recipe.name for recipe in gate[0]] if gate is not None else [],
        },
    )
    oof = holdout = None
    # OOF predictions for what submit fits on them (multilabel thresholds, ordinal cut-points) are the
    # ensemble's own, combined by the same method and weights as the test, never the first member's.
    if first.task == "multilabel" or first.submit_kind == "ordinal":
        oof = _combined(layouts, "oof", method, weights, drop=["fold"])
    if first.task == "multilabel":
        holdout = _combined(layouts, "holdout", method, weights)
        if holdout is not None:
            write_parquet(out_dir / "holdout.parquet", holdout)
        if first.submit.threshold == "prevalence_holdout" and holdout is None:
            lacking = [
                r.name for r, layout in zip(recipes, layouts, strict=True) if not layout.holdout.exists()
            ]
            raise MedalsError(
                f"submit.threshold is 'prevalence_holdout' but member(s) {', '.join(lacking)} have no "
                "hold-out predictions (holdout.parquet): use split.method hpa3 and run `medals evaluate`"
            )
    say(f"ensemble: {method} of {len(recipes)} models: {', '.join(r.name for r in recipes)}")
    return write_recipe_submission(
        first, first_layout, test, masks, oof, out_dir / first.submit.file, holdout=holdout
    )


def _combined(layouts: list[RunLayout], name: str, method: str, weights, drop=()) -> pd.DataFrame | None:
    """The members' `name` prediction frames (oof, holdout) combined, or None unless every member has one."""
    from medals.post.blend import combine

    paths = [getattr(layout, name) for layout in layouts]
    if not all(path.exists() for path in paths):
        return None
    frames = [
        read_run_parquet(layout, path).drop(columns=list(drop), errors="ignore")
        for layout, path in zip(layouts, paths, strict=True)
    ]
    return combine(frames, method=method, weights=weights)


def stacked_gate(recipes: list[Recipe], spec: GateSpec, test_ids: pd.Series) -> np.ndarray:
    """Stack the gate members' image-level probabilities (PTX): a linear model over their OOF p_cls,
    their mean and pairwise differences, fitted in spec.folds folds; test = mean of the fold models."""
    from medals.post.metrics import roc_auc
    from medals.post.stacking import fit_stacker, stack_features

    if not recipes:
        raise MedalsError("the ensemble gate names no member recipes")
    layouts = [RunLayout(recipe.run_path) for recipe in recipes]
    oofs, tests = [], []
    for recipe, layout in zip(recipes, layouts, strict=True):
        oof = read_run_parquet(layout, layout.oof, "evaluate")
        test = read_run_parquet(layout, layout.test_predictions, "predict")
        if "p_cls" not in oof or "p_cls" not in test:
            raise MedalsError(
                f"gate member {recipe.name} has no image-level probabilities: set model.cls_head"
            )
        oofs.append(oof.set_index("id")["p_cls"])
        tests.append(test.set_index("id")["p_cls"])
    ids = oofs[0].index
    for recipe, oof in zip(recipes[1:], oofs[1:], strict=True):
        if set(oof.index) != set(ids):
            raise MedalsError(f"gate member {recipe.name}: its OOF rows differ from {recipes[0].name}'s")
    table = read_run_parquet(layouts[0], layouts[0].table).set_index("id")
    truth = table.loc[ids, "has_mask"].to_numpy(dtype=np.int64)
    features = stack_features(np.stack([oof.loc[ids].to_numpy() for oof in oofs], axis=1))
    stacker = fit_stacker(features, truth, n_folds=spec.folds)
    say(
        f"ensemble: gate stack of {len(recipes)} models, OOF AUC {roc_auc(truth, stacker.oof):.4f} "
        f"(best single {max(roc_auc(truth, oof.loc[ids].to_numpy()) for oof in oofs):.4f})"
    )
    test_features = stack_features(np.stack([t.loc[test_ids].to_numpy() for t in tests], axis=1))
    return stacker.predict(test_features)


def _submitted_class_only(recipes, layouts, frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """Each member's submitted probability (of its target class, or the sum of its target classes).

    Members may have different label spaces (the melanoma set mixes 9- and 4-class models); what is
    ensembled is the probability each one submits.
    """
    # Combined as "p_0" (blend.combine averages p_* columns), then named SUBMITTED for the first member's
    # submission, which takes it as it is instead of its own target classes.
    return [
        pd.DataFrame({"id": frame["id"], "p_0": submitted_probability(recipe, frame, read_labels(layout))})
        for recipe, layout, frame in zip(recipes, layouts, frames, strict=True)
    ]


def _same_size(stacks: list[np.ndarray]) -> list[np.ndarray]:
    """Upsample every member's masks [N, h, w] to the largest member's size (PTX: 768 -> 1024)."""
    import cv2

    height, width = max(stack.shape[1:] for stack in stacks)
    out = []
    for stack in stacks:
        if stack.shape[1:] != (height, width):
            stack = np.stack(
                [
                    cv2.resize(m.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
                    for m in stack
                ]
            ).astype(np.float16)
        out.append(stack)
    return out


def _check_same_ids(frames: list[pd.DataFrame], recipes: list[Recipe]) -> None:
    reference = frames[0]["id"].tolist()
    for frame, recipe in zip(frames[1:], recipes[1:], strict=True):
        if frame["id"].tolist() != reference:
            raise MedalsError(f"recipe {recipe.name}: its test ids differ from those of {recipes[0].name}")
