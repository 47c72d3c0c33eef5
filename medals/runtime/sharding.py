"""What training and prediction under DDP need beyond the process group: each rank's share of the data,
the wrapped model, and the gathering of per-rank results back into one answer on every rank.

Every function here returns its input unchanged (or the single-process answer) when no process group is
active, so the single-process paths stay exactly as they were.

Training batches: train.batch_size is the global batch. The single-process loader draws one permutation
per epoch from its seeded generator and cuts it into batches; under DDP every rank draws the same
permutation from the same generator and takes its slice [r*b/W, (r+1)*b/W) of each of those batches, so
the ranks' batch k together are exactly the single-process batch k, and DDP's mean of the ranks'
gradients is the gradient of the single-process mean loss (losses that are means over a batch's rows).

Validation and prediction rows: rank r takes the contiguous chunk [r*N/W, (r+1)*N/W) of the dataset
(no padding, no row twice); the gathered chunks in rank order are the rows in dataset order.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler, Subset

from medals.data.dataset import reseed_transform
from medals.errors import MedalsError
from medals.runtime import distributed
from medals.runtime.checkpoint import unwrap

# Ranks above 0 offset their augmentation seeds by this (per rank), so the ranks' shares of a batch are
# not augmented with the same random draws; rank 0 keeps the single-process seeds.
_RANK_SEED_STRIDE = 1_000_003


# ---- training batches ------------------------------------------------------------------------------


def rank_share(batch: list[int], rank: int, world: int) -> list[int]:
    """Rank ``rank``'s contiguous slice of a global batch (equal slices when len(batch) % world == 0)."""
    n = len(batch)
    return batch[rank * n // world : (rank + 1) * n // world]


class RankBatchSampler(Sampler[list[int]]):
    """Rank ``rank``'s slice of each global batch that ``batches`` (a BatchSampler) yields."""

    def __init__(self, batches: Sampler[list[int]], rank: int, world: int) -> None:
        self.batches = batches
        self.rank = rank
        self.world = world

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            yield rank_share(list(batch), self.rank, self.world)

    def __len__(self) -> int:
        assert isinstance(self.batches, Sized)
        return len(self.batches)


def check_global_batch(batch_size: int, n_rows: int, drop_last: bool, world: int) -> None:
    """A global batch must split evenly over the ranks, and no rank may get an empty share."""
    if batch_size % world:
        raise MedalsError(
            f"train.batch_size {batch_size} is not divisible by the world size {world}: under torchrun "
            f"train.batch_size is the global batch, split evenly over the ranks"
        )
    ragged = 0 if drop_last else n_rows % batch_size
    if 0 < ragged < world:
        raise MedalsError(
            f"the last training batch has {ragged} rows, fewer than the {world} ranks: use fewer "
            f"processes or another train.batch_size"
        )


def shard_batches(loader: DataLoader, rank: int | None = None, world: int | None = None) -> DataLoader:
    """The training loader of this rank: its slice of each of ``loader``'s global batches.

    ``loader`` is a fresh single-process loader (a shuffling one: a RandomSampler on a seeded generator).
    The returned loader shares its sampler and generator, so it draws the same permutation; len() is the
    number of global batches, as single-process. rank and world default to the process group's.
    """
    if world is None:
        if not distributed.active():
            return loader
        world, rank = distributed.world_size(), distributed.rank()
    assert rank is not None
    assert loader.batch_size is not None and loader.batch_sampler is not None
    # The rows an epoch draws: the dataset's, or a weighted sampler's (train.sampler).
    check_global_batch(loader.batch_size, len(loader.sampler), loader.drop_last, world)  # type: ignore[arg-type]
    init_fn = loader.worker_init_fn
    if rank:
        seed = loader.generator.initial_seed() if loader.generator is not None else 0
        if loader.num_workers == 0:
            reseed_transform(loader.dataset, rank_seed(seed, rank))
        else:
            init_fn = functools.partial(_rank_worker_init, inner=init_fn, rank=rank)
    return _rebuild(
        loader,
        loader.dataset,
        batch_sampler=RankBatchSampler(loader.batch_sampler, rank, world),
        worker_init_fn=init_fn,
    )


def rank_seed(seed: int, rank: int) -> int:
    """The seed rank `rank` uses where a single process would use `seed` (rank 0: the same seed)."""
    return (seed + rank * _RANK_SEED_STRIDE) % 2**31


def _rank_worker_init(worker_id: int, inner: Callable[[int], None] | None, rank: int) -> None:
    # The worker's torch seed (the loader's base seed + worker id) moved by the rank, then the loader's
    # own worker_init_fn derives the numpy, random and transform seeds from it as usual.
    torch.manual_seed(rank_seed(torch.initial_seed(), rank))
    if inner is not None:
        inner(worker_id)


# ---- validation and prediction rows ----------------------------------------------------------------


def row_range(n_rows: int, rank: int, world: int) -> range:
    return range(rank * n_rows // world, (rank + 1) * n_rows // world)


def shard_rows(loader: DataLoader, rank: int | None = None, world: int | None = None) -> DataLoader:
    """An evaluation loader over this rank's contiguous chunk of ``loader``'s dataset rows.

    Items keep their dataset's own "index", so predictions are placed by the full dataset's row numbers.
    rank and world default to the process group's.
    """
    if world is None:
        if not distributed.active():
            return loader
        world, rank = distributed.world_size(), distributed.rank()
    assert rank is not None
    rows = row_range(len(loader.dataset), rank, world)  # type: ignore[arg-type]
    return _rebuild(
        loader,
        Subset(loader.dataset, list(rows)),
        batch_size=loader.batch_size,
        drop_last=loader.drop_last,
        worker_init_fn=loader.worker_init_fn,
    )


def _rebuild(loader: DataLoader, dataset: Any, **changes: Any) -> DataLoader:
    """A DataLoader like ``loader`` (workers, collation, pinning, generator) over ``dataset``."""
    kwargs: dict[str, Any] = {
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "multiprocessing_context": loader.multiprocessing_context,
        "generator": loader.generator,
        "prefetch_factor": loader.prefetch_factor,
        "persistent_workers": loader.persistent_workers,
        "pin_memory_device": loader.pin_memory_device,
    }
    if hasattr(loader, "in_order"):
        kwargs["in_order"] = loader.in_order
    kwargs.update(changes)
    return DataLoader(dataset, **kwargs)


def gather_validation(
    truths: list[np.ndarray],
    probs: list[np.ndarray],
    cls_probs: list[np.ndarray],
    loss_total: float,
    seen: int,
    term_sums: dict[str, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float, int, dict[str, float]]:
    """Every rank's validation batches put together in row order, on every rank.

    Returns (truth, prob as float32, cls_prob or None, summed loss, rows seen, summed loss terms); the
    ranks' chunks are contiguous and in rank order, so concatenating them gives the dataset order.
    """
    parts = distributed.all_gather_objects((truths, probs, cls_probs, loss_total, seen, term_sums))
    truth = np.concatenate([a for part in parts for a in part[0]])
    prob = np.concatenate([a for part in parts for a in part[1]]).astype(np.float32)
    cls_list = [a for part in parts for a in part[2]]
    terms: dict[str, float] = {}
    for part in parts:
        for name, value in part[5].items():
            terms[name] = terms.get(name, 0.0) + value
    return (
        truth,
        prob,
        np.concatenate(cls_list) if cls_list else None,
        float(sum(part[3] for part in parts)),
        int(sum(part[4] for part in parts)),
        terms,
    )


def gather_rows(
    out: np.ndarray | None, cls_out: np.ndarray | None, seen: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """Prediction arrays over all rows from every rank's (out, cls_out, seen), on every rank.

    Each rank sends only the rows it saw; a row nobody saw stays unseen (and zero).
    """
    if not distributed.active():
        return out, cls_out, seen
    index = np.flatnonzero(seen)
    mine = (
        index,
        None if out is None else out[index],
        None if cls_out is None else cls_out[index],
    )
    parts = distributed.all_gather_objects(mine)
    first = next((part for part in parts if part[1] is not None), None)
    seen = np.zeros(len(seen), dtype=bool)
    if first is None:
        return None, None, seen
    out = np.zeros((len(seen), *first[1].shape[1:]), dtype=first[1].dtype)
    with_cls = any(part[2] is not None for part in parts)
    cls_out = np.zeros(len(seen), dtype=np.float32) if with_cls else None
    for index, rows, cls_rows in parts:
        if rows is None:
            continue
        out[index] = rows
        seen[index] = True
        if cls_out is not None and cls_rows is not None:
            cls_out[index] = cls_rows
    return out, cls_out, seen


def global_mean(total: torch.Tensor, count: int) -> float:
    """sum(total) / sum(count) over the ranks: e.g. the epoch's training loss from per-rank sums."""
    stats = torch.stack(
        [
            total.detach().to(torch.float64),
            torch.tensor(float(count), dtype=torch.float64, device=total.device),
        ]
    )
    stats = distributed.reduce_sum(stats)
    return stats[0].item() / max(stats[1].item(), 1.0)


# ---- the model ---------------------------------------------------------------------------------------


def wrap_model(model: nn.Module, recipe: Any, device: torch.device) -> nn.Module:
    """The model DDP trains: BatchNorm made SyncBatchNorm with train.sync_bn, then DistributedDataParallel.

    Without a process group the model itself (train.sync_bn changes nothing on one process). Parameters
    and buffers stay the same objects under the same names, so checkpoints are those of a plain model.
    """
    if not distributed.active():
        return model
    if recipe.train.sync_bn:
        if device.type != "cuda":
            raise MedalsError(
                "train.sync_bn needs CUDA devices (PyTorch's SyncBatchNorm does not run on CPU tensors): "
                "train on GPUs or set train.sync_bn=false"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=_has_unused_head(recipe),
    )


def _has_unused_head(recipe: Any) -> bool:
    """A cls or aux head no loss term reads gets no gradient, which DDP must be told to expect; so
    does a backbone that a train.phases entry freezes."""
    outputs = {term.output for term in recipe.loss} if recipe.loss else {"main"}
    model = recipe.model
    if any(phase.freeze for phase in getattr(recipe.train, "phases", None) or []):
        return True
    return (model.cls_head and "cls" not in outputs) or (model.aux_head and "aux" not in outputs)


def evaluation_model(model: nn.Module) -> nn.Module:
    """The module to validate: without a DDP wrapper, with rank 0's buffers (BatchNorm statistics).

    DDP broadcasts buffers at each training forward, but the last step's update is each rank's own:
    after this every rank validates, and rank 0 saves, the same model. The wrapper itself would
    broadcast them again in the first forward after training, a collective call that a rank with no
    validation rows (or fewer batches) would never match.
    """
    if not distributed.active():
        return model
    plain = unwrap(model)
    for buffer in plain.buffers():
        torch.distributed.broadcast(buffer, src=0)
    return plain


def average_buffers(model: nn.Module) -> None:
    """Floating-point buffers averaged over the ranks (BatchNorm statistics each rank measured on its
    share of the batches, as when SWA recomputes them)."""
    if not distributed.active():
        return
    world = distributed.world_size()
    for buffer in unwrap(model).buffers():
        if buffer.is_floating_point():
            buffer.copy_(distributed.reduce_sum(buffer) / world)


def no_sync(model: nn.Module, skip: bool) -> contextlib.AbstractContextManager:
    """DDP's no_sync() when ``skip`` (a micro-batch inside an accumulation window), else nothing."""
    if skip and isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()
