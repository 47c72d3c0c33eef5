"""Registered data adapters: functions that build a competition's train/test frames.

Most competitions are two CSV files and need none. Where a recipe merges sources (a competition's
data plus an external set, several resolutions, derived fold keys), a small module registers an
adapter and the recipe names it in data.adapter; the frames it returns go through the same checks,
label handling and path templates as CSV rows.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

import pandas as pd

from medals.config import Recipe
from medals.errors import MedalsError

Adapter = Callable[..., tuple[pd.DataFrame, pd.DataFrame | None]]
ADAPTERS: dict[str, Adapter] = {}
# Modules that register adapters, imported on first use.
_MODULES = ("medals.data.competitions",)


def register_adapter(name: str) -> Callable[[Adapter], Adapter]:
    def wrap(fn: Adapter) -> Adapter:
        ADAPTERS[name] = fn
        return fn

    return wrap


def run_adapter(recipe: Recipe) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Call recipe.data.adapter(recipe, **data.adapter_params)."""
    for module in _MODULES:
        importlib.import_module(module)
    name = recipe.data.adapter
    if name not in ADAPTERS:
        raise MedalsError(f"data.adapter '{name}' is not known; known: {', '.join(sorted(ADAPTERS))}")
    fn = ADAPTERS[name]
    params = dict(recipe.data.adapter_params)
    accepted = set(inspect.signature(fn).parameters) - {"recipe"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise MedalsError(
            f"data.adapter_params: '{unknown[0]}' is not a parameter of adapter '{name}' "
            f"(parameters: {', '.join(sorted(accepted))})"
        )
    return fn(recipe, **params)
