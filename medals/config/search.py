"""The `policy_search` section: HPA3's augmentation-policy search."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from medals.config.base import Strict


class PolicySearchConfig(Strict):
    """HPA3's augmentation-policy search (the `search` stage, medals.augment.policy): `candidates` random
    policies of `subpolicies` two-op sub-policies, each scored by a short training (`epochs`) on fold `fold`;
    the best `keep` are written to `file` (relative to the run directory), which train.augment uses as
    {name: PolicyFile, path: "{run_dir}/policies.json"}."""

    candidates: int = Field(50, ge=1)
    subpolicies: int = Field(5, ge=1)
    keep: int = Field(5, ge=1)
    epochs: int = Field(2, ge=1)  # training epochs per candidate
    fold: int = Field(0, ge=0)
    seed: int | None = None  # default: the recipe seed
    # Dotted recipe overrides for the candidates' trainings, e.g. {"model.backbone": "resnet18",
    # "train.image_size": 256} (HPA3 scored candidates with a ResNet18 at 256 px).
    overrides: dict[str, Any] = Field(default_factory=dict)
    file: str = "policies.json"
    # How a candidate's op settings are drawn (medals.augment.policy): "hpa3" as HPA3's sample_policy
    # (kernel limits 3..5, grid steps 3..5, the elastic affine, ...), "magnitude" uniform magnitudes.
    sampler: Literal["hpa3", "magnitude"] = "hpa3"
