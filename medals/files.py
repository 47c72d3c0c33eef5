"""Atomic writes: write to a temporary file beside the target, then rename over it; checked reads.

A killed process therefore never leaves a half-written file that a resumed run would trust; the
temporary file it leaves (``.<name>.<random>.tmp``, TEMP_PATTERN) is removed by the next run that owns
the folder (medals.stages.locks). The readers turn a file that does not parse into one sentence naming
it and the fix, instead of a JSON or pyarrow traceback.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medals.errors import MedalsError

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _maybe_kill(path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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
