"""Whole pipeline on tiny generated competitions: every stage, skipping, forcing, ensembling."""

from __future__ import annotations

import io
import shutil
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest
import yaml

from medals.cli import main
from medals.demo import generate as gen
from medals.files import read_json
from tests.run_files import work_mtimes

pytestmark = pytest.mark.slow

TINY = [
    "train.epochs=2",
    "split.n_folds=2",
    "train.image_size=32",
    "data.cache_size=32",
    "train.progress=false",
]


def competition(tmp_path_factory, task: str, n_train: int, n_test: int) -> Path:
    folder = tmp_path_factory.mktemp(task)
    getattr(gen, f"generate_{task}")(folder, n_train=n_train, n_test=n_test, size=48, seed=1)
    recipe = folder / f"demo_{task}.yaml"
    shutil.copy(resources.files("medals.demo").joinpath(f"demo_{task}.yaml"), recipe)
    return recipe


@pytest.fixture(scope="module")
def melanoma(tmp_path_factory):
    return competition(tmp_path_factory, "melanoma", 60, 16)


def run(recipe: Path, run_dir: Path, *extra: str, verb: str = "run") -> None:
    assert main([verb, str(recipe), f"run_dir={run_dir}", *TINY, *extra]) == 0


# The report's sections every finished run shows, and those of each task (medals.stages.report).
RUN_SECTIONS = [
    "Recipe",
    "Stages",
    "Data",
    "Out-of-fold metrics",
    "TTA gain (pooled OOF)",
    "Training",
    "Out-of-fold predictions",
    "Test predictions and submission",
    "Time",
]
TASK_SECTIONS = {
    "multiclass": [
        "Image sizes",
        "Class balance per fold",
        "Most confidently wrong",
        "ROC",
        "calibration",
        "confusion",
    ],
    "multilabel": [
        "Class balance per fold",
        "labels per image",
        "per-class ROC",
        "F1 against threshold",
        "per-class F1",
        "Most confidently wrong",
    ],
    "segmentation": [
        "Dice per image",
        "Dice against threshold",
        "mask areas",
        "false positive on empty",
        "Best and worst cases",
    ],
}
MIN_FIGURES = {"multiclass": 7, "multilabel": 6, "segmentation": 6}
MAX_PAGE_BYTES = 5 * 2**20


def check_report(render, run_dir: Path, task: str | None = None) -> str:
    """`medals run` wrote report.html: in a browser every figure decodes, the pooled metrics show, and
    (given the task) every section that applies is there with at least the task's number of figures."""
    import re

    page = run_dir / "report.html"
    assert page.is_file() and page.stat().st_size < MAX_PAGE_BYTES
    dom = render(page)
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    assert images >= 2 and images == dom.count("<img ")
    assert 'data-broken="0"' in dom
    metrics = read_json(run_dir / "metrics.json")
    for value in metrics["pooled"].values():
        assert f"{value:.4f}" in dom
    if task is not None:
        missing = [name for name in RUN_SECTIONS + TASK_SECTIONS[task] if name not in dom]
        assert not missing, missing
        assert images >= MIN_FIGURES[task], images
        assert "the columns and ids of the sample" in dom  # the submission checked against the sample
        assert "warning:" not in dom  # folds of a healthy run agree
    return dom


def test_melanoma_run_skip_force_and_change(melanoma, tmp_path, capsys, render):
    run_dir = tmp_path / "run"
    run(melanoma, run_dir)
    out = capsys.readouterr().out
    assert "evaluate: pooled OOF" in out and "submit:" in out
    dom = check_report(render, run_dir, "multiclass")
    assert "missing stages" not in dom

    metrics = read_json(run_dir / "metrics.json")
    assert set(metrics["folds"]) == {"0", "1"} and 0.0 <= metrics["pooled"]["auc"] <= 1.0
    train = pd.read_csv(melanoma.parent / "train.csv")
    oof = pd.read_parquet(run_dir / "oof.parquet")
    assert sorted(oof["id"]) == sorted(train["image_name"])  # every training image once
    sample = pd.read_csv(melanoma.parent / "sample_submission.csv")
    sub = pd.read_csv(run_dir / "submission.csv")
    assert list(sub.columns) == ["image_name", "target"]
    assert sorted(sub["image_name"]) == sorted(sample["image_name"])
    assert sub["target"].between(0, 1).all()
    assert (run_dir / "config.yaml").exists() and (run_dir / "folds.parquet").exists()
    for fold in (0, 1):
        assert (run_dir / f"fold{fold}" / "final.pt").exists()
        assert len(pd.read_csv(run_dir / f"fold{fold}" / "log.csv")) == 2

    # Same config again: nothing is redone.
    before = work_mtimes(run_dir)
    run(melanoma, run_dir)
    out = capsys.readouterr().out
    for stage in ("prepare", "split", "evaluate", "predict", "submit"):
        assert f"{stage}: already done for this config, skipped" in out
    after = work_mtimes(run_dir)
    changed = {name for name in after if before.get(name) != after[name]}
    assert changed <= {"config.yaml"}, changed

    # --force submit redoes the submission only.
    run(melanoma, run_dir, "--force", "submit")
    after_force = work_mtimes(run_dir)
    assert after_force["submission.csv"] != after["submission.csv"]
    assert after_force["test.parquet"] == after["test.parquet"]
    assert after_force["fold0/final.pt"] == after["fold0/final.pt"]

    # A changed inference setting redoes evaluate/predict/submit, never training.
    run(melanoma, run_dir, "infer.tta=8")
    final = work_mtimes(run_dir)
    assert final["fold0/final.pt"] == after["fold0/final.pt"]
    assert final["oof.parquet"] != after["oof.parquet"]
    assert final["test.parquet"] != after["test.parquet"]


def test_training_change_retrains(melanoma, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run(melanoma, run_dir, "train.folds=[0]", verb="prepare")
    run(melanoma, run_dir, verb="split")
    run(melanoma, run_dir, "train.folds=[0]", verb="train")
    assert (run_dir / "fold0/final.pt").exists() and not (run_dir / "fold1").exists()
    first = (run_dir / "fold0/final.pt").stat().st_mtime_ns
    # Another fold as a separate job keeps fold 0.
    run(melanoma, run_dir, "train.folds=[1]", verb="train")
    assert (run_dir / "fold0/final.pt").stat().st_mtime_ns == first
    assert (run_dir / "fold1/final.pt").exists()
    # A recipe that cannot train stops with its sentence before the folds it would replace are cleared,
    # so going back to the old recipe trains nothing again.
    trained = work_mtimes(run_dir)
    for bad in ("train.augment=[{name: NoSuchOp}]", "model.backbone=no_such_net"):
        assert main(["train", str(melanoma), f"run_dir={run_dir}", *TINY, bad]) == 2
        assert work_mtimes(run_dir).keys() >= {k for k in trained if k.startswith("fold")}
    assert "unknown albumentations op 'NoSuchOp'" in capsys.readouterr().err
    run(melanoma, run_dir, verb="train")
    assert {k: v for k, v in work_mtimes(run_dir).items() if k.startswith("fold")} == {
        k: v for k, v in trained.items() if k.startswith("fold")
    }
    # A different learning rate makes the old folds stale: moved aside (stale/), never deleted.
    run(melanoma, run_dir, "train.lr=0.001", "train.folds=[0]", verb="train")
    assert (run_dir / "fold0/final.pt").stat().st_mtime_ns != first
    assert not (run_dir / "fold1").exists()
    assert len(list(run_dir.glob("stale/*/fold1/final.pt"))) == 1


def test_ensemble_file_runs_members_then_rank_ensemble(melanoma, tmp_path, monkeypatch, capsys, render):
    monkeypatch.chdir(tmp_path)  # members' run directories default to runs/<name>
    tree = yaml.safe_load(melanoma.read_text())
    members = []
    for seed in (0, 1):
        member = melanoma.parent / f"member{seed}.yaml"
        member.write_text(yaml.safe_dump({**tree, "name": f"member{seed}", "seed": seed}))
        members.append(member.name)
    ensemble = melanoma.parent / "ensemble.yaml"
    ensemble.write_text(
        yaml.safe_dump({"ensemble": {"name": "ens", "method": "rank", "members": members, "weights": [1, 3]}})
    )
    assert main(["plan", str(ensemble), *TINY]) == 0
    listing = capsys.readouterr().out
    assert "member0" in listing and "member1" in listing and "rank ensemble of the 2 runs" in listing

    assert main(["run", str(ensemble), *TINY, "train.epochs=1"]) == 0
    sub = pd.read_csv(tmp_path / "runs/ens/submission.csv")
    preds = [
        pd.read_csv(tmp_path / f"runs/member{seed}/submission.csv").set_index("image_name") for seed in (0, 1)
    ]
    # Each member becomes pandas' rank(pct=True), r / n, as the melanoma solution blended them.
    ranks = [p["target"].rank(method="average", pct=True) for p in preds]
    expected = ranks[0] * 0.25 + ranks[1] * 0.75
    got = sub.set_index("image_name")["target"]
    assert got.loc[expected.index].round(5).tolist() == expected.round(5).tolist()

    # The ensemble's report: each member's CV, the blend's, their correlation.
    dom = render(tmp_path / "runs/ens/report.html")
    assert 'data-broken="0"' in dom and "member correlation" in dom and "blend (rank)" in dom
    for seed in (0, 1):
        auc = read_json(tmp_path / f"runs/member{seed}/metrics.json")["pooled"]["auc"]
        assert f"{auc:.4f}" in dom
    # compare: the two runs differ in one key (and their names), sorted by CV.
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "runs/member0"), str(tmp_path / "runs/member1"), "--csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    aucs = [read_json(tmp_path / f"runs/member{s}/metrics.json")["pooled"]["auc"] for s in (0, 1)]
    assert table["cv"].tolist() == sorted(aucs, reverse=True)
    assert [c for c in table.columns if "." in c or c == "seed"] == ["seed"]  # the one differing key
    assert (table["train_s"] > 0).all() and table["fold_std"].notna().all()

    # The ensemble verb alone gives the same file from the members' predictions.
    assert main(["ensemble", str(ensemble), *TINY, "train.epochs=1", "--out", str(tmp_path / "again")]) == 0
    again = pd.read_csv(tmp_path / "again/submission.csv")
    assert again.equals(sub)


def test_cells_multilabel_run(tmp_path_factory, tmp_path, render):
    recipe = competition(tmp_path_factory, "cells", 60, 12)
    run(recipe, tmp_path / "run")
    check_report(render, tmp_path / "run", "multilabel")
    sub = pd.read_csv(tmp_path / "run" / "submission.csv", keep_default_na=False)
    assert list(sub.columns) == ["Id", "Predicted"]
    for text in sub["Predicted"]:
        labels = [int(token) for token in text.split()]
        assert labels, "the most probable class is always on"
        assert labels == sorted(labels) and all(0 <= k < 5 for k in labels)
    assert "f1_macro" in read_json(tmp_path / "run" / "metrics.json")["pooled"]


def test_chest_segmentation_run(tmp_path_factory, tmp_path, render):
    from medals.data.rle import decode

    recipe = competition(tmp_path_factory, "chest", 48, 10)
    run(recipe, tmp_path / "run", "submit.min_area=0", "submit.pixel_threshold=0.3")
    check_report(render, tmp_path / "run", "segmentation")
    sub = pd.read_csv(tmp_path / "run" / "submission.csv", dtype=str)
    assert list(sub.columns) == ["ImageId", "EncodedPixels"]
    for rle in sub["EncodedPixels"]:
        mask = decode(rle, (48, 48), "siim")  # written at the original image size
        assert mask.shape == (48, 48)
    assert (tmp_path / "run" / "oof_masks.npy").exists()
    assert 0.0 <= read_json(tmp_path / "run" / "metrics.json")["pooled"]["dice"] <= 1.0


@pytest.mark.parametrize("cache", ["data.cache_size=32", "data.cache_size=null"], ids=["npy-cache", "jpeg"])
def test_gpu_data_path_runs_every_stage(melanoma, tmp_path, cache):
    # The device pipeline on CPU tensors: JPEG bytes (or the cache's pixels) decoded, augmented and
    # normalised batch-wise, through training, OOF evaluation and test prediction.
    run(melanoma, tmp_path / "run", "train.data_path=gpu", cache)
    oof = pd.read_parquet(tmp_path / "run" / "oof.parquet")
    train = pd.read_csv(melanoma.parent / "train.csv")
    assert sorted(oof["id"]) == sorted(train["image_name"])
    sub = pd.read_csv(tmp_path / "run" / "submission.csv")
    assert sub["target"].between(0, 1).all() and sub["target"].nunique() > 1


def test_report_of_a_partial_run_lists_what_is_missing(melanoma, tmp_path, capsys, render):
    run_dir = tmp_path / "run"
    run(melanoma, run_dir, verb="prepare")
    assert main(["report", str(run_dir)]) == 0
    dom = render(run_dir / "report.html")
    assert "missing stages: split, search, train, evaluate, predict, submit" in dom
    assert 'data-broken="0"' in dom
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 2  # not a run folder
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not a medals run folder" in err


def test_report_curves_show_the_class_evaluate_scores(melanoma, tmp_path):
    from medals.config import load_recipe
    from medals.files import write_json
    from medals.stages.layout import RunLayout
    from medals.stages.report.classification import submitted_class
    from medals.stages.report.run_view import RunView

    layout = RunLayout(tmp_path)
    write_json(layout.labels, {"classes": ["melanoma", "nevus", "other"], "num_classes": 3})
    config = load_recipe(melanoma).model_dump(mode="json")  # submit.target_class: melanoma
    assert submitted_class(RunView(layout, config)) == 0
    config["submit"]["target_class"] = 1
    assert submitted_class(RunView(layout, config)) == 1
    config["submit"]["target_class"] = None
    assert submitted_class(RunView(layout, config)) == 2  # no target: the last class
