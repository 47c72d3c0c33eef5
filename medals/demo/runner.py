"""`medals demo`: generate each small competition and run the whole pipeline on it."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from medals.config import load_recipe
from medals.files import read_json
from medals.stages.common import say
from medals.stages.pipeline import STAGES, run_stages
from medals.stages.report import write_report

# The floors the generated tasks are built to clear; printed beside the measured values.
FLOORS = {"melanoma": ("auc", 0.9), "cells": ("f1_macro", 0.7), "chest": ("dice", 0.7)}


def generate(task: str, data_dir: Path) -> None:
    from medals.demo.generate import GENERATORS

    marker = data_dir / ".complete"
    if marker.exists():
        return
    GENERATORS[task](data_dir)
    marker.write_text("generated\n")


def recipe_path(task: str, data_dir: Path) -> Path:
    """Copy the packaged recipe next to the generated data, where its data.root points."""
    text = resources.files("medals.demo").joinpath(f"demo_{task}.yaml").read_text()
    path = data_dir / f"demo_{task}.yaml"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def run_task(task: str, out_dir: Path, device) -> dict:
    data_dir = out_dir / task / "data"
    generate(task, data_dir)
    run_dir = (out_dir / task / "run").resolve()
    recipe = load_recipe(recipe_path(task, data_dir), [f"run_dir={run_dir}"])
    say(f"\n== demo {task}: {recipe.task}, {recipe.model.arch} {recipe.model.backbone} ==")
    start = time.perf_counter()
    layout = run_stages(recipe, STAGES, device)
    seconds = time.perf_counter() - start
    metrics = read_json(layout.metrics)
    return {
        "metrics": metrics,
        "submission": layout.in_run(recipe.submit.file),
        "report": write_report(layout.root),
        "seconds": seconds,
    }


def run_demo(tasks: list[str], out_dir: Path, device) -> dict:
    results = {task: run_task(task, out_dir, device) for task in tasks}
    say("\n== demo summary ==")
    for task, result in results.items():
        metric, floor = FLOORS[task]
        folds = result["metrics"]["folds"]
        per_fold = " ".join(f"{values[metric]:.3f}" for values in folds.values())
        pooled = result["metrics"]["pooled"][metric]
        say(
            f"{task:9s} OOF {metric} pooled {pooled:.4f} (floor {floor}) per fold [{per_fold}] "
            f"in {result['seconds']:.0f}s\n          submission: {result['submission']}"
            f"\n          report:     {result['report']}"
        )
    return results
