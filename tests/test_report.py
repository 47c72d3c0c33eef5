"""The report's judgements on hand-made run folders: fold disagreement, empty-mask rates, the submission
against its sample, and compare's rows; the pages open in headless Chromium."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import yaml

from medals.cli import main
from medals.files import write_json
from medals.stages.report import write_report
from medals.stages.report.metrics import SD_FLOOR, disagreement
from medals.stages.report.segmentation import empty_rates


def test_a_fold_below_chance_warns():
    found = disagreement({"0": 0.08, "1": 0.94}, pooled=0.51, metric="auc")
    assert len(found) == 1 and "fold 0" in found[0] and "below chance" in found[0]


def test_a_fold_out_of_line_with_the_others_warns_and_agreeing_folds_do_not():
    good = {"0": 0.95, "1": 0.94, "2": 0.96, "3": 0.95, "4": 0.94}
    assert disagreement(good, pooled=0.95, metric="f1_macro") == []
    bad = {**good, "4": 0.70}  # 0.25 below the pooled value, the others' SD is 0.008 (floor 0.02)
    found = disagreement(bad, pooled=0.90, metric="f1_macro")
    assert len(found) == 1 and "fold 4" in found[0] and "disagree" in found[0]
    # The others agree exactly, so their SD is the floor: just inside 3 floors is not flagged, just outside is.
    edge = {"0": 0.90, "1": 0.90, "2": 0.90}
    assert disagreement({**edge, "3": 0.90 - 2.9 * SD_FLOOR}, pooled=0.90, metric="dice") == []
    assert len(disagreement({**edge, "3": 0.90 - 3.1 * SD_FLOOR}, pooled=0.90, metric="dice")) == 1


def test_no_chance_level_for_metrics_without_one():
    # Dice or F1 of 0.3 is poor but not "below chance": only AUCs have a fixed chance level.
    assert disagreement({"0": 0.3, "1": 0.35}, pooled=0.32, metric="dice") == []
    assert len(disagreement({"0": 0.3, "1": 0.9}, pooled=0.6, metric="cls_auc")) == 1


def test_empty_mask_rates_worked_by_hand():
    truth = np.zeros((4, 2, 2), dtype=bool)
    truth[2, 0, 0] = truth[3, 1, 1] = True  # images 0, 1 empty; 2, 3 not
    predicted = np.zeros_like(truth)
    predicted[1, 0, 1] = True  # a false positive on empty image 1
    predicted[2, 0, 0] = True  # image 3's mask is missed
    rates = empty_rates(truth, predicted)
    assert rates == {
        "empty truth": 0.5,
        "empty prediction": 0.5,
        "false positive on empty": 0.5,
        "empty prediction on non-empty": 0.5,
    }


def _fixture_run(folder, folds: dict[str, float], tmp_path) -> None:
    """A run folder with a config and metrics.json only (as after a report of evaluate's output)."""
    folder.mkdir(parents=True)
    config = {
        "name": "fixture",
        "task": "binary",
        "source": str(tmp_path / "recipe.yaml"),
        "infer": {"tta": 1},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    pooled = float(np.mean(list(folds.values())))
    write_json(
        folder / "metrics.json",
        {"folds": {k: {"auc": v} for k, v in folds.items()}, "pooled": {"auc": pooled}},
    )


def test_report_warns_on_a_run_with_a_bad_fold_and_not_on_a_good_one(tmp_path, render):
    _fixture_run(tmp_path / "bad", {"0": 0.93, "1": 0.08, "2": 0.94}, tmp_path)
    _fixture_run(tmp_path / "good", {"0": 0.93, "1": 0.92, "2": 0.94}, tmp_path)
    bad = render(write_report(tmp_path / "bad"))
    good = render(write_report(tmp_path / "good"))
    assert "warning: fold 1 has auc 0.0800, below chance" in bad
    assert "warning:" not in good
    for dom in (bad, good):
        assert 'data-broken="0"' in dom and "missing stages" in dom
        assert "TTA gain: none to measure" in dom


def test_submission_checked_against_the_sample(tmp_path):
    from medals.stages.report.run_view import RunView
    from medals.stages.report.test_side import _submission

    (tmp_path / "data").mkdir()
    pd.DataFrame({"id": ["a", "b", "c"], "target": [0.5] * 3}).to_csv(
        tmp_path / "data/sample.csv", index=False
    )
    run_dir = tmp_path / "run"
    _fixture_run(run_dir, {"0": 0.9}, tmp_path)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["data"] = {"root": "data", "sample_submission": "sample.csv"}
    run = RunView.of(run_dir)
    run.config = config
    sub = pd.DataFrame({"id": ["a", "b", "c"], "target": [0.1, 0.2, 0.3]})
    sub.to_csv(run_dir / "submission.csv", index=False)
    assert "the columns and ids of the sample" in _submission(run)
    sub.iloc[:2].to_csv(run_dir / "submission.csv", index=False)
    text = _submission(run)
    assert "warning: the submission has 2 rows" in text and "has 3 rows" in text


def test_compare_rows_are_run_folders_and_a_label_run_is_scored_by_accuracy(tmp_path, capsys):
    for name, kind, auc, accuracy in (("a", None, 0.9, 0.7), ("b", "label", 0.8, 0.75)):
        folder = tmp_path / name
        folder.mkdir()
        config = {"name": "same_recipe", "task": "multiclass", "submit": {"kind": kind}}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        folds = {"0": {"auc": auc, "accuracy": accuracy}, "1": {"auc": auc, "accuracy": accuracy}}
        write_json(folder / "metrics.json", {"folds": folds, "pooled": {"auc": auc, "accuracy": accuracy}})
        (folder / "fold0").mkdir()
        pd.DataFrame({"epoch": [1, 2], "images_per_s": [100.0, 300.0]}).to_csv(folder / "fold0/log.csv")
        write_json(folder / "stages/train.json", {"digest": "x", "done": True, "seconds": 12.5})
        write_json(folder / "stages/evaluate.json", {"digest": "x", "done": True, "seconds": 2.5})
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table["run"].tolist() == [str(tmp_path / "a"), str(tmp_path / "b")]  # two runs of one recipe
    assert table["recipe"].tolist() == ["same_recipe", "same_recipe"]
    assert table["metric"].tolist() == ["auc", "accuracy"] and table["cv"].tolist() == [0.9, 0.75]
    assert table["wall_s"].tolist() == [15.0, 15.0] and table["images_per_s"].tolist() == [200.0, 200.0]
    assert "submit.kind" in table.columns


@pytest.mark.parametrize("n_points, marker", [(1, "o"), (30, "o"), (31, "")])
def test_short_curves_carry_markers(n_points, marker):
    from medals.post.plots.figure import marker_for

    assert marker_for(n_points) == marker
