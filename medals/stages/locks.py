"""Who owns a run folder: one lock for the run, one per fold, held by the kernel (fcntl.flock).

Design. Training is the one stage that several jobs may do at once in one folder (`medals train R
--fold K` per scheduler job), each writing only its own fold<k>/ (plus its atomic stamp); every other
stage writes files the whole run shares (table, folds, oof, test predictions, submission). So:

- train holds the run lock *shared* and the lock of each fold it trains *exclusively*, all taken
  before any work: two jobs on different folds run side by side, two on one fold do not;
- every other stage, and `medals clean`, holds the run lock *exclusively*: it waits for (or refuses)
  every training job in the folder, and no training job starts while it works.

Two `medals run R` on one folder therefore never train the same fold nor write the same file: the
second stops at its first stage with one sentence naming the holder, or waits for it with --wait.
A lock is a flock on locks/<name>.lock; the kernel releases it when its process dies, however it
dies, so a lock left by a killed process is taken over by the next launch without any check of ours.
The holder writes its pid, host, start time and command into the file, which is only read to name
the holder of a lock we could not get.

Whoever holds the run lock exclusively is alone in the folder, and whoever holds a fold's lock is alone
in that fold: that is when the temporary files of killed writes (files.TEMP_PATTERN) are removed.

Under torchrun only rank 0 locks (pipeline.run_stages calls acquire through run_on_main): the other
ranks of the same launch are the same job.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from medals.errors import MedalsError
from medals.files import TEMP_PATTERN
from medals.stages.common import say
from medals.stages.layout import RunLayout

# A report being written beside a run takes no lock (`medals report` reads a folder in use): its
# temporary file is left alone while it may still be renamed.
_UNLOCKED_WRITES = (".report.html.",)
_UNLOCKED_GRACE_S = 60.0


def _holder_text(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _alive(info: dict) -> bool:
    if info.get("host") != socket.gethostname():
        return True  # another machine's process: trust the kernel's answer that someone holds it
    try:
        os.kill(int(info.get("pid", -1)), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _describe(info: dict) -> str:
    if not info:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid')} on {info.get('host')} since {since} (`{info.get('command', '?')}`)"


@dataclass
class StageLock:
    """The locks one stage of one launch needs; acquire() before the stage, release() after."""

    layout: RunLayout
    stage: str
    folds: list[int] = field(default_factory=list)
    wait: bool = False
    _fds: list[int] = field(default_factory=list)

    @property
    def run_file(self) -> Path:
        return self.layout.locks_dir / "run.lock"

    def fold_file(self, fold: int) -> Path:
        return self.layout.locks_dir / f"fold{fold}.lock"

    def acquire(self) -> None:
        self.layout.locks_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.stage == "train":
                self._lock(self.run_file, exclusive=False)
                for fold in sorted(self.folds):  # one order for every job: --wait never deadlocks
                    self._lock(self.fold_file(fold), exclusive=True, fold=fold)
                    remove_temp_files(self.layout.fold_dir(fold))
            else:
                self._lock(self.run_file, exclusive=True)
                remove_temp_files(self.layout.root)
        except BaseException:
            self.release()
            raise

    def try_fold(self, fold: int) -> int | None:
        """The lock of a fold this job does not train, if no other job holds it (never waits): its file
        descriptor, to give to drop() once done with the fold."""
        if not self._lock(self.fold_file(fold), exclusive=True, fold=fold, wait=False, quiet=True):
            return None
        return self._fds[-1]

    def drop(self, fd: int) -> None:
        self._fds.remove(fd)
        os.close(fd)

    def release(self) -> None:
        for fd in reversed(self._fds):
            os.close(fd)  # closing the last descriptor of the file drops its flock
        self._fds.clear()

    def _lock(
        self, path: Path, exclusive: bool, fold: int | None = None, wait: bool | None = None, quiet=False
    ) -> bool:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if quiet:
                os.close(fd)
                return False
            what = (
                f"fold {fold} of run folder {self.layout.root}"
                if fold is not None
                else (f"run folder {self.layout.root}")
            )
            holder = _describe(self._holder(path))
            if not (self.wait if wait is None else wait):
                os.close(fd)
                raise MedalsError(
                    f"{what} is in use by {holder}: let it finish, or pass --wait to wait for it"
                ) from None
            say(f"{self.stage}: waiting for {holder}, which holds {what}")
            fcntl.flock(fd, mode)
        self._fds.append(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        info["command"] = " ".join(["medals", *sys.argv[1:]])[:300]
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        return True

    def _holder(self, path: Path) -> dict:
        """Who holds ``path``: its own record, or for the run lock held shared by training jobs (whose
        records overwrite each other), the first live one among the fold locks' records."""
        info = _holder_text(path)
        if path != self.run_file or (info and _alive(info)):
            return info
        for fold_lock in sorted(self.layout.locks_dir.glob("fold*.lock")):
            other = _holder_text(fold_lock)
            if other and _alive(other) and other.get("pid") != os.getpid():
                return other
        return info


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files that killed atomic writes left in ``folder`` (recursively)."""
    removed = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for path in folder.rglob(".*.tmp"):
        if not (path.is_file() and TEMP_PATTERN.match(path.name)):
            continue
        if path.name.startswith(_UNLOCKED_WRITES) and now - path.stat().st_mtime < _UNLOCKED_GRACE_S:
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
