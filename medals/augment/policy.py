"""Augmentation policies (HPA 3rd place): random two-op sub-policies, their file format and their ops.

A step is (op, probability, magnitude): the op is a name from OPS, the magnitude a number in [0, 1] that
each op maps to albumentations 2.0.8 arguments (0 leaves the image as it is, or nearly so for the
distortions; 1 is the strongest setting the HPA3 search allowed). A sub-policy is two steps applied in
order, each with its own probability; a policy is a list of sub-policies of which one, picked uniformly,
is applied per image (after the dihedral flips).

The search follows HPA3: 50 random candidates of 5 sub-policies, each scored by training a small model
on a small split (medals.stages.search), the best 5 kept; their 25 sub-policies together form the final
augmentation, which a recipe uses as `{name: PolicyFile, path: policies.json}` in train.augment.

HPA3's op set (as its public code shows) is HPA3_OPS, with these albumentations 2 equivalents:
- RandomContrast / RandomBrightness -> RandomBrightnessContrast with the other limit 0;
- RandomScale (followed by the resize to the training size, so close to a no-op there) -> an Affine zoom;
- ShiftScaleRotate with only shift_limit -> Affine translate_percent;
- ElasticTransform(alpha=1, sigma 30-70, alpha_affine 30-70): albumentations 2 dropped alpha_affine, which
  carried nearly all of that op's effect; a step drawn by the "hpa3" sampler is that affine
  (medals.augment.jitter.ElasticAffine, alpha_affine in pixels), the "magnitude" sampler's `elastic` a
  real elastic field of a few pixels;
- GridDistortion: the "hpa3" sampler draws num_steps 3..5 as HPA3 did, the magnitude sets distort_limit.
Borders are reflected (BORDER_REFLECT_101), the default of the albumentations version HPA3 used.

Two samplers draw a step's settings. "hpa3" (the default) follows HPA3's sample_policy: integers
uniform on their inclusive ranges (Blur/MotionBlur kernel limit 3..5, so P(5) = 1/3 and a limit of 4
blurs with 3 like 3 did in albumentations 0.x; rotate limit 5..45; grid num_steps 3..5; elastic sigma and
alpha_affine 30..70; gamma limits 70..90 and 110..130 independently), floats uniform on theirs. Settings a
magnitude cannot hold ride in the step's `params`. "magnitude" draws the magnitude uniformly on the op's
search range, medals' earlier sampler.
EXTRA_OPS (shear, noise, sharpen) are not in HPA3's set; pass `ops=` to search over them too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from medals.augment.draws import elastic_draw, gamma_draw, grid_draw, integer, kernel_draw, uniform_draw
from medals.errors import MedalsError
from medals.files import write_json

FORMAT = "medals.augment_policy/1"
SAMPLERS = ("hpa3", "magnitude")
PROBABILITIES = (0.0, 0.25, 0.5, 0.75)  # HPA3 drew each step's probability from these
REFLECT = cv2.BORDER_REFLECT_101


def _blur_limit(m: float) -> list[int]:
    # Odd kernel sizes only (albumentations 2 rounds even ones up): 3 up to magnitude 0.5, then 3 or 5.
    return [3, 3 + 2 * round(m)]


@dataclass(frozen=True)
class Op:
    """One op of the vocabulary: albumentations class, its arguments at magnitude m, HPA3's range of m."""

    name: str
    transform: str
    args: Callable[[float], dict[str, Any]]
    search: tuple[float, float]  # magnitudes random_policy draws from (HPA3's parameter range)
    geometric: bool = False
    # The "hpa3" sampler: rng -> (magnitude, params) as HPA3's sample_policy drew this op's settings.
    draw: Callable[[np.random.Generator], tuple[float, dict[str, float]]] | None = None
    # (magnitude, params) -> the whole spec without p, for a step that carries params.
    with_params: Callable[[float, dict[str, float]], dict[str, Any]] | None = None


def _elastic_affine(m: float, params: dict[str, float]) -> dict[str, Any]:
    # sigma is kept in the file for the record: alpha 1 makes the elastic field negligible (module doc).
    return {"name": "ElasticAffine", "alpha_affine": float(params["alpha_affine"]), "border_mode": REFLECT}


PARAMS = {"gamma": ("low", "high"), "grid_distortion": ("num_steps",), "elastic": ("sigma", "alpha_affine")}


_OP_LIST = (
    # ---- HPA3's set
    Op(
        "contrast",
        "RandomBrightnessContrast",
        lambda m: {"brightness_limit": 0.0, "contrast_limit": 0.3 * m},
        (1 / 3, 1.0),
        draw=uniform_draw(0.1, 0.3, 0.3),
    ),
    Op(
        "brightness",
        "RandomBrightnessContrast",
        lambda m: {"brightness_limit": 0.3 * m, "contrast_limit": 0.0},
        (1 / 3, 1.0),
        draw=uniform_draw(0.1, 0.3, 0.3),
    ),
    Op(
        "gamma",
        "RandomGamma",
        lambda m: {"gamma_limit": [100 - 30 * m, 100 + 30 * m]},
        (1 / 3, 1.0),
        draw=gamma_draw,
        with_params=lambda m, q: {"name": "RandomGamma", "gamma_limit": [q["low"], q["high"]]},
    ),
    Op("blur", "Blur", lambda m: {"blur_limit": _blur_limit(m)}, (0.0, 1.0), draw=kernel_draw),
    Op("motion_blur", "MotionBlur", lambda m: {"blur_limit": _blur_limit(m)}, (0.0, 1.0), draw=kernel_draw),
    Op("invert", "InvertImg", lambda m: {}, (0.0, 0.0), draw=lambda rng: (0.0, {})),
    Op(
        "rotate",
        "Rotate",
        lambda m: {"limit": [-45 * m, 45 * m], "border_mode": REFLECT},
        (5 / 45, 1.0),
        geometric=True,
        draw=lambda rng: (integer(rng, 5, 45) / 45, {}),
    ),
    Op(
        "translate",
        "Affine",
        lambda m: {"translate_percent": [-0.12 * m, 0.12 * m], "border_mode": REFLECT},
        (0.25, 1.0),
        geometric=True,
        draw=uniform_draw(0.03, 0.12, 0.12),
    ),
    Op(
        "scale",
        "Affine",
        lambda m: {"scale": [1 - 0.2 * m, 1 + 0.2 * m], "keep_ratio": True, "border_mode": REFLECT},
        (0.25, 1.0),
        geometric=True,
        draw=uniform_draw(0.05, 0.20, 0.2),
    ),
    Op(
        "grid_distortion",
        "GridDistortion",
        lambda m: {"num_steps": 5, "distort_limit": 0.5 * m, "border_mode": REFLECT},
        (0.2, 1.0),
        geometric=True,
        draw=grid_draw,
        with_params=lambda m, q: {
            "name": "GridDistortion",
            "num_steps": int(q["num_steps"]),
            "distort_limit": 0.5 * m,
            "border_mode": REFLECT,
            "normalized": False,  # albumentations 0.x did not rescale the steps to stay inside the image
        },
    ),
    Op(
        "elastic",
        "ElasticTransform",
        # Mean displacement about 3 px at magnitude 1 on a 256 px image.
        lambda m: {"alpha": 500.0 * m, "sigma": 10.0, "border_mode": REFLECT},
        (3 / 7, 1.0),
        geometric=True,
        draw=elastic_draw,
        with_params=_elastic_affine,
    ),
    # ---- not in HPA3's set
    Op(
        "shear",
        "Affine",
        lambda m: {"shear": [-20 * m, 20 * m], "border_mode": REFLECT},
        (0.25, 1.0),
        geometric=True,
    ),
    Op("noise", "GaussNoise", lambda m: {"std_range": [0.0, 0.1 * m]}, (0.2, 1.0)),
    Op("sharpen", "Sharpen", lambda m: {"alpha": [0.0, 0.5 * m], "lightness": [1.0, 1.0]}, (0.2, 1.0)),
)
OPS: dict[str, Op] = {op.name: op for op in _OP_LIST}
HPA3_OPS = (
    "contrast",
    "brightness",
    "gamma",
    "blur",
    "motion_blur",
    "invert",
    "rotate",
    "translate",
    "scale",
    "grid_distortion",
    "elastic",
)
EXTRA_OPS = ("shear", "noise", "sharpen")


class Step(NamedTuple):
    op: str
    p: float
    magnitude: float
    # Settings beyond the magnitude (PARAMS[op]) as sorted (name, value) pairs; () when there are none.
    params: tuple[tuple[str, float], ...] = ()


class SubPolicy(NamedTuple):
    first: Step
    second: Step


Policy = list[SubPolicy]


def check_step(step: Step, where: str = "policy") -> Step:
    """The step as a Step of plain floats; MedalsError naming `where` when it is not a valid step."""
    try:
        op, p, magnitude, *rest = step
        p, magnitude = float(p), float(magnitude)
        params = dict(rest[0]) if rest else {}
        if len(rest) > 1:
            raise ValueError
        params = {str(key): float(value) for key, value in params.items()}
    except (TypeError, ValueError):
        raise MedalsError(f"{where}: a step must be (op, p, magnitude[, params]), got {step!r}") from None
    if op not in OPS:
        raise MedalsError(f"{where}: unknown op {op!r} (known: {', '.join(OPS)})")
    if params and set(params) != set(PARAMS.get(op, ())):
        expected = ", ".join(PARAMS.get(op, ())) or "none"
        raise MedalsError(f"{where}: op '{op}' has params {sorted(params)}, expected: {expected}")
    if not 0.0 <= p <= 1.0:
        raise MedalsError(f"{where}: op '{op}' has probability {p}, outside 0..1")
    if not 0.0 <= magnitude <= 1.0:
        raise MedalsError(f"{where}: op '{op}' has magnitude {magnitude}, outside 0..1")
    return Step(op, p, magnitude, tuple(sorted(params.items())))


def op_spec(op: str, p: float = 1.0, magnitude: float = 0.5) -> dict[str, Any]:
    """The train.augment entry (albumentations class name and arguments) of one step."""
    return _step_spec(check_step(Step(op, p, magnitude)))


def _step_spec(step: Step) -> dict[str, Any]:
    """op_spec of a step check_step has already returned."""
    entry = OPS[step.op]
    if step.params:
        return {**entry.with_params(step.magnitude, dict(step.params)), "p": step.p}
    return {"name": entry.transform, **entry.args(step.magnitude), "p": step.p}


def random_policy(
    rng: np.random.Generator | int,
    n_subpolicies: int = 5,
    ops: Sequence[str] = HPA3_OPS,
    sampler: str = "hpa3",
) -> Policy:
    """n_subpolicies sub-policies of two different ops each, as HPA3 drew them.

    Each step's probability is one of PROBABILITIES; its settings follow `sampler` (module doc): "hpa3"
    HPA3's own draws (ops without one, EXTRA_OPS, as "magnitude"), "magnitude" a magnitude uniform in the
    op's search range, rounded to 3 decimals. The same generator state (or integer seed) gives the same
    policy.
    """
    if sampler not in SAMPLERS:
        raise MedalsError(f"unknown policy sampler {sampler!r} (known: {', '.join(SAMPLERS)})")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    names = list(ops)
    unknown = [name for name in names if name not in OPS]
    if unknown:
        raise MedalsError(f"unknown op {unknown[0]!r} (known: {', '.join(OPS)})")
    if len(set(names)) < 2:
        raise MedalsError("a policy search needs at least two different ops")
    policy = []
    for _ in range(n_subpolicies):
        steps = []
        for index in rng.choice(len(names), size=2, replace=False):
            op = OPS[names[int(index)]]
            p = float(PROBABILITIES[int(rng.integers(len(PROBABILITIES)))])
            if sampler == "hpa3" and op.draw is not None:
                magnitude, params = op.draw(rng)
                steps.append(Step(op.name, p, magnitude, tuple(sorted(params.items()))))
            else:
                steps.append(Step(op.name, p, round(float(rng.uniform(*op.search)), 3)))
        policy.append(SubPolicy(*steps))
    return policy


def policy_to_spec(policy: Iterable[SubPolicy]) -> list[dict[str, Any]]:
    """A train.augment list: OneOf (uniform) over the sub-policies, each a Sequential of its two steps.

    An empty policy gives [] (no augmentation from it).
    """
    children = []
    for i, sub in enumerate(policy):
        steps = [check_step(step, f"sub-policy {i}") for step in sub]
        if len(steps) != 2:
            raise MedalsError(f"sub-policy {i} has {len(steps)} steps, expected 2")
        ops = [_step_spec(step) for step in steps]
        children.append({"name": "Sequential", "p": 1.0, "transforms": ops})
    if not children:
        return []
    return [{"name": "OneOf", "p": 1.0, "transforms": children}]


def rank_key(item: tuple[int, float]) -> tuple[float, int]:
    index, score = item
    # Higher is better, NaN worst, ties keep the earlier candidate.
    return (-score if not math.isnan(score) else math.inf, index)


# ---- policies file -----------------------------------------------------------------------------


STEP_KEYS = {"op", "p", "magnitude", "params"}


def _step_json(step: Step) -> dict[str, Any]:
    step = check_step(step)
    out: dict[str, Any] = {"op": step.op, "p": step.p, "magnitude": step.magnitude}
    if step.params:
        out["params"] = dict(step.params)
    return out


def write_policies(path: str | Path, scored: Sequence[tuple[float, Policy]], keep: int | None = None) -> Path:
    """Write the best `keep` (default: all) scored policies, best first, as JSON (atomically)."""
    items = [(float(score), policy) for score, policy in scored]
    order = sorted(range(len(items)), key=lambda i: rank_key((i, items[i][0])))[:keep]
    entries = [
        {"score": items[i][0], "subpolicies": [[_step_json(step) for step in sub] for sub in items[i][1]]}
        for i in order
    ]
    return write_json(path, {"format": FORMAT, "policies": entries})


def read_policies(path: str | Path) -> list[tuple[float, Policy]]:
    """The (score, policy) list written by write_policies; MedalsError naming the file when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise MedalsError(f"policies file {path} does not exist")
    try:
        tree = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MedalsError(f"policies file {path} is not readable JSON ({str(exc).splitlines()[0]})") from None
    if (
        not isinstance(tree, dict)
        or tree.get("format") != FORMAT
        or not isinstance(tree.get("policies"), list)
    ):
        raise MedalsError(f"policies file {path} is not a medals policies file (format {FORMAT})")
    out = []
    for i, entry in enumerate(tree["policies"]):
        where = f"policies file {path}, policy {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("subpolicies"), list):
            raise MedalsError(f"{where}: expected a mapping with a 'subpolicies' list")
        policy = []
        for j, sub in enumerate(entry["subpolicies"]):
            if not isinstance(sub, list) or len(sub) != 2:
                raise MedalsError(f"{where}, sub-policy {j}: expected a list of two steps")
            steps = []
            for step in sub:
                if not isinstance(step, dict) or not {"op", "p", "magnitude"} <= set(step) <= STEP_KEYS:
                    raise MedalsError(
                        f"{where}, sub-policy {j}: a step needs exactly op, p and magnitude (and maybe params)"
                    )
                params = step.get("params", {})
                if not isinstance(params, dict):
                    raise MedalsError(f"{where}, sub-policy {j}: a step's params must be a mapping")
                raw = Step(step["op"], step["p"], step["magnitude"], tuple(params.items()))
                steps.append(check_step(raw, f"{where}, sub-policy {j}"))
            policy.append(SubPolicy(*steps))
        try:
            # write_json stores a NaN score as null.
            score = float(math.nan if entry.get("score") is None else entry["score"])
        except (TypeError, ValueError):
            raise MedalsError(f"{where}: score {entry.get('score')!r} is not a number") from None
        out.append((score, policy))
    return out


def load_subpolicies(path: str | Path) -> Policy:
    """Every sub-policy of every policy in the file, in order (HPA3: 5 policies x 5 = 25)."""
    subs = [sub for _, policy in read_policies(path) for sub in policy]
    if not subs:
        raise MedalsError(f"policies file {path} holds no sub-policies")
    return subs
