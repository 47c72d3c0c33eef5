"""The GPU data path: CPU workers only read bytes, the device decodes, augments and normalises whole batches.

The CPU path (medals.data.dataset.ImageDataset + albumentations) decodes and augments one image at a time
in DataLoader workers; on a fast GPU a few CPU cores cannot keep up (about 21 images/s per core for the
melanoma list at 768 px). Here:

- EncodedDataset items carry a JPEG file's bytes undecoded, or the uint8 pixels of any other file (the
  prepare stage's resized .npy/.png cache, DICOM, TIFF, multi-file channels: what medals.data.io reads),
  plus the mask as uint8 (decoded from RLE on the worker, which is cheap), target, meta and index.
- DeviceBatcher turns such a batch into what the model eats: JPEGs decoded in one batched
  torchvision.io.decode_jpeg call on the device (nvjpeg on CUDA; the same call decodes on the CPU),
  the recipe's augmentation list run batched with per-sample random parameters
  (medals.augment.gpu), Resize(image_size) and normalisation, masks following every geometric op.

Augmentation runs at the images' own size, as on the CPU path, when a batch's images share one size;
a batch of mixed sizes is first resized to image_size (what a prepare cache does for every image).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from medals.data.dataset import ImageDataset
from medals.data.io import image_size
from medals.errors import MedalsError

JPEG_EXTS = (".jpg", ".jpeg")


def is_jpeg(path: str) -> bool:
    """A single plain JPEG file (not a multi-file or channel-selected path)."""
    return "|" not in path and "#" not in path and Path(path).suffix.lower() in JPEG_EXTS


class EncodedDataset(ImageDataset):
    """ImageDataset whose items hold undecoded JPEG bytes ("jpeg") or uint8 HWC pixels ("pixels").

    No transform runs here: DeviceBatcher decodes and augments on the device. Use collate_encoded as the
    DataLoader's collate_fn.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, transform=None, **kwargs)

    @staticmethod
    def collate_fn(items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_encoded(items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        item: dict[str, Any] = {"index": index}
        if is_jpeg(path):
            try:
                data = Path(path).read_bytes()
            except OSError:
                raise MedalsError(f"cannot read image {path}: file not found or unreadable") from None
            item["jpeg"] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            size = image_size(path) if self.task == "segmentation" and self.with_target else None
        else:
            pixels = self._image(index)
            item["pixels"] = torch.from_numpy(np.ascontiguousarray(pixels))
            size = pixels.shape[:2] if self.task == "segmentation" and self.with_target else None
        if size is not None:
            item["mask"] = torch.from_numpy(self._mask(index, tuple(size)))
        item.update(self.labels_and_meta(index))
        return item


def collate_encoded(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Images and masks stay per-item lists (sizes may differ); everything else is collated as usual."""
    out: dict[str, Any] = {
        "images": [item.get("jpeg", item.get("pixels")) for item in items],
        "is_jpeg": [("jpeg" in item) for item in items],
    }
    if "mask" in items[0]:
        out["masks"] = [item["mask"] for item in items]
    rest = [{k: v for k, v in item.items() if k in ("index", "target", "meta")} for item in items]
    out.update(default_collate(rest))
    return out


def _mask_chw(mask: torch.Tensor) -> torch.Tensor:
    """[C, H, W] of a worker's mask: H x W (one mask) or H x W x C (one channel per class)."""
    return mask[None] if mask.ndim == 2 else mask.permute(2, 0, 1)


class DeviceBatcher:
    """Decode, augment (train) or only resize (validation), and normalise a collated batch on `device`.

    `augment` is a medals.augment.gpu.GpuAugment: its ops are the recipe's list for training and
    none for validation; it ends with Resize(image_size) and the normalisation either way.
    """

    def __init__(self, augment: Any, in_chans: int, device: torch.device, channels_last: bool = False):
        self.augment = augment
        self.in_chans = int(in_chans)
        self.device = torch.device(device)
        self.channels_last = channels_last

    def _decode(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """uint8 [C, H, W] per image on the device, in batch order."""
        from torchvision.io import ImageReadMode, decode_jpeg

        images: list[torch.Tensor | None] = [None] * len(batch["images"])
        jpeg_at = [i for i, flag in enumerate(batch["is_jpeg"]) if flag]
        if jpeg_at:
            mode = ImageReadMode.GRAY if self.in_chans == 1 else ImageReadMode.RGB
            data = [batch["images"][i] for i in jpeg_at]
            try:
                with warnings.catch_warnings():
                    # torchvision 0.29 announces a move of its decoders to torchcodec; they still work.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    decoded = decode_jpeg(data, mode=mode, device=self.device)
            except RuntimeError as exc:
                ids = [int(batch["index"][i]) for i in jpeg_at]
                raise MedalsError(f"cannot decode a JPEG of dataset rows {ids}: {exc}") from None
            for i, image in zip(jpeg_at, decoded, strict=True):
                images[i] = image
        for i, flag in enumerate(batch["is_jpeg"]):
            if not flag:
                pixels = batch["images"][i].to(self.device, non_blocking=True)
                images[i] = pixels.permute(2, 0, 1) if pixels.ndim == 3 else pixels[None]
        return [self._channels(image, int(batch["index"][i])) for i, image in enumerate(images)]

    def _channels(self, image: torch.Tensor, index: int) -> torch.Tensor:
        channels = image.shape[0]
        if channels == self.in_chans:
            return image
        if channels == 1 and self.in_chans == 3:
            return image.expand(3, -1, -1)
        if channels == 4 and self.in_chans == 3:  # RGBA: alpha dropped, as medals.data.channels says
            return image[:3]
        raise MedalsError(
            f"dataset row {index} has {channels} channels but model.in_chans is {self.in_chans}"
        )

    def _stack(self, images: list[torch.Tensor], masks: list[torch.Tensor] | None):
        sizes = {tuple(image.shape[-2:]) for image in images}
        if len(sizes) == 1:
            x = torch.stack(images)
            m = torch.stack([_mask_chw(mk) for mk in masks]) if masks is not None else None
            return x, m
        # Mixed sizes cannot share one batched warp: bring each to the training size first.
        side = self.augment.image_size
        x = torch.cat(
            [
                F.interpolate(img[None].float(), size=(side, side), mode="bilinear", align_corners=False)
                for img in images
            ]
        )
        m = None
        if masks is not None:
            m = torch.cat(
                [
                    F.interpolate(_mask_chw(mk)[None].float(), size=(side, side), mode="nearest")
                    for mk in masks
                ]
            )
            m = m.to(torch.uint8)
        return x, m

    def __call__(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> dict[str, Any]:
        images = self._decode(batch)
        masks = batch.get("masks")
        if masks is not None:
            masks = [mask.to(self.device, non_blocking=True) for mask in masks]
        x, m = self._stack(images, masks)
        x, m = self.augment(x, m, generator)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out: dict[str, Any] = {"image": x, "index": batch["index"]}
        for key in ("target", "meta"):
            if key in batch:
                out[key] = batch[key].to(self.device, non_blocking=True)
        if m is not None:
            mask = m.float()
            out["mask"] = mask
            out["target"] = (mask > 0).flatten(1).any(dim=1).float()
        return out


def recipe_device_data(
    recipe, rows, num_classes: int, train: bool, device, channels_last: bool, with_target: bool = True
) -> tuple[EncodedDataset, DeviceBatcher]:
    """The dataset and batcher of the GPU data path for a recipe (train=True: with its augmentation)."""
    from medals.augment.cpu import default_mean_std, training_augment
    from medals.augment.gpu import build_gpu_transform

    cfg = recipe.train
    in_chans = recipe.model.in_chans
    spec = training_augment(recipe)
    mean, std = default_mean_std(in_chans)
    mean, std = cfg.mean or mean, cfg.std or std
    if cfg.normalize not in ("fixed", "image"):
        raise MedalsError(f"train.normalize must be 'fixed' or 'image' here, got {cfg.normalize!r}")
    augment = build_gpu_transform(spec if train else [], cfg.image_size, mean, std, normalize=cfg.normalize)
    dataset = EncodedDataset(
        rows,
        recipe.task,
        num_classes,
        in_chans=in_chans,
        rle_format=recipe.data.rle_format,
        with_target=with_target,
    )
    return dataset, DeviceBatcher(augment, in_chans, device, channels_last)
