"""HPA3's draws of each policy op's settings (its sample_policy), for medals.augment.policy's "hpa3" sampler.

Each returns (magnitude, params) for one op: the magnitude the op's setting maps to in policy.OPS, and
the settings a magnitude cannot hold. Integers are uniform on inclusive ranges (Python's random.randint,
which HPA3 used), floats uniform on theirs (random.uniform).
"""

from __future__ import annotations

import numpy as np


def integer(rng: np.random.Generator, low: int, high: int) -> int:
    return int(rng.integers(low, high + 1))  # inclusive, as Python's random.randint


def uniform_draw(low: float, high: float, scale: float):
    """A float setting uniform on [low, high] (HPA3: random.uniform), as magnitude setting / scale."""
    return lambda rng: (float(rng.uniform(low, high)) / scale, {})


def kernel_draw(rng: np.random.Generator) -> tuple[float, dict[str, float]]:
    return (integer(rng, 3, 5) - 3) / 2, {}  # limit 3, 4, 5 -> magnitude 0, 0.5, 1


def gamma_draw(rng: np.random.Generator) -> tuple[float, dict[str, float]]:
    low, high = integer(rng, 70, 90), integer(rng, 110, 130)
    return (high - low) / 60, {"low": low, "high": high}


def grid_draw(rng: np.random.Generator) -> tuple[float, dict[str, float]]:
    steps = integer(rng, 3, 5)
    return float(rng.uniform(0.1, 0.5)) / 0.5, {"num_steps": steps}


def elastic_draw(rng: np.random.Generator) -> tuple[float, dict[str, float]]:
    sigma, alpha_affine = integer(rng, 30, 70), integer(rng, 30, 70)
    return alpha_affine / 70, {"sigma": sigma, "alpha_affine": alpha_affine}
