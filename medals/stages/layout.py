"""Where each stage reads and writes inside one run directory."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# The stage that writes each fixed-name run file (what to redo when one is damaged).
WRITTEN_BY = {
    "table.parquet": "prepare",
    "labels.json": "prepare",
    "channel_stats.json": "prepare",
    "duplicates.parquet": "prepare",
    "leaks.csv": "prepare",
    "folds.parquet": "split",
    "oof.parquet": "evaluate",
    "oof_masks.npy": "evaluate",
    "holdout.parquet": "evaluate",
    "metrics.json": "evaluate",
    "test.parquet": "predict",
    "test_masks.npy": "predict",
    "log.csv": "train",
}
# Files of an unfinished fold (deleted once final.pt exists): never a stage's recorded output.
_RESUME_FILE = re.compile(r"^(last|epoch\d+)\.pt$")


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def table(self) -> Path:
        return self.root / "table.parquet"

    @property
    def labels(self) -> Path:
        """The resolved class list and class count, written by prepare."""
        return self.root / "labels.json"

    @property
    def data_summary(self) -> Path:
        """What prepare read: the training CSV's rows before and after data.query (the report shows it)."""
        return self.root / "data_summary.json"

    @property
    def channel_stats(self) -> Path:
        """Per-channel mean/std of the training images (train.normalize: dataset), written by prepare."""
        return self.root / "channel_stats.json"

    @property
    def duplicates(self) -> Path:
        """Pairs of near-identical images (data.duplicates), written by prepare."""
        return self.root / "duplicates.parquet"

    @property
    def leaks(self) -> Path:
        """Test images that duplicate a labelled image, nearest match first, written by prepare."""
        return self.root / "leaks.csv"

    @property
    def search_dir(self) -> Path:
        """The policy search's candidate trainings."""
        return self.root / "search"

    @property
    def neighbours_dir(self) -> Path:
        """HPA1's metric-learning model and its embeddings."""
        return self.root / "neighbours"

    def in_run(self, relative: str) -> Path:
        """A file the recipe names relative to the run directory (policy_search.file, submit.file)."""
        return self.root / relative

    @property
    def folds(self) -> Path:
        return self.root / "folds.parquet"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def stamps(self) -> Path:
        return self.root / "stages"

    def fold_dir(self, fold: int) -> Path:
        return self.root / f"fold{fold}"

    def checkpoint(self, fold: int, name: str) -> Path:
        return self.fold_dir(fold) / f"{name}.pt"

    @property
    def oof(self) -> Path:
        return self.root / "oof.parquet"

    @property
    def oof_masks(self) -> Path:
        return self.root / "oof_masks.npy"

    @property
    def holdout(self) -> Path:
        """Predictions (mean over folds) of the hold-out rows that no fold trained on."""
        return self.root / "holdout.parquet"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def test_predictions(self) -> Path:
        return self.root / "test.parquet"

    @property
    def test_masks(self) -> Path:
        return self.root / "test_masks.npy"

    @property
    def submission(self) -> Path:
        return self.root / "submission.csv"

    def fold_test_predictions(self, fold: int) -> Path:
        return self.fold_dir(fold) / "test.parquet"

    def fold_test_masks(self, fold: int) -> Path:
        return self.fold_dir(fold) / "test_masks.npy"

    @property
    def stale_dir(self) -> Path:
        """Trained folds moved aside by a changed training config or --force (medals.stages.aside)."""
        return self.root / "stale"

    @property
    def locks_dir(self) -> Path:
        """The run and fold lock files (medals.stages.locks)."""
        return self.root / "locks"

    def outputs(self, stage: str, named: Iterable[str] = ()) -> list[Path]:
        """The files a finished stage leaves that exist now (its stamp records their checksums).

        ``named`` are the run-relative files the recipe names (policy_search.file, submit.file). A fold's
        training outputs count only once its final.pt exists: until then they change every epoch.
        """
        fixed = {
            "prepare": [self.table, self.labels, self.channel_stats, self.duplicates, self.leaks],
            "split": [self.folds],
            "evaluate": [self.oof, self.oof_masks, self.holdout, self.metrics],
            "predict": [self.test_predictions, self.test_masks],
        }.get(stage, [])
        paths = [*fixed, *(self.in_run(name) for name in named)]
        for fold_dir in sorted(self.root.glob("fold*")):
            if not re.fullmatch(r"fold\d+", fold_dir.name):
                continue
            if stage == "train" and (fold_dir / "final.pt").is_file():
                pts = [p for p in sorted(fold_dir.glob("*.pt")) if not _RESUME_FILE.match(p.name)]
                paths += [*pts, fold_dir / "log.csv"]
            elif stage == "predict":
                paths += [fold_dir / "test.parquet", fold_dir / "test_masks.npy"]
        return [path for path in paths if path.is_file()]

    def redo_hint(self, path: Path) -> str:
        """What to do about a damaged run file: which stage to redo."""
        stage = WRITTEN_BY.get(path.name)
        if path.parent == self.stamps:
            stage = path.stem
        if stage is None:
            return "delete it, or redo the stage that wrote it (--force STAGE)"
        return f"delete it, or redo {stage} (`medals run RECIPE --force {stage}`)"
