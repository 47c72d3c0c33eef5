"""Load a local weights file into a backbone, by key name or by tensor position.

Position mapping lets a checkpoint from another implementation of the same network (e.g.
efficientnet_pytorch keys onto timm's tf_efficientnet_lite0) load without a hand-written key map:
the two state dicts list the same tensors in the same order under different names.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import timm
import torch
from timm.models._manipulate import adapt_input_conv
from torch import Tensor, nn

from medals.errors import MedalsError

# Module paths of final classifiers across timm, torchvision, efficientnet_pytorch and pretrainedmodels.
CLASSIFIER_PATHS = {"fc", "_fc", "classifier", "head", "head.fc", "last_linear", "logits", "heads.head"}
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a weights file, unwrapped from {"state_dict": ...}-style dicts, "module." prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise MedalsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:
                # Older checkpoints pickle extra objects (argparse namespaces, numpy scalars); this is the
                # user's own local file, so fall back to a full unpickle.
                obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # any read failure means a bad input file
        raise MedalsError(f"cannot read weights file {path}: {exc}") from None
    if isinstance(obj, nn.Module):  # a whole pickled model
        obj = obj.state_dict()
    while isinstance(obj, Mapping):
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if wrapper is None:
            break
        obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise MedalsError(f"weights file {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def adapt_first_conv(weight: Tensor, in_chans: int) -> Tensor:
    """First-conv weights for `in_chans` inputs from weights trained on weight.shape[1] (usually RGB) inputs.

    3 -> 4 channels keeps RGB and copies the red filters to the 4th channel (the usual trick for
    RGBY protein images, whose yellow channel resembles red); other counts use timm's rule.
    """
    if weight.shape[1] == 3 and in_chans == 4:
        return torch.cat([weight, weight[:, :1]], dim=1)
    return adapt_input_conv(in_chans, weight, base_chans=weight.shape[1])


def create_timm_backbone(name: str, pretrained: bool, in_chans: int, **kwargs) -> nn.Module:
    """timm.create_model(num_classes=0), with adapt_first_conv's rule for pretrained 4-channel stems.

    timm itself would repeat R, G, B, R and scale them by 3/4; the protein-atlas solutions kept the RGB
    filters as they are and added an unscaled copy of the red ones.
    """
    if not (pretrained and in_chans == 4):
        return timm.create_model(name, pretrained=pretrained, num_classes=0, in_chans=in_chans, **kwargs)
    rgb = timm.create_model(name, pretrained=True, num_classes=0, in_chans=3, **kwargs)
    model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=4, **kwargs)
    state = rgb.state_dict()
    key = _first_conv_key(rgb, state)
    state[key] = adapt_first_conv(state[key], 4)
    model.load_state_dict(state)
    return model


def _is_classifier(key: str, extra: set[str]) -> bool:
    path = key.rsplit(".", 1)[0]
    return path in CLASSIFIER_PATHS or path in extra


def _module_classifier_paths(module: nn.Module) -> set[str]:
    cfg = getattr(module, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    return {names} if isinstance(names, str) else set(names)


def _first_conv_key(module: nn.Module, state: Mapping[str, Tensor]) -> str | None:
    cfg = getattr(module, "pretrained_cfg", None) or {}
    first = cfg.get("first_conv")
    if isinstance(first, str) and f"{first}.weight" in state:
        return f"{first}.weight"
    return next((k for k, v in state.items() if v.ndim == 4 and v.is_floating_point()), None)


def _fit(
    path: Path, file_key: str, tensor: Tensor, model_key: str, target: Tensor, first_conv: str | None
) -> Tensor:
    """`tensor` reshaped for `target` when only the first conv's input channels differ, else as is (checked)."""
    if tensor.shape == target.shape:
        return tensor
    if (
        model_key == first_conv
        and tensor.ndim == 4
        and tensor.shape[:1] == target.shape[:1]
        and tensor.shape[2:] == target.shape[2:]
    ):
        return adapt_first_conv(tensor, target.shape[1])
    raise MedalsError(
        f"weights file {path}: tensor {file_key!r} has shape {tuple(tensor.shape)} but the model's "
        f"{model_key!r} has shape {tuple(target.shape)}"
    )


def load_local_weights(
    module: nn.Module, path: str | Path, mapping: Literal["name", "position"] = "name"
) -> dict[str, str]:
    """Load `path` into `module` (a backbone); returns {model key: file key} of what was loaded.

    "name": keys must match; classifier tensors of the file that the model lacks are ignored, and
    missing num_batches_tracked counters are tolerated. "position": tensors are paired in order,
    classifier tensors skipped on both sides. Every pair is shape-checked; the first conv is
    adapted when only its input channels differ.
    """
    path = Path(path)
    source = read_state_dict(path)
    state = module.state_dict()
    first_conv = _first_conv_key(module, state)
    model_heads = _module_classifier_paths(module)
    pairs: list[tuple[str, str]] = []  # (model key, file key)

    if mapping == "name":
        for key in source:
            if key not in state and not _is_classifier(key, model_heads):
                raise MedalsError(
                    f"weights file {path}: key {key!r} is not in the model {type(module).__name__}"
                )
        for key, target in state.items():
            if key in source:
                if _is_classifier(key, model_heads) and source[key].shape != target.shape:
                    continue  # a head for another class count: keep the model's own
                pairs.append((key, key))
            elif not key.endswith("num_batches_tracked"):
                raise MedalsError(f"weights file {path}: the model's key {key!r} is missing from the file")
    elif mapping == "position":
        file_keys = [k for k in source if not _is_classifier(k, set())]
        model_keys = [k for k in state if not _is_classifier(k, model_heads)]
        if not any(k.endswith("num_batches_tracked") for k in file_keys):
            # Files saved before torch 0.4.1 lack the counters; pair the rest.
            model_keys = [k for k in model_keys if not k.endswith("num_batches_tracked")]
        pairs = list(zip(model_keys, file_keys, strict=False))
        if len(file_keys) != len(model_keys):
            n = min(len(file_keys), len(model_keys))
            extra = f"file key {file_keys[n]!r}" if len(file_keys) > n else f"model key {model_keys[n]!r}"
            # Report a shape mismatch first when there is one: it points at where the lists diverge.
            for model_key, file_key in pairs:
                _fit(path, file_key, source[file_key], model_key, state[model_key], first_conv)
            raise MedalsError(
                f"weights file {path}: {len(file_keys)} tensors to load by position but the model has "
                f"{len(model_keys)}; first unmatched: {extra}"
            )
    else:
        raise MedalsError(f"model.weights_mapping {mapping!r} must be 'name' or 'position'")

    new_state = dict(state)
    for model_key, file_key in pairs:
        new_state[model_key] = _fit(path, file_key, source[file_key], model_key, state[model_key], first_conv)
    module.load_state_dict(new_state, strict=True)
    return dict(pairs)


def copy_to_features(source: nn.Module, features: nn.Module) -> int:
    """Copy a full timm model's tensors into its features-only twin (smp "tu-" encoder model).

    timm's feature wrappers drop the tail (head convs) and may flatten module names ("stem.0" ->
    "stem_0"), so keys are matched with "_" and "." treated alike. Returns the number copied.
    """

    def norm(key: str) -> str:
        return key.replace("_", ".")

    src = {norm(k): v for k, v in source.state_dict().items()}
    target = features.state_dict()
    new_state = {}
    for key, value in target.items():
        if norm(key) not in src or src[norm(key)].shape != value.shape:
            raise MedalsError(f"cannot map encoder tensor {key!r} onto the loaded backbone weights")
        new_state[key] = src[norm(key)]
    features.load_state_dict(new_state, strict=True)
    return len(new_state)
