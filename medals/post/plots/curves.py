"""Training curves per fold from log.csv: losses, the validation metric, and the learning rate."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from medals.post.plots.figure import marker_for, png, subplots


def training_curves(logs: Mapping[int, pd.DataFrame], metric: str) -> bytes:
    """Per fold: training and validation loss, the validation `metric` by epoch, the LR on a second axis.

    Points carry markers up to 30 epochs, so a run of one or two epochs still shows its values.
    """
    fig, (loss_ax, metric_ax) = subplots(1, 2, figsize=(10, 3.6))
    lr_ax = metric_ax.twinx()
    for fold, log in sorted(logs.items()):
        mark = marker_for(len(log))
        line = loss_ax.plot(log["epoch"], log["train_loss"], marker=mark, label=f"fold {fold} train")[0]
        colour = line.get_color()
        if "val_loss" in log:
            loss_ax.plot(
                log["epoch"], log["val_loss"], "--", marker=mark, color=colour, label=f"fold {fold} val"
            )
        if metric in log:
            metric_ax.plot(log["epoch"], log[metric], marker=mark, color=colour, label=f"fold {fold}")
        if "lr" in log:
            lr_ax.plot(log["epoch"], log["lr"], ":", color=colour, alpha=0.6)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss (solid: train, dashed: validation)")
    metric_ax.set(
        xlabel="epoch", ylabel=f"validation {metric}", title=f"validation {metric}; LR dotted (right)"
    )
    lr_ax.set_ylabel("learning rate (dotted)")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return png(fig)
