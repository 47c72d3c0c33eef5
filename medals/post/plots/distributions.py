"""Distributions: a value per image, labels per image, class balance per fold, test against OOF, timings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from medals.post.plots.figure import png, subplots


def histogram(values: np.ndarray, name: str, bins: int = 20, unit: str = "images") -> bytes:
    """A value per image (e.g. Dice) on [0, 1]."""
    fig, ax = subplots(figsize=(5, 3.2))
    ax.hist(values, bins=bins, range=(0, 1))
    ax.set(xlabel=name, ylabel=unit, title=f"{name} per image (OOF)")
    ax.grid(alpha=0.3)
    return png(fig)


def label_counts(per_image: np.ndarray, per_class: np.ndarray, classes: Sequence[str]) -> bytes:
    """Multilabel data: how many labels each image has, and how many images carry each class."""
    fig, (image_ax, class_ax) = subplots(1, 2, figsize=(10, 3.4))
    top = int(per_image.max()) if len(per_image) else 0
    image_ax.hist(per_image, bins=np.arange(top + 2) - 0.5, rwidth=0.85)
    image_ax.set(xlabel="labels per image", ylabel="images", title="labels per training image")
    class_ax.bar(range(len(classes)), per_class)
    class_ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    class_ax.set(xlabel="class", ylabel="images", title="training images per class")
    for ax in (image_ax, class_ax):
        ax.grid(alpha=0.3, axis="y")
    return png(fig)


def fold_balance(
    shares: np.ndarray,
    folds: Sequence[str],
    classes: Sequence[str],
    counts: Sequence[int],
    multilabel: bool = False,
) -> bytes:
    """Stacked bars: the share of each class among a fold's rows ([folds, classes]; a row sums to 1, or
    for multilabel to the mean number of labels per image)."""
    fig, ax = subplots(figsize=(max(5, 0.8 * len(folds) + 3), 3.4))
    bottom = np.zeros(len(folds))
    for k, name in enumerate(classes):
        ax.bar(range(len(folds)), shares[:, k], bottom=bottom, label=str(name))
        bottom += shares[:, k]
    ax.set_xticks(
        range(len(folds)), [f"{f}\n({n} rows)" for f, n in zip(folds, counts, strict=True)], fontsize=8
    )
    ylabel = "rows with the label / rows (stacked)" if multilabel else "share of the fold's rows"
    ax.set(xlabel="fold", ylabel=ylabel, ylim=(0, max(1.0, float(bottom.max()))))
    ax.set_title("class balance per fold")
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    return png(fig)


def prediction_shift(oof: np.ndarray, test: np.ndarray, name: str) -> bytes:
    """Density histograms of the submitted score on OOF and test rows: a shift shows here first."""
    fig, ax = subplots(figsize=(5.5, 3.4))
    low = float(min(np.min(oof), np.min(test)))
    high = float(max(np.max(oof), np.max(test)))
    edges = np.linspace(low, high if high > low else low + 1, 31)
    ax.hist(oof, bins=edges, density=True, alpha=0.55, label=f"OOF ({len(oof)} rows)")
    ax.hist(test, bins=edges, density=True, alpha=0.55, label=f"test ({len(test)} rows)")
    ax.set(xlabel=name, ylabel="density (rows per unit)", title=f"test against OOF: {name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png(fig)


def timings(stage_seconds: Mapping[str, float], epochs: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """Seconds per stage, and per fold the seconds and training images/s of each epoch."""
    fig, (stage_ax, epoch_ax) = subplots(1, 2, figsize=(10, 3.4))
    names = list(stage_seconds)
    stage_ax.barh(names, [stage_seconds[n] for n in names])
    stage_ax.invert_yaxis()
    stage_ax.set(xlabel="seconds", ylabel="stage", title="time per stage")
    speed_ax = epoch_ax.twinx()
    for fold, (seconds, speed) in sorted(epochs.items()):
        x = np.arange(1, len(seconds) + 1)
        line = epoch_ax.plot(x, seconds, marker="o", label=f"fold {fold} s")[0]
        if len(speed):
            speed_ax.plot(x, speed, ":", marker="x", color=line.get_color())
    epoch_ax.set(
        xlabel="epoch", ylabel="seconds per epoch (solid)", title="epochs: seconds and images/s (dotted)"
    )
    speed_ax.set_ylabel("training images/s (dotted)")
    for ax in (stage_ax, epoch_ax):
        ax.grid(alpha=0.3)
    if epochs:
        epoch_ax.legend(fontsize=7)
    return png(fig)


def threshold_sweep(thresholds: np.ndarray, scores: np.ndarray, chosen: float, name: str) -> bytes:
    """A pooled score (e.g. mean Dice) against the pixel threshold; the line marks the one submitted."""
    fig, ax = subplots(figsize=(5, 3.2))
    ax.plot(thresholds, scores, marker="o")
    ax.axvline(chosen, ls=":", color="grey", label=f"submitted {chosen:g}")
    ax.set(
        xlabel="pixel threshold (probability)",
        ylabel=f"mean {name} (OOF)",
        title=f"mean {name} against threshold",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png(fig)


def areas(truth: np.ndarray, predicted: np.ndarray) -> bytes:
    """Per image: the predicted mask's area against the true one's, in pixels at network resolution."""
    fig, ax = subplots(figsize=(4.4, 3.8))
    ax.scatter(truth, predicted, s=10, alpha=0.6)
    top = float(max(np.max(truth, initial=0), np.max(predicted, initial=0), 1))
    ax.plot([0, top], [0, top], ":", color="grey", label="equal")
    ax.set(
        xlabel="true mask area (pixels)",
        ylabel="predicted mask area (pixels)",
        title="mask area per image (OOF)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png(fig)


def predicted_vs_true(truth: np.ndarray, pred: np.ndarray, name: str) -> bytes:
    """Regression and ordinal OOF predictions against the truth, with the identity line."""
    fig, ax = subplots(figsize=(4.4, 4.0))
    ax.scatter(truth, pred, s=8, alpha=0.5)
    low, high = float(min(np.min(truth), np.min(pred))), float(max(np.max(truth), np.max(pred)))
    ax.plot([low, high], [low, high], "k--", linewidth=1, label="prediction = truth")
    ax.set(xlabel=f"true {name}", ylabel=f"predicted {name}", title="OOF predictions against the truth")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png(fig)
