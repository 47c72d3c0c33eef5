"""Reading a competition CSV: one clear sentence for a missing, empty, unreadable or incomplete file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from medals.errors import MedalsError


def read_csv(
    path: Path,
    *,
    required: Sequence[str] = (),
    dtype: Any = None,
    keep_default_na: bool = True,
    who: str = "",
) -> pd.DataFrame:
    """The CSV with stripped header names; ``who`` prefixes errors (e.g. the adapter's name)."""
    prefix = f"{who}: " if who else ""
    if not path.is_file():
        raise MedalsError(f"{prefix}CSV file {path} does not exist")
    try:
        # skipinitialspace: some competition CSVs have headers like "ImageId, EncodedPixels".
        frame = pd.read_csv(path, dtype=dtype, skipinitialspace=True, keep_default_na=keep_default_na)
    except pd.errors.EmptyDataError:
        raise MedalsError(f"{prefix}CSV file {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedalsError(f"{prefix}cannot read CSV file {path}: {reason}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise MedalsError(
            f"{prefix}CSV file {path} has no column(s) {', '.join(repr(c) for c in missing)} "
            f"(columns: {', '.join(frame.columns)})"
        )
    return frame
