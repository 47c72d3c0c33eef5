"""Multilabel figures: ROC and precision-recall per class, and F1 against the threshold per class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medals.post.plots.figure import png, subplots


def per_class_curves(truth: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> bytes:
    """One ROC and one precision-recall curve per class (classes without both outcomes are left out)."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    fig, (roc_ax, pr_ax) = subplots(1, 2, figsize=(10, 3.8))
    for k, name in enumerate(classes):
        y = truth[:, k].astype(bool)
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = roc_curve(y, probs[:, k])
        line = roc_ax.plot(fpr, tpr, label=f"{name} {auc(fpr, tpr):.3f}")[0]
        precision, recall, _ = precision_recall_curve(y, probs[:, k])
        pr_ax.plot(recall, precision, color=line.get_color(), label=f"{name} {auc(recall, precision):.3f}")
    roc_ax.plot([0, 1], [0, 1], ":", color="grey")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC per class (AUC)")
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall per class (AP)")
    for ax in (roc_ax, pr_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    return png(fig)


def threshold_curves(
    curves: np.ndarray, grid: np.ndarray, chosen: np.ndarray, classes: Sequence[str]
) -> bytes:
    """F1 of each class against its threshold ([classes, grid]); a dot marks the threshold submitted."""
    fig, ax = subplots(figsize=(6.5, 3.8))
    for k, name in enumerate(classes):
        line = ax.plot(grid, curves[k], label=str(name))[0]
        at = int(np.argmin(np.abs(grid - chosen[k])))
        ax.plot([chosen[k]], [curves[k, at]], "o", color=line.get_color())
    ax.set(
        xlabel="threshold (probability)", ylabel="F1 (OOF)", title="F1 against threshold; dot: the chosen one"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return png(fig)
