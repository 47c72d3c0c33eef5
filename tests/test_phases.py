"""train.phases (medals.train.phases): a frozen-backbone phase trains the head alone (no backbone
gradient, the optimizer holds exactly the head), the next phase trains everything with a fresh
optimizer, and a run killed mid-phase resumes into the right phase with the same numbers as a run
never killed (train.sampler on, so its epochs' draws repeat too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medals.config import Recipe
from medals.errors import MedalsError
from medals.runtime.checkpoint import load_checkpoint
from medals.train import epoch as epoch_module
from medals.train.epoch import run_epoch
from medals.train.loop import train_fold
from medals.train.phases import backbone_module, phase_index, start_phases
from medals.train.setup import build_run
from tests.test_loop import COLOURS, _base_table, _write_images

pytestmark = pytest.mark.usefixtures("one_thread")

PHASES = [{"epochs": 2, "freeze": "backbone", "lr": 5e-3}, {}]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("images")
    frame = _base_table(_write_images(root, 24, lambda i: COLOURS[i % 3]))
    frame["label"] = np.arange(24, dtype=np.int64) % 3
    return frame


def _recipe(phases=PHASES, epochs: int = 3, **train) -> Recipe:
    settings = {
        "epochs": epochs,
        "batch_size": 4,
        "image_size": 32,
        "optimizer": "adam",
        "lr": 2e-3,
        "schedule": {"name": "constant"},
        "augment": [{"name": "HorizontalFlip", "p": 0.5}],
        "progress": False,
        "phases": phases,
        **train,
    }
    return Recipe.model_validate(
        {
            "name": "phases",
            "task": "multiclass",
            "seed": 1,
            "data": {"classes": ["red", "green", "blue"]},
            "model": {"backbone": "test_resnet"},
            "train": settings,
        }
    )


def _run(recipe: Recipe, table: pd.DataFrame, fold_dir: Path):
    train_rows = table[table["fold"] != 0].reset_index(drop=True)
    val_rows = table[table["fold"] == 0].reset_index(drop=True)
    run = build_run(recipe, train_rows, val_rows, 0, fold_dir, torch.device("cpu"), 3, None, "h")
    start_phases(run)
    return run


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def test_phase_one_trains_the_head_alone_and_phase_two_everything(table, tmp_path):
    recipe = _recipe(phases=[{"epochs": 1, "freeze": "backbone", "lr": 5e-3}, {}], epochs=2)
    run = _run(recipe, table, tmp_path)
    backbone = list(backbone_module(run.model).parameters())
    head = [p for p in run.model.parameters() if id(p) not in _ids(backbone)]
    assert backbone and head
    assert not any(p.requires_grad for p in backbone) and all(p.requires_grad for p in head)
    in_optimizer = [p for group in run.optimizer.param_groups for p in group["params"]]
    assert _ids(in_optimizer) == _ids(head) and len(in_optimizer) == len(head)
    before = [p.detach().clone() for p in run.model.parameters()]

    run_epoch(run, 0)
    assert run.log[-1]["lr"] == pytest.approx(5e-3)  # the phase's own lr
    after = list(run.model.parameters())
    for param, old in zip(after, before, strict=True):
        if id(param) in _ids(backbone):
            assert param.grad is None and torch.equal(param.detach(), old)
    assert any(
        not torch.equal(p.detach(), old) for p, old in zip(after, before, strict=True) if id(p) in _ids(head)
    )

    first_optimizer = run.optimizer
    middle = [p.detach().clone() for p in run.model.parameters()]
    run_epoch(run, 1)  # phase 2: everything trains, with a fresh optimizer at train.schedule's lr
    assert run.optimizer is not first_optimizer and run.phase == 1
    assert all(p.requires_grad for p in run.model.parameters())
    in_optimizer = [p for group in run.optimizer.param_groups for p in group["params"]]
    assert _ids(in_optimizer) == _ids(run.model.parameters())
    assert run.log[-1]["lr"] == pytest.approx(2e-3)
    moved = [not torch.equal(p.detach(), old) for p, old in zip(run.model.parameters(), middle, strict=True)]
    assert any(m for p, m in zip(run.model.parameters(), moved, strict=True) if id(p) in _ids(backbone))


class _Killed(Exception):
    pass


def _train_killed_at(recipe, table, fold_dir, step: int, monkeypatch) -> None:
    """train_fold stopped as a SIGKILL right after global optimizer step ``step`` would stop it."""

    def kill(run, global_step):
        if global_step == step:
            raise _Killed

    with monkeypatch.context() as patch:
        patch.setattr(epoch_module, "maybe_kill", kill)
        with pytest.raises(_Killed):
            train_fold(recipe, table, 0, fold_dir, num_classes=3)


def test_a_run_killed_mid_phase_resumes_in_its_phase_with_the_same_numbers(table, tmp_path, monkeypatch):
    # 12 training rows drawn by weight (12 draws an epoch), batch 4: 3 optimizer steps per epoch;
    # epochs 1-2 in phase 1 (head only, lr 5e-3), epochs 3-4 in phase 2 (everything, lr 2e-3).
    recipe = _recipe(epochs=4, sampler={"name": "rare_classes", "classes": [2], "factor": 3})
    reference = tmp_path / "reference"
    train_fold(recipe, table, 0, reference, num_classes=3)
    n_all = len(list(_run(recipe, table, tmp_path / "probe").model.parameters()))

    def saved_params(fold_dir) -> int:
        state = load_checkpoint(fold_dir / "last.pt")["optimizer"]
        return sum(len(group["params"]) for group in state["param_groups"])

    resumed = tmp_path / "resumed"
    # killed in epoch 2: last.pt after epoch 1, mid phase 1, with the head-only optimizer
    _train_killed_at(recipe, table, resumed, step=5, monkeypatch=monkeypatch)
    assert load_checkpoint(resumed / "last.pt")["epoch"] == 1 and saved_params(resumed) < n_all
    # resumed, killed in epoch 3, the first of phase 2: last.pt after epoch 2, still phase 1's
    _train_killed_at(recipe, table, resumed, step=8, monkeypatch=monkeypatch)
    assert load_checkpoint(resumed / "last.pt")["epoch"] == 2 and saved_params(resumed) < n_all
    # resumed, killed in epoch 4: last.pt after epoch 3 holds phase 2's optimizer over every parameter,
    # which only a resume that rebuilds phase 2's optimizer before loading it can take
    _train_killed_at(recipe, table, resumed, step=11, monkeypatch=monkeypatch)
    assert load_checkpoint(resumed / "last.pt")["epoch"] == 3 and saved_params(resumed) == n_all
    train_fold(recipe, table, 0, resumed, num_classes=3)

    log, expected = pd.read_csv(resumed / "log.csv"), pd.read_csv(reference / "log.csv")
    assert log["lr"].tolist() == pytest.approx([5e-3, 5e-3, 2e-3, 2e-3])
    for column in ("lr", "train_loss", "val_loss", "auc"):
        assert log[column].tolist() == pytest.approx(expected[column].tolist(), rel=1e-5, abs=1e-7)
    final, final_ref = load_checkpoint(resumed / "final.pt"), load_checkpoint(reference / "final.pt")
    for key, value in final_ref["model"].items():
        assert torch.allclose(final["model"][key].float(), value.float(), atol=1e-6), key


def test_phases_must_cover_the_epochs_and_need_a_backbone(table, tmp_path):
    with pytest.raises(ValueError, match="give 5 epochs but train.epochs is 3"):
        _recipe(phases=[{"epochs": 2}, {"epochs": 3}])
    with pytest.raises(ValueError, match="only the last phase may leave out epochs"):
        _recipe(phases=[{}, {"epochs": 1}])
    with pytest.raises(ValueError, match="give 3 epochs but train.epochs is 3"):
        _recipe(phases=[{"epochs": 3}, {}])  # an open last phase needs at least one epoch left
    recipe = _recipe(phases=[{"epochs": 1}, {"epochs": 1}, {}], epochs=4)
    assert [phase_index(recipe.train, e) for e in range(5)] == [0, 1, 2, 2, 2]
    with pytest.raises(MedalsError, match="has no backbone or encoder"):
        backbone_module(torch.nn.Linear(2, 2))


def test_the_new_train_keys_leave_old_digests_alone():
    # Runs made before train.sampler / train.phases existed keep their training digests: at their
    # default the keys are left out; set, they count.
    from medals.config import digest_train

    plain = digest_train(_recipe(phases=None).model_dump(mode="json")["train"])
    assert "phases" not in plain and "sampler" not in plain
    phased = digest_train(_recipe().model_dump(mode="json")["train"])
    assert phased["phases"][0] == {"epochs": 2, "freeze": "backbone", "lr": 5e-3}
