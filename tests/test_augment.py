from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pytest

from medals.augment.cpu import IMAGENET_MEAN, IMAGENET_STD, build_ops, build_transform
from medals.errors import MedalsError


def _image(h: int = 24, w: int = 32, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def test_spec_with_nested_compose_builds_the_named_ops():
    spec = [
        {"name": "HorizontalFlip", "p": 0.5},
        {
            "name": "OneOf",
            "p": 0.7,
            "transforms": [
                {"name": "MotionBlur", "blur_limit": 5},
                {"name": "GaussNoise", "std_range": (0.1, 0.2)},
                {"name": "SomeOf", "n": 1, "transforms": [{"name": "Transpose"}]},
            ],
        },
    ]
    ops = build_ops(spec)
    assert isinstance(ops[0], A.HorizontalFlip) and ops[0].p == 0.5
    one_of = ops[1]
    assert isinstance(one_of, A.OneOf) and one_of.p == 0.7
    assert [type(t).__name__ for t in one_of.transforms] == ["MotionBlur", "GaussNoise", "SomeOf"]
    assert isinstance(one_of.transforms[2].transforms[0], A.Transpose)
    assert one_of.transforms[1].std_range == (0.1, 0.2)

    t = build_transform(spec, 16, train=True, task="multiclass")
    names = [type(op).__name__ for op in t.transforms]
    assert names == ["HorizontalFlip", "OneOf", "Resize", "ChannelNormalize"]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ([{"name": "HorizontalFlipp"}], ["HorizontalFlipp"]),
        ([{"name": "HorizontalFlip", "prob": 0.5}], ["HorizontalFlip", "prob"]),
        # albumentations 1 argument names that albumentations 2 dropped
        ([{"name": "GaussNoise", "var_limit": (10, 50)}], ["GaussNoise", "var_limit"]),
        (
            [{"name": "OneOf", "transforms": [{"name": "MotionBlur", "blurlimit": 3}]}],
            ["MotionBlur", "blurlimit"],
        ),
        ([{"name": "OneOf", "transforms": [{"name": "Nope"}]}], ["Nope", "transforms[0]"]),
        # values albumentations' pydantic schemas reject
        ([{"name": "Affine", "scale": "big"}], ["Affine", "scale", "big"]),
        ([{"name": "HorizontalFlip", "p": 3}], ["HorizontalFlip", "'p'"]),
        ([{"name": "CoarseDropout", "num_holes_range": (4, 1)}], ["CoarseDropout", "num_holes_range"]),
        ([{"name": "OneOf"}], ["OneOf", "transforms"]),
        ([{"p": 0.5}], ["name"]),
        ([{"name": "ToTensorV2"}], ["ToTensorV2"]),
    ],
)
def test_bad_spec_names_the_op_and_key(spec, words):
    with pytest.raises(MedalsError) as info:
        build_transform(spec, 16, train=True, task="multiclass")
    for word in words:
        assert word in str(info.value)


def test_bad_spec_fails_even_for_validation_transform():
    with pytest.raises(MedalsError, match="Flipp"):
        build_transform([{"name": "Flipp"}], 16, train=False, task="multiclass")


def test_horizontal_flip_moves_image_and_mask_together():
    image = _image(12, 12)
    mask = np.zeros((12, 12), np.uint8)
    mask[2:5, 1:4] = 1
    # image_size equals the image size, so the appended Resize changes nothing.
    out = build_transform([{"name": "HorizontalFlip", "p": 1.0}], 12, train=True, task="segmentation")(
        image=image, mask=mask
    )
    plain = build_transform([], 12, train=True, task="segmentation")(image=image, mask=mask)
    np.testing.assert_array_equal(plain["mask"], mask)
    np.testing.assert_array_equal(out["mask"], mask[:, ::-1])
    np.testing.assert_allclose(out["image"], plain["image"][:, ::-1], atol=1e-6)


def test_geometric_affine_keeps_mask_aligned_with_image():
    # A mask that marks exactly the bright pixels stays marking the bright pixels after a rotation.
    image = np.zeros((32, 32, 3), np.uint8)
    image[8:20, 10:26] = 255
    mask = (image[:, :, 0] > 0).astype(np.uint8)
    spec = [{"name": "Affine", "rotate": (30, 30), "interpolation": 0, "p": 1.0}]
    out = build_transform(spec, 32, train=True, task="segmentation")(image=image, mask=mask)
    bright = out["image"][:, :, 0] > 0
    assert out["mask"].sum() > 50
    assert not np.array_equal(out["mask"], mask)
    np.testing.assert_array_equal(out["mask"].astype(bool), bright)


def test_validation_transform_is_resize_and_imagenet_normalise():
    image = _image(20, 30)
    t = build_transform(None, 16, train=False, task="multiclass")
    assert [type(op).__name__ for op in t.transforms] == ["Resize", "ChannelNormalize"]
    out = t(image=image)["image"]
    assert out.shape == (16, 16, 3) and out.dtype == np.float32
    resized = A.Resize(16, 16)(image=image)["image"].astype(np.float32)
    expected = (resized / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("channels", [1, 4])
def test_non_rgb_images_default_to_half_and_quarter(channels):
    image = np.full((10, 10, channels), 51, np.uint8)  # 0.2 after /255
    out = build_transform([], 10, train=True, task="multilabel")(image=image)["image"]
    assert out.shape == (10, 10, channels)
    np.testing.assert_allclose(out, (0.2 - 0.5) / 0.25, atol=1e-5)


def test_configured_mean_std_are_used_and_checked_against_channels():
    image = np.full((10, 10, 2), 255, np.uint8)
    t = build_transform([], 10, train=False, task="multiclass", mean=[0.0, 0.5], std=[1.0, 0.5])
    out = t(image=image)["image"]
    np.testing.assert_allclose(out[:, :, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(out[:, :, 1], 1.0, atol=1e-6)
    with pytest.raises(MedalsError, match="train.mean has 2 values but the images have 3 channels"):
        t(image=_image(10, 10, 3))


@pytest.mark.parametrize("task", ["multiclass", "multilabel", "segmentation"])
def test_default_train_augment_runs_and_varies(task):
    t = build_transform(None, 16, train=True, task=task)
    assert len(t.transforms) > 2
    t.set_random_seed(0)
    image = _image(24, 24)
    mask = np.zeros((24, 24), np.uint8)
    mask[:6, :12] = 1
    outs = [t(image=image, mask=mask) for _ in range(6)]
    for out in outs:
        assert out["image"].shape == (16, 16, 3) and out["mask"].shape == (16, 16)
    assert any(not np.allclose(outs[0]["image"], o["image"]) for o in outs[1:])


def test_empty_spec_means_no_augmentation():
    t = build_transform([], 16, train=True, task="multiclass")
    assert [type(op).__name__ for op in t.transforms] == ["Resize", "ChannelNormalize"]


def test_policy_files_walks_nested_compose_ops_in_order():
    from medals.augment.cpu import iter_ops, policy_files

    spec = [
        {"name": "PolicyFile", "path": "a.json"},
        {
            "name": "OneOf",
            "transforms": [{"name": "HorizontalFlip"}, {"name": "PolicyFile", "path": "b.json"}],
        },
        {"name": "VerticalFlip"},
    ]
    assert [op["name"] for op in iter_ops(spec)] == [
        "PolicyFile",
        "OneOf",
        "HorizontalFlip",
        "PolicyFile",
        "VerticalFlip",
    ]
    assert policy_files(spec) == [Path("a.json"), Path("b.json")]
    assert policy_files(None) == []
