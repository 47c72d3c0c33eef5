"""HPA1's metric-learning post-processing: train an ArcFace embedding, find each test image's nearest
external image by cosine similarity, and take that image's labels when the similarity exceeds 0.65.

- ``train_arcface``: a compact loop (Adam, cross-entropy on the margin logits); the identity class
  (HPA1: the antibody) is each batch's integer ``target``.
- ``embed``: L2-normalised embeddings [N, D] in ``batch["index"]`` order.
- ``nearest_neighbours``: the most similar reference row per query row, block by block.
- ``replace_by_neighbour``: the predicted labels with rows above the threshold replaced.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medals.errors import MedalsError
from medals.runtime.checkpoint import unwrap

THRESHOLD = 0.65


def _identity_target(batch: dict, device: torch.device, n_classes: int | None) -> torch.Tensor:
    target = batch.get("target")
    if target is None:
        raise MedalsError("metric learning needs an integer 'target' (the identity class) in every batch")
    target = torch.as_tensor(target)
    if target.is_floating_point() or target.ndim != 1:
        raise MedalsError(
            f"metric learning needs one integer identity per image, got target {tuple(target.shape)} "
            f"of {target.dtype} (multi-label targets are not identities)"
        )
    # Checked before the copy to `device`: on a loader's CPU targets this waits on no device.
    if n_classes is not None and (target.min() < 0 or target.max() >= n_classes):
        raise MedalsError(f"identity targets must lie in 0..{n_classes - 1}")
    return target.to(device)


def train_arcface(
    model: nn.Module,
    loader: Iterable[dict],
    epochs: int,
    lr: float,
    device: str | torch.device = "cpu",
    weight_decay: float = 0.0,
) -> list[float]:
    """Train ``model`` (an ArcFaceModel: forward(image, target) -> margin logits) in place.

    Adam at a constant ``lr``; cross-entropy of the margin logits against the identity targets.
    Returns the mean training loss of each epoch. The embedding's BatchNorm1d cannot train on a batch of
    one image: build the loader with ``drop_last=True`` when the last batch could be a single image.
    """
    if epochs < 1:
        raise MedalsError(f"epochs must be at least 1, got {epochs}")
    device = torch.device(device)
    model.to(device)
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
    )
    n_classes = getattr(getattr(unwrap(model), "margin", None), "n_classes", None)
    history: list[float] = []
    for _ in range(epochs):
        model.train()
        losses, sizes = [], []  # the step losses stay on the device until the epoch ends
        for batch in loader:
            image = batch["image"].to(device, non_blocking=True)
            target = _identity_target(batch, device, n_classes)
            logits = model(image, target)
            loss = F.cross_entropy(logits.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            sizes.append(len(target))
        count = sum(sizes)
        if count == 0:
            raise MedalsError("the metric-learning loader yielded no images")
        total = 0.0
        for value, size in zip(torch.stack(losses).cpu().tolist(), sizes, strict=True):
            total += value * size
        history.append(total / count)
    return history


@torch.no_grad()
def embed(net: nn.Module, loader: Iterable[dict], device: str | torch.device = "cpu") -> np.ndarray:
    """L2-normalised embeddings [N, D] (float32), row i for the i-th smallest ``batch["index"]``.

    ``net`` maps images to embeddings (an EmbeddingNet); an ArcFaceModel is read through its
    ``embedding_net``. Batches without an "index" keep their arrival order.
    """
    device = torch.device(device)
    net = unwrap(net)
    net = getattr(net, "embedding_net", net)
    net.to(device)
    net.eval()
    chunks, indices = [], []
    position = 0
    for batch in loader:
        image = batch["image"].to(device, non_blocking=True)
        out = F.normalize(net(image).float(), dim=1).cpu().numpy()
        if "index" in batch:
            index = torch.as_tensor(batch["index"]).cpu().numpy().astype(np.int64).reshape(-1)
        else:
            index = np.arange(position, position + len(out), dtype=np.int64)
        position += len(out)
        chunks.append(out)
        indices.append(index)
    if not chunks:
        raise MedalsError("the embedding loader yielded no images")
    embeddings = np.concatenate(chunks).astype(np.float32, copy=False)
    order = np.concatenate(indices)
    if len(np.unique(order)) != len(order):
        raise MedalsError("the embedding loader yielded the same index twice")
    return embeddings[np.argsort(order, kind="stable")]


def _normalised(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise MedalsError(f"{name} embeddings must be [N, D], got shape {x.shape}")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def nearest_neighbours(
    query: np.ndarray, reference: np.ndarray, block_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(index of the most similar reference row [N] int64, its cosine similarity [N] float32).

    Rows are L2-normalised first, so any embeddings work; similarity is computed ``block_size``
    query rows at a time (memory block_size x M). Ties go to the first reference row.
    """
    q = _normalised(query, "query")
    r = _normalised(reference, "reference")
    if q.shape[1] != r.shape[1]:
        raise MedalsError(f"query ({q.shape[1]}-d) and reference ({r.shape[1]}-d) embeddings differ in size")
    if len(r) == 0:
        raise MedalsError("the reference set is empty")
    if block_size < 1:
        raise MedalsError(f"block_size must be positive, got {block_size}")
    index = np.empty(len(q), dtype=np.int64)
    cosine = np.empty(len(q), dtype=np.float32)
    r_t = np.ascontiguousarray(r.T)
    for start in range(0, len(q), block_size):
        sims = q[start : start + block_size] @ r_t
        best = sims.argmax(axis=1)
        index[start : start + len(best)] = best
        cosine[start : start + len(best)] = sims[np.arange(len(best)), best]
    return index, cosine


def replace_by_neighbour(
    pred_labels: np.ndarray,
    neighbour_labels: np.ndarray,
    index: np.ndarray,
    cosine: np.ndarray,
    threshold: float = THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """(labels [N, K] bool, replaced [N] bool): row i becomes ``neighbour_labels[index[i]]`` where
    ``cosine[i] > threshold`` (strictly) and keeps its predicted labels elsewhere."""
    pred = np.asarray(pred_labels).astype(bool)
    labels = np.asarray(neighbour_labels).astype(bool)
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    cosine = np.asarray(cosine, dtype=np.float64).reshape(-1)
    if pred.ndim != 2 or labels.ndim != 2 or pred.shape[1] != labels.shape[1]:
        raise MedalsError(
            f"predicted labels {pred.shape} and neighbour labels {labels.shape} must be [N, K] and [M, K]"
        )
    if index.shape != (len(pred),) or cosine.shape != (len(pred),):
        raise MedalsError(
            f"index {index.shape} and cosine {cosine.shape} must give one value per predicted row ({len(pred)})"
        )
    replaced = cosine > threshold
    if replaced.any() and (index[replaced].min() < 0 or index[replaced].max() >= len(labels)):
        raise MedalsError("a neighbour index lies outside the neighbour labels")
    out = pred.copy()
    out[replaced] = labels[index[replaced]]
    return out, replaced
