"""Atomic writes: write to a temporary file beside the target, then rename over it; checked reads.

A killed process therefore never leaves a half-written file that a resumed run would trust, and a write
that the machine refuses (read-only folder, disk full, no permission) leaves the old file as it was and
becomes one MedalsError naming the path (`os_fault`), so a rerun after the fix finishes the work.
The temporary file a kill leaves (``.<name>.<random>.tmp``, TEMP_PATTERN) is removed by the next run that
owns the folder (medals.stages.locks). The readers turn a file that does not parse into one sentence
naming it and the fix, instead of a JSON or pyarrow traceback.
"""

from __future__ import annotations

import errno
import json
import math
import numbers
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from medals.errors import MedalsError

# Faults of the machine, not of the program or the recipe: each is one sentence naming the path.
OS_FAULTS = {
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
}
# The same faults as the text of libraries that drop the errno (pyarrow's OSError, torch's RuntimeError).
_FAULT_TEXTS = {os.strerror(code).lower(): reason for code, reason in OS_FAULTS.items()}


def os_fault(
    exc: BaseException, path: str | os.PathLike | None = None, action: str = "write"
) -> MedalsError | None:
    """The one-sentence error for an OS fault (read-only, no permission, disk full), else None.

    ``path`` names the file being written (else the exception's own file name is used).
    """
    reason = None
    if isinstance(exc, OSError) and exc.errno in OS_FAULTS:
        reason = OS_FAULTS[exc.errno]
    elif isinstance(exc, OSError | RuntimeError):
        text = str(exc).lower()
        reason = next((why for known, why in _FAULT_TEXTS.items() if known in text), None)
        if reason is None and "write failed" in text and path is not None:
            # torch.save's stream writer says only "file write failed": a full disk is the usual cause.
            reason = "the write failed" + (" (the disk is full)" if _nearly_full(Path(path)) else "")
    if reason is None:
        return None
    # The target, not the temporary file beside it that the exception may name.
    where = path or getattr(exc, "filename", None) or "a file"
    return MedalsError(
        f"cannot {action} {where}: {reason}; fix that and run the same command again (finished work is kept)"
    )


def _nearly_full(path: Path) -> bool:
    with suppress(OSError):
        return shutil.disk_usage(path.parent if path.parent.exists() else Path.cwd()).free < 64 << 20
    return False


# The temporary files atomic_path makes (mkstemp's 8 random characters between the name and ".tmp").
TEMP_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")

# Test hook, not a feature: MEDALS_KILL_AT_WRITE=<file name>[:<n>] SIGKILLs the process on the n-th
# (default first) atomic write of a file of that name, after its temporary file is complete and before
# the rename, so the tests can kill a run in the middle of writing a checkpoint.
KILL_WRITE_ENV = "MEDALS_KILL_AT_WRITE"
_writes: dict[str, int] = {}


def _maybe_kill(path: Path) -> None:
    hook = os.environ.get(KILL_WRITE_ENV)
    if not hook:
        return
    name, _, nth = hook.partition(":")
    if path.name == name:
        _writes[name] = _writes.get(name, 0) + 1
        if _writes[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise (os_fault(exc, path) or exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _maybe_kill(path)
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as exc:
        fault = os_fault(exc, path)
        if fault is None:
            raise
        raise fault from None
    finally:
        with suppress(OSError):  # a folder that turned read-only keeps its temp file; a rerun cleans it
            tmp_path.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def _finite(obj: Any) -> Any:
    """NaN and infinities become null: strict JSON has no such numbers."""
    if isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(value) for value in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(_finite(obj), indent=2, sort_keys=True, default=float, allow_nan=False)
    return write_text(path, text + "\n")


# What to do about a file that does not parse, when the caller names nothing better.
REDO = "delete it, or redo the stage that wrote it (--force STAGE)"


def corrupt(path: str | os.PathLike, exc: BaseException, fix: str | None = None) -> MedalsError:
    """The sentence for a file that exists but cannot be parsed (truncated, emptied, overwritten)."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "empty or truncated"
    return MedalsError(f"{path} is corrupt ({type(exc).__name__}: {reason[:160]}): {fix or REDO}")


def read_json(path: str | os.PathLike, fix: str | None = None) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise corrupt(path, exc, fix) from None


def read_yaml(path: str | os.PathLike, fix: str | None = None) -> Any:
    """A YAML file medals wrote (a run's config.yaml), a damaged one said in one sentence."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise corrupt(path, exc, fix) from None


def read_parquet(path: str | os.PathLike, fix: str | None = None, **kwargs):
    """pandas.read_parquet, with a file that is not a whole parquet file said in one sentence."""
    import pandas as pd

    try:
        return pd.read_parquet(path, **kwargs)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # pyarrow's errors have no common base beyond these
        raise corrupt(path, exc, fix) from None


def read_npy(path: str | os.PathLike, fix: str | None = None, **kwargs):
    """numpy.load of an array file (never pickles), a truncated one said in one sentence."""
    import numpy as np

    try:
        return np.load(path, allow_pickle=False, **kwargs)
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise corrupt(path, exc, fix) from None


def read_csv_frame(path: str | os.PathLike, fix: str | None = None, **kwargs):
    """pandas.read_csv of a file medals wrote (log.csv, leaks.csv), a broken one said in one sentence."""
    import pandas as pd

    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise corrupt(path, exc, fix) from None


def write_parquet(path: str | os.PathLike, frame) -> Path:
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_csv(path: str | os.PathLike, frame) -> Path:
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_npy(path: str | os.PathLike, array) -> Path:
    import numpy as np

    def _save(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    return atomic_write(path, _save)


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
