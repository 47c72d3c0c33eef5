"""clean: delete the folds that training moved aside (stale/), after listing them."""

from __future__ import annotations

from pathlib import Path

from medals.errors import MedalsError
from medals.stages.aside import clean, stale_size
from medals.stages.common import say
from medals.stages.layout import RunLayout
from medals.stages.locks import StageLock


def run_clean(target: Path, overrides: list[str], dry_run: bool = False) -> list[str]:
    """``target``: a run folder or a recipe file (its run_dir). Holds the run lock exclusively: no
    training job may be bringing a fold back from stale/ meanwhile."""
    if target.is_file():
        from medals.config import load_recipe

        root = load_recipe(target, overrides).run_path
    else:
        root = target
    if not (root / "config.yaml").is_file():
        raise MedalsError(f"{root} is not a medals run folder (no config.yaml in it)")
    layout = RunLayout(root)
    lock = StageLock(layout, "clean")
    lock.acquire()
    try:
        size = stale_size(root)
        lines = clean(root, dry_run=dry_run)
    finally:
        lock.release()
    if not lines:
        say(f"clean: nothing set aside in {layout.stale_dir}")
        return lines
    for line in lines:
        say(f"  {line}")
    verb = "would delete" if dry_run else "deleted"
    say(f"clean: {verb} {len(lines)} set-aside fold(s), {size / 1e6:.1f} MB, in {layout.stale_dir}")
    return lines
