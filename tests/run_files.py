"""What a run folder holds as work, for tests that check a rerun left it alone.

The lock files (locks/: who holds the folder, pid, host and since) are rewritten by every launch, so
they are bookkeeping, not work, and are left out here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path


def work_files(root: Path) -> Iterator[Path]:
    """Every file under root but the lock files, in sorted order."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.relative_to(root).parts[0] != "locks":
            yield path


def work_mtimes(root: Path) -> dict[str, int]:
    """Relative path -> st_mtime_ns of each work file."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in work_files(root)}


def work_hashes(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of each work file; empty when root does not exist."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in work_files(root)}
