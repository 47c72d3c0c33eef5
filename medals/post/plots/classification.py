"""Classification figures: ROC and precision-recall, calibration, confusion, per-class bars, correlation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from medals.post.plots.figure import png, subplots


def roc_pr(truth: np.ndarray, score: np.ndarray, name: str) -> bytes:
    """ROC and precision-recall curves of a binary truth against a score."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    fig, (roc_ax, pr_ax) = subplots(1, 2, figsize=(9, 3.6))
    truth = np.asarray(truth).astype(bool)
    if truth.all() or not truth.any():
        for ax in (roc_ax, pr_ax):
            ax.text(0.5, 0.5, "one class only in the OOF rows", ha="center", va="center")
    else:
        fpr, tpr, _ = roc_curve(truth, score)
        roc_ax.plot(fpr, tpr, label=f"AUC {auc(fpr, tpr):.4f}")
        precision, recall, _ = precision_recall_curve(truth, score)
        pr_ax.plot(recall, precision, label=f"AP {auc(recall, precision):.4f}")
    roc_ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {name}")
    pr_ax.axhline(float(np.mean(truth)), ls=":", color="grey", label="prevalence")
    pr_ax.set(xlabel="recall", ylabel="precision", title=f"precision-recall: {name}")
    for ax in (roc_ax, pr_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return png(fig)


def calibration(truth: np.ndarray, score: np.ndarray, name: str, bins: int = 10) -> bytes:
    """Reliability diagram: the observed rate of positives per bin of predicted probability."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(score, edges[1:-1]), 0, bins - 1)
    predicted = [score[which == b].mean() for b in range(bins) if (which == b).any()]
    observed = [truth[which == b].mean() for b in range(bins) if (which == b).any()]
    fig, ax = subplots(figsize=(4.2, 3.6))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="calibrated")
    ax.plot(predicted, observed, "o-", label="OOF")
    ax.set(xlabel="predicted probability", ylabel="observed rate of positives", title=f"calibration: {name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png(fig)


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> bytes:
    """Counts of (true class, predicted class) in the cells; the colour is the row's share (recall)."""
    k = len(classes)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (truth, predicted), 1)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = subplots(figsize=(2.2 + 0.55 * k, 1.4 + 0.5 * k))
    shown = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("share of the true class's rows", fontsize=7)
    for i in range(k):
        for j in range(k):
            colour = "white" if rates[i, j] > 0.6 else "black"
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set(xlabel="predicted class", ylabel="true class", title="confusion (OOF): counts, colour = row share")
    return png(fig)


def per_class_bars(values: Mapping[str, np.ndarray], classes: Sequence[str]) -> bytes:
    """One bar group per class for each named series (e.g. F1 and threshold)."""
    k = len(classes)
    fig, ax = subplots(figsize=(max(5, 0.35 * k + 2), 3.4))
    width = 0.8 / max(len(values), 1)
    for i, (name, series) in enumerate(values.items()):
        ax.bar(np.arange(k) + i * width, series, width, label=name)
    ax.set_xticks(np.arange(k) + 0.4 - width / 2, classes, rotation=90, fontsize=7)
    ax.set(ylim=(0, 1), xlabel="class", ylabel="value (0..1)", title="per class (OOF)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return png(fig)


def correlation(matrix: np.ndarray, names: Sequence[str]) -> bytes:
    """Pearson correlation of the members' test predictions."""
    k = len(names)
    fig, ax = subplots(figsize=(2.2 + 0.6 * k, 1.4 + 0.5 * k))
    shown = ax.imshow(matrix, cmap="viridis", vmin=min(0.0, float(matrix.min())), vmax=1)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04).set_label("Pearson r", fontsize=7)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set(xlabel="member", ylabel="member", title="member correlation (test predictions)")
    return png(fig)
