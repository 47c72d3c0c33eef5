"""Trained folds are moved aside, never deleted: stale/<train digest>/fold<k>/ beside a fold<k>.json.

A fold folder whose checkpoints belong to another training config (its config hash, see
medals.train.loop.training_hash), one that --force train redoes, or one whose files changed since train
finished is renamed into stale/ with a small JSON (the digest, the fold's config hash, when and why).
When a fold is to be trained under a config hash that a stale entry holds (the setting was changed
back), the entry is renamed back instead, byte for byte, and the fold is not trained again (a finished
fold is skipped, an unfinished one resumes from its last.pt). `medals clean` deletes stale/.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from medals.errors import MedalsError
from medals.files import read_json, write_json
from medals.stages.layout import RunLayout


def _entries(layout: RunLayout, fold: int | None = None) -> list[tuple[Path, dict]]:
    """(fold folder, its JSON) of every stale entry (of one fold), newest first."""
    out = []
    for note in layout.stale_dir.glob("*/fold*.json"):  # fold<k>.json, or fold<k>-<n>.json
        try:
            info = read_json(note)
        except MedalsError:  # a damaged note only hides its entry from restoring
            info = {}
        folder = note.with_suffix("")
        if not (folder.is_dir() and isinstance(info, dict)):
            continue
        if fold is None or info.get("fold") == fold:
            out.append((folder, info))
    return sorted(out, key=lambda entry: entry[1].get("moved", 0), reverse=True)


def set_aside(layout: RunLayout, fold: int, digest: str, config_hash: str | None, reason: str) -> Path:
    """Rename fold<k>/ into stale/<digest>/ (a numbered name when that one is taken)."""
    source = layout.fold_dir(fold)
    folder = layout.stale_dir / digest
    folder.mkdir(parents=True, exist_ok=True)
    target, n = folder / f"fold{fold}", 1
    while target.exists() or target.with_suffix(".json").exists():
        n += 1
        target = folder / f"fold{fold}-{n}"
    os.rename(source, target)  # same file system: atomic, nothing copied
    note = {
        "fold": fold,
        "digest": digest,
        "config_hash": config_hash,
        "moved": time.time(),
        "reason": reason,
    }
    write_json(target.parent / f"{target.name}.json", note)
    return target


def restore(layout: RunLayout, fold: int, config_hash: str) -> Path | None:
    """Rename back the newest stale fold<k> trained under ``config_hash`` (finished ones first)."""
    if layout.fold_dir(fold).exists():
        return None
    matching = [(f, i) for f, i in _entries(layout, fold) if i.get("config_hash") == config_hash]
    matching.sort(key=lambda entry: not (entry[0] / "final.pt").is_file())  # stable: newest first within
    for folder, _info in matching:
        if (folder / "final.pt").is_file() or (folder / "last.pt").is_file():
            os.rename(folder, layout.fold_dir(fold))
            folder.with_suffix(".json").unlink(missing_ok=True)
            if not any(folder.parent.iterdir()):
                folder.parent.rmdir()
            return folder
    return None


def stale_lines(root: Path) -> list[str]:
    """One line per set-aside fold: where it is, why and when it was moved, whether it finished."""
    lines = []
    for folder, info in _entries(RunLayout(root)):
        moved = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.get("moved", 0)))
        state = "finished" if (folder / "final.pt").is_file() else "unfinished"
        lines.append(f"{folder.relative_to(root)}: {state}, moved {moved} ({info.get('reason', '?')})")
    return sorted(lines)


def stale_size(root: Path) -> int:
    folder = RunLayout(root).stale_dir
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def clean(root: Path, dry_run: bool = False) -> list[str]:
    """Delete stale/ (listing what goes first); with dry_run only list it."""
    lines = stale_lines(root)
    folder = RunLayout(root).stale_dir
    if folder.is_dir() and not dry_run:
        shutil.rmtree(folder)
    return lines
