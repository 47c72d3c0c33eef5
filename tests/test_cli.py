"""The command line: verbs, help, and one-sentence errors with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from medals.cli import main

VERBS = [
    "prepare",
    "split",
    "search",
    "train",
    "evaluate",
    "predict",
    "submit",
    "run",
    "plan",
    "ensemble",
    "demo",
]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medals", *args], capture_output=True, text=True)


def test_help_lists_every_verb():
    result = run_cli("--help")
    assert result.returncode == 0
    for verb in VERBS:
        assert verb in result.stdout


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as stop:
        main([verb, "--help"])
    assert stop.value.code == 0
    assert "usage: medals " + verb in capsys.readouterr().out


def test_missing_recipe_is_one_sentence(tmp_path):
    result = run_cli("run", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"medals: error: recipe file {tmp_path / 'nope.yaml'} does not exist"


def test_typo_in_override_names_the_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "r", "task": "multiclass"}))
    result = run_cli("prepare", str(recipe), "train.epochz=2")
    assert result.returncode == 2
    assert "unknown key 'train.epochz'" in result.stderr and str(recipe) in result.stderr
    assert "Traceback" not in result.stderr


def test_stage_before_its_inputs_says_what_to_run(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "r", "task": "multiclass", "run_dir": str(tmp_path / "run")}))
    assert main(["split", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "table.parquet does not exist" in err and "medals prepare" in err


def test_unknown_force_stage(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "r", "task": "multiclass", "run_dir": str(tmp_path / "run")}))
    assert main(["run", str(recipe), "--force", "trian"]) == 2
    assert "--force trian: not a stage" in capsys.readouterr().err
