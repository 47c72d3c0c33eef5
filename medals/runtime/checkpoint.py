"""Checkpoint files: weights (+ optimizer, scaler and RNG states for resuming), written atomically.

Everything stored is plain tensors, numbers, strings, lists, tuples and dicts (the numpy RNG key is kept
as a list), so every checkpoint loads with ``torch.load(weights_only=True)``: loading one never runs
pickled code, even one that came from somewhere else.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medals.errors import MedalsError
from medals.files import save_torch

FORMAT = "medals-checkpoint"
VERSION = 1
# The prefix torch.compile adds to parameter names (files saved from a compiled model elsewhere).
_COMPILE_PREFIX = "_orig_mod."


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside torch.compile / DataParallel / DDP wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict on CPU in the default memory layout, whatever the model's device and layout."""
    state = unwrap(model).state_dict()
    return {
        key: value.detach().to("cpu", memory_format=torch.contiguous_format) for key, value in state.items()
    }


def capture_rng() -> dict[str, Any]:
    state = np.random.get_state(legacy=False)
    state["state"]["key"] = state["state"]["key"].tolist()
    out: dict[str, Any] = {"python": random.getstate(), "numpy": state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = dict(numpy_state["state"])
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(item) for item in value) if isinstance(value, (list, tuple)) else value


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scaler: torch.amp.GradScaler | None,
    epoch: int,
    best: dict[str, Any] | None = None,
    rng: bool = False,
    *,
    config_hash: str | None = None,
    **extra: Any,
) -> Path:
    """Write ``path`` atomically; ``epoch`` is the number of epochs completed.

    With an optimizer, scaler and rng=True it is a full resume point; with neither it holds the weights.
    ``extra`` items (e.g. metrics, the log rows, model facts) are stored as top-level keys.
    """
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model": model_state(model),
        "epoch": int(epoch),
        "best": dict(best or {}),
        "config_hash": config_hash,
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scaler is not None:
        payload["scaler"] = scaler.state_dict()
    if rng:
        payload["rng"] = capture_rng()
    clash = set(extra) & set(payload)
    if clash:
        raise ValueError(f"save_checkpoint: extra keys {sorted(clash)} clash with the stored fields")
    payload.update(extra)
    return save_torch(path, payload)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by save_checkpoint (tensors on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise MedalsError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one, not a pickle traceback
        raise MedalsError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MedalsError(f"{path} is not a medals checkpoint")
    return payload


def load_model_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load just the weights of ``path`` into ``model``; returns the checkpoint (epoch, metrics, ...)."""
    payload = load_checkpoint(path)
    state = {_strip(key): value for key, value in payload["model"].items()}
    target = unwrap(model)
    expected = target.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    resized = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if missing or unexpected or resized:
        raise MedalsError(
            f"checkpoint {path} does not fit the model built from the recipe (was the model section or "
            f"the class count changed?): missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"other shape {resized[:3]}"
        )
    target.load_state_dict(state)
    return payload


def restore_training_state(
    payload: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
) -> None:
    """Put a full resume point (from load_checkpoint) back: weights, optimizer, scaler and RNGs."""
    state = {_strip(key): value for key, value in payload["model"].items()}
    unwrap(model).load_state_dict(state)
    if "optimizer" in payload:
        optimizer.load_state_dict(payload["optimizer"])
    if scaler is not None and payload.get("scaler"):
        scaler.load_state_dict(payload["scaler"])
    if "rng" in payload:
        restore_rng(payload["rng"])


def _strip(key: str) -> str:
    while key.startswith(_COMPILE_PREFIX):
        key = key[len(_COMPILE_PREFIX) :]
    return key
