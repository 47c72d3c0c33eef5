"""Training and prediction under DDP (torchrun, gloo on CPU, also on a machine with GPUs) against the
single-process run.

The process tests launch `python -m torch.distributed.run --standalone --nproc_per_node 2 -m medals ...`
on a tiny generated competition. The model is timm's test_efficientnet_gn: GroupNorm instead of
BatchNorm, so a rank's half batch is normalised exactly as inside the full batch, and no dropout or
augmentation; then two ranks with the global batch of one process follow the same path up to float
rounding. (BatchNorm would normalise each rank's half batch by its own statistics, and train.sync_bn,
which fixes that, needs CUDA: PyTorch's SyncBatchNorm refuses CPU tensors.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import Dataset

from medals.cli import main
from medals.config import Recipe
from medals.data.dataset import make_loader
from medals.demo.melanoma import generate_melanoma
from medals.errors import MedalsError
from medals.runtime import distributed, sharding
from medals.runtime.checkpoint import load_checkpoint
from medals.stages.pipeline import stage_digest
from medals.train.loop import training_hash
from medals.train.setup import KILL_ENV

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPE = """\
name: ddp_tiny
task: multiclass
seed: 0
data:
  id_column: image_name
  label_column: diagnosis
  classes: [nevus, melanoma, BKL, unknown]
  image_path: "train/{id}.jpg"
  test_image_path: "test/{id}.jpg"
  group_column: patient_id
split:
  method: stratified_grouped
  n_folds: 2
model:
  backbone: test_efficientnet_gn
train:
  epochs: 2
  batch_size: 4
  image_size: 32
  optimizer: adam
  lr: 0.003
  schedule: {name: warmup_cosine, warmup_epochs: 0.5}
  augment: []
  precision: fp32
  deterministic: true
  progress: false
  folds: [0]
infer:
  tta: 2
submit:
  kind: probability
  target_class: melanoma
"""
LOG_COLUMNS = ["lr", "train_loss", "val_loss", "auc", "accuracy"]


def torchrun(*args: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    env["OMP_NUM_THREADS"] = "1"
    if kill_at is not None:
        env[KILL_ENV] = str(kill_at)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    medals = ["-m", "medals", *args, "--device", "cpu"]
    return subprocess.run([*command, *medals], env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    # 24 training images, 11 in fold 0: 13 train rows make 3 global batches of 4 (the last row dropped),
    # and the 11 validation rows split 5 / 6 over the ranks.
    folder = tmp_path_factory.mktemp("competition")
    generate_melanoma(folder, n_train=24, n_test=6, size=32, seed=1)
    path = folder / "ddp_tiny.yaml"
    path.write_text(RECIPE)
    return path


@pytest.fixture(scope="module")
def single(recipe, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("single") / "run"
    assert main(["run", str(recipe), f"run_dir={run_dir}", "--device", "cpu"]) == 0
    return run_dir


@pytest.fixture(scope="module")
def two_ranks(recipe, tmp_path_factory) -> tuple[Path, str]:
    """The whole pipeline (`medals run`) under torchrun with 2 processes."""
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    done = torchrun("run", str(recipe), f"run_dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir, done.stdout


def prepared(source: Path, target: Path) -> Path:
    """A run folder with the table, labels and folds of ``source`` (prepare and split done)."""
    target.mkdir(parents=True)
    for name in ("table.parquet", "labels.json", "folds.parquet"):
        shutil.copy(source / name, target / name)
    return target


def test_two_ranks_train_like_one_process(single, two_ranks):
    run_dir, stdout = two_ranks
    ddp_log, single_log = (
        pd.read_csv(run_dir / "fold0" / "log.csv"),
        pd.read_csv(single / "fold0" / "log.csv"),
    )
    assert ddp_log["epoch"].tolist() == [1, 2]
    # Float noise only: all-reduced gradients sum in another order (a wrong sampler differs by ~1e-2).
    for column in LOG_COLUMNS:
        assert ddp_log[column].tolist() == pytest.approx(single_log[column].tolist(), rel=1e-4, abs=1e-6)
    # The same files as a single-process run, written once; rank 0 alone prints.
    assert sorted(p.name for p in (run_dir / "fold0").iterdir()) == sorted(
        p.name for p in (single / "fold0").iterdir()
    )
    assert stdout.count("fold 0 epoch 2/2") == 1 and stdout.count("submit:") == 1
    # The checkpoint is the plain model's: it loads without DDP's "module." prefix.
    keys = load_checkpoint(run_dir / "fold0" / "final.pt")["model"].keys()
    assert keys == load_checkpoint(single / "fold0" / "final.pt")["model"].keys()


def test_two_ranks_evaluate_and_predict_like_one_process(recipe, two_ranks, tmp_path):
    run_dir, _ = two_ranks
    oof = pd.read_parquet(run_dir / "oof.parquet")
    folds = pd.read_parquet(run_dir / "folds.parquet")
    assert sorted(oof["id"]) == sorted(folds.loc[folds["fold"] == 0, "id"])  # each validation row once
    # The same weights evaluated and predicted by one process.
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert main(["evaluate", str(recipe), f"run_dir={copy}", "--force", "--device", "cpu"]) == 0
    assert main(["predict", str(recipe), f"run_dir={copy}", "--force", "--device", "cpu"]) == 0
    for name in ("oof.parquet", "test.parquet"):
        ddp, one = pd.read_parquet(run_dir / name), pd.read_parquet(copy / name)
        assert ddp["id"].tolist() == one["id"].tolist()
        columns = [c for c in one.columns if c.startswith("p_")]
        np.testing.assert_allclose(ddp[columns].to_numpy(), one[columns].to_numpy(), rtol=1e-5, atol=1e-6)


def _update(run: Path, start: dict[str, torch.Tensor]) -> torch.Tensor:
    """The fold's whole training update (final weights minus start weights), flattened."""
    weights = load_checkpoint(run / "fold0" / "final.pt")["model"]
    return torch.cat([(weights[k].double() - start[k].double()).flatten() for k in sorted(start)])


def test_accumulation_under_ddp_matches_one_process(recipe, two_ranks, tmp_path):
    # Gradients are all-reduced once per accumulation window (DDP's no_sync on the other micro-batches):
    # the same updates as one process accumulating the same global batches (here 3 steps of 2 x 2 rows).
    # The two differ only in float32 rounding: the ranks run their rows in batches of 1, the single
    # process in batches of 2, and sum the per-row gradients in another order. Compared as logged
    # losses this is fragile: Adam divides each step by sqrt(v), so on a weight whose gradient is itself
    # near rounding size it turns the rounding into a step of about lr (1.7e-4 in val_loss on one machine,
    # below 1e-4 on another). So the test uses SGD, whose update is linear in the summed gradients, and
    # compares the updates themselves: rounding moves them by about 1e-5 of their size (8.6e-6 measured),
    # while a window put together wrongly (a rank's share dropped, the loss not divided by the window's
    # micro-batches, a step per micro-batch) moves them by a quarter or more. A relative error under 1e-3
    # separates the two by two orders of magnitude on each side.
    run_dir, _ = two_ranks
    settings = ("train.batch_size=2", "train.accumulate=2", "train.epochs=1", "train.optimizer=sgd")
    # lr 1e-30: each step is below float32 resolution, so final.pt holds the initial weights.
    start = prepared(run_dir, tmp_path / "start")
    assert (
        main(["train", str(recipe), f"run_dir={start}", *settings, "train.lr=1e-30", "--device", "cpu"]) == 0
    )
    single = prepared(run_dir, tmp_path / "single")
    assert main(["train", str(recipe), f"run_dir={single}", *settings, "--device", "cpu"]) == 0
    ddp = prepared(run_dir, tmp_path / "ddp")
    done = torchrun("train", str(recipe), f"run_dir={ddp}", *settings)
    assert done.returncode == 0, done.stderr[-3000:]
    initial = {
        k: v
        for k, v in load_checkpoint(start / "fold0" / "final.pt")["model"].items()
        if v.is_floating_point()
    }
    want, got = _update(single, initial), _update(ddp, initial)
    assert want.norm() > 0
    assert (got - want).norm() / want.norm() < 1e-3
    logs = pd.read_csv(ddp / "fold0" / "log.csv"), pd.read_csv(single / "fold0" / "log.csv")
    assert logs[0]["lr"].tolist() == logs[1]["lr"].tolist()


def test_sampler_and_freeze_phases_under_ddp_match_one_process(recipe, two_ranks, tmp_path):
    # train.sampler: every rank draws the epoch's weighted order from the same seed and takes its half of
    # each global batch; train.phases: a frozen backbone in epoch 1 (DDP told to expect parameters
    # without gradients), everything in epoch 2 with a fresh optimizer.
    run_dir, _ = two_ranks
    settings = (
        "train.sampler={name: class_balanced, power: 1.0}",
        "train.phases=[{epochs: 1, freeze: backbone, lr: 0.01}, {}]",
    )
    single = prepared(run_dir, tmp_path / "single")
    assert main(["train", str(recipe), f"run_dir={single}", *settings, "--device", "cpu"]) == 0
    ddp = prepared(run_dir, tmp_path / "ddp")
    done = torchrun("train", str(recipe), f"run_dir={ddp}", *settings)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp_log, single_log = pd.read_csv(ddp / "fold0" / "log.csv"), pd.read_csv(single / "fold0" / "log.csv")
    assert ddp_log["lr"].iloc[0] == pytest.approx(0.01)
    for column in LOG_COLUMNS:
        assert ddp_log[column].tolist() == pytest.approx(single_log[column].tolist(), rel=1e-4, abs=1e-6)
    # (Weights are not compared: Adam turns float rounding on near-zero gradients into steps of about lr,
    # see test_accumulation_under_ddp_matches_one_process; the logged losses agree to 1e-4.)


def test_killed_ddp_run_resumes_like_an_uninterrupted_one(recipe, two_ranks, tmp_path):
    # With BatchNorm this time (its statistics are rank 0's, in last.pt and on every rank after
    # validation), on fold 1: 11 train rows make 2 steps per epoch, its 13 validation rows split 6 / 7.
    run_dir, _ = two_ranks
    settings = ("model.backbone=test_resnet", "train.folds=[1]")
    reference = prepared(run_dir, tmp_path / "reference")
    done = torchrun("train", str(recipe), f"run_dir={reference}", *settings)
    assert done.returncode == 0, done.stderr[-3000:]

    work = prepared(run_dir, tmp_path / "run")
    args = ("train", str(recipe), f"run_dir={work}", *settings)
    killed = torchrun(*args, kill_at=3)  # the first step of epoch 2
    assert killed.returncode != 0
    assert load_checkpoint(work / "fold1" / "last.pt")["epoch"] == 1
    assert pd.read_csv(work / "fold1" / "log.csv")["epoch"].tolist() == [1]
    assert not (work / "fold1" / "final.pt").exists()

    resumed = torchrun(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "epoch 1/2" not in resumed.stdout and resumed.stdout.count("epoch 2/2") == 1
    log, expected = pd.read_csv(work / "fold1" / "log.csv"), pd.read_csv(reference / "fold1" / "log.csv")
    assert log["epoch"].tolist() == [1, 2]
    for column in LOG_COLUMNS:
        assert log[column].tolist() == pytest.approx(expected[column].tolist(), rel=1e-6, abs=1e-7)


def test_batch_size_not_divisible_by_the_world_size(recipe, two_ranks, tmp_path):
    run_dir, _ = two_ranks
    work = prepared(run_dir, tmp_path / "run")
    done = torchrun("train", str(recipe), f"run_dir={work}", "train.batch_size=5")
    assert done.returncode != 0
    sentence = (
        "medals: error: train.batch_size 5 is not divisible by the world size 2: under torchrun "
        "train.batch_size is the global batch, split evenly over the ranks\n"
    )
    assert sentence in done.stderr


# ---- without processes ---------------------------------------------------------------------------


class Rows(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return {"index": index}


@pytest.mark.parametrize(
    ("n", "batch", "world", "drop_last"), [(21, 8, 2, True), (21, 8, 4, True), (8, 8, 4, False)]
)
def test_rank_batches_make_up_the_single_process_batches(n, batch, world, drop_last):
    def loader():  # each rank builds the same fresh loader for the epoch, as single-process
        return make_loader(Rows(n), batch, shuffle=True, seed=11, drop_last=drop_last)

    single = [b["index"].tolist() for b in loader()]
    shards = [sharding.shard_batches(loader(), rank, world) for rank in range(world)]
    assert all(len(shard) == len(single) for shard in shards)
    per_rank = [[b["index"].tolist() for b in shard] for shard in shards]
    for k, expected in enumerate(single):
        parts = [per_rank[rank][k] for rank in range(world)]
        assert [len(part) for part in parts] == [batch // world] * world
        assert sum(parts, []) == expected  # rank r holds slice r of the global batch: disjoint, complete


def test_global_batch_must_split_evenly():
    with pytest.raises(MedalsError, match="train.batch_size 6 is not divisible by the world size 4"):
        sharding.check_global_batch(6, 100, True, 4)
    with pytest.raises(MedalsError, match="the last training batch has 1 rows, fewer than the 2 ranks"):
        sharding.check_global_batch(4, 9, False, 2)
    sharding.check_global_batch(8, 100, True, 4)


def test_rank_rows_are_contiguous_chunks_covering_every_row():
    base = make_loader(Rows(11), 4, shuffle=False)
    chunks = [[int(i) for b in sharding.shard_rows(base, rank, 3) for i in b["index"]] for rank in range(3)]
    assert sum(chunks, []) == list(range(11))
    assert [len(chunk) for chunk in chunks] == [3, 4, 4]


def test_validation_parts_are_reassembled_in_row_order(monkeypatch):
    # Rank 0 validated rows 0-2 in two batches, rank 1 rows 3-4, rank 2 none (fewer rows than ranks).
    probs = np.arange(10, dtype=np.float32).reshape(5, 2)
    parts = [
        ([np.array([0, 1]), np.array([1])], [probs[:2], probs[2:3]], [], 3.0, 3, {"ce": 1.0, "focal": 2.0}),
        ([np.array([0, 0])], [probs[3:]], [], 4.0, 2, {"ce": 0.5, "focal": 1.0}),
        ([], [], [], 0.0, 0, {}),
    ]
    monkeypatch.setattr(distributed, "all_gather_objects", lambda obj: parts)
    truth, prob, cls_prob, loss, seen, terms = sharding.gather_validation(*parts[0])
    assert truth.tolist() == [0, 1, 1, 0, 0] and prob.dtype == np.float32
    np.testing.assert_array_equal(prob, probs)
    assert cls_prob is None and loss == 7.0 and seen == 5
    assert list(terms.items()) == [("ce", 1.5), ("focal", 3.0)]


def test_prediction_rows_are_gathered_by_index(monkeypatch):
    total = 5
    full = np.arange(total * 2, dtype=np.float32).reshape(total, 2)
    cls = np.linspace(0, 1, total, dtype=np.float32)
    mine = []
    for rows in ([0, 1], [2, 3, 4], []):
        seen = np.isin(np.arange(total), rows)
        index = np.flatnonzero(seen)
        mine.append((index, full[index] if rows else None, cls[index] if rows else None))
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "all_gather_objects", lambda obj: mine)
    out, cls_out, seen = sharding.gather_rows(None, None, np.zeros(total, dtype=bool))
    assert seen.all()
    np.testing.assert_array_equal(out, full)
    np.testing.assert_array_equal(cls_out, cls)


def test_single_process_helpers_are_identities(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.init_from_env() and not distributed.active()
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    distributed.barrier()
    tensor = torch.ones(2)
    assert distributed.reduce_sum(tensor) is tensor
    assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    assert distributed.device_for_rank("cuda:1") == torch.device("cuda:1")
    assert distributed.run_on_main(lambda: 42) == 42
    loader = make_loader(Rows(3), 2, shuffle=True)
    assert sharding.shard_batches(loader) is loader and sharding.shard_rows(loader) is loader


def test_more_processes_than_gpus_is_one_sentence(monkeypatch):
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(MedalsError, match="process 1 of this machine has no GPU of its own"):
        distributed.device_for_rank("cuda")
    assert distributed.device_for_rank("cpu") == torch.device("cpu")


def _recipe(**train) -> Recipe:
    return Recipe.model_validate(
        {"name": "r", "task": "multiclass", "data": {"num_classes": 2}, "train": train}
    )


def test_sync_bn_needs_cuda_under_ddp(monkeypatch):
    monkeypatch.setattr(distributed, "active", lambda: True)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with pytest.raises(MedalsError, match=r"train.sync_bn needs CUDA devices"):
        sharding.wrap_model(model, _recipe(sync_bn=True), torch.device("cpu"))


def test_sync_bn_is_part_of_the_training_digests():
    table = pd.DataFrame({"id": ["a", "b"], "fold": [0, 1]})
    plain, synced = _recipe(), _recipe(sync_bn=True)
    assert training_hash(plain, table, 0) != training_hash(synced, table, 0)
    assert stage_digest(plain, "train") != stage_digest(synced, "train")


def test_one_rank_seed_rule_for_both_data_paths(monkeypatch):
    from medals.train.setup import device_generator

    # Rank 0 keeps the single-process seed; rank r moves it by r * 1_000_003, modulo 2**31.
    assert sharding.rank_seed(123, 0) == 123
    assert sharding.rank_seed(123, 3) == 123 + 3 * 1_000_003
    assert sharding.rank_seed(2**31 - 1, 1) == (2**31 - 1 + 1_000_003) % 2**31
    # The GPU path's generator on rank 2 draws what a generator seeded by the same rule draws.
    monkeypatch.setattr(distributed, "rank", lambda: 2)
    expected = torch.Generator().manual_seed(sharding.rank_seed(55, 2))
    assert torch.equal(torch.rand(4, generator=device_generator(55)), torch.rand(4, generator=expected))
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    assert torch.equal(
        torch.rand(4, generator=device_generator(55)),
        torch.rand(4, generator=torch.Generator().manual_seed(55)),
    )
