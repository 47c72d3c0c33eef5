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

import pytest
import torch

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="Triton is not installed: the eager ops run alone"
)

SCRIPT = textwrap.dedent(
    """
    import torch
    from medals.augment.gpu import kernels
    from medals.augment.gpu.color import brightness_contrast
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
        worst = max(worst, close(kernels.brightness_contrast(x, alpha, beta, 255.0), ref))
        assert torch.equal(brightness_contrast(x, alpha, beta), kernels.brightness_contrast(x, alpha, beta, 255.0))
        mean = torch.rand(shape[1], generator=g)
        std = 0.1 + torch.rand(shape[1], generator=g)
        ref = (x / 255.0 - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)
        worst = max(worst, close(kernels.normalize(x, mean, std, 255.0), ref))

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


def test_the_kernels_stay_off_without_cuda_or_the_interpreter():
    from medals.augment.gpu import kernels

    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("the interpreter is on in this process")
    assert not kernels.available(torch.zeros(1, 3, 4, 4))  # CPU tensors: the eager ops
    assert not kernels.available(torch.zeros(1, 3, 4, 4, dtype=torch.float64))
