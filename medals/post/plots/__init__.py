"""Figures of a run for its report, drawn with matplotlib (Agg, no display) and returned as PNG bytes.

Each function takes arrays, not files: the report stage reads the run folder and hands them over. Every
figure has a title, axis labels and, where a value has one, its unit.
"""

from medals.post.plots.classification import (
    calibration,
    confusion,
    correlation,
    per_class_bars,
    roc_pr,
)
from medals.post.plots.curves import training_curves
from medals.post.plots.distributions import (
    areas,
    fold_balance,
    histogram,
    label_counts,
    predicted_vs_true,
    prediction_shift,
    threshold_sweep,
    timings,
)
from medals.post.plots.galleries import gallery, overlays
from medals.post.plots.multilabel import per_class_curves, threshold_curves

__all__ = [
    "areas",
    "calibration",
    "confusion",
    "correlation",
    "fold_balance",
    "gallery",
    "histogram",
    "label_counts",
    "overlays",
    "per_class_bars",
    "per_class_curves",
    "predicted_vs_true",
    "prediction_shift",
    "roc_pr",
    "threshold_curves",
    "threshold_sweep",
    "timings",
    "training_curves",
]
