"""Where each stage reads and writes inside one run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
