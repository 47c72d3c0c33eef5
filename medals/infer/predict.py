"""Run a model over a loader with optional dihedral TTA and return probabilities in dataset order."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from medals.data.prefetch import prefetched
from medals.infer.tta import apply_view, invert_view, views_for
from medals.infer.tta import merge as merge_views
from medals.models.outputs import split_outputs
from medals.runtime import sharding
from medals.runtime.precision import resolve_precision


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting (the same choice as training), None for fp32."""
    return resolve_precision(precision, device)[0]


def activation(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Probabilities from logits: softmax over classes for multiclass, sigmoid otherwise."""
    logits = logits.float()
    if task == "multiclass":
        return torch.softmax(logits, dim=1)
    return torch.sigmoid(logits)


def predict_with_cls(
    model: nn.Module,
    loader: DataLoader,
    task: str,
    tta: int = 1,
    merge: str = "mean",
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    prepare: Callable[[dict], dict] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities for every dataset row, image-level probabilities [N] or None).

    Probabilities are [N, K] for classification, [N, H, W] for segmentation ([N, C, H, W] with C > 1
    mask classes); the second item is the
    classification head's of a segmentation model, None otherwise. Row r of the result belongs to the
    dataset's row r (placed by batch["index"]), whatever the loader's order. Segmentation outputs are
    mapped back from each view before merging.

    prepare(batch) brings a loader batch to the device (the GPU data path decodes and resizes there);
    by default its tensors are moved as they are. Under DDP each rank predicts its own chunk of the
    dataset's rows and every rank returns all of them.
    """
    device = torch.device(device)
    views = views_for(tta)
    segment = task == "segmentation"
    dtype = autocast_dtype(precision, device)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.eval()

    total = len(loader.dataset)
    loader = sharding.shard_rows(loader)
    out: np.ndarray | None = None
    cls_out: np.ndarray | None = None
    seen = np.zeros(total, dtype=bool)
    with torch.inference_mode():
        bring = prepare or (lambda batch: batch)
        for batch in prefetched(loader, lambda batch, _generator: bring(batch), None, device):
            image = batch["image"].to(device, non_blocking=True)
            meta = batch.get("meta")
            if meta is not None:
                meta = meta.to(device, non_blocking=True)
            per_view, cls_views = [], []
            for view in views:
                x = apply_view(image, view)
                if channels_last:  # a transposed view is no longer channels_last-contiguous
                    x = x.contiguous(memory_format=torch.channels_last)
                ctx = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
                with ctx:
                    outputs = model(x, meta) if meta is not None else model(x)
                logits, cls_logits = split_outputs(outputs)
                # A segmentation model's second output is its image-level logit; a classifier's is
                # an auxiliary training head, not used at inference.
                if cls_logits is not None and segment:
                    cls_views.append(torch.sigmoid(cls_logits.float()).reshape(-1))
                probs = activation(logits, task)
                if segment:
                    probs = invert_view(probs, view)
                per_view.append(probs)
            probs = merge_views(per_view, merge)
            if segment:
                # [N, H, W] for one mask, [N, C, H, W] for one channel per class
                probs = probs[:, 0] if probs.ndim == 4 and probs.shape[1] == 1 else probs
            probs_np = probs.cpu().numpy().astype(np.float32, copy=False)
            index = np.asarray(batch["index"], dtype=np.int64).reshape(-1)
            if out is None:
                out = np.zeros((total, *probs_np.shape[1:]), dtype=np.float32)
            out[index] = probs_np
            seen[index] = True
            if cls_views:
                if cls_out is None:
                    cls_out = np.zeros(total, dtype=np.float32)
                cls_out[index] = merge_views(cls_views, merge).cpu().numpy()

    out, cls_out, seen = sharding.gather_rows(out, cls_out, seen)
    if out is None or not seen.all():
        # A loader with drop_last or a sampler over a subset would leave rows silently at zero.
        raise ValueError(f"predict saw {int(seen.sum())} of {total} dataset rows")
    return out, cls_out
