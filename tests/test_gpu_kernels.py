"""The fused Triton kernels (medals.augment.gpu.kernels) against the eager ops they replace, run by
Triton's interpreter on the CPU (TRITON_INTERPRET=1, in a subprocess: the flag is read when the kernels
are compiled). Bound: 2 ulp at the values' magnitude, since a kernel may fuse x * a + b into one rounding
where eager rounds twice; the interpreter computes as numpy does, so here they usually agree exactly."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="Triton is not installed: the eager ops run alone"
)

SCRIPT = textwrap.dedent(
    """
    import torch
    from medals.augment.gpu import kernels
    from medals.augment.gpu.kernels import pointwise
    from medals.augment.gpu.compose import build_gpu_transform

    assert kernels.available(torch.zeros(2, 3, 4, 4))  # the interpreter takes CPU tensors
    eps = torch.finfo(torch.float32).eps

    def close(got, ref):
        bound = 2 * eps * ref.abs().clamp(min=1.0)
        worst = float(((got - ref).abs() - bound).max())
        assert worst <= 0, worst
        return float((got - ref).abs().max())

    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in [(1, 1, 5, 7), (3, 3, 37, 41), (2, 4, 64, 40)]:  # not multiples of the block
        x = torch.rand(shape, generator=g) * 255
        alpha = 0.5 + torch.rand(shape[0], generator=g, dtype=torch.float64) * 1.5
        beta = (torch.rand(shape[0], generator=g, dtype=torch.float64) - 0.5) * 200  # clips at both ends
        ref = (x * alpha.reshape(-1, 1, 1, 1).float() + beta.reshape(-1, 1, 1, 1).float()).clamp(0, 255)
        worst = max(worst, close(pointwise.brightness_contrast(x, alpha, beta, 255.0), ref))
        mean = torch.rand(shape[1], generator=g)
        std = 0.1 + torch.rand(shape[1], generator=g)
        ref = (x / 255.0 - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)
        worst = max(worst, close(pointwise.normalize(x, mean, std, 255.0), ref))

    # Through the pipeline: the melanoma-style brightness/contrast op and the final normalisation.
    spec = [{"name": "RandomBrightnessContrast", "brightness_limit": 0.2, "contrast_limit": 0.2, "p": 1.0}]
    aug = build_gpu_transform(spec, 32, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g)
    out, _ = aug(images, None, torch.Generator().manual_seed(5))
    torch.save(out, "OUT")
    print("max abs diff", worst)
    """
)


def test_kernels_match_the_eager_ops_under_the_interpreter(tmp_path):
    from medals.augment.gpu.compose import build_gpu_transform

    out_path = tmp_path / "fused.pt"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.replace('"OUT"', repr(str(out_path)))],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    # The same pipeline and generator here, where the kernels are off (CPU, no interpreter): eager.
    spec = [{"name": "RandomBrightnessContrast", "brightness_limit": 0.2, "contrast_limit": 0.2, "p": 1.0}]
    aug = build_gpu_transform(spec, 32, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    g = torch.Generator().manual_seed(0)
    for shape in [(1, 1, 5, 7), (3, 3, 37, 41), (2, 4, 64, 40)]:  # the subprocess's draws, in its order
        torch.rand(shape, generator=g)
        torch.rand(shape[0], generator=g, dtype=torch.float64)
        torch.rand(shape[0], generator=g, dtype=torch.float64)
        torch.rand(shape[1], generator=g)
        torch.rand(shape[1], generator=g)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g)
    eager, _ = aug(images, None, torch.Generator().manual_seed(5))
    fused = torch.load(out_path)
    bound = 4 * torch.finfo(torch.float32).eps * eager.abs().clamp(min=1.0)  # two fused steps, 2 ulp each
    assert ((fused - eager).abs() <= bound).all()


# The other kernels against their eager ops, in one interpreter process: kernels.INTERPRET turned off
# makes the same functions take their eager lines, so each comparison is fused vs eager on one input.
PIXEL_SCRIPT = textwrap.dedent(
    """
    import contextlib
    import math

    import torch
    from medals.augment.gpu import kernels
    from medals.augment.gpu.blur import MedianBlur, median_blur
    from medals.augment.gpu.clahe import CLAHE, clahe_images
    from medals.augment.gpu.color import gamma_curve, shift_hsv
    from medals.augment.gpu.compose import build_gpu_transform
    from medals.augment.gpu.kernels import median, pointwise
    from medals.augment.gpu.noise import GaussNoise

    @contextlib.contextmanager
    def eager():
        kernels.INTERPRET = False
        try:
            yield
        finally:
            kernels.INTERPRET = True

    def both(fn, *args):
        fused = fn(*args)
        with eager():
            return fused, fn(*args)

    assert kernels.available(torch.zeros(1, 3, 4, 4)) and kernels.available(torch.zeros(1, dtype=torch.uint8), torch.uint8)
    g = torch.Generator().manual_seed(0)

    # Gamma: float64 like the eager op; exp2(gamma * log2(v)) is within ~1e-15 relative of pow, so levels
    # agree except where the curve lies within 1e-9 of an integer, and there by at most one.
    every_level = (torch.arange(2 * 3 * 33 * 35) % 256).float().reshape(2, 3, 33, 35)
    x = torch.cat([torch.rand(2, 3, 33, 35, generator=g) * 300 - 20, every_level])
    gamma = torch.tensor([0.5, 1.7, 0.8, 1.25], dtype=torch.float64)
    fused, ref = both(gamma_curve, x, gamma)
    curve = (x.double().clamp(0, 255) / 255).pow(gamma.reshape(-1, 1, 1, 1)) * 255
    near = (curve - curve.round()).abs() < 1e-9
    assert torch.equal(fused[~near], ref[~near]) and (fused - ref).abs().max() <= 1
    print("gamma levels differing", int((fused != ref).sum()), "of", fused.numel())

    # HSV: the eager op's float32 operations in its order; bound 4e-3 on 0-255 (module docstring).
    rgb = torch.rand(3, 3, 29, 31, generator=g) * 255
    rgb[0, :, :4] = rgb[0, :1, :4]  # grey pixels (S == 0) and ties between channels
    rgb[1, 1, :5] = rgb[1, 0, :5]
    shifts = [torch.tensor(v, dtype=torch.float64) for v in ([-18.0, 30.0, 7.5], [-30.0, 40.0, 0.0], [20.0, -25.0, 3.0])]
    fused, ref = both(shift_hsv, rgb, *shifts)
    assert (fused - ref).abs().max() <= 4e-3, float((fused - ref).abs().max())

    # Median: integer counting, bit-exact; one launch for samples of different kernel sizes.
    levels = torch.randint(0, 256, (4, 2, 20, 19), dtype=torch.uint8, generator=g)
    levels[0, 0, :6] = 7  # flat areas and ties
    sizes = torch.tensor([3, 5, 7, 3])
    got = median.median_levels(levels, sizes)
    with eager():
        for i, k in enumerate(sizes.tolist()):
            assert torch.equal(got[i : i + 1].float(), median_blur(levels[i : i + 1].float(), k)), k
    op = MedianBlur(1.0, (3, 7))
    blurred = rgb.round()
    fused, ref = both(lambda: op(blurred.clone(), None, torch.Generator().manual_seed(3))[0])
    assert torch.equal(fused, ref)

    # CLAHE: integer Lab steps and the float32 blend in the eager op's order: bit-exact here.
    for shape, grid in [((3, 3, 37, 45), (8, 8)), ((2, 1, 40, 33), (4, 6)), ((2, 3, 64, 64), (8, 8))]:
        images = torch.rand(shape, generator=g) * 280 - 10  # out of range on both sides: clamped first
        clip = torch.tensor([0.0, 2.0, 4.0][: shape[0]], dtype=torch.float64)
        fused, ref = both(clahe_images, images, clip, grid)
        assert torch.equal(fused, ref), (shape, float((fused - ref).abs().max()))
    op = CLAHE(1.0, (1.0, 4.0), (8, 8), chunk_pixels=37 * 45)  # eager: one sample per chunk
    images = torch.rand(3, 3, 37, 45, generator=g) * 255
    fused, ref = both(lambda: op(images.clone(), None, torch.Generator().manual_seed(4))[0])
    assert torch.equal(fused, ref)

    # A run of brightness/contrast ops: one pass, the same draws as op by op, so the same result.
    spec = [
        {"name": "RandomBrightnessContrast", "brightness_limit": 0.2, "contrast_limit": 0.0, "p": 0.75},
        {"name": "RandomBrightnessContrast", "brightness_limit": 0.0, "contrast_limit": 0.2, "p": 0.75},
        {"name": "RandomBrightnessContrast", "brightness_limit": 0.3, "contrast_limit": 0.3, "p": 0.5, "ensure_safe_range": True},
    ]
    fused_aug = build_gpu_transform(spec, 31, [0.5] * 3, [0.25] * 3)
    assert repr(fused_aug.steps[0]) == "FusedBrightnessContrast(3 ops)"
    one_by_one = build_gpu_transform(spec, 31, [0.5] * 3, [0.25] * 3, fuse=False)
    images = torch.rand(16, 3, 31, 31, generator=g) * 300 - 20  # out of range: a skipped sample stays so
    for seed in range(3):
        fused = fused_aug(images, None, torch.Generator().manual_seed(seed))[0]
        with eager():
            ref = one_by_one(images, None, torch.Generator().manual_seed(seed))[0]
        assert torch.equal(fused, ref), seed

    # Gaussian noise: Philox in the kernel, so the same distribution, not the same numbers. 3 x 256 x 256
    # normals per sample: their mean lies within 6 standard errors of the drawn mean, and their standard
    # deviation within 6 / sqrt(2 N) of the drawn one, unless something is wrong (p < 1e-8 each).
    flat = torch.full((2, 3, 256, 256), 127.5)  # far enough from 0 and 255 that nothing clips
    std, mean = torch.tensor([12.75, 5.0]), torch.tensor([5.1, -2.0])
    noisy = pointwise.gauss_noise(flat, std, mean, 7, True, 255.0)
    residual = (noisy - flat).double()
    count = residual[0].numel()
    for i in range(2):
        assert abs(float(residual[i].mean()) - float(mean[i])) < 6 * float(std[i]) / math.sqrt(count)
        assert abs(float(residual[i].std()) / float(std[i]) - 1) < 6 / math.sqrt(2 * count)
    assert torch.equal(noisy, pointwise.gauss_noise(flat, std, mean, 7, True, 255.0))  # the seed fixes it
    assert not torch.equal(noisy, pointwise.gauss_noise(flat, std, mean, 8, True, 255.0))
    shared = pointwise.gauss_noise(flat, std, mean, 7, False, 255.0)
    assert torch.equal(shared[:, 0], shared[:, 1]) and torch.equal(shared[:, 0], shared[:, 2])
    assert not torch.equal(noisy[:, 0], noisy[:, 1])
    clipped = pointwise.gauss_noise(torch.zeros(1, 1, 8, 8), torch.tensor([50.0]), torch.tensor([0.0]), 1, True, 255.0)
    assert clipped.min() == 0 and clipped.max() > 0  # clipped at 0, as the eager op
    op = GaussNoise(1.0, (0.02, 0.05))
    first = op(flat.clone(), None, torch.Generator().manual_seed(5))[0]
    assert torch.equal(first, op(flat.clone(), None, torch.Generator().manual_seed(5))[0])  # one host draw
    print("ok")
    """
)


def test_pixel_kernels_match_the_eager_ops_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", PIXEL_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_the_kernels_stay_off_without_cuda_or_the_interpreter():
    from medals.augment.gpu import kernels

    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("the interpreter is on in this process")
    assert not kernels.available(torch.zeros(1, 3, 4, 4))  # CPU tensors: the eager ops
    assert not kernels.available(torch.zeros(1, 3, 4, 4, dtype=torch.float64))
    assert not kernels.available(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.uint8)


def test_the_device_kernel_check_runs_under_the_interpreter():
    # benchmarks/kernel_check.py is what a GPU machine runs first (gpu_suite.sh's kernels part).
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "kernel_check.py"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    args = [sys.executable, "-W", "ignore", str(script), "--device", "cpu", "--size", "24", "--batch", "2"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len([line for line in lines if line.endswith(": ok")]) == 7, done.stdout


def test_a_kernel_that_fails_here_leaves_its_op_eager(monkeypatch):
    # As when a Triton release cannot compile a kernel: one warning, the eager result, no second try.
    from medals.augment.gpu import kernels
    from medals.augment.gpu.color import gamma_curve
    from medals.augment.gpu.kernels import pointwise

    calls = []

    def broken(*args):
        calls.append(1)
        raise RuntimeError("PassManager::run failed\nmore detail")

    monkeypatch.setattr(kernels, "available", lambda x, dtype=torch.float32: True)
    monkeypatch.setattr(kernels, "FAILED", {})
    monkeypatch.setattr(pointwise, "gamma_curve", broken)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 255
    gamma = torch.tensor([0.7, 1.3], dtype=torch.float64)
    with pytest.warns(UserWarning, match="Triton kernel 'gamma' failed here .*PassManager::run failed"):
        got = gamma_curve(x, gamma)
    assert kernels.FAILED == {"gamma": "RuntimeError: PassManager::run failed"}
    curve = (x.double().clamp(0, 255) / 255).pow(gamma.reshape(-1, 1, 1, 1)) * 255
    assert torch.equal(got, torch.floor(curve).float())  # the eager lines' result
    gamma_curve(x, gamma)
    assert len(calls) == 1  # not tried again

    def out_of_memory(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(pointwise, "normalize", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError):  # not a kernel's failure: raised
        kernels.attempt("normalize", x, pointwise.normalize, x)
