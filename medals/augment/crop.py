"""HPA1's random square crop (train augment and crop TTA).

`{name: RandomSquareCropResize, min_frac: null | float, p: 1.0}` in train.augment crops a square of side
s ~ U(lo, side) at a random position, side = the image's shorter side, lo = the crop size (train.image_size,
filled in by build_transform; an explicit `size` may be given instead) or min_frac * side when min_frac is
set, and resizes it to size x size. Masks follow (nearest neighbour). Images smaller than the crop size are
taken whole and resized up. HPA1's "one of 8 dihedral transforms" is HorizontalFlip + VerticalFlip +
Transpose at p 0.5 each, which already draws each of the 8 views with probability 1/8.

For crop TTA (infer.crop_seeds) SeededItems fixes every image's crop from (crop seed, image id), so a crop
does not depend on row order, batching or loader workers.
"""

from __future__ import annotations

import zlib
from typing import Any

import albumentations as A
import cv2
import numpy as np
from torch.utils.data import Dataset

from medals.errors import MedalsError


class RandomSquareCropResize(A.DualTransform):
    """Random square crop of side U(size or min_frac*side, side), resized to size x size; masks follow."""

    def __init__(
        self,
        size: int | None = None,
        min_frac: float | None = None,
        interpolation: int = cv2.INTER_LINEAR,
        mask_interpolation: int = cv2.INTER_NEAREST,
        p: float = 1.0,
    ):
        super().__init__(p=p)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"size must be a positive integer, got {size!r}")
        if min_frac is not None and not (
            isinstance(min_frac, int | float) and not isinstance(min_frac, bool) and 0 < min_frac <= 1
        ):
            raise ValueError(f"min_frac must be in (0, 1], got {min_frac!r}")
        self.size = size
        self.min_frac = None if min_frac is None else float(min_frac)
        self.interpolation = interpolation
        self.mask_interpolation = mask_interpolation

    def side_range(self, height: int, width: int) -> tuple[int, int]:
        """(lowest, highest) crop side for an image of this size."""
        side = min(height, width)
        if self.min_frac is not None:
            low = int(np.ceil(self.min_frac * side))
        else:
            if self.size is None:
                raise MedalsError(
                    "RandomSquareCropResize needs its size (build_transform sets train.image_size)"
                )
            low = self.size
        return max(1, min(low, side)), side

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        if self.size is None:
            raise MedalsError("RandomSquareCropResize needs its size (build_transform sets train.image_size)")
        height, width = params["shape"][:2]
        low, high = self.side_range(height, width)
        s = self.py_random.randint(low, high)
        y = self.py_random.randint(0, height - s)
        x = self.py_random.randint(0, width - s)
        return {"crop": (y, x, s)}

    def _crop_resize(self, img: np.ndarray, crop: tuple[int, int, int], interpolation: int) -> np.ndarray:
        y, x, s = crop
        out = cv2.resize(
            np.ascontiguousarray(img[y : y + s, x : x + s]),
            (self.size, self.size),
            interpolation=interpolation,
        )
        if img.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel
            out = out[:, :, None]
        return out

    def apply(self, img: np.ndarray, crop: tuple[int, int, int], **params: Any) -> np.ndarray:
        return self._crop_resize(img, crop, self.interpolation)

    def apply_to_mask(self, mask: np.ndarray, crop: tuple[int, int, int], **params: Any) -> np.ndarray:
        return self._crop_resize(mask, crop, self.mask_interpolation)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "min_frac", "interpolation", "mask_interpolation")


_ARGS = ("size", "min_frac", "interpolation", "mask_interpolation", "p")


def build_random_square_crop(kwargs: dict[str, Any], where: str) -> RandomSquareCropResize:
    """The train.augment builder (registered in augment_cpu); size None is filled by build_transform."""
    for key in kwargs:
        if key not in _ARGS:
            raise MedalsError(f"{where}: unknown argument '{key}' (accepted: {', '.join(_ARGS)})")
    try:
        return RandomSquareCropResize(**kwargs)
    except (TypeError, ValueError) as exc:
        raise MedalsError(f"{where}: {exc}") from None


def fill_size(ops: list[Any], size: int) -> None:
    """Give every RandomSquareCropResize without an explicit size (also inside composes) this size."""
    for op in ops:
        if isinstance(op, RandomSquareCropResize) and op.size is None:
            op.size = size
        children = getattr(op, "transforms", None)
        if isinstance(op, A.BaseCompose) and children is not None:
            fill_size(list(children), size)


def item_seed(seed: int, ident: str) -> int:
    """The transform seed for one image under crop seed `seed`."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(ident.encode())]).generate_state(1)[0])


class SeededItems(Dataset):
    """A dataset whose transform is reseeded before every item from (seed, the item's image id)."""

    def __init__(self, dataset: Any, seed: int):
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ids = getattr(self.dataset, "ids", None)
        ident = ids[index] if ids is not None else str(index)
        self.dataset.transform.set_random_seed(item_seed(self.seed, ident))
        return self.dataset[index]
