"""Reading a recipe: YAML -> validated Recipe, with dotted command-line overrides, and back to YAML.

Every section forbids unknown keys, so a misspelt key is an error naming the key and the file,
never a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from medals.config.recipe import Recipe
from medals.errors import MedalsError

# ---- loading ------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.epochs=2' -> (['train', 'epochs'], 2); the value is read as YAML."""
    if "=" not in text:
        raise MedalsError(f"override '{text}' is not of the form key.path=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise MedalsError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_override(tree: dict, path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise MedalsError(f"override key '{'.'.join(path)}': '{part}' is not a section")
        node = child
    node[path[-1]] = value


def _describe_error(err: dict, tree: dict, where: str) -> str:
    key = ".".join(str(part) for part in err["loc"])
    kind = err["type"]
    if not key:
        return f"{where}: {err['msg'].removeprefix('Value error, ')}"
    if kind == "extra_forbidden":
        return f"{where}: unknown key '{key}'"
    if kind == "missing":
        return f"{where}: missing required key '{key}'"
    value = tree
    for part in err["loc"]:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            value = None
            break
    msg = err["msg"].removeprefix("Value error, ")
    if value is None or isinstance(value, dict):
        return f"{where}: key '{key}': {msg}"
    return f"{where}: key '{key}' has value {value!r}: {msg}"


def recipe_from_dict(tree: dict, where: str) -> Recipe:
    try:
        return Recipe.model_validate(tree)
    except ValidationError as exc:
        raise MedalsError(_describe_error(exc.errors()[0], tree, where)) from None


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe YAML, apply dotted overrides and validate; errors name the key and the file."""
    path = Path(path)
    if not path.is_file():
        raise MedalsError(f"recipe file {path} does not exist")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MedalsError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise MedalsError(f"{path}: a recipe must be a mapping of keys to values")
    where = str(path)
    if overrides:
        where = f"{path} (with overrides {' '.join(overrides)})"
    for text in overrides:
        key, value = parse_override(text)
        apply_override(tree, key, value)
    if tree.get("source") is None:
        tree["source"] = str(path.resolve())
    return recipe_from_dict(tree, where)


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
