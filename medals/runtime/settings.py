"""The device-dependent training settings, resolved once: precision, memory layout, compile, data path.

A recipe says "auto" (or leaves a switch unset) and gets what is fastest where it runs: on a CUDA GPU
bf16 autocast (fp16 + GradScaler before Ampere), channels_last and the GPU data path; on the CPU fp32,
the default layout and the CPU data path. torch.compile is opt-in everywhere (`train.compile: true`):
compiling an EfficientNet's forward and backward takes minutes, paid again by every fold, every
policy-search candidate and every new input shape, which a short run never earns back. Explicit values
always win, so `train.data_path=gpu` runs the GPU data path on CPU tensors (how the tests exercise it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medals.errors import MedalsError
from medals.runtime.precision import resolve_precision


@dataclass(frozen=True)
class Runtime:
    amp_dtype: torch.dtype | None
    use_scaler: bool
    channels_last: bool
    compile: bool
    data_path: str  # "cpu" or "gpu"

    def autocast(self, device: torch.device) -> torch.autocast:
        """The forward's autocast context on `device` (disabled for fp32)."""
        return torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)


def gpu_augment_gap(recipe) -> str | None:
    """Why the recipe's augmentation list cannot run on the GPU path, or None when it can."""
    from medals.augment.cpu import training_augment
    from medals.augment.gpu import build_gpu_transform

    try:
        build_gpu_transform(training_augment(recipe), recipe.train.image_size, (0.0,), (1.0,))
    except NotImplementedError as exc:
        return str(exc)
    return None


_SAID: set[str] = set()


def _say_once(message: str) -> None:
    """Print a message once per process (the runtime is resolved for every fold and every stage)."""
    from medals.runtime import distributed

    if message not in _SAID and distributed.is_main():
        _SAID.add(message)
        print(message, flush=True)


def resolve_data_path(recipe, device: torch.device) -> str:
    choice = recipe.train.data_path
    if choice == "cpu" or (choice == "auto" and device.type != "cuda"):
        return "cpu"
    gap = gpu_augment_gap(recipe)  # builds the device pipeline: only where it may be used
    if choice == "gpu":
        if gap is not None:
            raise MedalsError(f"train.data_path is 'gpu' but {gap}: set train.data_path to 'cpu' or 'auto'")
        return "gpu"
    if gap is not None:
        _say_once(f"data path: cpu ({gap})")
        return "cpu"
    return "gpu"


def resolve_runtime(recipe, device: str | torch.device) -> Runtime:
    device = torch.device(device)
    cfg = recipe.train
    amp_dtype, use_scaler = resolve_precision(cfg.precision, device)
    cuda = device.type == "cuda"
    return Runtime(
        amp_dtype=amp_dtype,
        use_scaler=use_scaler,
        channels_last=cuda if cfg.channels_last is None else cfg.channels_last,
        compile=cfg.compile,
        data_path=resolve_data_path(recipe, device),
    )
