"""Warps as coordinate maps (medals.augment.gpu.warp): OpenCV's borders on coordinates, and runs of
warps sampled once matching the op-by-op result."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from medals.augment.gpu import build_gpu_transform
from medals.augment.gpu.distortion import coarse_fields, field_points, lookup
from medals.augment.gpu.geometry import affine_matrices
from medals.augment.gpu.warp import FusedWarps, Stage, Warp, fold, pixel_grid, resample

ROOT = Path(__file__).resolve().parents[1]
MEL = ROOT / "recipes/melanoma_1st/9c_meta_b3_768_512_ext_18ep.yaml"
PNEUMO = ROOT / "recipes/pneumothorax_2nd/seg_unet_se50_1024.yaml"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RAW = ((0.0, 0.0, 0.0), (1 / 255,) * 3)  # mean/std that leave the 0-255 scale as it is


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _smooth(n: int, size: int, seed: int) -> torch.Tensor:
    """Images [n, 3, size, size] on 0-255 made of a few low-frequency waves (interpolation-friendly)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.zeros((n, 3, size, size), np.float32)
    for i in range(n):
        for c in range(3):
            fx, fy, phase = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.0), rng.uniform(0, 2 * math.pi)
            out[i, c] = 127.5 + 120 * np.sin(2 * math.pi * (fx * xx + fy * yy) + phase)
    return torch.from_numpy(out)


def _spec(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text())["train"]["augment"]


@pytest.mark.parametrize(
    ("kind", "flag"), [("reflect101", cv2.BORDER_REFLECT_101), ("reflect", cv2.BORDER_REFLECT)]
)
@pytest.mark.parametrize("size", [1, 2, 7])
def test_fold_is_opencv_border_interpolate(kind, flag, size):
    q = torch.arange(-3 * size - 2, 4 * size + 3, dtype=torch.float32)
    want = [cv2.borderInterpolate(int(v), size, flag) for v in q.tolist()]
    assert fold(q, size, kind).tolist() == want


def test_fold_replicate_and_constant_clamp():
    q = torch.tensor([-4.2, -0.3, 0.0, 3.5, 6.0, 9.9])
    for kind in ("replicate", "constant"):
        assert fold(q, 7, kind).tolist() == pytest.approx([0.0, 0.0, 0.0, 3.5, 6.0, 6.0])


class _Matrix(Warp):
    """Fixed forward pixel matrices [n, 3, 3] as a warp."""

    def __init__(self, matrix, mode, border, fill):
        super().__init__(1.0)
        self.inverse = torch.linalg.inv(matrix.double())
        self.mode, self.border, self.fill = mode, border, fill

    def inverse_matrix(self, params, h, w, device):
        return self.inverse.to(device)


def warp_affine(t, matrix, mode="bilinear", border="constant", fill=0.0):
    """cv2.warpAffine(t, matrix[:2]) per sample through medals' resampling, same output size."""
    _, _, h, w = t.shape
    out, _ = resample(t, None, [Stage(h, w, [(_Matrix(matrix, mode, border, fill), None, None)])], (h, w))
    return out


@pytest.mark.parametrize(
    ("border", "flag", "fill"),
    [
        ("constant", cv2.BORDER_CONSTANT, (40.0, 200.0, 90.0)),  # blended on coordinates
        ("constant", cv2.BORDER_CONSTANT, 0.0),  # grid_sample's zeros padding
        ("reflect101", cv2.BORDER_REFLECT_101, 0.0),
        ("reflect", cv2.BORDER_REFLECT, 0.0),
        ("replicate", cv2.BORDER_REPLICATE, 0.0),
    ],
)
def test_warp_affine_borders_match_cv2(border, flag, fill):
    # a shift, zoom-out and rotation that bring plenty of border into view
    img = _smooth(1, 48, seed=1)[0].permute(1, 2, 0).numpy().copy()
    t = torch.tensor
    mat = affine_matrices(48, 48, t([0.8]), t([0.8]), t([25.0]), t([7.0]), t([-5.0]))
    value = fill if isinstance(fill, tuple) else (fill,) * 3
    ref = cv2.warpAffine(
        img, mat[0, :2].numpy(), (48, 48), flags=cv2.INTER_LINEAR, borderMode=flag, borderValue=value
    )
    got = warp_affine(torch.from_numpy(img).permute(2, 0, 1)[None], mat, "bilinear", border, fill)
    diff = np.abs(got[0].permute(1, 2, 0).numpy() - ref)
    # cv2 quantises the sample coordinates to 1/32 px (OpenCV 4 also where a constant fill meets the
    # image): each bilinear weight is off by at most 1/64 per axis, so a pixel by at most 2/64 of the
    # value range it blends (image and fill); elsewhere the rest is below a grey level, and a mean that
    # small rules out any systematic shift.
    values = [float(img.min()), float(img.max()), *value]
    bound = max(2.0, (max(values) - min(values)) / 32)
    assert diff.max() < bound and diff.mean() < 0.3, (diff.max(), diff.mean(), bound)


def test_lookup_interpolates_tables_like_numpy():
    rng = np.random.default_rng(2)
    table = np.cumsum(rng.uniform(0.2, 2.0, (3, 9)), axis=1)
    q = rng.uniform(-2, 11, (3, 4, 5))
    got = lookup(torch.from_numpy(table).float(), torch.from_numpy(q).float())
    want = np.stack([np.interp(q[i], np.arange(9), table[i]) for i in range(3)])
    np.testing.assert_allclose(got.numpy(), want, atol=1e-4)


@pytest.mark.parametrize("sigma", [5.0, 50.0])
def test_elastic_fields_read_at_pixels_equal_the_upsampled_grid(sigma):
    # at pixel centres, field_points is F.interpolate of the grid (a full-resolution grid: itself)
    h, w = 64, 80
    fields = coarse_fields(2, 2, h, w, sigma, "uniform", _gen(3), torch.device("cpu"))
    assert fields.shape[-2:] == ((h, w) if sigma == 5.0 else (16, 20))  # 4x coarser: 16 cells a side
    upsampled = torch.nn.functional.interpolate(fields, size=(h, w), mode="bilinear", align_corners=False)
    got = field_points(fields, *pixel_grid(2, h, w, "cpu"), h, w)
    torch.testing.assert_close(got, upsampled, atol=1e-5, rtol=1e-5)


def _step_names(aug) -> list[str]:
    return [repr(s) if isinstance(s, FusedWarps) else type(s).__name__ for s in aug.steps]


def test_plans_fuse_the_recipes_last_warps_with_the_resize():
    mel = build_gpu_transform(_spec(MEL), 512, MEAN, STD)
    assert _step_names(mel)[-2:] == ["FusedWarps(Affine, Resize)", "CoarseDropout"]
    # the flips at the head of the list are followed by pixel ops: they stay index moves
    assert _step_names(mel)[:3] == ["Transpose", "VerticalFlip", "HorizontalFlip"]
    # its brightness and contrast ops are one step (one pass on CUDA, op by op here: the same result)
    assert [repr(s) for s in mel.steps][3] == "FusedBrightnessContrast(2 ops)"
    x = torch.rand(6, 3, 40, 40, generator=_gen(1)) * 255
    unfused = build_gpu_transform(_spec(MEL)[:5], 40, MEAN, STD, fuse=False)
    fused = build_gpu_transform(_spec(MEL)[:5], 40, MEAN, STD)
    assert torch.equal(fused(x, None, _gen(2))[0], unfused(x, None, _gen(2))[0])
    pneumo = build_gpu_transform(_spec(PNEUMO), 1024, MEAN, STD)
    assert _step_names(pneumo)[-1] == "FusedWarps(HorizontalFlip, Affine, Resize)"
    flips = build_gpu_transform([{"name": "HorizontalFlip", "p": 0.5}, {"name": "Transpose"}], 64, MEAN, STD)
    assert _step_names(flips) == ["HorizontalFlip", "Transpose", "Resize"]
    plain = build_gpu_transform(_spec(MEL), 512, MEAN, STD, fuse=False)
    assert not any(isinstance(s, FusedWarps) for s in plain.steps)
    assert _step_names(plain)[-2:] == ["CoarseDropout", "Resize"]
    # holes in pixels do not mean the same after the resize: the Resize stays after them
    pixels = [{"name": "Affine", "rotate": [-10, 10]}, {"name": "CoarseDropout", "hole_height_range": [4, 8]}]
    assert _step_names(build_gpu_transform(pixels, 32, MEAN, STD))[-2:] == ["CoarseDropout", "Resize"]


WARPS = [
    {"name": "HorizontalFlip", "p": 0.5},
    {
        "name": "OneOf",
        "p": 0.9,
        "transforms": [
            {"name": "OpticalDistortion", "distort_limit": 0.5, "border_mode": 4},
            {"name": "GridDistortion", "num_steps": 5, "distort_limit": 0.3, "border_mode": 4},
            {"name": "ElasticTransform", "alpha": 30, "sigma": 10, "border_mode": 4},
        ],
    },
    {"name": "Affine", "translate_percent": [-0.1, 0.1], "scale": [0.9, 1.1], "rotate": [-15, 15], "p": 0.8},
    {"name": "Transpose", "p": 0.5},
]


def test_a_fused_run_matches_op_by_op_warping_with_the_same_draws():
    x = _smooth(12, 64, seed=4)
    m = (x[:, :1] > 127.5).to(torch.uint8)
    fused = build_gpu_transform(WARPS, 48, *RAW)
    assert _step_names(fused) == ["FusedWarps(HorizontalFlip, OneOf, Affine, Transpose, Resize)"]
    out, mo = fused(x, m, _gen(5))
    ref, mref = build_gpu_transform(WARPS, 48, *RAW, fuse=False)(x, m, _gen(5))
    assert out.shape == ref.shape == (12, 3, 48, 48) and mo.shape == (12, 1, 48, 48)
    diff = (out - ref).abs()
    # same parameters, one interpolation instead of up to five: close, not equal. Away from the
    # constant fill's edges (where a sub-pixel shift of a 0 -> 255 step shows) within a few grey levels.
    edge = torch.nn.functional.max_pool2d(((out < 1) | (ref < 1)).float(), 5, 1, 2) > 0
    far = diff[~edge.expand_as(diff)]
    assert diff.mean() < 1.5 and diff.max() > 0, diff.mean()
    assert torch.quantile(far, 0.99) < 5.0, torch.quantile(far, 0.99)
    assert (mo == mref).float().mean() > 0.95

    # masks sampled at the image's own coordinates follow it closer than nearest-after-nearest does
    def on_image(img, mask):
        content = img[:, :1] > 1
        return ((img[:, :1] > 127.5) == (mask == 1))[content].float().mean()

    assert on_image(out, mo) > on_image(ref, mref) + 0.01
    # and the warps did move things: far from the plain resize of the input
    plain, _ = build_gpu_transform([], 48, *RAW)(x, m, _gen(5))
    assert (out - plain).abs().mean() > 10 * diff.mean()


def test_fused_nearest_run_keeps_masks_exactly_on_the_image():
    rng = np.random.default_rng(6)
    mask = torch.from_numpy((rng.random((6, 1, 40, 40)) > 0.5).astype(np.uint8))
    x = (mask * 255).repeat(1, 3, 1, 1).float()
    spec = [
        {"name": "OpticalDistortion", "distort_limit": 0.8, "border_mode": 4, "interpolation": 0},
        {"name": "Affine", "rotate": [-30, 30], "scale": [0.7, 1.2], "interpolation": 0, "p": 1.0},
        {"name": "VerticalFlip", "p": 0.5},
    ]
    aug = build_gpu_transform(spec, 40, *RAW)
    assert isinstance(aug.steps[0], FusedWarps)
    out, mo = aug(x, mask, _gen(7))
    assert not torch.equal(mo, mask)
    np.testing.assert_array_equal((out[:, 0] > 127).numpy(), mo[:, 0].numpy() == 1)


def test_samples_no_op_picked_come_through_unchanged():
    x = _smooth(16, 32, seed=8)
    spec = [
        {"name": "Affine", "rotate": [10, 20], "p": 0.4},
        {"name": "OpticalDistortion", "distort_limit": [0.5, 0.8], "p": 0.4},
    ]
    out, _ = build_gpu_transform(spec, 32, *RAW)(x, None, _gen(9))
    ref, _ = build_gpu_transform(spec, 32, *RAW, fuse=False)(x, None, _gen(9))
    same = (out - x).abs().flatten(1).amax(1) < 1e-3
    assert 0 < int(same.sum()) < 16
    assert torch.equal(same, (ref - x).abs().flatten(1).amax(1) < 1e-3)


def test_whole_melanoma_list_fused_is_close_to_op_by_op():
    x = _smooth(8, 96, seed=10)
    fused, _ = build_gpu_transform(_spec(MEL), 64, MEAN, STD)(x, None, _gen(11))
    plain, _ = build_gpu_transform(_spec(MEL), 64, MEAN, STD, fuse=False)(x, None, _gen(11))
    # the same draws; the dropout hole lands within a pixel of where it did, hence a few edge pixels
    close = ((fused - plain).abs() < 0.1).float().mean()
    assert close > 0.9, close


def test_samples_the_affine_skipped_are_plainly_resized_to_the_edge():
    # an upscaling Resize reaches up to half a pixel past the edge; that is clamped, so no fill bleeds
    # into the samples the affine left alone
    x = _smooth(16, 32, seed=16)
    spec = [{"name": "Affine", "rotate": [-20, 20], "scale": [0.8, 0.9], "p": 0.5}]
    aug = build_gpu_transform(spec, 48, *RAW)
    assert _step_names(aug) == ["FusedWarps(Affine, Resize)"]
    out, _ = aug(x, None, _gen(17))
    plain, _ = build_gpu_transform([], 48, *RAW)(x, None, _gen(17))
    same = (out - plain).abs().flatten(1).amax(1) < 1e-3
    assert 0 < int(same.sum()) < 16


def test_oneof_children_with_different_borders_fuse_like_op_by_op():
    x = _smooth(12, 48, seed=18)
    m = (x[:, :1] > 127.5).to(torch.uint8)
    spec = [
        {
            "name": "OneOf",
            "p": 1.0,
            "transforms": [
                {"name": "Affine", "rotate": [-30, 30], "scale": [0.6, 0.8], "border_mode": 0, "fill": 100},
                {"name": "OpticalDistortion", "distort_limit": 0.6, "border_mode": 4},
                {"name": "Affine", "translate_percent": [0.2, 0.3], "border_mode": 1},
            ],
        },
        {"name": "VerticalFlip", "p": 0.5},
    ]
    out, mo = build_gpu_transform(spec, 32, *RAW)(x, m, _gen(19))
    ref, mref = build_gpu_transform(spec, 32, *RAW, fuse=False)(x, m, _gen(19))
    diff = (out - ref).abs()
    # the fill (100) is grey: mid-level steps at its edges, otherwise within a few levels
    assert diff.mean() < 2.0 and torch.quantile(diff, 0.95) < 6.0, (diff.mean(), torch.quantile(diff, 0.95))
    assert (mo == mref).float().mean() > 0.95
    filled = ((out - 100).abs() < 1e-3).flatten(1).float().mean(1)
    assert (filled > 0.05).any() and (filled == 0).any()  # the zoomed-out affine showed its fill


def test_transpose_in_a_run_needs_square_images_unless_it_takes_them_all():
    spec = [{"name": "Transpose", "p": 0.5}, {"name": "Affine", "rotate": [-5, 5]}]
    aug = build_gpu_transform(spec, 16, *RAW)
    with pytest.raises(ValueError, match="square"):
        aug(_smooth(8, 24, seed=12)[..., :20], None, _gen(13))
    # a Transpose that takes every sample swaps the frame for all of them alike
    x = _smooth(2, 24, seed=14)[..., :20]  # 24 high, 20 wide
    every = [{"name": "Transpose", "p": 1.0}, {"name": "Affine", "rotate": [0, 0]}]
    fused = build_gpu_transform(every, 24, *RAW)
    assert _step_names(fused)[0].startswith("FusedWarps(Transpose, Affine")
    out, _ = FusedWarps(fused.steps[0].ops[:2])(x, None, _gen(15))
    assert out.shape == (2, 3, 20, 24)
    torch.testing.assert_close(out, x.transpose(-2, -1), atol=1e-3, rtol=0)
