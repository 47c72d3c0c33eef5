"""HPA1's RandomSquareCropResize augment op and crop TTA (infer.crop_seeds)."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from medals.augment.cpu import build_crop_transform, build_ops, build_transform
from medals.augment.crop import RandomSquareCropResize, SeededItems
from medals.config import Recipe
from medals.data.dataset import recipe_dataset
from medals.errors import MedalsError
from medals.infer.predict import predict_with_cls
from medals.infer.rows import predict_rows


def _image(h: int = 40, w: int = 48, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


@pytest.mark.parametrize(("shape", "size", "min_frac"), [((40, 48), 16, None), ((30, 30), 8, 0.5)])
def test_crop_side_stays_within_range_and_output_is_crop_size(shape, size, min_frac):
    op = RandomSquareCropResize(size=size, min_frac=min_frac, p=1.0)
    op.set_random_seed(3)
    low, high = op.side_range(*shape)
    assert high == min(shape)
    assert low == (size if min_frac is None else int(np.ceil(min_frac * min(shape))))
    image = _image(*shape)
    sides = []
    for _ in range(200):
        params = op.get_params_dependent_on_data({"shape": image.shape}, {"image": image})
        y, x, s = params["crop"]
        assert low <= s <= high and 0 <= y <= shape[0] - s and 0 <= x <= shape[1] - s
        sides.append(s)
        out = op.apply(image, **params)
        assert out.shape == (size, size, 3)
    assert min(sides) == low and max(sides) == high  # the whole range is drawn
    # Images smaller than the crop are taken whole and resized up.
    assert RandomSquareCropResize(size=50).side_range(40, 48) == (40, 40)


def test_mask_follows_the_crop():
    image = _image(c=1)
    mask = image[:, :, 0].copy()
    op = RandomSquareCropResize(size=16, interpolation=cv2.INTER_NEAREST)
    compose = A.Compose([op])
    compose.set_random_seed(1)
    for _ in range(10):
        out = compose(image=image, mask=mask)
        assert out["image"].shape == (16, 16, 1) and out["mask"].shape == (16, 16)
        np.testing.assert_array_equal(out["image"][:, :, 0], out["mask"])


def test_deterministic_per_seed():
    image = _image()

    def run(seed: int) -> list[np.ndarray]:
        t = build_transform([{"name": "RandomSquareCropResize"}], 16, train=True, task="multilabel")
        t.set_random_seed(seed)
        return [t(image=image)["image"] for _ in range(4)]

    a, b, c = run(5), run(5), run(6)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert not np.array_equal(a[0], a[1])  # consecutive calls draw new crops


def test_recipe_op_gets_the_image_size_and_p0_leaves_the_resize():
    image = _image()
    t = build_transform([{"name": "RandomSquareCropResize", "p": 0.0}], 16, train=True, task="multilabel")
    plain = build_transform([], 16, train=True, task="multilabel")
    np.testing.assert_array_equal(t(image=image)["image"], plain(image=image)["image"])
    # The size comes from image_size, also inside a compose; an explicit size wins.
    t = build_transform(
        [{"name": "OneOf", "transforms": [{"name": "RandomSquareCropResize", "min_frac": 0.5}], "p": 1.0}],
        24,
        train=True,
        task="multilabel",
    )
    assert t.transforms[0].transforms[0].size == 24
    (op,) = build_ops([{"name": "RandomSquareCropResize", "size": 12}])
    assert op.size == 12
    with pytest.raises(MedalsError, match="unknown argument 'scale'"):
        build_ops([{"name": "RandomSquareCropResize", "scale": 2}])
    with pytest.raises(MedalsError, match="min_frac"):
        build_ops([{"name": "RandomSquareCropResize", "min_frac": 1.5}])


class _Tiny(nn.Module):
    """1x1 conv + global average pool: the output depends on which part of the image is seen."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean(dim=(2, 3)) * 5 - 1


def _recipe(tmp_path, **infer) -> Recipe:
    return Recipe(
        name="t",
        task="multilabel",
        train={"image_size": 16, "batch_size": 4, "precision": "fp32"},
        infer={"tta": 2, **infer},
        model={"in_chans": 3},
        source=str(tmp_path / "recipe.yaml"),
    )


def _rows(tmp_path, n: int = 5) -> pd.DataFrame:
    paths = []
    for i in range(n):
        path = tmp_path / f"im{i}.png"
        cv2.imwrite(str(path), _image(40 + i, 48, seed=i))
        paths.append(str(path))
    return pd.DataFrame({"id": [f"im{i}" for i in range(n)], "path": paths})


def test_crop_tta_is_the_max_of_separate_crop_predictions(tmp_path):
    rows = _rows(tmp_path)
    model = _Tiny()
    recipe = _recipe(tmp_path, crop_seeds=3, merge="max")
    got, cls = predict_rows(recipe, model, rows, 4, "cpu", with_target=False)
    assert cls is None and got.shape == (5, 4)

    separate = []
    for seed in range(3):  # batch 1, in reverse order: crops depend on (seed, image id) only
        ds = recipe_dataset(recipe, rows, 4, train=False, with_target=False)
        ds.transform = build_crop_transform(seed, 16, "multilabel")
        loader = DataLoader(SeededItems(ds, seed), batch_size=1, sampler=list(range(4, -1, -1)))
        separate.append(predict_with_cls(model, loader, "multilabel", tta=2, merge="max")[0])
    np.testing.assert_allclose(got, np.maximum.reduce(separate), rtol=1e-6, atol=1e-7)
    assert not np.allclose(separate[0], separate[1])  # the seeds crop differently

    plain, _ = predict_rows(_recipe(tmp_path, merge="max"), model, rows, 4, "cpu", with_target=False)
    assert not np.allclose(got, plain)
    again, _ = predict_rows(recipe, model, rows, 4, "cpu", with_target=False)
    np.testing.assert_array_equal(got, again)


def test_crop_tta_refuses_segmentation():
    from medals.config import recipe_from_dict

    tree = {"name": "s", "task": "segmentation", "model": {"arch": "unet"}, "infer": {"crop_seeds": 2}}
    with pytest.raises(MedalsError, match="infer.crop_seeds"):
        recipe_from_dict(tree, "recipe.yaml")


def test_crop_transform_puts_the_crop_before_the_validation_pipeline():
    image = _image()
    t = build_crop_transform(2, 16, "multilabel")
    assert isinstance(t.transforms[0], RandomSquareCropResize) and len(t.transforms) == 3
    assert t(image=image)["image"].shape == (16, 16, 3)
    base = build_transform([], 16, train=False, task="multilabel", mean=[0, 0, 0], std=[1, 1, 1])
    t = build_crop_transform(2, 16, "multilabel", base=base)
    assert list(t.transforms[1:]) == list(base.transforms)
