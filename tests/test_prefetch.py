"""Background preparation of batches: same batches, same random stream, errors and early stops handled."""

from __future__ import annotations

import threading

import pytest
import torch

from medals.data.prefetch import prefetched
from medals.errors import MedalsError

CPU = torch.device("cpu")


def _prepare(batch: dict, generator: torch.Generator | None) -> dict:
    noise = torch.rand(batch["x"].shape, generator=generator)
    return {"x": batch["x"] + noise, "index": batch["index"]}


def _loader(n: int = 12):
    return [{"x": torch.full((2, 3), float(i)), "index": torch.tensor([2 * i, 2 * i + 1])} for i in range(n)]


def _run(background: bool, depth: int = 2) -> list[dict]:
    generator = torch.Generator().manual_seed(7)
    return list(prefetched(_loader(), _prepare, generator, CPU, depth=depth, background=background))


@pytest.mark.parametrize("depth", [1, 3])
def test_background_gives_the_same_batches_in_order(depth):
    inline, threaded = _run(False), _run(True, depth)
    assert len(inline) == len(threaded) == 12
    for a, b in zip(inline, threaded, strict=True):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["x"], b["x"])


def test_an_error_in_the_worker_thread_reaches_the_consumer():
    def failing(batch, generator):
        if int(batch["index"][0]) == 6:
            raise MedalsError("cannot read image bad.jpg")
        return batch

    seen = []
    with pytest.raises(MedalsError, match="bad.jpg"):
        for batch in prefetched(_loader(), failing, None, CPU, background=True):
            seen.append(int(batch["index"][0]))
    assert seen == [0, 2, 4]


def test_stopping_early_ends_the_thread():
    before = threading.active_count()
    batches = prefetched(_loader(50), _prepare, torch.Generator(), CPU, depth=1, background=True)
    assert int(next(batches)["index"][0]) == 0
    batches.close()  # what a `break` out of the consumer's loop does
    assert threading.active_count() == before


@pytest.mark.parametrize("background", [False, True])
def test_stats_count_the_time_spent_waiting_for_batches(background):
    import time

    def slow_loader():
        for k in range(5):
            time.sleep(0.02)  # a loader that takes at least 20 ms per batch
            yield {"image": torch.full((1,), float(k))}

    stats: dict[str, float] = {}
    out = list(
        prefetched(slow_loader(), lambda batch, _g: batch, None, CPU, background=background, stats=stats)
    )
    assert [int(b["image"]) for b in out] == list(range(5))
    # A consumer that does nothing waits at least for every batch's sleep (a lower bound, whatever the load).
    assert stats["wait_s"] >= 5 * 0.02 * 0.99
