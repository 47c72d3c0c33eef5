"""Atomic writes: write to a temporary file beside the target, then rename over it.

A killed process therefore never leaves a half-written file that a resumed run would trust, and a write
that the machine refuses (read-only folder, disk full, no permission) leaves the old file as it was and
becomes one MedalsError naming the path (`os_fault`), so a rerun after the fix finishes the work.
"""

from __future__ import annotations

import errno
import json
import math
import numbers
import os
import shutil
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


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


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
