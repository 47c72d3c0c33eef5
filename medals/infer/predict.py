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
    """Probabilities from logits: softmax over classes for multiclass, sigmoid otherwise; a regression or
    ordinal output is the prediction itself (the model returns it in the target's units)."""
    logits = logits.float()
    if task == "multiclass":
        return torch.softmax(logits, dim=1)
    if task in ("regression", "ordinal"):
        return logits
    return torch.sigmoid(logits)


def upsample_logits(logits: torch.Tensor, size: int) -> torch.Tensor:
    """Mask logits [B, 1, h, w] (or [B, h, w]) resized bilinearly to size x size, half-pixel centres
    (F.upsample's default that the PTX seed called); the sigmoid comes after, so the edge is placed on
    the smooth logit surface, not on interpolated probabilities."""
    squeeze = logits.ndim == 3
    x = logits.float()[:, None] if squeeze else logits.float()
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x[:, 0] if squeeze else x


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
    mask_size: int | None = None,
    identity: bool = False,
) -> tuple[np.ndarray, np.ndarray | None] | tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(probabilities for every dataset row, image-level probabilities [N] or None).

    With identity=True a third item follows: the identity view's probabilities alone (the first TTA
    view, computed anyway), so evaluate can say what the other views gained at no extra forward pass.

    Probabilities are [N, K] for classification, [N, H, W] for segmentation ([N, C, H, W] with C > 1
    mask classes); the second item is the
    classification head's of a segmentation model, None otherwise. Row r of the result belongs to the
    dataset's row r (placed by batch["index"]), whatever the loader's order. Segmentation outputs are
    mapped back from each view before merging.

    prepare(batch) brings a loader batch to the device (the GPU data path decodes and resizes there);
    by default its tensors are moved as they are. Under DDP each rank predicts its own chunk of the
    dataset's rows and every rank returns all of them. mask_size (segmentation): each view's logits are
    upsampled bilinearly (align_corners False) to mask_size x mask_size before the sigmoid.
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
    plain: np.ndarray | None = None
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
                if segment and mask_size is not None:
                    logits = upsample_logits(logits, mask_size)
                probs = activation(logits, task)
                if segment:
                    probs = invert_view(probs, view)
                per_view.append(probs)
            probs = merge_views(per_view, merge)
            probs_np = _rows(probs, segment)
            index = np.asarray(batch["index"], dtype=np.int64).reshape(-1)
            if out is None:
                out = np.zeros((total, *probs_np.shape[1:]), dtype=np.float32)
                plain = np.zeros_like(out) if identity else None
            out[index] = probs_np
            if plain is not None:
                plain[index] = _rows(per_view[0], segment)
            seen[index] = True
            if cls_views:
                if cls_out is None:
                    cls_out = np.zeros(total, dtype=np.float32)
                cls_out[index] = merge_views(cls_views, merge).cpu().numpy()

    if identity:
        plain = sharding.gather_rows(plain, None, seen)[0]
    out, cls_out, seen = sharding.gather_rows(out, cls_out, seen)
    if out is None or not seen.all():
        # A loader with drop_last or a sampler over a subset would leave rows silently at zero.
        raise ValueError(f"predict saw {int(seen.sum())} of {total} dataset rows")
    return (out, cls_out, plain) if identity else (out, cls_out)


def _rows(probs: torch.Tensor, segment: bool) -> np.ndarray:
    """A batch's probabilities on the host: [B, K], [B, H, W] for one mask, [B, C, H, W] for one channel
    per mask class."""
    if segment and probs.ndim == 4 and probs.shape[1] == 1:
        probs = probs[:, 0]
    return probs.cpu().numpy().astype(np.float32, copy=False)
