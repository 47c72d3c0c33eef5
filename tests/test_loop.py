from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from medals.config import Recipe
from medals.errors import MedalsError
from medals.runtime.checkpoint import load_checkpoint
from medals.train import loop
from medals.train.checkpointing import is_improvement
from medals.train.loop import train_fold
from medals.train.schedules import build_schedule
from medals.train.setup import KILL_ENV

COLOURS = [(220, 40, 40), (40, 220, 40), (40, 40, 220)]  # the class is visible by colour
N_IMAGES = 40


def _write_images(root: Path, n: int, colour_of) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        noise = rng.integers(-30, 30, size=(32, 32, 3))
        image = np.clip(np.array(colour_of(i))[None, None, :] + noise, 0, 255).astype(np.uint8)
        path = root / f"img{i:03d}.png"
        cv2.imwrite(str(path), image[:, :, ::-1])  # RGB -> BGR for OpenCV
        paths.append(str(path))
    return paths


def _base_table(paths: list[str]) -> pd.DataFrame:
    n = len(paths)
    return pd.DataFrame(
        {
            "id": [f"img{i:03d}" for i in range(n)],
            "split": "train",
            "path": paths,
            "height": 32,
            "width": 32,
            "fold": [i % 2 for i in range(n)],
        }
    )


# Every test here runs on one torch thread (see conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def multiclass_table(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("images")
    table = _base_table(_write_images(root, N_IMAGES, lambda i: COLOURS[i % 3]))
    table["label"] = np.arange(N_IMAGES, dtype=np.int64) % 3
    return table


def _multiclass_recipe(**train) -> Recipe:
    settings = {
        "epochs": 3,
        "batch_size": 4,
        "image_size": 32,
        "optimizer": "adam",
        "lr": 2e-3,
        "augment": [],
        "progress": False,
        "schedule": {"name": "warmup_cosine", "warmup_epochs": 0.5, "min_lr": 1e-4},
    }
    settings.update(train)
    return Recipe.model_validate(
        {
            "name": "tiny",
            "task": "multiclass",
            "seed": 3,
            "data": {"classes": ["red", "green", "blue"]},
            "model": {"backbone": "test_resnet"},
            "train": settings,
        }
    )


@contextlib.contextmanager
def last_read_before_deletion():
    """Yield a dict that gets each finished fold's last.pt payload, read just before the fold deletes it."""
    kept: dict[str, dict] = {}
    drop = loop.drop_resume_files

    def read_then_drop(fold_dir, recipe):
        kept[fold_dir.name] = load_checkpoint(fold_dir / "last.pt")
        drop(fold_dir, recipe)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop, "drop_resume_files", read_then_drop)
        yield kept


@pytest.fixture(scope="module")
def reference_run(multiclass_table, tmp_path_factory) -> tuple[Path, dict]:
    """Fold 0 trained in one go, in this process, with the payload its last.pt held at the end."""
    fold_dir = tmp_path_factory.mktemp("reference") / "fold0"
    with last_read_before_deletion() as kept:
        train_fold(_multiclass_recipe(), multiclass_table, 0, fold_dir, num_classes=3)
    return fold_dir, kept["fold0"]


@pytest.fixture(scope="module")
def reference(reference_run) -> Path:
    return reference_run[0]


def test_training_writes_checkpoints_and_log(reference_run, multiclass_table):
    reference, last = reference_run
    # The resume point is gone once final.pt exists: only what predict and report read is kept.
    assert sorted(p.name for p in reference.iterdir()) == ["best.pt", "final.pt", "log.csv"]
    log = pd.read_csv(reference / "log.csv")
    columns = [
        "epoch",
        "lr",
        "train_loss",
        "val_loss",
        "auc",
        "accuracy",
        "seconds",
        "images_per_s",
        "data_wait",
    ]
    assert list(log.columns) == columns
    assert (log["images_per_s"] > 0).all() and (log["seconds"] > 0).all()
    assert log["data_wait"].between(0, 1).all()
    assert log["epoch"].tolist() == [1, 2, 3]
    # It learns: the loss falls and the colours are told apart on the held-out fold.
    assert log["train_loss"].iloc[-1] < log["train_loss"].iloc[0]
    assert log["val_loss"].iloc[-1] < math.log(3)
    assert log["auc"].iloc[-1] > 0.9
    # The logged lr is the schedule's lr at each epoch's first step (20 rows / batch 4 = 5 steps).
    schedule = build_schedule(_multiclass_recipe().train, steps_per_epoch=5)
    assert log["lr"].tolist() == pytest.approx([schedule.lr_at(e, 0) for e in range(3)])

    best = load_checkpoint(reference / "best.pt")
    top = int(log["auc"].idxmax())  # the first epoch with the top AUC wins ties
    assert best["epoch"] == top + 1
    assert best["best"]["best"]["value"] == pytest.approx(log["auc"].iloc[top])
    final = load_checkpoint(reference / "final.pt")
    assert final["epoch"] == last["epoch"] == 3
    assert "optimizer" not in final and "optimizer" in last and "rng" in last
    assert all(torch.equal(final["model"][k], last["model"][k]) for k in final["model"])
    assert final["info"]["num_classes"] == 3 and final["info"]["n_meta"] == 0
    # 5 optimizer steps per epoch, the lr set per step: the last step ran at the schedule's last lr.
    assert max(s["step"] for s in last["optimizer"]["state"].values()) == 15
    assert last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(schedule.lr_at(2, 4))
    assert schedule.lr_at(2, 4) == pytest.approx(1e-4)


def test_finished_fold_is_not_trained_again(reference, multiclass_table):
    before = {p.name: p.stat().st_mtime_ns for p in reference.iterdir()}
    result = train_fold(_multiclass_recipe(), multiclass_table, 0, reference, num_classes=3)
    assert {p.name: p.stat().st_mtime_ns for p in reference.iterdir()} == before
    log = pd.read_csv(reference / "log.csv")
    assert result["auc"] == pytest.approx(log["auc"].iloc[-1])
    assert result["epoch"] == 3


def test_resume_file_left_by_a_kill_after_final_is_deleted(reference, multiclass_table):
    # A kill between writing final.pt and deleting last.pt: the next call finds a finished fold.
    stray = reference / "last.pt"
    stray.write_bytes((reference / "final.pt").read_bytes())
    train_fold(_multiclass_recipe(), multiclass_table, 0, reference, num_classes=3)
    assert not stray.exists()
    assert sorted(p.name for p in reference.iterdir()) == ["best.pt", "final.pt", "log.csv"]


def test_changed_recipe_does_not_reuse_a_fold(reference, multiclass_table):
    with pytest.raises(MedalsError, match="another recipe"):
        train_fold(_multiclass_recipe(lr=1e-2), multiclass_table, 0, reference, num_classes=3)


_SCRIPT = """
import sys
import pandas as pd
from medals.config import Recipe
from medals.train.loop import train_fold

recipe = Recipe.model_validate_json(open(sys.argv[1]).read())
table = pd.read_parquet(sys.argv[2])
train_fold(recipe, table, 0, sys.argv[3], num_classes=3)
"""


def test_killed_run_resumes_where_it_stopped(reference, multiclass_table, tmp_path):
    script = tmp_path / "train_one.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(_multiclass_recipe().model_dump_json())
    table_file = tmp_path / "table.parquet"
    multiclass_table.to_parquet(table_file)
    fold_dir = tmp_path / "fold0"
    command = [sys.executable, str(script), str(recipe_file), str(table_file), str(fold_dir)]
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    env["OMP_NUM_THREADS"] = "1"

    # 5 steps per epoch: step 7 is the second step of epoch 2.
    killed = subprocess.run(command, env={**env, KILL_ENV: "7"}, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(fold_dir / "last.pt")["epoch"] == 1
    first_log = (fold_dir / "log.csv").read_text()
    assert pd.read_csv(fold_dir / "log.csv")["epoch"].tolist() == [1]
    assert not (fold_dir / "final.pt").exists()

    resumed = subprocess.run(command, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch 1/3" not in resumed.stdout and "epoch 2/3" in resumed.stdout
    log_text = (fold_dir / "log.csv").read_text()
    assert log_text.startswith(first_log)  # the first epoch's row is kept as it was
    log = pd.read_csv(fold_dir / "log.csv")
    assert log["epoch"].tolist() == [1, 2, 3]
    assert (fold_dir / "final.pt").exists()
    # Restored weights, optimizer, RNG and per-epoch data order: the same numbers as a run never killed.
    reference_log = pd.read_csv(reference / "log.csv")
    for column in ("lr", "train_loss", "val_loss", "auc"):
        assert log[column].tolist() == pytest.approx(reference_log[column].tolist(), rel=1e-4, abs=1e-6)


def test_improvement_rule():
    assert is_improvement(0.5, None, "max")
    assert is_improvement(0.6, 0.5, "max") and not is_improvement(0.5, 0.5, "max")
    assert is_improvement(0.4, 0.5, "min") and not is_improvement(0.6, 0.5, "min")
    assert not is_improvement(float("nan"), None, "max")
    assert not is_improvement(float("nan"), 0.5, "min")


def test_multilabel_with_accumulation_clipping_and_two_rules(tmp_path):
    # Label k is on when colour channel k is bright; several can be on at once.
    combos = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1)]
    table = _base_table(
        _write_images(tmp_path, 20, lambda i: tuple(220 if on else 40 for on in combos[i % len(combos)]))
    )
    table["labels"] = [" ".join(str(k) for k in range(3) if combos[i % len(combos)][k]) for i in range(20)]
    recipe = Recipe.model_validate(
        {
            "name": "ml",
            "task": "multilabel",
            "data": {"num_classes": 3},
            "model": {"backbone": "test_resnet"},
            "train": {
                "epochs": 2,
                "batch_size": 2,
                "image_size": 32,
                "accumulate": 2,
                "clip_grad": 1.0,
                "channels_last": True,
                "augment": [{"name": "HorizontalFlip", "p": 0.5}],
                "progress": False,
                "checkpoints": [{"name": "best"}, {"name": "low_loss", "metric": "val_loss", "mode": "min"}],
            },
        }
    )
    with last_read_before_deletion() as kept:
        result = train_fold(recipe, table, 1, tmp_path / "fold1", num_classes=3)
    log = pd.read_csv(tmp_path / "fold1" / "log.csv")
    assert list(log.columns) == [
        "epoch",
        "lr",
        "train_loss",
        "val_loss",
        "f1_macro",
        "f1_macro_05",
        "auc_macro",
        "seconds",
        "images_per_s",
        "data_wait",
    ]
    assert 0.0 <= result["f1_macro"] <= 1.0 and math.isfinite(result["val_loss"])
    low = load_checkpoint(tmp_path / "fold1" / "low_loss.pt")
    assert low["epoch"] == int(log["val_loss"].idxmin()) + 1
    # 10 rows / batch 2 = 5 batches -> optimizer steps after batches 2, 4 and 5: 3 per epoch.
    last = kept["fold1"]
    assert max(s["step"] for s in last["optimizer"]["state"].values()) == 6


def test_unknown_checkpoint_metric_is_a_user_error(multiclass_table, tmp_path):
    # a known metric of another task is refused when the recipe loads, before anything trains
    with pytest.raises(ValueError, match=r"train.checkpoints\[0\].metric 'dice' does not apply to task"):
        _multiclass_recipe(epochs=1, checkpoints=[{"name": "best", "metric": "dice"}])
    # a speed column is not a result: no rule can pick it, and the sentence does not offer it
    recipe = _multiclass_recipe(epochs=1, checkpoints=[{"name": "best", "metric": "images_per_s"}])
    with pytest.raises(
        MedalsError,
        match=r"'images_per_s' is not computed .*: choose one of train_loss, val_loss, auc, accuracy$",
    ):
        train_fold(recipe, multiclass_table.iloc[:12], 0, tmp_path / "g", num_classes=3)


def test_segmentation_smoke(tmp_path):
    rng = np.random.default_rng(1)
    paths, masks = [], []
    for i in range(12):
        image = rng.integers(0, 60, size=(32, 32, 3)).astype(np.uint8)
        mask = np.zeros((32, 32), dtype=np.uint8)
        if i % 3:  # a bright square where the mask is
            y, x = rng.integers(2, 18, size=2)
            mask[y : y + 12, x : x + 12] = 255
            image[mask > 0] = 230
        cv2.imwrite(str(tmp_path / f"s{i}.png"), image)
        cv2.imwrite(str(tmp_path / f"m{i}.png"), mask)
        paths.append(str(tmp_path / f"s{i}.png"))
        masks.append(str(tmp_path / f"m{i}.png"))
    table = _base_table(paths)
    table["mask_path"] = masks
    table["has_mask"] = [int(i % 3 != 0) for i in range(12)]
    recipe = Recipe.model_validate(
        {
            "name": "seg",
            "task": "segmentation",
            "model": {
                "arch": "unet",
                "backbone": "test_resnet",
                "decoder": {"decoder_channels": [16, 8, 8, 8, 8]},
            },
            "train": {"epochs": 1, "batch_size": 4, "image_size": 32, "progress": False},
        }
    )
    result = train_fold(recipe, table, 0, tmp_path / "fold0")
    assert 0.0 <= result["dice"] <= 1.0 and math.isfinite(result["val_loss"])
    assert sorted(p.name for p in (tmp_path / "fold0").iterdir()) == ["best.pt", "final.pt", "log.csv"]
    assert load_checkpoint(tmp_path / "fold0" / "final.pt")["info"]["num_classes"] == 1


def test_mixed_precision_path_runs(multiclass_table, tmp_path, monkeypatch):
    # No GPU here: drive the autocast + GradScaler + unscale-before-clip path with CPU bf16 instead.
    import medals.runtime.settings as runtime

    monkeypatch.setattr(runtime, "resolve_precision", lambda precision, device: (torch.bfloat16, True))
    recipe = _multiclass_recipe(epochs=1, clip_grad=0.5, channels_last=True, precision="bf16")
    with last_read_before_deletion() as kept:
        result = train_fold(recipe, multiclass_table, 1, tmp_path / "fold1", num_classes=3)
    assert math.isfinite(result["train_loss"]) and math.isfinite(result["val_loss"])
    last = kept["fold1"]
    assert last["scaler"]["scale"] > 0  # the scaler's state is part of the resume point


def test_tensorboard_logging_needs_its_package_or_writes_each_epoch(multiclass_table, tmp_path):
    import importlib.util

    recipe = _multiclass_recipe().model_copy(deep=True)
    recipe.train.tensorboard = True
    recipe.train.epochs = 1
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(MedalsError, match="train.tensorboard needs the tensorboard package"):
            train_fold(recipe, multiclass_table, 0, tmp_path / "fold", num_classes=3)
        assert not (tmp_path / "fold" / "last.pt").exists()
    else:
        train_fold(recipe, multiclass_table, 0, tmp_path / "fold", num_classes=3)
        assert any((tmp_path / "fold" / "tensorboard").iterdir())
