"""medals.augment.gpu against albumentations 2.0.8 / cv2 on CPU tensors."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
import yaml
from albumentations.augmentations.geometric import functional as fgeometric
from albumentations.augmentations.pixel import functional as fpixel

from medals.augment.cpu import ImageStandardize
from medals.augment.gpu import build_gpu_transform
from medals.augment.gpu.blur import (
    filter_per_sample,
    gaussian_kernel_1d,
    median_blur,
    motion_kernel,
    sample_odd,
)
from medals.augment.gpu.color import brightness_contrast, shift_hsv
from medals.augment.gpu.distortion import GridDistortion, coarse_factor, coarse_fields, field_points
from medals.augment.gpu.geometry import affine_matrices
from medals.augment.gpu.warp import pixel_grid

ROOT = Path(__file__).resolve().parents[1]
MEL = ROOT / "recipes/melanoma_1st/9c_meta_b3_768_512_ext_18ep.yaml"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _images(n: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8))


def _raw(spec, x, m=None, seed=0):
    """Apply a spec without Resize/Normalize changing anything: size kept, back to the 0-255 scale."""
    aug = build_gpu_transform(spec, x.shape[-1], (0, 0, 0), (1 / 255,) * 3)
    out, mo = aug(x, m, _gen(seed))
    return out, mo


@pytest.mark.parametrize(
    ("name", "fn"),
    [
        ("HorizontalFlip", lambda a: a[..., ::-1]),
        ("VerticalFlip", lambda a: a[..., ::-1, :]),
        ("Transpose", lambda a: np.swapaxes(a, -1, -2)),
    ],
)
def test_dihedral_exact(name, fn):
    x = _images()
    m = (x[:, :1] > 128).to(torch.uint8)
    out, mo = _raw([{"name": name, "p": 1.0}], x, m)
    np.testing.assert_array_equal(out.round().to(torch.uint8).numpy(), fn(x.numpy()))
    np.testing.assert_array_equal(mo.numpy(), fn(m.numpy()))


def test_p0_identity_and_normalisation():
    x = _images()
    aug = build_gpu_transform([{"name": "HorizontalFlip", "p": 0.0}], 32, MEAN, STD)
    out, _ = aug(x, None, _gen())
    ref = A.Normalize(mean=MEAN, std=STD, max_pixel_value=255.0, p=1.0)
    for i in range(len(x)):
        expect = ref(image=x[i].permute(1, 2, 0).numpy())["image"]
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), expect, atol=1e-5)


def test_image_normalize_matches_image_standardize():
    x = _images(6, 32, seed=3)
    x[1, 2] = 77  # a flat channel: std 0 -> eps, so 0 like the CPU path
    x[2] = x[2] // 16  # low contrast image
    aug = build_gpu_transform([{"name": "HorizontalFlip", "p": 0.0}], 32, None, None, normalize="image")
    out, _ = aug(x, None, _gen())
    ref = ImageStandardize(p=1.0)
    for i in range(len(x)):
        expect = ref(image=x[i].permute(1, 2, 0).numpy())["image"]
        np.testing.assert_allclose(out[i].permute(1, 2, 0).numpy(), expect, atol=1e-5)
    assert (out[1, 2] == 0).all()
    # after augmentation and resize: each channel of each output image has mean 0, std 1
    spec = [{"name": "RandomBrightnessContrast", "p": 1.0}, {"name": "HorizontalFlip", "p": 0.5}]
    out, _ = build_gpu_transform(spec, 24, MEAN, STD, normalize="image")(x[[0, 3, 4]], None, _gen(1))
    assert out.shape == (3, 3, 24, 24)
    std, mean = torch.std_mean(out, dim=(2, 3), correction=0)
    assert mean.abs().max() < 1e-5 and (std - 1).abs().max() < 1e-4
    with pytest.raises(ValueError, match="normalize"):
        build_gpu_transform([], 32, MEAN, STD, normalize="dataset")
    with pytest.raises(ValueError, match="mean and std"):
        build_gpu_transform([], 32, None, None)


def test_probability_binomial():
    n = 400
    x = torch.zeros((n, 1, 4, 4), dtype=torch.uint8)
    x[..., 0] = 255  # left column bright: a flip moves it
    for p, lo, hi in ((0.0, 0, 0), (1.0, n, n), (0.5, 170, 230)):  # 0.5: > 3 sigma (10) each side
        aug = build_gpu_transform([{"name": "HorizontalFlip", "p": p}], 4, (0,), (1 / 255,))
        out, _ = aug(x, None, _gen(1))
        flipped = int((out[:, 0, 0, -1] > 128).sum())
        assert lo <= flipped <= hi


def test_oneof_weights_and_p():
    n = 400
    x = torch.zeros((n, 1, 4, 4), dtype=torch.uint8)
    x[..., 0, 0] = 255  # top-left corner
    spec = [
        {
            "name": "OneOf",
            "p": 0.5,
            "transforms": [{"name": "HorizontalFlip", "p": 0.75}, {"name": "VerticalFlip", "p": 0.25}],
        }
    ]
    aug = build_gpu_transform(spec, 4, (0,), (1 / 255,))
    out, _ = aug(x, None, _gen(2))
    h = int((out[:, 0, 0, -1] > 128).sum())
    v = int((out[:, 0, -1, 0] > 128).sum())
    assert 120 <= h <= 180  # 400 * 0.5 * 0.75 = 150
    assert 30 <= v <= 70  # 400 * 0.5 * 0.25 = 50


def test_brightness_contrast_matches_albumentations_and_ranges():
    img = _images(1, 16)[0].permute(1, 2, 0).numpy().copy()
    t = A.RandomBrightnessContrast(p=1.0)
    for alpha, beta in ((1.15, 0.0), (0.85, 20.0), (1.0, -40.0), (1.2, 51.0)):
        ref = t.apply(img, alpha=alpha, beta=beta)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
        got = brightness_contrast(x, torch.tensor([alpha]), torch.tensor([beta]))[0].permute(1, 2, 0)
        assert np.abs(got.numpy() - ref.astype(np.float32)).max() <= 1.0
    # ranges: brightness 0.2 shifts a mid-grey image by at most 0.2 * 255, contrast 0.2 scales by 0.8..1.2
    grey = torch.full((200, 3, 4, 4), 100, dtype=torch.uint8)
    out, _ = _raw(
        [{"name": "RandomBrightnessContrast", "brightness_limit": 0.2, "contrast_limit": 0.0, "p": 1}], grey
    )
    shift = out.mean(dim=(1, 2, 3)) - 100
    assert shift.abs().max() <= 0.2 * 255 + 1e-3 and shift.std() > 15
    out, _ = _raw(
        [{"name": "RandomBrightnessContrast", "brightness_limit": 0.0, "contrast_limit": 0.2, "p": 1}], grey
    )
    ratio = out.mean(dim=(1, 2, 3)) / 100
    assert ratio.min() >= 0.8 - 1e-4 and ratio.max() <= 1.2 + 1e-4 and ratio.std() > 0.05


def test_hsv_close_to_albumentations():
    img = _images(1, 32, seed=3)[0].permute(1, 2, 0).numpy().copy()
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    for hue, sat, val in ((7.0, 0.0, 0.0), (0.0, 15.0, 0.0), (0.0, 0.0, -9.0), (-5.0, -12.0, 8.0)):
        ref = fpixel.shift_hsv(img, hue, sat, val).astype(np.float32)
        got = shift_hsv(x, torch.tensor([hue]), torch.tensor([sat]), torch.tensor([val]))[0]
        diff = np.abs(got.permute(1, 2, 0).numpy() - ref)
        assert diff.mean() < 2.0, (hue, sat, val, diff.mean())
    # zero shift is (numerically) the identity
    same = shift_hsv(x, torch.zeros(1), torch.zeros(1), torch.zeros(1))
    assert (same - x).abs().max() < 1e-3


def test_affine_mask_follows_image_and_matrix_matches_albumentations():
    rng = np.random.default_rng(4)
    mask = torch.from_numpy((rng.random((6, 1, 40, 40)) > 0.5).astype(np.uint8))
    x = (mask * 255).repeat(1, 3, 1, 1)
    spec = [
        {
            "name": "Affine",
            "translate_percent": [-0.1, 0.1],
            "scale": [0.9, 1.1],
            "keep_ratio": True,
            "rotate": [-15, 15],
            "border_mode": 0,
            "fill": 0,
            "interpolation": 0,
            "p": 1.0,
        }
    ]
    out, mo = _raw(spec, x, mask, seed=5)
    assert not torch.equal(mo, mask)
    np.testing.assert_array_equal((out[:, 0] > 127).numpy(), mo[:, 0].numpy() == 1)
    # the matrix albumentations' Affine hands to cv2.warpAffine (the warp itself against cv2.warpAffine:
    # tests/test_gpu_warp_fusion.py)
    t = torch.tensor
    mat = affine_matrices(40, 40, t([1.07]), t([1.07]), t([12.0]), t([3.0]), t([-2.0]))
    ref_mat = fgeometric.create_affine_transformation_matrix(
        {"x": 3, "y": -2}, {"x": 0, "y": 0}, {"x": 1.07, "y": 1.07}, 12.0, fgeometric.center((40, 40))
    )
    np.testing.assert_allclose(mat[0].numpy(), ref_mat, atol=1e-5)


@pytest.mark.parametrize(("ksize", "sigma"), [(3, 0.8), (5, 1.1), (5, 0.9)])
def test_gaussian_kernel_equals_cv2(ksize, sigma):
    imp = np.zeros((15, 15), np.float32)
    imp[7, 7] = 1.0
    ref = cv2.GaussianBlur(imp, (ksize, ksize), sigma)
    k1 = gaussian_kernel_1d(sigma, ksize)
    got = filter_per_sample(torch.from_numpy(imp)[None, None], [np.outer(k1, k1)])[0, 0]
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)


def test_motion_kernel_and_filter_match_cv2():
    img = _images(1, 20, seed=7)[0].permute(1, 2, 0).numpy().astype(np.float32)
    k = motion_kernel(5, 30.0, 0.3, (0.2, -0.4))
    ref = cv2.filter2D(img, -1, k)  # reflect-101 border
    got = filter_per_sample(torch.from_numpy(img).permute(2, 0, 1)[None], [k])[0].permute(1, 2, 0)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-3)
    assert abs(k.sum() - 1) < 1e-6


def _structured(h: int, w: int, seed: int) -> np.ndarray:
    """uint8 HxWx3: a ramp, stripes with long ties, salt and pepper at 0/255, a flat block, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = (xx * 255 // max(1, w - 1)).astype(np.uint8)
    stripes = np.where((xx // 2 + yy // 3) % 2 == 0, 0, 255).astype(np.uint8)
    salt = np.where(rng.random((h, w)) < 0.3, rng.choice([0, 255], (h, w)), 128).astype(np.uint8)
    img = np.stack([ramp, stripes, salt], -1)
    img[h // 4 : h // 2, w // 4 : w // 2] = 77
    img[-3:] = rng.integers(0, 256, (3, w, 3), dtype=np.uint8)
    return img


@pytest.mark.parametrize("ksize", [3, 5, 7])
@pytest.mark.parametrize(("h", "w"), [(20, 20), (17, 31), (40, 9)])
@pytest.mark.parametrize("kind", ["random", "structured"])
def test_median_equals_cv2(ksize, h, w, kind):
    if kind == "random":
        img = np.random.default_rng(8 + ksize).integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        img = _structured(h, w, seed=ksize)
    ref = cv2.medianBlur(img, ksize)  # replicate border
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    for x in (t.float(), t):
        got = median_blur(x, ksize)
        assert got.dtype == x.dtype
        np.testing.assert_array_equal(got[0].permute(1, 2, 0).numpy().astype(np.uint8), ref)


def test_median_rounds_float_levels_like_uint8():
    img = np.random.default_rng(18).integers(0, 256, (2, 3, 16, 24), dtype=np.uint8)
    jitter = torch.from_numpy(np.random.default_rng(19).uniform(-0.49, 0.49, img.shape).astype(np.float32))
    x = (torch.from_numpy(img).float() + jitter).clamp(-0.4, 255.4)
    got = median_blur(x, 5)
    for i in range(2):
        ref = cv2.medianBlur(np.ascontiguousarray(img[i].transpose(1, 2, 0)), 5)
        np.testing.assert_array_equal(got[i].permute(1, 2, 0).numpy().astype(np.uint8), ref)


def test_median_blur_op_per_sample_sizes_equal_cv2():
    x = _images(12, 24, seed=20)
    out, _ = _raw([{"name": "MedianBlur", "blur_limit": [3, 7], "p": 1.0}], x)
    used = set()
    for i in range(12):
        img = np.ascontiguousarray(x[i].permute(1, 2, 0).numpy())
        got = out[i].permute(1, 2, 0).round().numpy().astype(np.uint8)
        match = [k for k in (3, 5, 7) if np.array_equal(got, cv2.medianBlur(img, k))]
        assert match, i
        used.update(match)
    assert used == {3, 5, 7}


def test_kernel_sizes_sampled_like_albumentations():
    sizes = sample_odd(3, 5, 400, _gen(9))
    assert set(sizes.tolist()) == {3, 5}
    assert 150 <= int((sizes == 5).sum()) <= 250


def test_coarse_dropout_holes():
    n, s = 50, 64
    x = torch.full((n, 3, s, s), 200, dtype=torch.uint8)
    m = torch.ones((n, 1, s, s), dtype=torch.uint8)
    spec = [
        {
            "name": "CoarseDropout",
            "num_holes_range": [1, 1],
            "hole_height_range": [0.375, 0.375],
            "hole_width_range": [0.375, 0.375],
            "fill": 0,
            "p": 1.0,
        }
    ]
    out, mo = _raw(spec, x, m, seed=10)
    side = int(0.375 * s)
    holes = out[:, 0] < 1
    assert (holes.sum(dim=(1, 2)) == side * side).all()
    rows, cols = holes.any(2).sum(1), holes.any(1).sum(1)
    assert (rows == side).all() and (cols == side).all()
    assert torch.equal(mo, m)  # albumentations 2: fill_mask None leaves masks alone
    spec[0]["fill_mask"] = 0
    out, mo = _raw(spec, x, m, seed=10)
    assert torch.equal(mo[:, 0] == 0, out[:, 0] < 1)
    # pixel ranges: sizes within [lo, hi]
    spec = [
        {
            "name": "CoarseDropout",
            "num_holes_range": [1, 3],
            "hole_height_range": [4, 9],
            "hole_width_range": [5, 6],
            "fill": 0,
            "p": 1.0,
        }
    ]
    op = build_gpu_transform(spec, s, MEAN, STD).ops[0]
    x0, y0, x1, y1, valid = op.holes(200, s, s, _gen(11), torch.device("cpu"))
    hh, ww = (y1 - y0)[valid], (x1 - x0)[valid]
    assert hh.min() >= 4 and hh.max() <= 9 and ww.min() >= 5 and ww.max() <= 6
    assert (x0 >= 0).all() and (x1 <= s).all() and (y0 >= 0).all() and (y1 <= s).all()
    assert set(valid.sum(1).tolist()) == {1, 2, 3}


def test_optical_distortion_maps_equal_cv2():
    spec = [{"name": "OpticalDistortion", "distort_limit": [0.4, 0.4], "p": 1.0}]
    op = build_gpu_transform(spec, 24, MEAN, STD).ops[0]
    mx, my = op.points(op.draw(1, 20, 24, _gen(), "cpu"), *pixel_grid(1, 20, 24, "cpu"), 20, 24)
    rx, ry = fgeometric.get_camera_matrix_distortion_maps((20, 24), 0.4)
    np.testing.assert_allclose(mx[0].numpy(), rx, atol=1e-3)
    np.testing.assert_allclose(my[0].numpy(), ry, atol=1e-3)


def test_grid_distortion_axis_equals_albumentations():
    rng = np.random.default_rng(15)
    for size in (30, 33):
        sx, sy = (1 + rng.uniform(-1, 1, 6)).tolist(), (1 + rng.uniform(-1, 1, 6)).tolist()
        rx, ry = fgeometric.generate_grid((size, size + 3), sx, sy, 5)
        np.testing.assert_allclose(GridDistortion._axis(size + 3, sx, 5), rx[0], atol=1e-4)
        np.testing.assert_allclose(GridDistortion._axis(size, sy, 5), ry[:, 0], atol=1e-4)


def test_distortions_keep_masks_aligned():
    rng = np.random.default_rng(16)
    mask = torch.from_numpy((rng.random((4, 1, 32, 32)) > 0.5).astype(np.uint8))
    x = (mask * 255).repeat(1, 3, 1, 1)
    for op in (
        {"name": "OpticalDistortion", "distort_limit": 1.0, "border_mode": 4, "interpolation": 0},
        {
            "name": "GridDistortion",
            "num_steps": 5,
            "distort_limit": 1.0,
            "normalized": False,
            "border_mode": 4,
            "interpolation": 0,
        },
        {"name": "ElasticTransform", "alpha": 30, "sigma": 5, "border_mode": 4, "interpolation": 0},
        # sigma 50: fields from the coarse grid, upsampled
        {"name": "ElasticTransform", "alpha": 3000, "sigma": 50, "border_mode": 4, "interpolation": 0},
    ):
        out, mo = _raw([{**op, "p": 1.0}], x, mask, seed=17)
        assert not torch.equal(mo, mask), op["name"]
        np.testing.assert_array_equal((out[:, 0] > 127).numpy(), mo[:, 0].numpy() == 1)


def displacement_fields(n, c, h, w, sigma, dist, g):
    """The ElasticTransform op's fields read at every pixel, as its coordinate map reads them."""
    fields = coarse_fields(n, c, h, w, sigma, dist, g, torch.device("cpu"))
    return field_points(fields, *pixel_grid(n, h, w, "cpu"), h, w)


def _full_resolution_fields(n, c, h, w, sigma, dist, g):
    """The elastic fields as first built: noise at every pixel smoothed by a 4-sigma Gaussian (reference)."""
    shape = (n, c, h, w)
    if dist == "gaussian":
        f = torch.randn(shape, generator=g, dtype=torch.float32)
        f = f / f.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
    else:
        f = 2 * torch.rand(shape, generator=g, dtype=torch.float32) - 1
    radius = max(1, min(int(4 * sigma + 0.5), h - 1, w - 1))
    xs = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (xs / sigma) ** 2)
    k = k / k.sum()
    f = f.reshape(n * c, 1, h, w)
    f = torch.nn.functional.conv2d(
        torch.nn.functional.pad(f, (radius, radius, 0, 0), mode="reflect"), k.reshape(1, 1, 1, -1)
    )
    f = torch.nn.functional.conv2d(
        torch.nn.functional.pad(f, (0, 0, radius, radius), mode="reflect"), k.reshape(1, 1, -1, 1)
    )
    return f.reshape(n, c, h, w)


@pytest.mark.parametrize("dist", ["uniform", "gaussian"])
@pytest.mark.parametrize("sigma", [5.0, 7.9])
def test_elastic_small_sigma_keeps_full_resolution_fields(dist, sigma):
    assert coarse_factor(sigma, 40, 56) == 1
    got = coarse_fields(3, 2, 40, 56, sigma, dist, _gen(21), torch.device("cpu"))
    assert torch.equal(got, _full_resolution_fields(3, 2, 40, 56, sigma, dist, _gen(21)))


def _rms_and_correlation(f: torch.Tensor, lag: int) -> tuple[float, float]:
    """Root mean square of zero-mean fields and their autocorrelation at `lag` px (x and y averaged)."""
    f = f.double()
    power = f.pow(2).mean()
    cx = (f[..., :, :-lag] * f[..., :, lag:]).mean()
    cy = (f[..., :-lag, :] * f[..., lag:, :]).mean()
    return power.sqrt().item(), ((cx + cy) / (2 * power)).item()


@pytest.mark.parametrize(
    ("size", "n", "dist"), [(256, 32, "uniform"), (512, 8, "gaussian"), (768, 4, "uniform")]
)
def test_elastic_coarse_fields_match_full_resolution_statistics(size, n, dist):
    sigma, h, w = 50.0, size, size + size // 4
    assert coarse_factor(sigma, h, w) == 12
    coarse = displacement_fields(n, 2, h, w, sigma, dist, _gen(22))
    full = _full_resolution_fields(n, 2, h, w, sigma, dist, _gen(23))
    rms_c, corr_c = _rms_and_correlation(coarse, int(sigma))
    rms_f, corr_f = _rms_and_correlation(full, int(sigma))
    # a Gaussian-smoothed white field correlates as exp(-d^2 / (4 sigma^2)): 0.78 at d = sigma
    assert abs(rms_c / rms_f - 1) < 0.15, (rms_c, rms_f)
    assert abs(corr_c - corr_f) < 0.1 and 0.65 < corr_c < 0.85, (corr_c, corr_f)


def _mel_spec():
    return yaml.safe_load(MEL.read_text())["train"]["augment"]


def test_melanoma_list_runs_and_is_deterministic():
    x = _images(8, 64, seed=12)
    m = (x[:, :1] > 128).to(torch.uint8)
    aug = build_gpu_transform(_mel_spec(), 32, MEAN, STD)
    out, mo = aug(x, m, _gen(13))
    assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32
    assert mo.shape == (8, 1, 32, 32) and mo.dtype == torch.uint8
    assert torch.isfinite(out).all()
    lo = (0 - torch.tensor(MEAN)) / torch.tensor(STD)
    hi = (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    per_c = out.transpose(0, 1).reshape(3, -1)
    assert (per_c.min(1).values >= lo - 1e-4).all() and (per_c.max(1).values <= hi + 1e-4).all()
    out2, mo2 = aug(x, m, _gen(13))
    assert torch.equal(out, out2) and torch.equal(mo, mo2)
    out3, _ = aug(x, m, _gen(14))
    assert not torch.equal(out, out3)


def test_unsupported_op_raises():
    spec = [*_mel_spec(), {"name": "ToGray", "p": 0.5}]
    with pytest.raises(NotImplementedError, match="ToGray.*supported: .*Affine.*CLAHE"):
        build_gpu_transform(spec, 32, MEAN, STD)


@pytest.mark.parametrize("ksize", [3, 5])
def test_box_blur_equals_cv2(ksize):
    x = _images(4, 24)
    out, _ = _raw([{"name": "Blur", "blur_limit": [ksize, ksize], "p": 1.0}], x)
    for i in range(4):
        want = cv2.blur(np.ascontiguousarray(x[i].permute(1, 2, 0).numpy()), (ksize, ksize))
        got = out[i].permute(1, 2, 0).numpy()
        assert np.abs(got - want).max() <= 0.5 + 1e-3  # cv2 rounds to uint8, the device path does not


@pytest.mark.parametrize("gamma", [60, 85, 120])
def test_gamma_equals_albumentations(gamma):
    x = _images(4, 24)
    out, _ = _raw([{"name": "RandomGamma", "gamma_limit": [gamma, gamma], "p": 1.0}], x)
    transform = A.RandomGamma(gamma_limit=(gamma, gamma), p=1.0)
    for i in range(4):
        want = transform(image=np.ascontiguousarray(x[i].permute(1, 2, 0).numpy()))["image"]
        np.testing.assert_array_equal(out[i].permute(1, 2, 0).round().numpy().astype(np.uint8), want)


def test_gamma_is_drawn_per_sample_in_its_range():
    x = torch.full((64, 1, 4, 4), 128, dtype=torch.uint8)
    out, _ = _raw([{"name": "RandomGamma", "gamma_limit": [60, 120], "p": 1.0}], x.expand(64, 3, 4, 4))
    values = out[:, 0, 0, 0]
    lo, hi = np.floor(255 * (128 / 255) ** 1.2), np.floor(255 * (128 / 255) ** 0.6)
    assert values.min() >= lo and values.max() <= hi and values.unique().numel() > 10


def test_pneumothorax_list_builds_on_the_device():
    spec = yaml.safe_load((ROOT / "recipes/pneumothorax_2nd/seg_unet_se50_1024.yaml").read_text())["train"][
        "augment"
    ]
    x = _images(6, 64)
    m = (x[:, :1] > 128).to(torch.uint8)
    out, mo = build_gpu_transform(spec, 32, MEAN, STD)(x, m, _gen(1))
    assert out.shape == (6, 3, 32, 32) and mo.shape == (6, 1, 32, 32) and torch.isfinite(out).all()


def test_the_callers_images_and_masks_are_left_as_they_were():
    # the ops write their chosen samples into the batch in place, so the pipeline must work on copies
    x = _images(8, 32, seed=30).float()
    m = (x[:, :1] > 128).to(torch.uint8)
    x0, m0 = x.clone(), m.clone()
    aug = build_gpu_transform(_mel_spec(), 32, MEAN, STD)
    out, mo = aug(x, m, _gen(31))
    assert torch.equal(x, x0) and torch.equal(m, m0)
    assert not torch.equal(mo, m0)  # while the outputs did change
    half = [
        {"name": "RandomBrightnessContrast", "brightness_limit": [0.3, 0.3], "contrast_limit": 0, "p": 0.5}
    ]
    raw, _ = _raw(half, x, None, seed=32)
    changed = (raw - x0).abs().flatten(1).amax(1) > 1e-3  # the others only went through normalisation
    assert 0 < int(changed.sum()) < 8 and torch.equal(x, x0)
