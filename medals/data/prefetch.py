"""Prepare the next batches on a side CUDA stream in a background thread while the model trains.

The GPU data path's ops draw every random choice on the host and read nothing back from the device
(tests/test_gpu_no_sync.py), so preparing a batch never waits for the training stream; JPEG decoding
and the host side of the loader still take time, which the thread overlaps with the model's kernel
launches, up to `depth` batches ahead. On the CPU (or for the CPU data path) the batches are simply
prepared in order, in the calling thread.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

_DONE = object()


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def prefetched(
    loader: Iterable[dict],
    prepare: Callable[[dict, torch.Generator | None], dict],
    generator: torch.Generator | None,
    device: torch.device,
    depth: int = 2,
    background: bool | None = None,
    stats: dict[str, float] | None = None,
) -> Iterator[dict]:
    """prepare(batch, generator) for every loader batch, in order, up to `depth` batches ahead.

    background None: in a thread (on a side stream) on CUDA, in the calling thread otherwise. The batches
    and the random stream are the same either way: one thread consumes the generator, in loader order.
    With `stats`, stats["wait_s"] accumulates the time the consumer waited for its next batch (the
    loader and prepare in the calling thread; the queue in the background).
    """
    if background is None:
        background = device.type == "cuda"
    clock = stats if stats is not None else {}
    clock.setdefault("wait_s", 0.0)
    if not background:
        batches = iter(loader)
        while True:
            started = time.perf_counter()
            batch = next(batches, _DONE)
            if batch is _DONE:
                clock["wait_s"] += time.perf_counter() - started
                return
            out = prepare(batch, generator)
            clock["wait_s"] += time.perf_counter() - started
            yield out
    cuda = device.type == "cuda"
    stream = torch.cuda.Stream(device=device) if cuda else None
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            with contextlib.ExitStack() as scope:
                if cuda:
                    scope.enter_context(torch.cuda.device(device))
                    scope.enter_context(torch.cuda.stream(stream))
                for batch in loader:
                    out = prepare(batch, generator)
                    event = None
                    if cuda:
                        event = torch.cuda.Event()
                        event.record(stream)
                    while not stop.is_set():
                        try:
                            ready.put((out, event), timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
        except BaseException as exc:  # handed to the consumer, raised there
            ready.put((exc, None))
            return
        ready.put((_DONE, None))

    thread = threading.Thread(target=work, name="medals-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            started = time.perf_counter()
            out, event = ready.get()
            clock["wait_s"] += time.perf_counter() - started
            if out is _DONE:
                return
            if isinstance(out, BaseException):
                raise out
            if event is None:
                yield out
                continue
            current = torch.cuda.current_stream(device)
            current.wait_event(event)
            for tensor in _tensors(out):
                if tensor.is_cuda:
                    # Memory made on the side stream must not be reused before the training stream is done.
                    tensor.record_stream(current)
            yield out
    finally:
        stop.set()
        while thread.is_alive():
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()
