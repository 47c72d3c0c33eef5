"""Per-fold and pooled metrics, a warning where the folds disagree, and what TTA gained."""

from __future__ import annotations

import numpy as np

from medals.stages.report.page import columns_of, paragraph, section, table, warning
from medals.stages.report.run_view import RunView

# A fold is out of line when it is this many standard deviations of the *other* folds from the pooled
# value (leave-one-out: with n folds one outlier can never be more than sqrt(n-1) SDs of all n from their
# mean, so the SD of all folds would hide it); the SD floor keeps near-identical folds from warning on
# noise at the fourth decimal.
SIGMAS = 3.0
SD_FLOOR = 0.02


def chance_level(metric: str) -> float | None:
    """The value a random predictor scores (any AUC: 0.5), None where there is no fixed one."""
    return 0.5 if "auc" in metric.split("_") else None


def disagreement(folds: dict[str, float], pooled: float, metric: str) -> list[str]:
    """One sentence per fold whose metric is below chance or out of line with the others."""
    out = []
    chance = chance_level(metric)
    values = {fold: v for fold, v in folds.items() if v is not None and np.isfinite(v)}
    for fold, value in values.items():
        if chance is not None and value < chance:
            out.append(
                f"fold {fold} has {metric} {value:.4f}, below chance ({chance}): check its labels and split"
            )
            continue
        others = [v for f, v in values.items() if f != fold]
        if len(others) < 2:
            continue
        spread = max(float(np.std(others, ddof=1)), SD_FLOOR)
        if abs(value - pooled) > SIGMAS * spread:
            out.append(
                f"fold {fold} has {metric} {value:.4f}, more than {SIGMAS:g} SDs ({spread:.4f}) of the other "
                f"folds from the pooled {pooled:.4f}: the folds disagree"
            )
    return out


def metrics_section(run: RunView) -> str:
    report = run.metrics
    if not report:
        return ""
    rows = [{"rows": f"fold {fold}", **values} for fold, values in report.get("folds", {}).items()]
    rows.append({"rows": "pooled OOF", **report.get("pooled", {})})
    if "holdout" in report:
        rows.append({"rows": "hold-out", **report["holdout"]})
    parts = [table(rows, columns_of(rows, "rows"))]
    metric = run.main_metric
    folds = {fold: values.get(metric) for fold, values in report.get("folds", {}).items()}
    pooled = report.get("pooled", {}).get(metric)
    if pooled is not None:
        parts += [warning(text) for text in disagreement(folds, pooled, metric)]
    parts.append(tta_gain(run))
    return section("Out-of-fold metrics", *parts)


def tta_gain(run: RunView) -> str:
    """The pooled OOF metrics with the TTA views merged against the identity view alone."""
    report = run.metrics
    plain = report.get("pooled_no_tta")
    tta = run.config.get("infer", {}).get("tta", 1)
    if not plain:
        if tta == 1:
            return paragraph("TTA gain: none to measure (infer.tta 1: the identity view only)")
        return paragraph(
            f"TTA gain: not measured (infer.tta {tta}, but metrics.json has no identity-view scores: "
            "`medals run --force evaluate` adds them)"
        )
    pooled = report.get("pooled", {})
    rows = [
        {"metric": key, f"tta {tta}": pooled[key], "no TTA": value, "gain": pooled[key] - value}
        for key, value in plain.items()
        if key in pooled and value is not None and pooled[key] is not None
    ]
    return "<h3>TTA gain (pooled OOF)</h3>" + table(rows, ["metric", f"tta {tta}", "no TTA", "gain"])
