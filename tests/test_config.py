"""Recipe loading: strict keys, typed values, dotted overrides, errors naming key and file."""

from __future__ import annotations

import pytest
import yaml

from medals.config import dump_recipe, load_recipe, parse_override
from medals.errors import MedalsError

BASE = {"name": "toy", "task": "multiclass", "data": {"id_column": "image_name"}}


def write(tmp_path, tree, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree))
    return path


def test_defaults_and_overrides(tmp_path):
    path = write(tmp_path, BASE)
    recipe = load_recipe(path, ["train.epochs=2", "train.lr=3e-5", "model.backbone=efficientnet_b0"])
    assert recipe.train.epochs == 2
    assert recipe.train.lr == pytest.approx(3e-5)
    assert recipe.model.backbone == "efficientnet_b0"
    assert recipe.data.id_column == "image_name"
    assert recipe.data_root == tmp_path.resolve()


def test_override_parses_yaml_values(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE), ["train.folds=[0, 2]", "train.clip_grad=null"])
    assert recipe.train.folds == [0, 2]
    assert recipe.train.clip_grad is None
    assert parse_override("split.mapping={'2': 0}") == (["split", "mapping"], {"2": 0})


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, {**BASE, "train": {"epoch": 3}})
    with pytest.raises(MedalsError) as err:
        load_recipe(path)
    assert "train.epoch" in str(err.value) and str(path) in str(err.value)


def test_misspelt_override_is_an_error(tmp_path):
    with pytest.raises(MedalsError, match=r"unknown key 'model\.backbon'"):
        load_recipe(write(tmp_path, BASE), ["model.backbon=resnet18"])


def test_wrong_type_names_key_value_and_file(tmp_path):
    path = write(tmp_path, BASE)
    with pytest.raises(MedalsError) as err:
        load_recipe(path, ["train.batch_size=lots"])
    message = str(err.value)
    assert "train.batch_size" in message and "'lots'" in message and str(path) in message


def test_wrong_literal_and_missing_required(tmp_path):
    with pytest.raises(MedalsError, match="task"):
        load_recipe(write(tmp_path, {"name": "x", "task": "detection"}))
    with pytest.raises(MedalsError, match="missing required key 'name'"):
        load_recipe(write(tmp_path, {"task": "multiclass"}))


def test_segmentation_needs_a_decoder(tmp_path):
    with pytest.raises(MedalsError, match="model.arch"):
        load_recipe(write(tmp_path, {"name": "s", "task": "segmentation"}))


def test_infer_checkpoint_must_be_one_a_fold_keeps(tmp_path):
    path = write(tmp_path, BASE)
    # last.pt and epoch<k>.pt are deleted when a fold finishes: predicting from them cannot work.
    for name in ("last", "epoch2", "swa"):
        with pytest.raises(MedalsError, match=f"infer.checkpoint '{name}' .* choose one of best, final"):
            load_recipe(path, [f"infer.checkpoint={name}"])
    recipe = load_recipe(path, ["train.swa={last: 2}", "infer.checkpoint=swa"])
    assert recipe.kept_checkpoints == ["best", "final", "swa"]
    rule = "train.checkpoints=[{name: low_loss, metric: val_loss, mode: min}]"
    with pytest.raises(MedalsError, match="infer.checkpoint 'best' .* choose one of low_loss, final"):
        load_recipe(path, [rule])  # a renamed rule: the default 'best' no longer exists
    assert load_recipe(path, [rule, "infer.checkpoint=low_loss"]).kept_checkpoints == ["low_loss", "final"]


def test_checkpoint_rule_names_are_checked_when_the_recipe_loads(tmp_path):
    path = write(tmp_path, BASE)
    for name in ("last", "final", "swa", "epoch3", "a/b", ""):
        with pytest.raises(MedalsError, match=r"train.checkpoints\[0\].name .* is not allowed \(reserved"):
            load_recipe(path, [f"train.checkpoints=[{{name: '{name}'}}]"])
    with pytest.raises(MedalsError, match="train.checkpoints has the name 'best' twice"):
        load_recipe(path, ["train.checkpoints=[{name: best}, {name: best, metric: val_loss}]"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(MedalsError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(MedalsError, match="not valid YAML"):
        load_recipe(bad)


def test_resolved_config_round_trips(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE), ["train.epochs=4"])
    again = write(tmp_path, yaml.safe_load(dump_recipe(recipe)), "resolved.yaml")
    assert load_recipe(again) == recipe


def test_runs_made_before_the_later_train_keys_keep_their_digests():
    # Literal digests of this recipe as medals computed them before channels_last's default became None
    # (per device) and before compile, data_path and sync_bn existed: a changed digest retrains old runs.
    import pandas as pd

    from medals.config import Recipe
    from medals.stages.pipeline import stage_digest
    from medals.train.loop import training_hash

    spec = {"name": "pin", "task": "multiclass", "data": {"root": "/data"}, "model": {"backbone": "resnet18"}}
    recipe = Recipe.model_validate(spec)
    table = pd.DataFrame({"id": ["a", "b", "c"], "fold": [0, 1, 0]})
    assert training_hash(recipe, table, 0) == "b3d1189a2e733d45"
    assert stage_digest(recipe, "train") == "ebc5603eaf23445f"
    assert stage_digest(recipe, "evaluate") == "4fd76165636187ee"
    # channels_last is still part of them: turning it on is a different run
    on = Recipe.model_validate({**spec, "train": {"channels_last": True}})
    assert training_hash(on, table, 0) != "b3d1189a2e733d45"
