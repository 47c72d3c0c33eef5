"""medals.augment.gpu CLAHE (and its 8-bit Lab conversion) against albumentations 2.0.8 / cv2."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from medals.augment.gpu import build_gpu_transform
from medals.augment.gpu.clahe import CLAHE, clip_histograms
from medals.augment.gpu.lab import lab_to_rgb, rgb_to_lab
from medals.augment.gpu.sampling import rand, uniform
from tests.versions import opencv4_exact

pytestmark = opencv4_exact

# The implementation reproduces OpenCV's integer steps and has matched exactly so far; the bounds leave
# room for float32 rounding-boundary differences (1-2 levels on a few pixels) on other builds.
MEAN_BOUND, MAX_BOUND = 0.05, 2


def _gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _photo(h: int, w: int, c: int, seed: int) -> np.ndarray:
    """Smooth gradients and blobs plus sensor-like noise: uint8 HWC."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for k in range(c):
        blob = np.exp(-(((xx - w * (0.3 + 0.2 * k)) ** 2 + (yy - h * 0.6) ** 2) / (0.08 * h * w)))
        wave = 0.5 + 0.5 * np.sin(xx / (6 + 4 * k) + yy / (9 + 2 * k) + k)
        planes.append(30 + 120 * xx / w + 60 * blob + 40 * wave)
    img = np.stack(planes, -1) * rng.uniform(0.5, 1.0) + rng.normal(0, 8, (h, w, c))
    return np.clip(img, 0, 255).astype(np.uint8)


def _to_batch(imgs: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(i.reshape(*i.shape[:2], -1)).permute(2, 0, 1) for i in imgs])


def _spec(clip: float, grid=(8, 8), p: float = 1.0) -> list[dict]:
    return [{"name": "CLAHE", "clip_limit": [clip, clip], "tile_grid_size": list(grid), "p": p}]


def _gpu_clahe(x: torch.Tensor, clip: float, grid=(8, 8), seed=0) -> torch.Tensor:
    """The op that the spec converts to, applied to a batch (any H, W) on the 0-255 scale."""
    op = build_gpu_transform(_spec(clip, grid), 8, (0.0,), (1.0,)).ops[0]
    assert isinstance(op, CLAHE)
    out, _ = op(x.float(), None, _gen(seed))
    return out


def test_lab_conversion_equals_cv2():
    levels = np.arange(0, 256, 5, dtype=np.uint8)  # 52^3 colours, both ends included
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 1, 3)
    t = torch.from_numpy(grid).permute(2, 0, 1)[None]
    lab = rgb_to_lab(t)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(lab, cv2.cvtColor(grid, cv2.COLOR_RGB2LAB))
    rgb = lab_to_rgb(t)[0].permute(1, 2, 0).numpy()  # the same grid read as Lab
    np.testing.assert_array_equal(rgb, cv2.cvtColor(grid, cv2.COLOR_LAB2RGB))


def test_clip_histograms_residual_like_opencv():
    hist = torch.zeros((1, 2, 256), dtype=torch.int64)
    hist[0, 0, 10] = 40 + 2 * 256 + 100  # limit 40: excess 612 = 2 per bin + residual 100
    hist[0, 1, :] = 3  # below the limit: untouched
    out = clip_histograms(hist, torch.tensor([40]))[0]
    expect = torch.full((256,), 2)
    expect[10] += 40
    expect[0:200:2] += 1  # residual 100 with step 256 // 100 = 2, from bin 0
    assert torch.equal(out[0], expect) and int(out[0].sum()) == int(hist[0, 0].sum())
    assert torch.equal(out[1], hist[0, 1])


@pytest.mark.parametrize(
    ("shape", "clip", "grid"),
    [
        ((64, 64, 3), 2.0, (8, 8)),
        ((64, 64, 3), 4.0, (8, 8)),
        ((72, 72, 3), 1.0, (8, 8)),
        ((67, 53, 3), 3.0, (8, 8)),  # neither side a multiple of 8
        ((64, 45, 3), 2.5, (8, 8)),  # one side a multiple: OpenCV still pads a whole tile there
        ((48, 48, 1), 4.0, (8, 8)),
        ((61, 37, 1), 1.5, (4, 8)),  # grayscale, odd sizes, non-square grid (tiles_x, tiles_y)
        ((50, 50), 3.0, (8, 8)),  # plain 2-D grayscale
    ],
)
def test_matches_albumentations(shape, clip, grid):
    h, w = shape[:2]
    imgs = [_photo(h, w, shape[2] if len(shape) == 3 else 1, seed) for seed in range(3)]
    if len(shape) == 2:
        imgs = [i[..., 0] for i in imgs]
    ref_t = A.CLAHE(clip_limit=(clip, clip), tile_grid_size=grid, p=1.0)
    refs = [ref_t(image=i)["image"] for i in imgs]
    got = _gpu_clahe(_to_batch(imgs), clip, grid)
    for img, ref, out in zip(imgs, refs, got, strict=True):
        ref = ref.reshape(h, w, -1).astype(np.float64)
        diff = np.abs(out.permute(1, 2, 0).numpy() - ref)
        assert diff.mean() < MEAN_BOUND and diff.max() <= MAX_BOUND, (diff.mean(), diff.max())
        assert np.abs(ref - img.reshape(h, w, -1)).mean() > 1  # CLAHE did change the image


def test_spec_path_and_p0():
    x = _to_batch([_photo(32, 32, 3, s) for s in range(4)])
    ref = A.CLAHE(clip_limit=(2.0, 2.0), p=1.0)
    for p in (0.0, 1.0):
        aug = build_gpu_transform(_spec(2.0, p=p), 32, (0.0,) * 3, (1 / 255,) * 3)
        out, _ = aug(x, None, _gen(1))
        if p == 0:
            assert torch.equal(out.round(), x.float())  # untouched (up to the x / 255 * 255 round trip)
            continue
        for i in range(len(x)):
            expect = ref(image=x[i].permute(1, 2, 0).numpy())["image"].astype(np.float32)
            diff = np.abs(out[i].round().permute(1, 2, 0).numpy() - expect)
            assert diff.mean() < MEAN_BOUND and diff.max() <= MAX_BOUND


def test_per_sample_clip_limits():
    # 48 x 48 tiles: integer histogram limits int(clip * 2304 / 256) differ for these clip limits
    # (small tiles would truncate them all to the same limit)
    n, size, grid = 6, 96, (2, 2)
    img = _photo(size, size, 3, 7)
    x = _to_batch([img] * n).float()
    op = CLAHE(1.0, (1.0, 8.0), grid)
    out, _ = op(x, None, _gen(3))
    # the same draws as the op: Bernoulli(p) first, then one clip limit per sample
    g = _gen(3)
    rand(n, g, x.device)
    clips = uniform(n, 1.0, 8.0, g, x.device).tolist()
    assert len({int(c * 2304 / 256) for c in clips}) == n
    distinct = {out[i].numpy().tobytes() for i in range(n)}
    assert len(distinct) == n  # identical inputs, different clip limits: different outputs
    for i, c in enumerate(clips):
        lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
        lab[..., 0] = cv2.createCLAHE(clipLimit=c, tileGridSize=grid).apply(lab[..., 0])
        ref = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB).astype(np.float32)
        diff = np.abs(out[i].permute(1, 2, 0).numpy() - ref)
        assert diff.mean() < MEAN_BOUND and diff.max() <= MAX_BOUND


def test_chunked_equals_whole_batch_and_float_input():
    x = _to_batch([_photo(40, 40, 3, s) for s in range(5)]).float() + 0.3  # float, off the uint8 grid
    whole, _ = CLAHE(1.0, (1.0, 4.0))(x, None, _gen(5))
    chunked, _ = CLAHE(1.0, (1.0, 4.0), chunk_pixels=2 * 40 * 40)(x, None, _gen(5))
    assert torch.equal(whole, chunked)
    again, _ = CLAHE(1.0, (1.0, 4.0))(x.round(), None, _gen(5))
    assert torch.equal(whole, again)  # inputs are rounded to uint8 levels first


def test_bad_channel_count_raises():
    with pytest.raises(ValueError, match="1 or 3 channels"):
        CLAHE(1.0, (2.0, 2.0))(torch.zeros((2, 4, 16, 16)), None, _gen())
