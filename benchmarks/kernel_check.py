"""The fused Triton kernels against the eager ops on the device they run on: compiles each kernel, runs
it and its eager lines on the same batch, prints the largest difference and stops at the first one past
its bound (on CUDA a multiply-add may be contracted into one rounding, so the bounds are the kernels'
stated ones, not the interpreter's exact equality that tests/test_gpu_kernels.py checks).

    python benchmarks/kernel_check.py [--device cuda] [--size 768]

On the CPU it needs TRITON_INTERPRET=1 (slow: use a small --size).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import medals.augment.gpu.kernels as kernels  # noqa: E402
from medals.augment.gpu.blur import MedianBlur  # noqa: E402
from medals.augment.gpu.clahe import clahe_images  # noqa: E402
from medals.augment.gpu.color import brightness_contrast, gamma_curve, shift_hsv  # noqa: E402
from medals.augment.gpu.compose import build_gpu_transform  # noqa: E402


def fused_and_eager(fn):
    fused = fn()
    kernels.ENABLED = False
    try:
        return fused, fn()
    finally:
        kernels.ENABLED = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(args.batch, 3, args.size, args.size, generator=g) * 255).to(device)
    if not kernels.available(x):
        print(
            f"the kernels do not run on {device} here (Triton missing, or a CPU without TRITON_INTERPRET=1)"
        )
        return
    n = args.batch

    def params(lo: float, hi: float) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)).to(device)

    alpha, beta, gamma = params(0.8, 1.2), params(-51, 51), params(0.8, 1.2)
    hue, sat, val = params(-20, 20), params(-30, 30), params(-20, 20)
    clip = params(1, 4)
    median = MedianBlur(1.0, (3, 7))
    normalise = build_gpu_transform([], args.size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    checks = [
        # name, fused vs eager, bound on the largest difference, unit
        ("brightness_contrast", lambda: brightness_contrast(x, alpha, beta), 1e-4, "0-255"),
        ("normalize", lambda: normalise(x, None, torch.Generator())[0], 1e-5, "z"),
        ("gamma", lambda: gamma_curve(x, gamma), 1.0, "levels"),
        ("hsv", lambda: shift_hsv(x, hue, sat, val), 4e-3, "0-255"),
        ("median", lambda: median(x.round(), None, torch.Generator().manual_seed(1))[0], 0.0, "levels"),
        ("clahe rgb", lambda: clahe_images(x, clip, (8, 8)), 1.0, "levels"),
        ("clahe grey", lambda: clahe_images(x[:, :1].contiguous(), clip, (8, 8)), 1.0, "levels"),
    ]
    failed = []
    for name, fn, bound, unit in checks:
        fused, eager = fused_and_eager(fn)
        diff = (fused.float() - eager.float()).abs()
        worst, share = float(diff.max()), float((diff > 0).float().mean())
        verdict = "ok" if worst <= bound else "PAST BOUND"
        print(
            f"{name:22s} max diff {worst:.3g} {unit} (bound {bound:g}), {share:.2%} of values differ: {verdict}"
        )
        if worst > bound:
            failed.append(name)
    # the GPU noise kernel: the same distribution as the eager op
    flat = torch.full((n, 3, args.size, args.size), 127.5, device=device)
    noisy = build_gpu_transform(
        [{"name": "GaussNoise", "std_range": [0.05, 0.05], "p": 1.0}], args.size, [0.0] * 3, [1 / 255] * 3
    )
    residual = noisy(flat, None, torch.Generator().manual_seed(2))[0].double() - 127.5
    print(
        f"{'gauss_noise':22s} residual mean {float(residual.mean()):.3f}, std {float(residual.std()):.3f} (want 0, 12.75)"
    )
    for name, why in kernels.FAILED.items():  # its op fell back to the eager lines: compared with itself
        print(f"{name:22s} FAILED to run here: {why}")
    if failed or kernels.FAILED:
        raise SystemExit(
            f"past their bounds: {', '.join(failed) or 'none'}; failed: {', '.join(kernels.FAILED) or 'none'}"
        )


if __name__ == "__main__":
    main()
