"""OneOf, the albumentations op -> GpuOp conversion, and the GpuAugment pipeline with its fused warps.

The spec is first validated and normalised by albumentations 2.0.8 itself (augment_cpu.build_ops), so the
parameter ranges (symmetric limits, blur_limit rounding, child p weights of OneOf...) are read from the
albumentations objects and mean what they mean on the CPU path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

import medals.augment.gpu.kernels as kernels
from medals.augment.cpu import STANDARDIZE_EPS
from medals.augment.gpu.blur import Blur, GaussianBlur, MedianBlur, MotionBlur
from medals.augment.gpu.clahe import CLAHE
from medals.augment.gpu.color import (
    HueSaturationValue,
    RandomBrightnessContrast,
    RandomGamma,
    fuse_brightness_contrast,
)
from medals.augment.gpu.distortion import ElasticTransform, GridDistortion, OpticalDistortion
from medals.augment.gpu.dropout import CoarseDropout
from medals.augment.gpu.flips import Dihedral, HorizontalFlip, Transpose, VerticalFlip
from medals.augment.gpu.geometry import Affine
from medals.augment.gpu.kernels import pointwise
from medals.augment.gpu.noise import GaussNoise
from medals.augment.gpu.sampling import MAX_VALUE, GpuOp, apply_subset, host_rand, to_device
from medals.augment.gpu.warp import FusedWarps, Resize, Warp

NORMALIZE = ("fixed", "image")


class OneOf(GpuOp):
    """Bernoulli(p) per sample, then one child per sample with probability proportional to the children's
    p; the chosen child is always applied (albumentations' force_apply)."""

    def __init__(self, p, children: list[GpuOp], weights: Sequence[float]):
        super().__init__(p)
        self.children = children
        w = torch.tensor(list(weights), dtype=torch.float64)
        self.weights = w / w.sum()

    def choose(self, n: int, g: torch.Generator) -> torch.Tensor:
        """Which child each of n samples gets, on the generator's device (the host: nothing read back)."""
        choice = torch.multinomial(self.weights.to(g.device).expand(n, -1), 1, replacement=True, generator=g)
        return choice.squeeze(1)

    def apply(self, x, m, g):
        choice = self.choose(x.shape[0], g)
        for i, child in enumerate(self.children):
            x, m = apply_subset(child, choice == i, x, m, g)
        return x, m

    def entries(self, n, h, w, g, device) -> list[tuple]:
        """A fused run's (child, sample indices, params), drawn in the order `__call__` draws them."""
        chosen = (host_rand(n, g) < self.p).nonzero().squeeze(1)
        k = chosen.numel()
        if k == 0:
            return []
        choice = self.choose(k, g)
        out = []
        for i, child in enumerate(self.children):
            sub = (choice == i).nonzero().squeeze(1)
            if sub.numel() == 0:
                continue
            idx = chosen[sub]
            params = child.draw(sub.numel(), h, w, g, device)
            out.append((child, None if idx.numel() == n else to_device(idx, device), params))
        return out


def _simple(cls):
    def build(op):
        return cls(op.p)

    return build


def _attrs(cls, names):
    def build(op):
        return cls(op.p, *(getattr(op, k) for k in names))

    return build


def _with_op(cls):
    def build(op):
        return cls(op.p, op)

    return build


_BUILDERS = {
    "Transpose": _simple(Transpose),
    "VerticalFlip": _simple(VerticalFlip),
    "HorizontalFlip": _simple(HorizontalFlip),
    "RandomBrightnessContrast": _attrs(
        RandomBrightnessContrast,
        ["brightness_limit", "contrast_limit", "brightness_by_max", "ensure_safe_range"],
    ),
    "HueSaturationValue": _attrs(
        HueSaturationValue, ["hue_shift_limit", "sat_shift_limit", "val_shift_limit"]
    ),
    "GaussNoise": _attrs(GaussNoise, ["std_range", "mean_range", "per_channel", "noise_scale_factor"]),
    "MotionBlur": _attrs(MotionBlur, ["blur_limit", "angle_range", "direction_range", "allow_shifted"]),
    "MedianBlur": _attrs(MedianBlur, ["blur_limit"]),
    "Blur": _attrs(Blur, ["blur_limit"]),
    "RandomGamma": _attrs(RandomGamma, ["gamma_limit"]),
    "GaussianBlur": _attrs(GaussianBlur, ["blur_limit", "sigma_limit"]),
    "Affine": _with_op(Affine),
    "OpticalDistortion": _with_op(OpticalDistortion),
    "ShiftedOpticalDistortion": _with_op(OpticalDistortion),  # what medals builds for OpticalDistortion
    "GridDistortion": _with_op(GridDistortion),
    "ElasticTransform": _with_op(ElasticTransform),
    "CoarseElasticTransform": _with_op(ElasticTransform),  # what medals builds for ElasticTransform
    "CoarseDropout": _with_op(CoarseDropout),
    "CLAHE": _attrs(CLAHE, ["clip_limit", "tile_grid_size"]),
}
_MEDALS_NAMES = ("CoarseElasticTransform", "ShiftedOpticalDistortion")
SUPPORTED = (*(name for name in _BUILDERS if name not in _MEDALS_NAMES), "OneOf")


def _is_warp(op: GpuOp, kind: type = Warp) -> bool:
    if isinstance(op, OneOf):
        return all(isinstance(child, kind) for child in op.children)
    return isinstance(op, kind)


def plan_steps(ops: Sequence[GpuOp], image_size: int, fuse: bool = True) -> list:
    """The ops followed by Resize(image_size), with runs of consecutive warps fused, and runs of
    brightness/contrast ops (color.FusedBrightnessContrast).

    The Resize moves ahead of trailing ops that mean the same at any size (CoarseDropout with holes in
    fractions of the side), so that the last warps and the Resize sample once, at the training size. A
    run is fused when it has two or more ops and one of them is more than a flip or transpose (those alone
    stay exact index moves).
    """
    ops = list(ops)
    tail: list[GpuOp] = []
    while fuse and ops and getattr(ops[-1], "size_free", False):
        tail.insert(0, ops.pop())
    items = [*ops, Resize(image_size), *tail]
    if not fuse:
        return items
    items = fuse_brightness_contrast(items)  # one pass for a run of them, where the kernels run
    steps: list = []
    run: list[GpuOp] = []
    for item in [*items, None]:
        if item is not None and _is_warp(item):
            run.append(item)
            continue
        if len(run) >= 2 and not all(_is_warp(op, Dihedral) for op in run if not isinstance(op, Resize)):
            steps.append(FusedWarps(run))
        else:
            steps.extend(run)
        run = []
        if item is not None:
            steps.append(item)
    return steps


def convert(op: Any) -> GpuOp:
    """The GpuOp for one albumentations transform (NotImplementedError for ops not in SUPPORTED)."""
    name = type(op).__name__
    if name == "OneOf":
        children = [convert(t) for t in op.transforms]
        return OneOf(op.p, children, op.transforms_ps)
    if name not in _BUILDERS:
        raise NotImplementedError(
            f"augmentation op '{name}' has no GPU version (supported: {', '.join(SUPPORTED)})"
        )
    try:
        return _BUILDERS[name](op)
    except NotImplementedError as exc:  # a setting the device version lacks: say which op has it
        text = str(exc)
        raise NotImplementedError(text if text.startswith(name) else f"{name}: {text}") from None


def standardize(x: torch.Tensor, eps: float = STANDARDIZE_EPS) -> torch.Tensor:
    """augment_cpu.ImageStandardize on [B, C, H, W]: each image's channels to (x - mean) / max(std, eps),
    population std (ddof 0)."""
    std, mean = torch.std_mean(x, dim=(2, 3), correction=0, keepdim=True)
    return (x - mean) / std.clamp(min=eps)


class GpuAugment:
    """Spec ops, then Resize(image_size) and normalisation, on [B, C, H, W] batches.

    `aug(images, masks, generator)` takes images [B, C, H, W] (uint8, or float on the 0-255 scale) and
    optional masks [B, 1, H, W] (or [B, C, H, W], one channel per mask class) on any device, applies every op with a per-sample Bernoulli(p) and
    per-sample parameters drawn from the generator, then Resize(image_size) (bilinear without
    antialiasing like cv2.INTER_LINEAR; masks nearest) and normalises: "fixed" is (x / 255 - mean) / std,
    "image" standardises each image's channels by their own mean and std like augment_cpu.ImageStandardize
    (mean/std are then unused and may be None). Returns (float32 images [B, C, S, S], masks or None).

    Everything runs in float on the 0-255 scale with clipping after the pixel ops, so the uint8 rounding
    that the CPU path does between ops is not reproduced (differences below 1/255 after normalisation).
    With `fuse` (the default), consecutive warps and the Resize sample once (plan_steps, warp.FusedWarps),
    and consecutive brightness/contrast ops take one pass on CUDA; the random draws are the same either
    way.
    """

    def __init__(
        self,
        ops: list[GpuOp],
        image_size: int,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        normalize: str = "fixed",
        fuse: bool = True,
    ):
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
        if normalize == "fixed" and (mean is None or std is None):
            raise ValueError('normalize "fixed" needs mean and std')
        self.ops = ops
        self.image_size = int(image_size)
        self.steps = plan_steps(ops, self.image_size, fuse)
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self.normalize = normalize
        self.mean = None if mean is None else tuple(float(v) for v in mean)
        self.std = None if std is None else tuple(float(v) for v in std)

    def _mean_std(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed normalisation's mean and std as [1, C, 1, 1] on `device`, made once per device: on
        CUDA, building them per batch would be two copies to the device that wait on its stream."""
        if device not in self._constants:
            self._constants[device] = tuple(
                torch.tensor(v, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)
                for v in (self.mean, self.std)
            )
        return self._constants[device]

    def __call__(
        self,
        images: torch.Tensor,
        masks: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if images.ndim != 4:
            raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
        if masks is not None and (masks.ndim != 4 or masks.shape[0] != images.shape[0]):
            raise ValueError(f"masks must be [B, C, H, W] like the images, got {tuple(masks.shape)}")
        if self.normalize == "fixed" and (
            len(self.mean) != images.shape[1] or len(self.std) != images.shape[1]
        ):
            raise ValueError(f"mean/std have {len(self.mean)} values, the images {images.shape[1]} channels")
        if generator is None:
            # A host generator: every random choice is made on the host, none is read back from the device.
            generator = torch.Generator()
            generator.seed()
        # the ops write into their batch: never into the caller's tensors
        x = images.float() if images.dtype != torch.float32 else images.clone()
        m = None if masks is None else masks.clone()
        for step in self.steps:
            x, m = step(x, m, generator)
        if self.normalize == "image":
            return standardize(x), m
        mean, std = self._mean_std(x.device)
        # one pass instead of three (CUDA with Triton)
        if (out := kernels.attempt("normalize", x, pointwise.normalize, x, mean, std, MAX_VALUE)) is not None:
            return out, m
        return (x / MAX_VALUE - mean) / std, m


def build_gpu_transform(
    spec: list[dict] | None,
    image_size: int,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    normalize: str = "fixed",
    fuse: bool = True,
) -> GpuAugment:
    """The batched device pipeline for a `train.augment` spec (validated by albumentations first)."""
    from medals.augment.cpu import build_ops

    return GpuAugment([convert(op) for op in build_ops(spec)], image_size, mean, std, normalize, fuse)
