"""Recipe sets: folders and ensemble files, and their errors."""

from __future__ import annotations

import pytest
import yaml

from medals.config import load_recipes, make_plan
from medals.errors import MedalsError
from medals.stages.plan import describe, format_table


def write(path, tree):
    path.write_text(yaml.safe_dump(tree))
    return path


def recipe(name: str, **train) -> dict:
    return {"name": name, "task": "multiclass", "train": {"image_size": 64, **train}}


def test_folder_lists_its_recipes_in_order(tmp_path):
    write(tmp_path / "b.yaml", recipe("b", lr=0.001))
    write(tmp_path / "a.yaml", recipe("a", clip_grad=0.5))
    plan = make_plan(tmp_path)
    assert [p.name for p in plan.recipes] == ["a.yaml", "b.yaml"] and plan.ensemble is None
    recipes = load_recipes(plan, ["train.epochs=3"])
    assert [r.train.epochs for r in recipes] == [3, 3]
    table = format_table([describe(r, p) for r, p in zip(recipes, plan.recipes, strict=True)])
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["recipe", "model", "head"]
    assert lines[1].split()[0] == "a" and " 0.5 " in lines[1] and "medals run" in lines[1]


def test_folder_with_an_ensemble_file_uses_it(tmp_path):
    write(tmp_path / "a.yaml", recipe("a"))
    write(tmp_path / "b.yaml", recipe("b"))
    write(tmp_path / "ens.yaml", {"ensemble": {"name": "e", "method": "rank", "members": ["b.yaml"]}})
    plan = make_plan(tmp_path)
    assert [p.name for p in plan.recipes] == ["b.yaml"]
    assert plan.ensemble.method == "rank" and str(plan.ensemble_dir) == "runs/e"


@pytest.mark.parametrize(
    ("ensemble", "message"),
    [
        ({"name": "e", "members": ["missing.yaml"]}, "member recipe .*missing.yaml does not exist"),
        ({"name": "e", "members": ["a.yaml"], "weights": [1, 2]}, "weights has 2 values for 1 members"),
        ({"name": "e", "members": ["a.yaml"], "methd": "rank"}, "ensemble.methd"),
        ({"name": "e", "members": ["a.yaml"], "method": "median"}, "ensemble.method"),
    ],
)
def test_bad_ensemble_files(tmp_path, ensemble, message):
    write(tmp_path / "a.yaml", recipe("a"))
    path = write(tmp_path / "ens.yaml", {"ensemble": ensemble})
    with pytest.raises(MedalsError, match=message):
        make_plan(path)


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(MedalsError, match="holds no recipe files"):
        make_plan(tmp_path)
    with pytest.raises(MedalsError, match="does not exist"):
        make_plan(tmp_path / "nope.yaml")
