"""Regression and ordinal competitions from `medals init` to a valid submission: an RSNA bone-age style
folder (`id,boneage` in months, a float submission) and an APTOS style one (`id_code,diagnosis` grades
0..4 scored by QWK, an integer submission); declarations the data cannot satisfy stop with one sentence."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from medals.cli import main
from medals.config import load_recipe, recipe_from_dict
from medals.errors import MedalsError
from medals.models.factory import create_model
from medals.train.losses import build_loss

FAST = [
    "model.pretrained=false",
    "model.backbone=resnet10t",
    "train.epochs=1",
    "train.batch_size=8",
    "split.n_folds=2",
    "train.progress=false",
    "train.num_workers=0",
    "--device",
    "cpu",
]


def _images(folder: Path, ids: list[str], values: np.ndarray, rng: np.random.Generator) -> None:
    """32 px PNGs whose brightness follows the target, so the task is learnable."""
    folder.mkdir(parents=True, exist_ok=True)
    for ident, value in zip(ids, values, strict=True):
        level = int(40 + 170 * value)
        image = np.clip(rng.normal(level, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{ident}.png"), image)


def bone_age_folder(root: Path, n_train: int = 40, n_test: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    months = rng.integers(10, 221, n_train + n_test)  # whole months, as RSNA bone age gives them
    ids = [str(1377 + i) for i in range(n_train + n_test)]
    male = rng.integers(0, 2, n_train + n_test)
    _images(root / "train", ids[:n_train], (months[:n_train] - 10) / 210, rng)
    _images(root / "test", ids[n_train:], (months[n_train:] - 10) / 210, rng)
    train = pd.DataFrame({"id": ids[:n_train], "boneage": months[:n_train], "male": male[:n_train]})
    train.to_csv(root / "train.csv", index=False)
    pd.DataFrame({"id": ids[n_train:], "male": male[n_train:]}).to_csv(root / "test.csv", index=False)
    # The sample lists the test ids in an order of its own, with a float placeholder.
    sample = pd.DataFrame({"id": ids[n_train:][::-1], "boneage": 0.0})
    sample.to_csv(root / "sample_submission.csv", index=False)
    return sample


def aptos_folder(root: Path, n_train: int = 40, n_test: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    grades = np.concatenate([np.arange(5).repeat(n_train // 5), rng.integers(0, 5, n_test)])
    ids = [f"{rng.integers(16**11):012x}" for _ in range(n_train + n_test)]
    _images(root / "train_images", ids[:n_train], grades[:n_train] / 4, rng)
    _images(root / "test_images", ids[n_train:], grades[n_train:] / 4, rng)
    pd.DataFrame({"id_code": ids[:n_train], "diagnosis": grades[:n_train]}).to_csv(
        root / "train.csv", index=False
    )
    pd.DataFrame({"id_code": ids[n_train:]}).to_csv(root / "test.csv", index=False)
    sample = pd.DataFrame({"id_code": ids[n_train:][::-1], "diagnosis": 0})
    sample.to_csv(root / "sample_submission.csv", index=False)
    return sample


def init(folder: Path, *overrides: str) -> dict:
    assert main(["init", str(folder), *overrides]) == 0
    return yaml.safe_load((folder / "recipe.yaml").read_text())


def run(folder: Path, tmp_path: Path, *overrides: str) -> tuple[pd.DataFrame, Path]:
    run_dir = tmp_path / "run"
    assert main(["run", str(folder / "recipe.yaml"), f"run_dir={run_dir}", *overrides, *FAST]) == 0
    return pd.read_csv(run_dir / "submission.csv"), run_dir


def check_like_sample(sub: pd.DataFrame, sample: pd.DataFrame, dtype_kind: str) -> None:
    """Header, row ids and row order as the sample's; values of the expected type ('f' or 'i')."""
    assert list(sub.columns) == list(sample.columns)
    assert sub.iloc[:, 0].astype(str).tolist() == sample.iloc[:, 0].astype(str).tolist()
    assert sub.iloc[:, 1].dtype.kind == dtype_kind
    assert sub.iloc[:, 1].notna().all()


def test_bone_age_init_then_run_submits_months(tmp_path, capsys):
    data = tmp_path / "boneage"
    sample = bone_age_folder(data)
    tree = init(data)
    assert tree["task"] == "regression" and tree["data"]["label_column"] == "boneage"
    assert tree["submit"] == {"kind": "value", "clip": "train"}
    assert tree["train"]["checkpoints"] == [{"name": "best", "metric": "rmse", "mode": "min"}]
    assert "meta" in tree["data"] and "male" in tree["data"]["meta"]["numeric"]
    sub, run_dir = run(data, tmp_path)
    check_like_sample(sub, sample, "f")
    train = pd.read_csv(data / "train.csv")
    # Clipped to the training range, and in months (the model's outputs are unscaled), not z-scores.
    assert sub["boneage"].between(train["boneage"].min(), train["boneage"].max()).all()
    assert sub["boneage"].mean() > 20
    metrics = yaml.safe_load((run_dir / "metrics.json").read_text())["pooled"]
    assert set(metrics) == {"rmse", "mae", "r2"} and metrics["rmse"] > 0
    oof = pd.read_parquet(run_dir / "oof.parquet").merge(train.astype({"id": str}), on="id")
    assert metrics["rmse"] == pytest.approx(
        float(np.sqrt(((oof["p_0"] - oof["boneage"]) ** 2).mean())), rel=1e-5
    )
    assert main(["compare", str(run_dir)]) == 0
    assert "rmse" in capsys.readouterr().out
    assert "predicted against true" in (run_dir / "report.html").read_text()


def test_aptos_init_then_run_submits_integer_grades(tmp_path, capsys):
    data = tmp_path / "aptos"
    sample = aptos_folder(data)
    tree = init(data)  # 'diagnosis' 0..4 with an integer sample: ordinal without being told
    assert tree["task"] == "ordinal" and tree["data"]["classes"] == ["0", "1", "2", "3", "4"]
    assert tree["submit"]["kind"] == "ordinal"
    assert tree["train"]["checkpoints"][0] == {"name": "best", "metric": "qwk", "mode": "max"}
    sub, run_dir = run(data, tmp_path, "metrics.extra=[r2]")
    check_like_sample(sub, sample, "i")
    assert sub["diagnosis"].between(0, 4).all()
    metrics = yaml.safe_load((run_dir / "metrics.json").read_text())["pooled"]
    assert set(metrics) == {"qwk", "rmse", "mae", "r2", "qwk_oof_cuts"}
    assert metrics["qwk_oof_cuts"] >= metrics["qwk"] - 1e-9  # the search starts at rounding, only improves
    # The grades are the test predictions cut at the cut-points fitted on OOF, as printed.
    printed = [line for line in capsys.readouterr().out.splitlines() if "ordinal cut-points" in line]
    cuts = np.array([float(v) for v in printed[-1].split("cut-points")[1].split()])
    test = pd.read_parquet(run_dir / "test.parquet").set_index("id").loc[sub["id_code"].astype(str)]
    assert (np.searchsorted(cuts, test["p_0"].to_numpy(), side="right") == sub["diagnosis"]).mean() > 0.9
    assert "rounded grades" in (run_dir / "report.html").read_text()
    # Classes declared that the CSV's grades do not match: one sentence naming the column, exit 2.
    assert (
        main(["run", str(data / "recipe.yaml"), f"run_dir={tmp_path / 'bad'}", "data.classes=[0,1,2]", *FAST])
        == 2
    )
    err = capsys.readouterr().err
    assert "'diagnosis'" in err and "outside the class list" in err
    assert main(["run", str(data / "recipe.yaml"), "submit.cutpoints=[0.5,1.5]", *FAST]) == 2
    assert "submit.cutpoints has 2 values for 5 grades" in capsys.readouterr().err


def test_init_task_override_and_wrong_declarations(tmp_path, capsys):
    data = tmp_path / "aptos"
    aptos_folder(data, n_train=10, n_test=4)
    assert init(data, "task=multiclass")["task"] == "multiclass"
    assert main(["init", str(data), "task=regression", "--force"]) == 0
    assert yaml.safe_load((data / "recipe.yaml").read_text())["task"] == "regression"
    bone = tmp_path / "boneage"
    bone_age_folder(bone, n_train=10, n_test=4)
    train = pd.read_csv(bone / "train.csv")
    train.assign(boneage=train["boneage"] + 0.5).to_csv(bone / "train.csv", index=False)  # not grades
    capsys.readouterr()
    assert main(["init", str(bone), "task=ordinal"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medals: error:") and "task=ordinal" in err and "boneage" in err
    assert len(err.splitlines()) == 1
    # A recipe that declares a submission the task cannot write, or a metric it cannot compute.
    recipe = load_recipe(data / "recipe.yaml")
    assert main(["run", str(data / "recipe.yaml"), "submit.kind=probability", *FAST]) == 2
    assert "submit.kind 'probability' does not fit task 'regression'" in capsys.readouterr().err
    assert main(["run", str(data / "recipe.yaml"), "metrics.extra=[pauc]", *FAST]) == 2
    assert "'pauc' does not apply to task 'regression'" in capsys.readouterr().err
    assert recipe.task == "regression"


def test_a_text_target_declared_regression_is_refused(tmp_path, capsys):
    data = tmp_path / "cassava"
    aptos_folder(data, n_train=10, n_test=4)
    train = pd.read_csv(data / "train.csv")
    train["diagnosis"] = np.where(train["diagnosis"] > 2, "severe", "mild")
    train.to_csv(data / "train.csv", index=False)
    assert main(["init", str(data), "task=regression"]) == 2
    err = capsys.readouterr().err
    assert "not numbers" in err and "'diagnosis'" in err


def test_regression_output_is_unscaled_and_the_loss_is_standardised():
    recipe = recipe_from_dict(
        {"name": "r", "task": "regression", "model": {"backbone": "resnet10t", "pretrained": False}}, "t"
    )
    model = create_model(recipe, 1).eval()
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z = model(image)
        model.set_target_scale(100.0, 40.0)
        months = model(image)
    assert torch.allclose(months, 100.0 + 40.0 * z, atol=1e-4)
    assert "target_mean" in model.state_dict() and float(model.state_dict()["target_std"]) == 40.0
    loss = build_loss(None, "regression", target_std=40.0)
    batch = {"target": torch.tensor([100.0, 180.0])}
    value = loss(torch.tensor([[140.0], [180.0]]), batch)
    assert float(value) == pytest.approx(((40.0 / 40.0) ** 2 + 0.0) / 2)
    with pytest.raises(MedalsError, match="'ce' is for classification"):
        build_loss(
            recipe_from_dict({"name": "r", "task": "regression", "loss": [{"name": "ce"}]}, "t").loss,
            "regression",
        )


def test_under_bf16_autocast_the_unscaled_output_stays_float32():
    recipe = recipe_from_dict(
        {"name": "r", "task": "regression", "model": {"backbone": "resnet10t", "pretrained": False}}, "t"
    )
    model = create_model(recipe, 1).eval()
    model.set_target_scale(150.0, 40.0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(2, 3, 32, 32))
    assert out.dtype == torch.float32


def test_a_multiclass_model_submits_ordinal_grades_by_its_expected_grade():
    from medals.post.ordinal import apply_cutpoints, expected_grade, fit_cutpoints
    from medals.stages.submit_numeric import ordinal_submission, value_submission

    rng = np.random.default_rng(7)
    truth = rng.integers(0, 3, 90)
    logits = rng.normal(size=(90, 3)) + 1.5 * np.eye(3)[truth]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ids = [f"i{k}" for k in range(90)]
    train = pd.DataFrame({"id": ids[:60], "label": truth[:60], "target": truth[:60] * 10.0})
    columns = {f"p_{k}": probs[:, k] for k in range(3)}
    frame = pd.DataFrame({"id": ids, **columns})
    oof, test = frame.iloc[:60].reset_index(drop=True), frame.iloc[60:].reset_index(drop=True)
    recipe = recipe_from_dict(
        {"name": "m", "task": "multiclass", "data": {"classes": [0, 1, 2]}, "submit": {"kind": "ordinal"}},
        "t",
    )
    labels = {"classes": ["0", "1", "2"], "num_classes": 3}
    sub = ordinal_submission(recipe, train, test, oof, labels, ["id", "grade"])
    cuts = fit_cutpoints(truth[:60], expected_grade(probs[:60]), 3)
    assert sub["grade"].tolist() == [str(g) for g in apply_cutpoints(expected_grade(probs[60:]), cuts)]
    rounded = recipe_from_dict(
        {"name": "m", "task": "multiclass", "submit": {"kind": "ordinal", "cutpoints": "round"}}, "t"
    )
    sub = ordinal_submission(rounded, train, test, None, labels, ["id", "grade"])
    assert sub["grade"].tolist() == [str(g) for g in np.rint(expected_grade(probs[60:])).astype(int)]
    with pytest.raises(MedalsError, match="no OOF predictions"):
        ordinal_submission(recipe, train, test, None, labels, ["id", "grade"])
    # A regression value clipped to the training targets' range (0..20 here).
    regression = recipe_from_dict({"name": "r", "task": "regression", "submit": {"clip": "train"}}, "t")
    values = pd.DataFrame({"id": ["a", "b", "c"], "p_0": [-5.0, 7.5, 31.0]})
    assert value_submission(regression, train, values, ["id", "v"])["v"].tolist() == [0.0, 7.5, 20.0]


def test_compare_puts_the_lowest_rmse_first(tmp_path):
    from medals.files import write_json
    from medals.stages.compare import compare_table

    folders = []
    for name, rmse in (("a", 9.0), ("b", 4.0), ("c", 6.5)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text(yaml.safe_dump({"name": name, "task": "regression"}))
        write_json(folder / "metrics.json", {"folds": {"0": {"rmse": rmse}}, "pooled": {"rmse": rmse}})
        folders.append(folder)
    assert compare_table(folders)["recipe"].tolist() == ["b", "c", "a"]
    (tmp_path / "a" / "config.yaml").write_text(
        yaml.safe_dump({"name": "a", "task": "binary", "metrics": {"main": "auc"}})
    )
    write_json(tmp_path / "a" / "metrics.json", {"folds": {}, "pooled": {"auc": 0.9}})
    frame = compare_table(folders)
    assert frame["metric"].tolist() == ["auc", "rmse", "rmse"] and frame["recipe"].tolist() == ["a", "b", "c"]


def test_numeric_target_rules():
    from medals.data.inspect_numeric import numeric_target

    def read(values, task=None, sample=("0",), name="diagnosis", classes=None):
        return numeric_target(
            "train.csv", name, pd.Series(values, dtype=str), pd.Series(sample), task, classes
        )

    assert read(["0", "1", "2", "3", "4"]).task == "ordinal"
    assert read(["0", "1", "2", "3", "4"], name="label") is None  # no grade-like name: classes
    assert read(["0", "1", "2", "3", "4"], sample=("0.25",)) is None  # the sample wants probabilities
    assert read(["0", "1"]) is None  # two values: a binary task
    assert read([str(v) for v in range(30)], name="label").task == "regression"  # many numbers
    assert read(["1.5", "2"], name="label").task == "regression"  # fractions
    assert read(["1", "2", "5", "3"], task="ordinal").classes == ["1", "2", "3", "5"]
    found = read(["mild", "severe", "none"], task="ordinal", classes=["none", "mild", "severe"])
    assert found.classes == ["none", "mild", "severe"]
    with pytest.raises(MedalsError, match="outside data.classes"):
        read(["mild", "extreme"], task="ordinal", classes=["none", "mild"])
    with pytest.raises(MedalsError, match="not whole-number grades"):
        read(["mild", "none"], task="ordinal")
    assert read(["0", "1", "2", "3"], task="multiclass") is None
