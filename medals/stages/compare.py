"""compare: runs side by side, sorted by pooled CV: each row is a run folder (its recipe's name beside it,
so two runs of one recipe stay apart), the metric it is scored by, per-fold spread, wall time, training
images/s, time per stage, and the config keys that differ between them (everything they share is left out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from medals.config.metric_names import metric_direction
from medals.config.recipe import main_metric_of
from medals.errors import MedalsError
from medals.files import read_json, read_yaml
from medals.stages.aside import stale_lines
from medals.stages.layout import RunLayout
from medals.stages.pipeline import STAGES, read_stamp
from medals.stages.report import is_run_folder


def run_folders(paths: list[Path]) -> list[Path]:
    """Run folders given directly, or the run folders of a folder of recipes (their run_dir)."""
    from medals.config import load_recipe

    out = []
    for path in paths:
        if is_run_folder(path):
            out.append(path)
        elif path.is_dir() and list(path.glob("*.yaml")):
            for recipe_file in sorted(path.glob("*.yaml")):
                try:
                    run = load_recipe(recipe_file).run_path
                except MedalsError:
                    continue  # an ensemble file, or not a recipe
                if is_run_folder(run):
                    out.append(run)
        else:
            raise MedalsError(f"{path} is not a medals run folder (no config.yaml) nor a folder of recipes")
    if len(out) < 1:
        raise MedalsError(f"no run folders found in {', '.join(map(str, paths))}: run the recipes first")
    return out


def _flat(tree: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {
        prefix.rstrip("."): yaml.safe_dump(tree, default_flow_style=True, width=10_000)
        .strip()
        .removesuffix("...")
        .strip()
    }


def scored_metric(config: dict) -> str:
    """The metric a run is scored by: metrics.main, else its task's main metric; a multiclass run that
    submits labels is scored by accuracy, not by a class's AUC."""
    label_run = config.get("task") == "multiclass" and (config.get("submit") or {}).get("kind") == "label"
    if label_run and not (config.get("metrics") or {}).get("main"):
        return "accuracy"
    return main_metric_of(config)


def _speed(folder: Path) -> dict[str, float]:
    """Wall time (the stages' seconds added up) and the mean training images/s over folds and epochs."""
    seconds = []
    for stage in STAGES:
        stamp = read_stamp(RunLayout(folder), stage) or {}
        seconds.append(stamp.get("seconds", np.nan))
    out = {"wall_s": float(np.nansum(seconds)) if not np.all(np.isnan(seconds)) else np.nan}
    speeds = [
        pd.read_csv(log)["images_per_s"].mean()
        for log in sorted(folder.glob("fold*/log.csv"))
        if "images_per_s" in pd.read_csv(log, nrows=0).columns
    ]
    out["images_per_s"] = float(np.mean(speeds)) if speeds else np.nan
    out.update({f"{stage}_s": value for stage, value in zip(STAGES, seconds, strict=True)})
    return out


def compare_table(folders: list[Path]) -> pd.DataFrame:
    configs = [
        read_yaml(f / "config.yaml", "rerun any stage of its recipe (`medals run RECIPE`) to write it again")
        for f in folders
    ]
    flat = [_flat({k: v for k, v in c.items() if k not in ("run_dir", "source")}) for c in configs]
    keys = sorted({k for f in flat for k in f})
    differ = [k for k in keys if len({f.get(k, "(unset)") for f in flat}) > 1 and k != "name"]
    rows = []
    for folder, config, values in zip(folders, configs, flat, strict=True):
        metric = scored_metric(config)
        report = (
            read_json(folder / "metrics.json", RunLayout(folder).redo_hint(folder / "metrics.json"))
            if (folder / "metrics.json").is_file()
            else {}
        )
        folds = [v.get(metric) for v in report.get("folds", {}).values() if v.get(metric) is not None]
        row: dict[str, Any] = {
            "run": str(folder),
            "recipe": config.get("name", folder.name),
            "metric": metric,
        }
        row["cv"] = report.get("pooled", {}).get(metric, np.nan)
        row["fold_mean"] = float(np.mean(folds)) if folds else np.nan
        row["fold_std"] = float(np.std(folds)) if folds else np.nan
        row.update(_speed(folder))
        # Folds moved aside by a changed config or --force (`medals clean` deletes them); NaN: none.
        row["stale_folds"] = len(stale_lines(folder)) or np.nan
        for key in differ:
            row[key] = values.get(key, "(unset)")
        rows.append(row)
    frame = pd.DataFrame(rows)
    # Best first by each run's own metric: higher is better except for errors and losses (rmse, logloss).
    sign = frame["metric"].map(lambda name: 1.0 if metric_direction(name) == "min" else -1.0)
    frame = frame.assign(_key=frame["cv"] * sign).sort_values("_key", na_position="last", kind="stable")
    frame = frame.drop(columns="_key").reset_index(drop=True)
    return frame.dropna(axis=1, how="all")


def format_table(frame: pd.DataFrame, style: str) -> str:
    if style == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    shown = frame.map(lambda v: f"{v:.4f}" if isinstance(v, float) else str(v))
    if style == "markdown":
        head = "| " + " | ".join(shown.columns) + " |"
        rule = "|" + "---|" * len(shown.columns)
        body = ["| " + " | ".join(row) + " |" for row in shown.itertuples(index=False)]
        return "\n".join([head, rule, *body])
    widths = [max(len(str(c)), *(len(v) for v in shown[c])) for c in shown.columns]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(shown.columns, widths, strict=True))]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True))
        for row in shown.itertuples(index=False)
    ]
    return "\n".join(lines)
