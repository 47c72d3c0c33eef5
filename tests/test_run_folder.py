"""The run folder's locks, its set-aside folds and its checked reads, without training anything (the
whole-pipeline cases are in test_reliability.py)."""

from __future__ import annotations

import os
import socket

import pandas as pd
import pytest

from medals.errors import MedalsError
from medals.files import read_json, read_parquet, write_parquet
from medals.stages.aside import clean, restore, set_aside, stale_lines
from medals.stages.layout import RunLayout
from medals.stages.locks import StageLock
from medals.stages.outputs import changed, checksum, record


def test_training_jobs_share_the_run_lock_and_own_their_folds(tmp_path):
    # flock locks belong to open files, so two StageLocks of one process conflict like two processes.
    layout = RunLayout(tmp_path)
    fold0 = StageLock(layout, "train", [0])
    fold1 = StageLock(layout, "train", [1])
    fold0.acquire()
    fold1.acquire()  # another fold: side by side
    with pytest.raises(MedalsError) as same_fold:
        StageLock(layout, "train", [0, 1]).acquire()
    assert f"fold 0 of run folder {tmp_path} is in use by pid {os.getpid()} on {socket.gethostname()}" in str(
        same_fold.value
    )
    with pytest.raises(MedalsError, match="--wait to wait for it"):
        StageLock(layout, "evaluate").acquire()  # the whole folder: refused while any fold trains
    fold0.release()
    fold1.release()
    alone = StageLock(layout, "evaluate")
    alone.acquire()  # nobody left: taken
    with pytest.raises(MedalsError, match=f"run folder {tmp_path} is in use"):
        StageLock(layout, "train", [0]).acquire()
    alone.release()
    assert read_json(layout.locks_dir / "run.lock")["pid"] == os.getpid()


def test_only_medals_temp_files_are_removed_and_only_by_the_owner(tmp_path):
    layout = RunLayout(tmp_path)
    (tmp_path / "fold0").mkdir()
    killed = tmp_path / "fold0" / ".last.pt.k2j4h_9x.tmp"  # what mkstemp left when a write was killed
    report = tmp_path / ".report.html.abcd1234.tmp"  # a report being written by `medals report` now
    mine = tmp_path / ".notes.tmp"  # not medals' pattern
    for path in (killed, report, mine):
        path.write_bytes(b"x")
    training = StageLock(layout, "train", [1])
    training.acquire()  # fold 1's owner cleans fold 1 only
    assert killed.exists()
    training.release()
    owner = StageLock(layout, "prepare")
    owner.acquire()
    owner.release()
    assert not killed.exists() and report.exists() and mine.exists()


def test_folds_set_aside_come_back_newest_finished_first_and_clean_deletes_them(tmp_path):
    layout = RunLayout(tmp_path)
    for content in ("A-old", "B", "A-new"):
        layout.fold_dir(0).mkdir()
        (layout.fold_dir(0) / "final.pt").write_text(content)
        set_aside(layout, 0, "digest1", content[0], "trained under another training config")
    assert len(stale_lines(tmp_path)) == 3
    assert restore(layout, 0, "A") is not None
    assert (layout.fold_dir(0) / "final.pt").read_text() == "A-new"
    assert restore(layout, 0, "B") is None  # fold0/ is taken: nothing is overwritten
    assert restore(layout, 1, "A") is None  # another fold's entries never come back as this one
    assert clean(tmp_path, dry_run=True) == stale_lines(tmp_path) and layout.stale_dir.is_dir()
    assert len(clean(tmp_path)) == 2 and not layout.stale_dir.exists()
    assert (layout.fold_dir(0) / "final.pt").read_text() == "A-new"


def test_recorded_outputs_catch_truncation_rewrites_and_deletion(tmp_path):
    layout = RunLayout(tmp_path)
    write_parquet(layout.oof, pd.DataFrame({"id": ["a", "b"], "p_0": [0.1, 0.9]}))
    (tmp_path / "metrics.json").write_text("{}")
    recorded = record(layout, "evaluate")
    assert set(recorded) == {"oof.parquet", "metrics.json"} and changed(layout, recorded) == []
    (tmp_path / "metrics.json").write_text("{ }")  # same size, other bytes
    assert changed(layout, recorded) == ["metrics.json"]
    size = layout.oof.stat().st_size
    with open(layout.oof, "r+b") as handle:
        handle.truncate(size - 10)
    with pytest.raises(MedalsError) as err:
        read_parquet(layout.oof, layout.redo_hint(layout.oof))
    assert str(err.value).startswith(f"{layout.oof} is corrupt (") and "--force evaluate" in str(err.value)
    layout.oof.unlink()
    assert changed(layout, recorded) == ["oof.parquet", "metrics.json"]
    assert checksum(tmp_path / "metrics.json")["size"] == 3
