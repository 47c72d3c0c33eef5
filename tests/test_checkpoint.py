from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from medals.errors import MedalsError
from medals.runtime.checkpoint import (
    load_checkpoint,
    load_model_weights,
    restore_rng,
    restore_training_state,
    save_checkpoint,
)


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def _train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, n: int) -> None:
    for _ in range(n):
        loss = model(torch.randn(4, 3, 8, 8)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_full_resume_point_round_trip(tmp_path):
    model = _net(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    _train_steps(model, optimizer, 3)
    path = save_checkpoint(
        tmp_path / "last.pt",
        model,
        optimizer,
        scaler,
        epoch=4,
        best={"best": {"value": 0.8, "epoch": 3}},
        rng=True,
        config_hash="abc123",
        log=[{"epoch": 1, "auc": 0.5}],
    )
    # Everything stored is plain data: the file loads with weights_only=True.
    raw = torch.load(path, weights_only=True)
    assert raw["epoch"] == 4 and raw["config_hash"] == "abc123" and raw["log"][0]["auc"] == 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind

    # Continue the original for two more steps; a restored copy must take exactly the same steps.
    torch.manual_seed(7)
    _train_steps(model, optimizer, 2)

    other = _net(1)
    other_opt = torch.optim.AdamW(other.parameters(), lr=1e-2)
    payload = load_checkpoint(path)
    assert payload["best"] == {"best": {"value": 0.8, "epoch": 3}}
    restore_training_state(payload, other, other_opt, scaler)
    assert other_opt.state_dict()["state"][0]["step"] == 3
    torch.manual_seed(7)
    _train_steps(other, other_opt, 2)
    assert _same_weights(model, other)


def test_rng_states_restored(tmp_path):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "a.pt", _net(0), None, None, epoch=1, rng=True)
    first = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    restore_rng(load_checkpoint(tmp_path / "a.pt")["rng"])
    again = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    assert first == again


def test_weights_only_file_into_a_fresh_model(tmp_path):
    model = _net(0).to(memory_format=torch.channels_last)
    save_checkpoint(
        tmp_path / "best.pt", model, None, None, epoch=2, best={"best": 0.9}, metrics={"auc": 0.9}
    )
    payload = torch.load(tmp_path / "best.pt", weights_only=True)
    assert "optimizer" not in payload and "rng" not in payload and payload["metrics"] == {"auc": 0.9}
    # Stored in the default layout, whatever the training layout was.
    assert payload["model"]["0.weight"].is_contiguous()
    fresh = _net(1)
    assert not _same_weights(model, fresh)
    info = load_model_weights(fresh, tmp_path / "best.pt")
    assert info["epoch"] == 2
    assert _same_weights(model, fresh)


def test_weights_from_a_compiled_model_load_into_a_plain_one(tmp_path):
    model = _net(0)
    state = {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}
    torch.save({"format": "medals-checkpoint", "version": 1, "model": state, "epoch": 1}, tmp_path / "c.pt")
    fresh = _net(1)
    load_model_weights(fresh, tmp_path / "c.pt")
    assert _same_weights(model, fresh)


def test_bad_files_are_user_errors(tmp_path):
    with pytest.raises(MedalsError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MedalsError, match="cannot be read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(MedalsError, match="not a medals checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    save_checkpoint(tmp_path / "small.pt", _net(0), None, None, epoch=1)
    bigger = nn.Sequential(nn.Conv2d(3, 8, 3))
    with pytest.raises(MedalsError, match="does not fit the model"):
        load_model_weights(bigger, tmp_path / "small.pt")


def test_extra_keys_cannot_overwrite_stored_fields(tmp_path):
    with pytest.raises(ValueError, match="clash"):
        save_checkpoint(tmp_path / "x.pt", _net(0), None, None, epoch=1, format="mine")
