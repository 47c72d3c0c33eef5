"""Albumentations pipelines built from the recipe's `train.augment` list.

Each op is `{"name": <albumentations class name>, **kwargs}`; compose ops (OneOf, SomeOf, Sequential, ...)
take their children under "transforms". Kwargs are passed through to albumentations 2.0.8 unchanged, so
its own argument names apply (e.g. GaussNoise(std_range=...), CoarseDropout(num_holes_range=...)).
Resize to the training size and normalisation are always appended; masks follow every geometric op.
A few ops are medals' own (CUSTOM_OPS, extended with register_op): `{name: PolicyFile, path: ...}` is a
OneOf over the sub-policies kept by a policy search (medals.augment.policy);
`{name: RandomSquareCropResize, min_frac: null | float, p: 1.0}` is HPA1's random square crop resized to
train.image_size (medals.augment.crop; build_transform fills in the size);
`{name: ElasticAffine, alpha_affine: <pixels>, p}` is albumentations 0.x's ElasticTransform affine
(medals.augment.jitter).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
from pydantic import ValidationError

from medals.augment.crop import RandomSquareCropResize, build_random_square_crop, fill_size
from medals.augment.jitter import build_elastic_affine
from medals.errors import MedalsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OTHER_MEAN = 0.5  # per channel, for images that are not 3-channel photographs
OTHER_STD = 0.25
STANDARDIZE_EPS = 1e-6  # ImageStandardize's floor on a channel's std (the GPU path's too)

# Ops that would break the pipeline's contract (numpy HWC out, normalised once) or need Python callables.
_FORBIDDEN = {"ToTensorV2", "Lambda", "Normalize"}

# Cheap defaults. Classification images (lesions, cells) have no canonical orientation, so the whole
# dihedral group is fair; segmentation defaults (chest X-rays) keep up/down and only mirror left/right.
_MILD_AFFINE = {
    "name": "Affine",
    "scale": (0.9, 1.1),
    "translate_percent": (-0.0625, 0.0625),
    "rotate": (-15, 15),
    "border_mode": cv2.BORDER_CONSTANT,
    "p": 0.5,
}
_BRIGHTNESS = {"name": "RandomBrightnessContrast", "brightness_limit": 0.2, "contrast_limit": 0.2, "p": 0.5}
# Classification images have no up or left worth keeping: flips, transposes, a mild affine, brightness.
_CLASSIFY = [
    {"name": "HorizontalFlip", "p": 0.5},
    {"name": "VerticalFlip", "p": 0.5},
    {"name": "Transpose", "p": 0.5},
    _MILD_AFFINE,
    _BRIGHTNESS,
]
DEFAULT_AUGMENT: dict[str, list[dict[str, Any]]] = {
    "binary": _CLASSIFY,
    "multiclass": _CLASSIFY,
    "multilabel": _CLASSIFY,
    "regression": _CLASSIFY,
    "ordinal": _CLASSIFY,
    "segmentation": [
        {"name": "HorizontalFlip", "p": 0.5},
        _MILD_AFFINE,
        _BRIGHTNESS,
    ],
}


def default_mean_std(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet statistics for 3-channel images, 0.5 / 0.25 per channel otherwise."""
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (OTHER_MEAN,) * channels, (OTHER_STD,) * channels


class ChannelNormalize(A.ImageOnlyTransform):
    """`A.Normalize(mean, std, max_pixel_value=255)`, with the default statistics picked by channel count.

    The transform is built before the image's channel count is known, so the defaults (and the check that
    a configured mean/std fits the image) happen on the first call for each channel count.
    """

    def __init__(
        self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None, p: float = 1.0
    ):
        super().__init__(p=p)
        self.mean = None if mean is None else tuple(float(v) for v in mean)
        self.std = None if std is None else tuple(float(v) for v in std)
        self._by_channels: dict[int, A.Normalize] = {}

    def _normalizer(self, channels: int) -> A.Normalize:
        norm = self._by_channels.get(channels)
        if norm is None:
            mean, std = default_mean_std(channels)
            if self.mean is not None:
                mean = self.mean
            if self.std is not None:
                std = self.std
            for key, values in (("mean", mean), ("std", std)):
                if len(values) != channels:
                    raise MedalsError(
                        f"train.{key} has {len(values)} values but the images have {channels} channels"
                    )
            norm = A.Normalize(mean=mean, std=std, max_pixel_value=255.0, p=1.0)
            self._by_channels[channels] = norm
        return norm

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        channels = 1 if img.ndim == 2 else img.shape[-1]
        return self._normalizer(channels).apply(img)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("mean", "std")


class ImageStandardize(A.ImageOnlyTransform):
    """Per-image, per-channel standardisation: (x - mean) / std over each channel's own pixels.

    Used instead of ChannelNormalize for train.normalize "image"; a flat channel (std 0) becomes 0.
    """

    def __init__(self, eps: float = STANDARDIZE_EPS, p: float = 1.0):
        super().__init__(p=p)
        self.eps = float(eps)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        data = img.astype(np.float32)
        axes = (0, 1) if data.ndim == 3 else None
        mean = data.mean(axis=axes, keepdims=True)
        std = data.std(axis=axes, keepdims=True)
        return ((data - mean) / np.maximum(std, self.eps)).astype(np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("eps",)


def _lookup(name: Any, where: str) -> type:
    if not isinstance(name, str) or not name or name.startswith("_"):
        raise MedalsError(f"{where}: op name {name!r} is not an albumentations transform name")
    cls = getattr(A, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, (A.BasicTransform, A.BaseCompose))):
        raise MedalsError(f"{where}: unknown albumentations op '{name}'")
    if name in _FORBIDDEN:
        raise MedalsError(f"{where}: op '{name}' is not allowed here (medals adds normalisation itself)")
    return cls


def _build_op(item: Any, path: str) -> A.BasicTransform | A.BaseCompose:
    if not isinstance(item, dict) or "name" not in item:
        raise MedalsError(f"{path}: each op must be a mapping with a 'name' key, got {item!r}")
    kwargs = dict(item)
    name = kwargs.pop("name")
    if isinstance(name, str) and name in CUSTOM_OPS:
        return CUSTOM_OPS[name](kwargs, f"{path} (op '{name}')")
    cls = _lookup(name, path)
    if cls is A.ElasticTransform:
        from medals.augment.elastic import CoarseElasticTransform

        # Same op, fields drawn on a coarse grid: albumentations' 401-tap smoothing at sigma 50 was
        # half the melanoma list's CPU time (medals/augment/elastic.py).
        cls = CoarseElasticTransform
    elif cls is A.OpticalDistortion:
        from medals.augment.legacy import ShiftedOpticalDistortion

        cls = ShiftedOpticalDistortion  # the same op, with albumentations 0.4.6's shift_limit
    where = f"{path} (op '{name}')"
    is_compose = issubclass(cls, A.BaseCompose)
    if is_compose:
        children = kwargs.get("transforms")
        if not isinstance(children, list):
            raise MedalsError(f"{where}: key 'transforms' must be a list of ops")
        kwargs["transforms"] = [
            _build_op(child, f"{path}.transforms[{i}]") for i, child in enumerate(children)
        ]
    elif "transforms" in kwargs:
        raise MedalsError(f"{where}: key 'transforms' is only for compose ops such as OneOf")

    # Albumentations 2 only warns about unknown arguments: check them against the signature ourselves.
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        for key in kwargs:
            if key not in params:
                raise MedalsError(f"{where}: unknown argument '{key}' (accepted: {', '.join(params)})")
    # Validated transforms (albumentations' custom_init) otherwise fall back to defaults with only a
    # warning on some invalid values; strict makes every such problem an exception.
    if getattr(cls.__init__, "__name__", "") == "custom_init":
        kwargs["strict"] = True
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        cause = exc if isinstance(exc, ValidationError) else exc.__cause__
        if isinstance(cause, ValidationError) and cause.errors():
            first = cause.errors()[0]
            key = str(first["loc"][0]) if first.get("loc") else "?"
            if key in item:
                problem = f"argument '{key}' has invalid value {item[key]!r}"
            else:
                problem = f"argument '{key}'"
            msg = first["msg"].removeprefix("Value error, ")
            raise MedalsError(f"{where}: {problem}: {msg}") from None
        raise MedalsError(f"{where}: bad arguments ({str(exc).splitlines()[0]})") from None


# medals' own ops: name -> builder(kwargs without "name", where) returning an albumentations object.
CustomOp = Callable[[dict[str, Any], str], A.BasicTransform | A.BaseCompose]
CUSTOM_OPS: dict[str, CustomOp] = {}


def register_op(name: str, builder: CustomOp) -> None:
    """Make `{name: <name>, ...}` usable in train.augment (names must not shadow albumentations ones)."""
    if hasattr(A, name):
        raise ValueError(f"custom op name '{name}' is already an albumentations name")
    CUSTOM_OPS[name] = builder


def _policy_file(kwargs: dict[str, Any], where: str) -> A.BaseCompose:
    """OneOf over every sub-policy in a policies file (absolute, or relative to the recipe's folder)."""
    from medals.augment.policy import load_subpolicies, policy_to_spec

    for key in kwargs:
        if key not in ("path", "p"):
            raise MedalsError(f"{where}: unknown argument '{key}' (accepted: path, p)")
    path = kwargs.get("path")
    if not isinstance(path, str) or not path:
        raise MedalsError(f"{where}: key 'path' must name a policies file (JSON from a policy search)")
    if not Path(path).is_file():
        raise MedalsError(
            f"{where}: policies file {path} does not exist (a recipe with policy_search writes it in "
            f"the `search` stage: run `medals search` or `medals run` first)"
        )
    (one_of,) = policy_to_spec(load_subpolicies(path))
    return _build_op({**one_of, "p": kwargs.get("p", 1.0)}, f"{where} from {path}")


register_op("PolicyFile", _policy_file)
register_op("RandomSquareCropResize", build_random_square_crop)
register_op("ElasticAffine", build_elastic_affine)


RUN_DIR = "{run_dir}"  # in a PolicyFile path: the recipe's run directory (where `search` writes)


def with_base_dir(spec: list[dict] | None, base_dir: Path, run_dir: Path | None = None) -> list[dict] | None:
    """The spec with PolicyFile paths made absolute: "{run_dir}" becomes run_dir, then relative paths
    are taken against the recipe's folder."""
    if spec is None:
        return None
    out = []
    for op in spec:
        op = dict(op)
        if op.get("name") == "PolicyFile" and isinstance(op.get("path"), str):
            path = op["path"]
            if RUN_DIR in path:
                if run_dir is None:
                    raise MedalsError(
                        f"PolicyFile path '{path}' uses {RUN_DIR} but no run directory is known"
                    )
                path = path.replace(RUN_DIR, str(run_dir))
            op["path"] = str(base_dir / path)
        if isinstance(op.get("transforms"), list):
            op["transforms"] = with_base_dir(op["transforms"], base_dir, run_dir)
        out.append(op)
    return out


def iter_ops(spec: list[dict] | None) -> Iterator[dict]:
    """Every op of a spec, children (under "transforms") right after their compose op."""
    for op in spec or []:
        yield op
        if isinstance(op.get("transforms"), list):
            yield from iter_ops(op["transforms"])


def policy_files(spec: list[dict] | None) -> list[Path]:
    """The paths of the PolicyFile ops of a spec, in order."""
    return [
        Path(op["path"])
        for op in iter_ops(spec)
        if op.get("name") == "PolicyFile" and isinstance(op.get("path"), str)
    ]


def recipe_augment(recipe) -> list[dict] | None:
    """recipe.train.augment with its PolicyFile paths resolved (the recipe's folder, its run directory)."""
    return with_base_dir(recipe.train.augment, recipe.base_dir, recipe.run_path.resolve())


def training_augment(recipe) -> list[dict]:
    """The list a recipe trains with: recipe_augment, or the task's default list when it gives none."""
    spec = recipe_augment(recipe)
    return DEFAULT_AUGMENT[recipe.task] if spec is None else spec


def referenced_files_digest(spec: list[dict] | None) -> str:
    """Digest of the files a spec reads (policies files): results depend on their content too."""
    digest = hashlib.sha256()
    for op in spec or []:
        if op.get("name") == "PolicyFile" and isinstance(op.get("path"), str):
            path = Path(op["path"])
            digest.update(path.read_bytes() if path.is_file() else b"missing")
        if isinstance(op.get("transforms"), list):
            digest.update(referenced_files_digest(op["transforms"]).encode())
    return digest.hexdigest()[:16]


def build_ops(
    spec: list[dict] | None, where: str = "train.augment"
) -> list[A.BasicTransform | A.BaseCompose]:
    """The albumentations objects for a spec list (no Resize/Normalize added)."""
    if spec is None:
        return []
    if not isinstance(spec, list):
        raise MedalsError(f"{where} must be a list of ops, got {type(spec).__name__}")
    return [_build_op(item, f"{where}[{i}]") for i, item in enumerate(spec)]


def build_transform(
    spec: list[dict] | None,
    image_size: int,
    train: bool,
    task: str,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    normalize: str = "fixed",
) -> A.Compose:
    """The image(+mask) pipeline: augmentations (train only), Resize(image_size), normalisation.

    normalize "fixed": ChannelNormalize(mean, std); "image": ImageStandardize (each image's channels to
    mean 0, std 1; mean/std are not used).

    spec None means the task's default list (train only); [] means no augmentation. The output image is
    float32 HWC, the mask keeps its dtype; the dataset converts both to tensors.
    """
    if task not in DEFAULT_AUGMENT:
        raise MedalsError(f"unknown task '{task}' (expected one of {', '.join(DEFAULT_AUGMENT)})")
    # Built for validation too, so a bad spec fails at the first stage that reads it.
    augment = build_ops(DEFAULT_AUGMENT[task] if spec is None else spec)
    fill_size(augment, image_size)  # RandomSquareCropResize crops to the training size
    ops: list[Any] = augment if train else []
    ops.append(A.Resize(image_size, image_size, interpolation=cv2.INTER_LINEAR, p=1.0))
    if normalize == "image":
        ops.append(ImageStandardize())
    elif normalize == "fixed":
        ops.append(ChannelNormalize(mean, std))
    else:
        # "dataset" is resolved by the pipeline into fixed mean/std from prepare's measurement.
        raise MedalsError(f"train.normalize must be 'fixed' or 'image' here, got {normalize!r}")
    return A.Compose(ops)


def build_crop_transform(
    seed: int,
    image_size: int,
    task: str,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    base: A.Compose | None = None,
    **options: Any,
) -> A.Compose:
    """Crop TTA's eval pipeline: RandomSquareCropResize(image_size, p=1), then the validation pipeline.

    The validation pipeline (Resize + normalisation) is `base` when given (e.g. the eval dataset's own
    transform, so every train option applies), else build_transform([], ..., train=False, **options).
    The seed fixes the crop sequence of this Compose; infer.crop_seeds wraps the dataset in
    medals.augment.crop.SeededItems so each image's crop depends on (seed, image id) only.
    """
    if base is None:
        base = build_transform([], image_size, False, task, mean, std, **options)
    compose = A.Compose([RandomSquareCropResize(size=image_size, p=1.0), *base.transforms])
    compose.set_random_seed(seed)
    return compose
