"""Image galleries: segmentation cases as image, truth and thresholded prediction; classification's worst."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medals.post.plots.figure import png, subplots


def _shown(image: np.ndarray) -> np.ndarray:
    """An image in [0, 1] for imshow: grey, RGB, or the first three of more channels."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[2] > 3:
        image = image[..., :3]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    low, high = float(image.min()), float(image.max())
    return (image - low) / max(high - low, 1e-9)


def overlays(
    images: Sequence[np.ndarray], truths: Sequence[np.ndarray], masks: Sequence[np.ndarray], titles
) -> bytes:
    """Per case: the image, the image with the true mask (green), the image with the predicted mask (red)."""
    n = len(images)
    fig, axes = subplots(n, 3, figsize=(6.6, 2.6 * n), squeeze=False)
    for row, (image, truth, mask, title) in enumerate(zip(images, truths, masks, titles, strict=True)):
        grey = _shown(image)
        grey = grey if grey.ndim == 2 else grey.mean(axis=2)
        for ax, overlay, colour, name in (
            (axes[row][0], None, None, f"image: {title}"),
            (axes[row][1], truth, (0.0, 1.0, 0.0), "truth (green)"),
            (axes[row][2], mask, (1.0, 0.0, 0.0), "thresholded prediction (red)"),
        ):
            ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
            if overlay is not None and overlay.any():
                rgba = np.zeros((*overlay.shape, 4), dtype=np.float32)
                rgba[overlay.astype(bool)] = (*colour, 0.45)
                ax.imshow(rgba)
            ax.set_title(name, fontsize=7)
            ax.axis("off")
    return png(fig)


def gallery(images: Sequence[np.ndarray], captions: Sequence[str], title: str, columns: int = 4) -> bytes:
    """Images in a grid, each with a caption (id, label, prediction)."""
    n = max(len(images), 1)
    rows = (n + columns - 1) // columns
    fig, axes = subplots(rows, columns, figsize=(2.3 * columns, 3.0 * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < len(images):
            shown = _shown(images[i])
            ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_title(captions[i], fontsize=6)
    fig.suptitle(title, fontsize=9)
    return png(fig)
