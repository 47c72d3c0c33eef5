"""The `search` stage: HPA3's policy search before training, its file read through "{run_dir}"."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from medals.augment.policy import random_policy, read_policies, write_policies
from medals.cli import main
from medals.config import load_recipe
from medals.demo import generate as gen
from medals.files import read_json
from medals.stages.pipeline import STAGES, stage_digest
from medals.stages.search import candidate_recipe
from tests.run_files import work_mtimes

POLICY_FILE = {"name": "PolicyFile", "path": "{run_dir}/policies.json"}


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> Path:
    """A tiny 4-channel multilabel competition and its recipe (search on, PolicyFile augmentation)."""
    folder = tmp_path_factory.mktemp("cells")
    gen.generate_cells(folder, n_train=20, n_test=6, size=24, seed=3)
    tree = yaml.safe_load(resources.files("medals.demo").joinpath("demo_cells.yaml").read_text())
    tree["data"]["cache_size"] = 16
    tree["split"]["n_folds"] = 2
    tree["model"]["backbone"] = "resnet10t"
    tree["train"].update(
        epochs=1, batch_size=8, image_size=16, progress=False, augment=[POLICY_FILE], swa={"last": 1}
    )
    tree["infer"]["tta"] = 1
    tree["policy_search"] = {
        "candidates": 2,
        "subpolicies": 2,
        "keep": 1,
        "epochs": 1,
        "overrides": {"train.batch_size": 4, "model.backbone": "resnet10t"},
    }
    recipe = folder / "search_cells.yaml"
    recipe.write_text(yaml.safe_dump(tree))
    return recipe


@pytest.fixture(autouse=True)
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_run_searches_then_trains_on_the_file_and_a_second_run_redoes_nothing(cells, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", str(cells), f"run_dir={run_dir}", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    order = [
        out.index(f"{stage}:") for stage in ("prepare", "split", "search", "train", "evaluate", "submit")
    ]
    assert order == sorted(order), out
    assert "search: best f1_macro" in out and "note:" not in out

    kept = read_policies(run_dir / "policies.json")
    assert len(kept) == 1 and len(kept[0][1]) == 2
    candidates = sorted((run_dir / "search").glob("candidate-*"))
    assert len(candidates) == 2 and all((c / "final.pt").exists() for c in candidates)
    assert len(pd.read_csv(candidates[0] / "log.csv")) == 1  # policy_search.epochs
    for fold in (0, 1):
        assert (run_dir / f"fold{fold}" / "final.pt").exists()
    assert (run_dir / "submission.csv").exists()
    assert read_json(run_dir / "stages" / "search.json")["done"]

    before = work_mtimes(run_dir)
    assert main(["run", str(cells), f"run_dir={run_dir}", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for stage in ("prepare", "split", "search", "evaluate", "predict", "submit"):
        assert f"{stage}: already done for this config, skipped" in out
    changed = {name for name, mtime in work_mtimes(run_dir).items() if before.get(name) != mtime}
    assert changed <= {"config.yaml"}, changed

    # The search's own digest ignores the file it writes; training's depends on its content.
    recipe = load_recipe(cells, [f"run_dir={run_dir}"])
    search_before, train_before = stage_digest(recipe, "search"), stage_digest(recipe, "train")
    write_policies(run_dir / "policies.json", [(0.1, random_policy(42, 2))])
    assert stage_digest(recipe, "search") == search_before
    assert stage_digest(recipe, "train") != train_before


def test_train_digest_sees_the_run_dir_file_appear(cells, tmp_path):
    recipe = load_recipe(cells, [f"run_dir={tmp_path / 'run'}"])
    assert STAGES.index("split") < STAGES.index("search") < STAGES.index("train")
    missing = stage_digest(recipe, "train")
    write_policies(tmp_path / "run" / "policies.json", [(0.5, random_policy(0, 2))])
    assert stage_digest(recipe, "train") != missing
    # Candidates: overrides applied, no SWA, the search's epochs, no search of their own (their
    # train.augment is replaced by default_score_fn, so they never read the PolicyFile).
    candidate = candidate_recipe(recipe)
    assert candidate.train.batch_size == 4 and candidate.train.swa is None and candidate.train.epochs == 1
    assert candidate.policy_search is None


def test_a_nan_score_round_trips_through_the_policies_file(tmp_path):
    path = write_policies(
        tmp_path / "p.json", [(float("nan"), random_policy(1, 2)), (0.5, random_policy(0, 2))]
    )
    back = read_policies(path)
    scores = [score for score, _ in back]
    assert scores[0] == 0.5 and scores[1] != scores[1]  # NaN (stored as null) ranks last
    assert [policy for _, policy in back] == [random_policy(0, 2), random_policy(1, 2)]


def test_recipe_without_policy_search_runs_and_search_is_a_no_op(cells, tmp_path, capsys):
    tree = yaml.safe_load(cells.read_text())
    tree.pop("policy_search")
    tree["train"]["augment"] = [{"name": "HorizontalFlip", "p": 0.5}]
    recipe = cells.parent / "plain_cells.yaml"
    recipe.write_text(yaml.safe_dump(tree))
    run_dir = tmp_path / "run"
    assert main(["run", str(recipe), f"run_dir={run_dir}", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "search: no policy_search in the recipe, nothing to do" in out
    assert not (run_dir / "search").exists() and not (run_dir / "policies.json").exists()
    assert (run_dir / "submission.csv").exists()
    assert main(["search", str(recipe), f"run_dir={run_dir}", "--device", "cpu"]) == 0
    assert "search: already done for this config, skipped" in capsys.readouterr().out


def test_train_before_search_names_the_missing_file(cells, tmp_path, capsys):
    run_dir = tmp_path / "run"
    for verb in ("prepare", "split"):
        assert main([verb, str(cells), f"run_dir={run_dir}", "--device", "cpu"]) == 0
    assert main(["train", str(cells), f"run_dir={run_dir}", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert str(run_dir / "policies.json") in err and "medals search" in err
