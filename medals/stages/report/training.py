"""Training as it went: per-fold curves from log.csv, and where the time went (stages, epochs, images/s)."""

from __future__ import annotations

import numpy as np

from medals.stages.pipeline import STAGES
from medals.stages.report.page import figure, section, table
from medals.stages.report.run_view import RunView


def training_section(run: RunView, plots) -> str:
    if not run.logs:
        return ""
    curves = figure(plots.training_curves(run.logs, run.main_metric), "training curves")
    return section("Training", curves)


def stage_seconds(run: RunView) -> dict[str, float]:
    found = {}
    for stage in STAGES:
        seconds = run.stamp(stage).get("seconds")
        if seconds is not None:
            found[stage] = float(seconds)
    return found


def timing_section(run: RunView, plots) -> str:
    stages = stage_seconds(run)
    epochs = {
        fold: (
            log["seconds"].to_numpy(np.float64) if "seconds" in log else np.zeros(0),
            log["images_per_s"].to_numpy(np.float64) if "images_per_s" in log else np.zeros(0),
        )
        for fold, log in run.logs.items()
    }
    if not stages and not epochs:
        return ""
    rows = [
        {"stage": stage, "seconds": seconds, **_throughput(run, stage, seconds)}
        for stage, seconds in stages.items()
    ]
    parts = [table(rows, ["stage", "seconds", "images", "images/s"])] if rows else []
    fold_rows = []
    for fold, log in sorted(run.logs.items()):
        row = {"fold": fold, "epochs": len(log)}
        if "seconds" in log:
            row["seconds per epoch"] = float(log["seconds"].mean())
        if "images_per_s" in log:
            row["training images/s"] = float(log["images_per_s"].mean())
        if "data_wait" in log:
            row["data wait (share)"] = float(log["data_wait"].mean())
        fold_rows.append(row)
    if fold_rows:
        columns = ["fold", "epochs", "seconds per epoch", "training images/s", "data wait (share)"]
        parts.append(table(fold_rows, [c for c in columns if any(c in r for r in fold_rows)]))
    parts.append(figure(plots.timings(stages, epochs), "stage and epoch timings"))
    return section("Time", *parts)


def _throughput(run: RunView, stage: str, seconds: float) -> dict:
    """Images per second of the stages that pass over a known number of images."""
    images = None
    if stage == "evaluate" and run.oof is not None:
        images = len(run.oof)
    elif stage == "predict" and run.test is not None:
        images = len(run.test) * max(len(run.logs), 1)  # every fold's model predicts every test image
    elif stage == "prepare" and run.table is not None:
        images = len(run.table)
    if not images or seconds <= 0:
        return {}
    return {"images": images, "images/s": images / seconds}
