"""OOF predictions of classification runs: curves of the submitted class, calibration, confusion, the
multilabel per-class views, and the most confidently wrong images."""

from __future__ import annotations

import textwrap

import numpy as np

from medals.stages.report.page import figure, section
from medals.stages.report.run_view import RunView

GALLERY = 8  # images in the worst-OOF gallery


def submitted_class(run: RunView) -> int:
    """The class the curves show: submit.target_class, as evaluate reads it, else the last class."""
    from medals.stages.common import positive_index

    positive = positive_index(run.recipe, run.classes)
    return len(run.classes) - 1 if positive is None else positive


def truth_matrix(run: RunView) -> np.ndarray:
    """The OOF rows' truth: class ids [N] (binary, multiclass) or multi-hot [N, K] (multilabel)."""
    from medals.stages.truth import class_truth

    return class_truth(run.recipe, run.oof_rows, run.labels["num_classes"])


def single_label_section(run: RunView, plots) -> str:
    truth = truth_matrix(run)
    probs = run.probs(run.oof)
    positive = 1 if run.task == "binary" else submitted_class(run)
    score = probs[:, -1] if run.task == "binary" else probs[:, positive]
    name = f"P({run.classes[positive]})"
    hit = truth == positive
    out = [
        figure(plots.roc_pr(hit, score, name), "ROC and precision-recall"),
        figure(plots.calibration(hit.astype(float), score, name), "calibration"),
    ]
    predicted = (score > 0.5).astype(int) if run.task == "binary" else probs.argmax(axis=1)
    out.append(figure(plots.confusion(truth, predicted, run.classes), "confusion matrix"))
    # Highest loss first: -log of the probability given to the true class (binary: of the true outcome).
    p_true = (
        np.where(truth == 1, score, 1 - score)
        if run.task == "binary"
        else probs[np.arange(len(truth)), truth]
    )
    loss = -np.log(np.clip(p_true, 1e-7, 1))
    out.append(
        _worst(run, plots, loss, lambda i: f"true {run.classes[truth[i]]}\npred {_top(run, probs[i])}")
    )
    return section("Out-of-fold predictions", *out)


def multilabel_section(run: RunView, plots) -> str:
    from medals.post.metrics import DEFAULT_GRID, f1_curves, f1_per_class, search_thresholds

    truth = truth_matrix(run).astype(bool)
    probs = run.probs(run.oof)
    thresholds = search_thresholds(truth, probs)
    f1 = f1_per_class(truth, probs, thresholds)
    names = run.classes
    out = [
        figure(plots.per_class_curves(truth, probs, names), "per-class ROC and precision-recall"),
        figure(
            plots.threshold_curves(f1_curves(truth, probs, DEFAULT_GRID), DEFAULT_GRID, thresholds, names),
            "F1 against threshold",
        ),
        figure(plots.per_class_bars({"F1": f1, "threshold": thresholds}, names), "per-class F1"),
    ]
    clipped = np.clip(probs, 1e-7, 1 - 1e-7)
    loss = -(truth * np.log(clipped) + (~truth) * np.log(1 - clipped)).sum(axis=1)

    def caption(i: int) -> str:
        true = " ".join(n for n, t in zip(names, truth[i], strict=True) if t) or "none"
        pred = " ".join(n for n, p, c in zip(names, probs[i], thresholds, strict=True) if p > c) or "none"
        return f"true {true}\npred {pred}"

    out.append(_worst(run, plots, loss, caption))
    return section("Out-of-fold predictions", *out)


def _top(run: RunView, row: np.ndarray) -> str:
    if run.task == "binary":
        return f"{run.classes[-1]} {row[-1]:.2f}"
    k = int(np.argmax(row))
    return f"{run.classes[k]} {row[k]:.2f}"


def _worst(run: RunView, plots, loss: np.ndarray, caption) -> str:
    """The OOF images the model was most confidently wrong about, with their truth and prediction."""
    from medals.data.io import read_image

    order = np.argsort(-loss)[:GALLERY]
    rows = run.oof_rows
    images, captions = [], []
    for i in order:
        try:
            images.append(read_image(str(rows.iloc[i]["path"])))
        except Exception:  # noqa: BLE001 - a moved image leaves a gap in the gallery, not a failed report
            continue
        name = "\n".join(textwrap.wrap(str(rows.iloc[i]["id"]), 24))  # whole, wrapped: never cut
        captions.append(f"{name}\n{caption(i)}\nloss {loss[i]:.2f}")
    if not images:
        return ""
    title = f"highest-loss OOF images (worst {len(images)} of {len(loss)})"
    return "<h3>Most confidently wrong</h3>" + figure(
        plots.gallery(images, captions, title), "worst OOF images"
    )
