"""OOF predictions of segmentation runs: Dice per image, the empty-mask rates that drive a pneumothorax-
style metric (both empty scores 1), and the best and worst cases as overlays of the thresholded mask."""

from __future__ import annotations

import textwrap

import numpy as np

from medals.stages.report.page import figure, paragraph, section, table
from medals.stages.report.run_view import RunView


def empty_rates(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Rates over images: truly empty, predicted empty, and predicted non-empty among the truly empty
    (a false positive there scores 0 instead of 1)."""
    truth_empty = ~truth.reshape(len(truth), -1).any(axis=1)
    pred_empty = ~predicted.reshape(len(predicted), -1).any(axis=1)
    on_empty = float(np.mean(~pred_empty[truth_empty])) if truth_empty.any() else float("nan")
    missed = float(np.mean(pred_empty[~truth_empty])) if (~truth_empty).any() else float("nan")
    return {
        "empty truth": float(np.mean(truth_empty)),
        "empty prediction": float(np.mean(pred_empty)),
        "false positive on empty": on_empty,
        "empty prediction on non-empty": missed,
    }


def segmentation_section(run: RunView, plots) -> str:
    import cv2

    from medals.data.io import read_image
    from medals.post.metrics import dice_per_class, dice_per_image
    from medals.stages.truth import mask_truth

    if not run.layout.oof_masks.is_file() or run.oof_rows is None:
        return ""
    probs = np.load(run.layout.oof_masks).astype(np.float32)
    rows = run.oof_rows
    classes = probs.shape[1] if probs.ndim == 4 else 1
    truth = mask_truth(run.recipe, rows, classes)
    threshold = float(run.config.get("submit", {}).get("pixel_threshold", 0.5))
    per_class = []
    if classes > 1:  # per-class Dice first; below, each image's union of its class masks
        per = dice_per_class(probs > threshold, truth).mean(axis=0)
        bars = plots.per_class_bars({"Dice": per}, run.classes[:classes] or [str(k) for k in range(classes)])
        per_class = [figure(bars, "per-class Dice")]
        probs, truth = probs.max(axis=1), truth.any(axis=1)
    predicted = probs > threshold
    dice = dice_per_image(predicted, truth)
    rates = empty_rates(truth, predicted)
    sweep = np.round(np.arange(0.1, 0.91, 0.1), 2)
    mean_dice = [float(dice_per_image(probs > t, truth).mean()) for t in sweep]
    pixels = (truth.reshape(len(truth), -1).sum(axis=1), predicted.reshape(len(predicted), -1).sum(axis=1))
    out = [
        *per_class,
        figure(plots.histogram(dice, "Dice"), "Dice per image"),
        figure(
            plots.threshold_sweep(sweep, np.array(mean_dice), threshold, "Dice"), "Dice against threshold"
        ),
        figure(plots.areas(*pixels), "mask areas"),
        paragraph(f"pixel threshold {threshold} (submit.pixel_threshold); both empty scores 1, one empty 0"),
        table(
            [{"rate": key, "share of images": value} for key, value in rates.items()],
            ["rate", "share of images"],
        ),
    ]
    order = np.argsort(dice, kind="stable")
    # The best cases are drawn from images with a true mask where there are any: an empty image
    # predicted empty scores 1 but shows nothing.
    with_mask = truth.reshape(len(truth), -1).any(axis=1)
    pool = order[with_mask[order]] if with_mask.any() else order
    cases = [*pool[-3:][::-1], *order[:3]]  # best three, then worst three
    size = probs.shape[1:]
    images = []
    for i in cases:
        image = read_image(str(rows.iloc[i]["path"])).astype(np.float32)
        images.append(cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA))
    # Whole ids, wrapped to the panel's width (a DICOM UID is 60 characters): never cut.
    titles = ["\n".join(textwrap.wrap(f"{rows.iloc[i]['id']}, Dice {dice[i]:.3f}", 30)) for i in cases]
    figure_png = plots.overlays(images, [truth[i] for i in cases], [predicted[i] for i in cases], titles)
    out.append("<h3>Best and worst cases</h3>" + figure(figure_png, "best and worst cases"))
    return section("Out-of-fold predictions", *out)
