"""train: one model per fold, each resumable from its last complete epoch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medals.config import Recipe
from medals.stages.aside import restore, set_aside
from medals.stages.common import fold_ids, positive_index, read_labels, say, train_rows_with_folds
from medals.stages.layout import RunLayout
from medals.stages.locks import StageLock


def run_train(recipe: Recipe, layout: RunLayout, device) -> None:
    from medals.train.loop import train_fold

    rows = train_rows_with_folds(layout)
    labels = read_labels(layout)
    positive = positive_index(recipe, labels["classes"])
    for fold in fold_ids(recipe):
        say(f"train: fold {fold} ({(rows['fold'] != fold).sum()} train / {(rows['fold'] == fold).sum()} val)")
        result = train_fold(
            recipe,
            rows,
            fold,
            layout.fold_dir(fold),
            device=device,
            num_classes=labels["num_classes"],
            positive=positive,
        )
        if result:
            shown = ", ".join(
                f"{key} {value:.4g}" for key, value in result.items() if isinstance(value, float)
            )
            say(f"train: fold {fold} done: {shown}")


def check_train(recipe: Recipe, layout: RunLayout, device) -> None:
    """The first fold's training setup built and dropped (loop.check_training_setup)."""
    from medals.train.loop import check_training_setup

    labels = read_labels(layout)
    check_training_setup(
        recipe,
        train_rows_with_folds(layout),
        fold_ids(recipe)[0],
        device,
        num_classes=labels["num_classes"],
        positive=positive_index(recipe, labels["classes"]),
    )


def checkpoint_hash(fold_dir: Path) -> str | None:
    """The config hash a fold folder's checkpoints were trained under (final.pt, else last.pt)."""
    import torch

    for name in ("final.pt", "last.pt"):
        path = fold_dir / name
        if path.is_file():
            try:  # mmap: only the small header is read, not the weights
                payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception:
                return None  # unreadable: not this config's, so it is moved aside, not trusted
            return payload.get("config_hash") if isinstance(payload, dict) else None
    return None


def place_folds(recipe: Recipe, layout: RunLayout, lock: StageLock | None, check, digest: str, forced: bool):
    """Before training: each fold folder holds this config's fold, or none. On rank 0, under the locks.

    A fold folder of another config (the training section changed), one --force redoes, or one whose
    files changed since train finished is moved aside (stale/<digest>/, medals.stages.aside), never
    deleted; a missing fold trained under this config before is brought back from stale/. Folds another
    job holds (it trains them now) are left to it. ``check`` is the stage's pipeline.Check; ``digest``
    the train digest the folds in place were trained under, the name of their stale/ folder.
    """
    from medals.train.loop import training_hash

    rows = train_rows_with_folds(layout)
    mine = set(fold_ids(recipe))
    damaged = {int(path.split("/")[0][4:]) for path in check.changed if path.startswith("fold")}
    for fold in range(recipe.split.n_folds):
        with _fold_owned(lock, fold, fold in mine) as owned:
            if not owned:
                continue  # another job trains this fold now
            wanted = training_hash(recipe, rows, fold)
            fold_dir = layout.fold_dir(fold)
            redo = (forced and fold in mine) or fold in damaged
            if fold_dir.exists() and (redo or check.state != "done"):
                held = checkpoint_hash(fold_dir)
                if redo or held != wanted:
                    why = (
                        "--force train"
                        if forced and fold in mine
                        else "its files changed since train finished"
                        if fold in damaged
                        else "trained under another training config"
                    )
                    target = set_aside(layout, fold, digest, None if fold in damaged else held, why)
                    say(f"train: fold {fold} moved aside to {target.relative_to(layout.root)} ({why})")
            if not redo and (source := restore(layout, fold, wanted)) is not None:
                say(f"train: fold {fold} brought back from {source.relative_to(layout.root)} (this config's)")


@contextmanager
def _fold_owned(lock: StageLock | None, fold: int, mine: bool) -> Iterator[bool]:
    """Whether this job may touch the fold: its own folds are locked already; another fold only while
    no other job holds it (its lock taken for the moment)."""
    if mine or lock is None:
        yield True
        return
    fd = lock.try_fold(fold)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            lock.drop(fd)
