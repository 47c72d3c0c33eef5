"""Several recipes at once: a folder of recipes or an ensemble file, listed and run as separate jobs.

An ensemble file is YAML with one top-level key:

    ensemble:
      name: melanoma_1st
      method: rank          # or mean
      members: [a.yaml, b.yaml]   # relative to this file
      weights: null         # one per member, default equal
      run_dir: null         # default runs/<name>
      gate:                 # segmentation only, optional
        members: [c.yaml]   # models with a classification head: their p_cls are stacked
        folds: 5
        threshold: 0.65     # keep a mask only where the stacked probability is above this
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from medals.config.base import Strict
from medals.config.loading import load_recipe
from medals.config.recipe import Recipe
from medals.errors import MedalsError


class GateSpec(Strict):
    """Segmentation: stack these members' image-level probabilities (p_cls) into the submission's gate."""

    members: list[str] = Field(min_length=1)
    folds: int = Field(5, ge=2)  # cross-validation folds of the stacker over the OOF rows
    threshold: float = Field(0.65, ge=0, le=1)


class EnsembleSpec(Strict):
    name: str
    method: Literal["mean", "rank"] = "mean"
    members: list[str] = Field(min_length=1)
    weights: list[float] | None = None
    run_dir: str | None = None
    gate: GateSpec | None = None


@dataclass
class Plan:
    recipes: list[Path]
    ensemble: EnsembleSpec | None = None
    gate_recipes: list[Path] = field(default_factory=list)

    @property
    def all_recipes(self) -> list[Path]:
        """Everything to train: the members, then gate members that are not members too."""
        return self.recipes + [p for p in self.gate_recipes if p not in self.recipes]

    @property
    def ensemble_dir(self) -> Path | None:
        if self.ensemble is None:
            return None
        return Path(self.ensemble.run_dir or Path("runs") / self.ensemble.name)


def _read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MedalsError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def is_ensemble_file(path: Path) -> bool:
    tree = _read_yaml(path)
    return isinstance(tree, dict) and "ensemble" in tree


def load_ensemble(path: Path) -> Plan:
    tree = _read_yaml(path)
    if set(tree) != {"ensemble"}:
        extra = sorted(set(tree) - {"ensemble"})
        raise MedalsError(f"{path}: unknown key '{extra[0]}' beside 'ensemble'")
    try:
        spec = EnsembleSpec.model_validate(tree["ensemble"])
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(part) for part in ("ensemble", *err["loc"]))
        raise MedalsError(f"{path}: key '{key}': {err['msg']}") from None
    members = [path.parent / member for member in spec.members]
    gates = [path.parent / member for member in spec.gate.members] if spec.gate else []
    missing = [str(member) for member in members + gates if not member.is_file()]
    if missing:
        raise MedalsError(f"{path}: member recipe {missing[0]} does not exist")
    if spec.weights is not None and len(spec.weights) != len(members):
        raise MedalsError(
            f"{path}: ensemble.weights has {len(spec.weights)} values for {len(members)} members"
        )
    return Plan(members, spec, gates)


def make_plan(path: Path) -> Plan:
    """A recipe file, an ensemble file, or a folder of recipes (with its ensemble file, if any)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        ensembles = [p for p in files if is_ensemble_file(p)]
        if len(ensembles) > 1:
            raise MedalsError(
                f"{path} holds more than one ensemble file: {', '.join(p.name for p in ensembles)}"
            )
        if ensembles:
            return load_ensemble(ensembles[0])
        if not files:
            raise MedalsError(f"{path} holds no recipe files (*.yaml)")
        return Plan(files)
    if not path.is_file():
        raise MedalsError(f"recipe file {path} does not exist")
    if is_ensemble_file(path):
        return load_ensemble(path)
    return Plan([path])


def load_recipes(plan: Plan, overrides: list[str], paths: list[Path] | None = None) -> list[Recipe]:
    """Every member (or the given paths) with the same overrides (a scaled-down trial applies to all)."""
    return [load_recipe(path, overrides) for path in (plan.recipes if paths is None else paths)]
