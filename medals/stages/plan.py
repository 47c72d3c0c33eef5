"""The table `medals plan` prints: one row per recipe, the settings that tell recipes apart."""

from __future__ import annotations

from pathlib import Path

from medals.config import Recipe


def describe(recipe: Recipe, path: Path) -> dict[str, str]:
    """One line of `medals plan`: what differs between the models of a recipe set."""
    model, train = recipe.model, recipe.train
    head = model.head
    if head == "meta":
        head = f"meta{','.join(str(h) for h in model.meta_hidden)}"
    adapter = " ".join(f"{k}={v}" for k, v in recipe.data.adapter_params.items())
    return {
        "recipe": recipe.name,
        "model": model.backbone if model.arch == "classifier" else f"{model.arch}/{model.backbone}",
        "head": head if model.arch == "classifier" else "-",
        "size": str(train.image_size),
        "epochs": str(train.epochs),
        "lr": f"{train.lr:g}",
        "classes": str(recipe.data.num_classes or len(recipe.data.classes or []) or "-"),
        "clip": f"{train.clip_grad:g}" if train.clip_grad else "-",
        "folds": f"{recipe.split.method}:{recipe.split.n_folds}",
        "data": adapter or "-",
        "job": f"medals run {path}",
    }


def format_table(rows: list[dict[str, str]]) -> str:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(row[c].ljust(widths[c]) for c in columns) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
