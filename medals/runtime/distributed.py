"""The process group of a torchrun launch, and rank helpers that are identities in a single process.

`torchrun --nproc_per_node N -m medals ...` starts N processes with RANK, LOCAL_RANK and WORLD_SIZE in
their environment; init_from_env() joins them into the default process group. Without those variables
(or with WORLD_SIZE=1) nothing is initialised and every helper here answers as for one process:
world_size() 1, rank() 0, is_main() True, barrier() returns at once, all_gather_objects(x) is [x],
reduce_sum(t) is t. So code written with these helpers runs unchanged without torchrun.

run_on_main(fn) runs fn on rank 0 alone while the other ranks wait, and hands rank 0's result (or its
error) to every rank. Inside fn the helpers answer as for one process, so fn may call code that uses
them (a policy search training candidates, a demo running the pipeline) without waiting for ranks that
are not there.
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from medals.errors import MedalsError

# Ranks wait this long at a collective before giving up. Long, because the other ranks wait at a
# barrier while rank 0 prepares the data (reading and caching images can take a while).
TIMEOUT = timedelta(hours=2)

T = TypeVar("T")

_solo = False  # True while rank 0 runs a run_on_main function on its own


def init_from_env(timeout: timedelta = TIMEOUT) -> bool:
    """Join the process group torchrun describes in the environment; True when there is one (> 1 rank).

    With CUDA, each process uses cuda:LOCAL_RANK, and the group has two backends: NCCL for CUDA tensors
    (gradients, BatchNorm statistics) and gloo for CPU tensors and pickled objects (gathered predictions,
    barriers), so a CPU run under torchrun on a GPU machine works too. Without CUDA it is gloo only.
    """
    if dist.is_available() and dist.is_initialized():
        return active()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        raise MedalsError("WORLD_SIZE is above 1 but this PyTorch build has no torch.distributed")
    if torch.cuda.is_available():
        if local_rank() < torch.cuda.device_count():  # more processes than GPUs: a CPU run (--device cpu)
            torch.cuda.set_device(local_rank())
        dist.init_process_group("cpu:gloo,cuda:nccl", timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    return True


def shutdown() -> None:
    """Leave the process group (at the end of a successful command).

    The ranks meet first: a rank that destroys its group while another still talks to it can abort both.
    Unreachable DDP models (which hold the group) are collected first, while the interpreter is fully
    alive: gloo's threads freed during interpreter shutdown can abort the process.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def active() -> bool:
    """Whether several ranks take part in what this process does now."""
    return not _solo and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def local_rank() -> int:
    """This process's index on its machine (torchrun's LOCAL_RANK), 0 without torchrun."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0: the process that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def device_for_rank(requested: str | torch.device) -> torch.device:
    """The device this rank uses: cuda:LOCAL_RANK for any CUDA device under DDP, else as requested."""
    device = torch.device(requested)
    if active() and device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank() >= count:
            raise MedalsError(
                f"process {local_rank()} of this machine has no GPU of its own ({count} GPUs here): start "
                f"at most {count} processes per machine (torchrun --nproc_per_node) or use --device cpu"
            )
        return torch.device("cuda", local_rank())
    return device


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over the ranks (a new tensor; the input itself without DDP)."""
    if not active():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[..., T]) -> Callable[..., T | None]:
    """``fn`` made to run on rank 0 only (a file writer); other ranks get None without waiting."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T | None:
        return fn(*args, **kwargs) if is_main() else None

    return wrapper


def run_on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 alone, every rank waiting for it; return its result on every rank.

    The ranks first meet (so rank 0 starts only when all are done with earlier work), then rank 0 runs
    fn as a single process while the others wait for its result. An error on rank 0 is raised on every
    rank: a MedalsError with rank 0's sentence elsewhere, so no rank waits for a partner that has gone.
    """
    global _solo
    if not active():
        return fn()
    barrier()
    result: Any = None
    error: BaseException | None = None
    if is_main():
        _solo = True
        try:
            result = fn()
        except BaseException as exc:  # handed to the other ranks, then raised here too
            error = exc
        finally:
            _solo = False
    message = (
        None
        if error is None
        else (str(error) if isinstance(error, MedalsError) else f"rank 0 failed: {error!r}")
    )
    shared = broadcast_object((message, result if error is None else None))
    if error is not None:
        raise error
    if shared[0] is not None:
        raise MedalsError(shared[0])
    return shared[1]
