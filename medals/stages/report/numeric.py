"""OOF predictions of regression and ordinal runs: predicted against true, and for ordinal the confusion
of the grades the fitted cut-points give."""

from __future__ import annotations

import numpy as np

from medals.stages.report.page import figure, section
from medals.stages.report.run_view import RunView


def numeric_section(run: RunView, plots) -> str:
    rows, oof = run.oof_rows, run.oof
    truth, pred = rows["target"].to_numpy(np.float64), oof["p_0"].to_numpy(np.float64)
    name = "grade index" if run.task == "ordinal" else str(run.config.get("data", {}).get("label_column"))
    out = [figure(plots.predicted_vs_true(truth, pred, name), "predicted against true")]
    if run.task == "ordinal":
        from medals.post.metric_registry import MetricContext, grades_of

        grades = grades_of(pred, MetricContext(num_grades=len(run.classes)), truth)
        out.append(figure(plots.confusion(truth.astype(int), grades, run.classes), "rounded grades"))
    return section("Out-of-fold predictions", *out)
