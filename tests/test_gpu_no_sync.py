"""The GPU data path's augmentation step reads nothing back from the device.

The check runs the step on a "meta" batch: tensors with a shape, a dtype and a device but no values, so
any read of a device value (.item(), .tolist(), bool(), nonzero, a bincount whose size depends on the data)
raises. A step that completes on meta tensors makes no device-to-host read. The step also runs under a
mode that records every blocking copy from the host to the device (Tensor.to without non_blocking,
torch.tensor(..., device=...)): on CUDA such a copy from pageable memory waits for the stream too.
What neither check covers are the Triton kernels, which never run on meta tensors (their launches
take only tensors already on the device and Python scalars). Its random choices (which samples an op takes, OneOf's child, kernel sizes) come
from a host generator, as the training loop's device_generator makes it.
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from medals.augment.gpu import build_gpu_transform
from medals.config import load_recipe
from medals.train.setup import device_generator

RECIPES = {
    "melanoma": "recipes/melanoma_1st/9c_meta_b3_768_512_ext_18ep.yaml",
    "pneumothorax": "recipes/pneumothorax_2nd/seg_unet_se50_1024.yaml",
}


def _spec(name: str) -> list[dict]:
    from pathlib import Path

    return load_recipe(Path(__file__).resolve().parents[1] / RECIPES[name]).train.augment


def _ops(name: str) -> list[dict]:
    """Each op of the list, and each child of its OneOfs, as an op of its own."""
    out = []
    for op in _spec(name):
        out.append(op)
        out.extend(dict(child) for child in op.get("transforms", []))
    return out


class BlockingCopies(TorchFunctionMode):
    """Records host -> device copies that wait: Tensor.to(device) without non_blocking, and tensors made
    on the device from host data."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        moved = isinstance(out, torch.Tensor) and out.device.type == "meta"
        if (
            func is torch.Tensor.to
            and moved
            and args[0].device.type == "cpu"
            and not kwargs.get("non_blocking")
        ):
            self.found.append(f"Tensor.to{tuple(str(a) for a in args[1:])}")
        made_from_host = not (args and isinstance(args[0], torch.Tensor) and args[0].device.type == "meta")
        if func in (torch.tensor, torch.as_tensor) and moved and made_from_host:
            self.found.append(func.__name__)
        return out


def _step(spec: list[dict], seed: int, masks: bool) -> None:
    aug = build_gpu_transform(spec, 64, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    images = torch.empty(6, 3, 96, 96, device="meta")
    mask = torch.empty(6, 1, 96, 96, device="meta") if masks else None
    generator = torch.Generator().manual_seed(seed)
    aug(images, mask, generator)  # the first call makes the per-device constants (cached, waits once)
    with BlockingCopies() as copies:
        out, out_mask = aug(images, mask, generator)
    assert copies.found == [], (spec, copies.found)
    assert out.shape == (6, 3, 64, 64) and out.device.type == "meta"
    assert out_mask is None or out_mask.shape == (6, 1, 64, 64)


@pytest.mark.parametrize("p", [1.0, 0.5])
@pytest.mark.parametrize("name", list(RECIPES))
def test_every_op_alone_reads_nothing_back(name, p):
    for op in _ops(name):
        for seed in range(3):  # several draws: subsets of every size, each OneOf child
            _step([{**op, "p": p}], seed, masks=name == "pneumothorax")


@pytest.mark.parametrize("name", list(RECIPES))
def test_the_whole_list_reads_nothing_back(name):
    for seed in range(8):
        _step(_spec(name), seed, masks=name == "pneumothorax")


def test_a_read_from_the_device_is_caught():
    # What the check relies on: reading a meta tensor's values raises.
    x = torch.empty(4, device="meta")
    for read in (lambda: x.nonzero(), lambda: x.sum().item(), lambda: x.tolist(), lambda: bool(x[0] > 0)):
        with pytest.raises((NotImplementedError, RuntimeError)):
            read()


def test_a_blocking_copy_to_the_device_is_caught():
    with BlockingCopies() as copies:
        torch.zeros(3).to("meta", non_blocking=True)
        torch.zeros(3).to("meta")
        torch.tensor([1.0], device="meta")
    assert copies.found == ["Tensor.to('meta',)", "tensor"]


def test_the_training_loop_draws_augmentation_on_the_host():
    assert device_generator(7).device.type == "cpu"  # whatever device the run trains on
