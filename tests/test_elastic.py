"""The CPU path's ElasticTransform: albumentations' op with its fields drawn on a coarse grid."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest

from medals.augment.cpu import build_ops
from medals.augment.elastic import CoarseElasticTransform, coarse_factor


def _maps(op, shape, seed):
    op.set_random_seed(seed)
    params = op.get_params_dependent_on_data({"shape": shape}, {})
    ys, xs = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    return params["map_x"] - xs, params["map_y"] - ys


def _lag_correlation(field: np.ndarray, lag: int) -> float:
    a, b = field[:, :-lag].ravel(), field[:, lag:].ravel()
    return float(np.corrcoef(a, b)[0, 1])


def test_recipes_get_the_coarse_op():
    (op,) = build_ops(
        [{"name": "ElasticTransform", "alpha": 3, "sigma": 50, "noise_distribution": "uniform"}]
    )
    assert isinstance(op, CoarseElasticTransform) and op.sigma == 50 and op.alpha == 3


def _full_resolution(shape, sigma, noise, rng) -> np.ndarray:
    """The unbounded-plane reference: noise at every pixel, cv2's Gaussian, reflect-101 border."""
    if noise == "gaussian":
        field = rng.standard_normal(shape).astype(np.float32)
        field /= np.abs(field).max()
    else:
        field = rng.uniform(-1, 1, shape).astype(np.float32)
    return cv2.GaussianBlur(field, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)


@pytest.mark.parametrize("noise", ["uniform", "gaussian"])
@pytest.mark.parametrize("shape", [(256, 320), (512, 512)])
def test_fields_match_the_full_resolution_construction(noise, shape):
    sigma = 50.0
    assert coarse_factor(sigma, *shape) == 12
    op = CoarseElasticTransform(alpha=1.0, sigma=sigma, noise_distribution=noise, p=1.0)
    rng = np.random.default_rng(0)
    std_ours, std_full, corr_ours, corr_full = [], [], [], []
    for seed in range(6):
        dx, dy = _maps(op, shape, seed)
        assert not np.allclose(dx, dy)  # two independent fields
        full = _full_resolution(shape, sigma, noise, rng)
        std_ours.append(np.std([dx, dy]))
        std_full.append(np.std(full))
        corr_ours.append(_lag_correlation(dx, int(sigma)))
        corr_full.append(_lag_correlation(full, int(sigma)))
    assert np.mean(std_ours) / np.mean(std_full) == pytest.approx(1.0, abs=0.2)
    assert abs(np.mean(corr_ours) - np.mean(corr_full)) < 0.12


def test_small_sigma_is_albumentations_own():
    kwargs = {"alpha": 30.0, "sigma": 5.0, "p": 1.0}
    dx, dy = _maps(CoarseElasticTransform(**kwargs), (64, 48), 3)
    ex, ey = _maps(A.ElasticTransform(**kwargs), (64, 48), 3)
    np.testing.assert_array_equal(dx, ex)
    np.testing.assert_array_equal(dy, ey)


def test_mask_moves_with_the_image():
    rng = np.random.default_rng(0)
    mask = np.zeros((128, 128), np.uint8)
    mask[40:90, 30:100] = 1
    image = np.repeat((mask * 200 + rng.integers(0, 20, mask.shape)).astype(np.uint8)[:, :, None], 3, axis=2)
    op = CoarseElasticTransform(alpha=3000.0, sigma=40.0, p=1.0, interpolation=0, mask_interpolation=0)
    op.set_random_seed(1)
    out = A.Compose([op])(image=image, mask=mask)
    assert not np.array_equal(out["mask"], mask)  # it did move
    assert ((out["image"][:, :, 0] >= 200) == (out["mask"] == 1)).mean() > 0.99
