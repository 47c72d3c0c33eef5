"""Figures of a run for its report, drawn with matplotlib (Agg, no display) and returned as PNG bytes.

Each function takes arrays, not files: the report stage reads the run folder and hands them over.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DPI = 90


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def training_curves(logs: Mapping[int, pd.DataFrame], metric: str) -> bytes:
    """Per fold: training and validation loss, and the validation `metric`, by epoch."""
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for fold, log in sorted(logs.items()):
        line = loss_ax.plot(log["epoch"], log["train_loss"], label=f"fold {fold} train")[0]
        loss_ax.plot(log["epoch"], log["val_loss"], "--", color=line.get_color(), label=f"fold {fold} val")
        if metric in log:
            metric_ax.plot(log["epoch"], log[metric], color=line.get_color(), label=f"fold {fold}")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss (solid: train, dashed: validation)")
    metric_ax.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig)


def roc_pr(truth: np.ndarray, score: np.ndarray, name: str) -> bytes:
    """ROC and precision-recall curves of a binary truth against a score."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    fpr, tpr, _ = roc_curve(truth, score)
    roc_ax.plot(fpr, tpr, label=f"AUC {auc(fpr, tpr):.4f}")
    roc_ax.plot([0, 1], [0, 1], ":", color="grey")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {name}")
    precision, recall, _ = precision_recall_curve(truth, score)
    pr_ax.plot(recall, precision, label=f"AP {auc(recall, precision):.4f}")
    pr_ax.axhline(float(np.mean(truth)), ls=":", color="grey", label="prevalence")
    pr_ax.set(xlabel="recall", ylabel="precision", title=f"precision-recall: {name}")
    for ax in (roc_ax, pr_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def calibration(truth: np.ndarray, score: np.ndarray, name: str, bins: int = 10) -> bytes:
    """Reliability diagram: the observed rate of positives per bin of predicted probability."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(score, edges[1:-1]), 0, bins - 1)
    predicted = [score[which == b].mean() for b in range(bins) if (which == b).any()]
    observed = [truth[which == b].mean() for b in range(bins) if (which == b).any()]
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="calibrated")
    ax.plot(predicted, observed, "o-", label="OOF")
    ax.set(xlabel="predicted probability", ylabel="observed rate", title=f"calibration: {name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> bytes:
    """Counts of (true class, predicted class), rows normalised in the colour, counts in the cells."""
    k = len(classes)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (truth, predicted), 1)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * k, 1.0 + 0.5 * k))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title="confusion (OOF)")
    return _png(fig)


def per_class_bars(values: Mapping[str, np.ndarray], classes: Sequence[str]) -> bytes:
    """One bar group per class for each named series (e.g. F1 and threshold)."""
    k = len(classes)
    fig, ax = plt.subplots(figsize=(max(5, 0.35 * k + 2), 3.4))
    width = 0.8 / max(len(values), 1)
    for i, (name, series) in enumerate(values.items()):
        ax.bar(np.arange(k) + i * width, series, width, label=name)
    ax.set_xticks(np.arange(k) + 0.4 - width / 2, classes, rotation=90, fontsize=7)
    ax.set(ylim=(0, 1), title="per class (OOF)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _png(fig)


def histogram(values: np.ndarray, name: str, bins: int = 20) -> bytes:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(values, bins=bins, range=(0, 1))
    ax.set(xlabel=name, ylabel="images", title=f"{name} per image (OOF)")
    ax.grid(alpha=0.3)
    return _png(fig)


def predicted_vs_true(truth: np.ndarray, pred: np.ndarray, name: str) -> bytes:
    """Regression and ordinal OOF predictions against the truth, with the identity line."""
    fig, ax = plt.subplots(figsize=(4.4, 4.0))
    ax.scatter(truth, pred, s=8, alpha=0.5)
    low, high = float(min(np.min(truth), np.min(pred))), float(max(np.max(truth), np.max(pred)))
    ax.plot([low, high], [low, high], "k--", linewidth=1)
    ax.set(xlabel=f"true {name}", ylabel=f"predicted {name}", title="OOF predictions")
    ax.grid(alpha=0.3)
    return _png(fig)


def overlays(
    images: Sequence[np.ndarray], truths: Sequence[np.ndarray], probs: Sequence[np.ndarray], titles
) -> bytes:
    """Rows of image, truth and predicted probability, one row per case."""
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(6.6, 2.2 * n), squeeze=False)
    for row, (image, truth, prob, title) in enumerate(zip(images, truths, probs, titles, strict=True)):
        for ax, data, name in zip(
            axes[row], (image, truth, prob), ("image", "truth", "prediction"), strict=True
        ):
            ax.imshow(data, cmap="gray", vmin=0, vmax=1 if data.dtype != np.uint8 else 255)
            ax.set_title(f"{name}: {title}" if name == "image" else name, fontsize=7)
            ax.axis("off")
    return _png(fig)


def correlation(matrix: np.ndarray, names: Sequence[str]) -> bytes:
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * k, 1.2 + 0.5 * k))
    ax.imshow(matrix, cmap="viridis", vmin=min(0.0, float(matrix.min())), vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set(title="member correlation (test predictions)")
    return _png(fig)
