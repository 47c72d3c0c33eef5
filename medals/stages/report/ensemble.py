"""An ensemble folder's report: each member's CV, the blend's CV and its gain over the best member, the
weights, and how alike the members' test predictions are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medals.config.recipe import MAIN_METRIC
from medals.files import read_json
from medals.stages.report.page import columns_of, figure, paragraph, section, table


def ensemble_sections(folder: Path, plots) -> list[str]:
    info = read_json(folder / "ensemble.json")
    members = info["members"]
    weights = info.get("weights") or [1.0] * len(members)
    metric = MAIN_METRIC.get(info["task"], "auc")
    rows, tests = [], {}
    for (name, run_dir), weight in zip(members.items(), weights, strict=True):
        metrics_path = Path(run_dir) / "metrics.json"
        pooled = read_json(metrics_path).get("pooled", {}) if metrics_path.is_file() else {}
        rows.append({"member": name, "weight": float(weight), **pooled})
        test_path = Path(run_dir) / "test.parquet"
        if test_path.is_file():
            frame = pd.read_parquet(test_path).set_index("id").sort_index()
            tests[name] = frame[[c for c in frame.columns if c.startswith("p_")]].to_numpy().ravel()
    blend = blend_cv(info)
    parts = [
        paragraph(
            f"{info['task']}, {info['method']} of {len(members)} runs"
            + (f", gated by {', '.join(info['gate'])}" if info.get("gate") else "")
        )
    ]
    if blend:
        rows.append({"member": f"blend ({info['method']})", "weight": None, **blend})
        parts.append(_gain(rows[:-1], blend, metric))
    parts.insert(0, table(rows, columns_of(rows, "member")))
    out = [section("Members", *parts)]
    if len(tests) > 1 and len({len(v) for v in tests.values()}) == 1:
        matrix = np.corrcoef(np.stack(list(tests.values())))
        out.append(
            section(
                "Member correlation", figure(plots.correlation(matrix, list(tests)), "member correlation")
            )
        )
    return out


def _gain(members: list[dict], blend: dict, metric: str) -> str:
    scored = [(row[metric], row["member"]) for row in members if row.get(metric) is not None]
    if metric not in blend or not scored:
        return ""
    best, name = max(scored)
    return paragraph(
        f"blend {metric} {blend[metric]:.4f} against the best member's {best:.4f} ({name}): "
        f"gain {blend[metric] - best:+.4f}"
    )


def blend_cv(info: dict) -> dict[str, float]:
    """The blend's pooled OOF metric where the members' OOF predictions line up (classification)."""
    from medals.post.blend import combine
    from medals.post.metrics import task_metrics

    if info["task"] == "segmentation":
        return {}
    dirs = [Path(d) for d in info["members"].values()]
    if not all((d / "oof.parquet").is_file() and (d / "table.parquet").is_file() for d in dirs):
        return {}
    oofs = [pd.read_parquet(d / "oof.parquet").drop(columns="fold").sort_values("id") for d in dirs]
    widths = {tuple(c for c in o.columns if c.startswith("p_")) for o in oofs}
    if len(widths) != 1 or len({tuple(o["id"]) for o in oofs}) != 1:
        return {}
    blended = combine(oofs, method=info["method"], weights=info.get("weights"))
    rows = pd.read_parquet(dirs[0] / "table.parquet").set_index("id").loc[blended["id"].astype(str)]
    probs = blended[list(next(iter(widths)))].to_numpy()
    labels = read_json(dirs[0] / "labels.json")
    if info["task"] == "multilabel":
        from medals.data.splits import multi_hot

        return task_metrics("multilabel", multi_hot(rows["labels"], labels["num_classes"]), probs)
    if info["task"] == "regression":
        return task_metrics("regression", rows["target"].to_numpy(np.float64), probs)
    if info["task"] == "ordinal":
        return task_metrics("ordinal", rows["target"].to_numpy(np.float64).round().astype(np.int64), probs)
    return task_metrics(info["task"], rows["label"].to_numpy(np.int64), probs)
