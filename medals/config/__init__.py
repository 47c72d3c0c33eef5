"""Typed recipe: one module per recipe section, plus loading (YAML, overrides) and ensemble files.

Every section forbids unknown keys, so a misspelt key is an error naming the key and the file,
never a silently ignored setting. The names below are the public ones; import them from medals.config.
"""

from medals.config.base import RleFormat, Strict, Task
from medals.config.data import DataConfig, DuplicatesConfig, MappedMeta, MetaConfig, NumericMeta
from medals.config.ensemble import (
    EnsembleSpec,
    GateSpec,
    Plan,
    is_ensemble_file,
    load_ensemble,
    load_recipes,
    make_plan,
)
from medals.config.infer import InferConfig, MetricsConfig
from medals.config.loading import apply_override, dump_recipe, load_recipe, parse_override, recipe_from_dict
from medals.config.model import ModelConfig
from medals.config.recipe import Recipe
from medals.config.search import PolicySearchConfig
from medals.config.split import SplitConfig
from medals.config.submit import NeighboursConfig, SubmitConfig
from medals.config.train import (
    CHANGED_TRAIN_DEFAULTS,
    LATER_TRAIN_DEFAULTS,
    NEUTRAL_TRAIN_KEYS,
    CheckpointRule,
    LossTerm,
    PhaseConfig,
    SamplerConfig,
    ScheduleConfig,
    SwaConfig,
    TrainConfig,
    digest_train,
)

__all__ = [
    "Task",
    "RleFormat",
    "Strict",
    "NumericMeta",
    "MappedMeta",
    "MetaConfig",
    "DuplicatesConfig",
    "DataConfig",
    "SplitConfig",
    "ModelConfig",
    "LossTerm",
    "ScheduleConfig",
    "SamplerConfig",
    "PhaseConfig",
    "CheckpointRule",
    "SwaConfig",
    "NEUTRAL_TRAIN_KEYS",
    "LATER_TRAIN_DEFAULTS",
    "CHANGED_TRAIN_DEFAULTS",
    "digest_train",
    "TrainConfig",
    "MetricsConfig",
    "InferConfig",
    "NeighboursConfig",
    "SubmitConfig",
    "PolicySearchConfig",
    "Recipe",
    "parse_override",
    "apply_override",
    "recipe_from_dict",
    "load_recipe",
    "dump_recipe",
    "GateSpec",
    "EnsembleSpec",
    "Plan",
    "is_ensemble_file",
    "load_ensemble",
    "make_plan",
    "load_recipes",
]
