"""Where batches are decoded and augmented: the one place that picks the CPU or the GPU data path."""

from __future__ import annotations

import pandas as pd
import torch

from medals.config import Recipe
from medals.runtime.settings import Runtime


def batch_source(
    recipe: Recipe,
    runtime: Runtime,
    rows: pd.DataFrame,
    num_classes: int,
    train: bool,
    device,
    with_target: bool = True,
):
    """(dataset, prepare): prepare(collated batch, generator) gives the batch on the device, augmented.

    CPU path: the dataset decodes and augments, prepare only moves tensors. GPU path: the dataset reads
    bytes, prepare decodes and augments on the device with the generator's random stream. Training,
    validation and inference all choose here, so they cannot disagree about runtime.data_path.
    """
    if runtime.data_path == "gpu":
        from medals.data.device_batches import recipe_device_data

        return recipe_device_data(
            recipe, rows, num_classes, train, device, runtime.channels_last, with_target=with_target
        )
    from medals.data.dataset import recipe_dataset

    dataset = recipe_dataset(recipe, rows, num_classes, train=train, with_target=with_target)

    def prepare(batch: dict, generator: torch.Generator | None = None) -> dict:
        return to_device(batch, device, runtime.channels_last)

    return dataset, prepare


def to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    """The batch's tensors on `device`; "index" (which rows they are) stays on the host, where the
    predictions are placed by it, as the GPU data path leaves it (DeviceBatcher)."""
    out = {}
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor) or key == "index":
            out[key] = value
        elif key == "image" and channels_last:
            out[key] = value.to(device, non_blocking=True, memory_format=torch.channels_last)
        else:
            out[key] = value.to(device, non_blocking=True)
    return out
