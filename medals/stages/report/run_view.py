"""What the report reads of one run folder, each file read once and only when a section asks for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.config.recipe import main_metric_of
from medals.files import read_csv_frame, read_json, read_parquet, read_yaml
from medals.stages.layout import RunLayout


@dataclass
class RunView:
    layout: RunLayout
    config: dict = field(default_factory=dict)

    @classmethod
    def of(cls, folder: Path) -> RunView:
        layout = RunLayout(folder)
        fix = "rerun any stage of its recipe (`medals run RECIPE`) to write it again"
        return cls(layout, read_yaml(layout.config, fix) or {})

    @property
    def task(self) -> str:
        return self.config.get("task", "")

    @property
    def main_metric(self) -> str:
        return main_metric_of(self.config)

    @cached_property
    def recipe(self) -> Recipe:
        from medals.config import recipe_from_dict

        return recipe_from_dict(self.config, str(self.layout.config))

    def _json(self, path: Path) -> dict:
        return read_json(path, self.layout.redo_hint(path)) if path.is_file() else {}

    def _parquet(self, path: Path) -> pd.DataFrame | None:
        """A run file the report reads; a damaged one is one sentence naming it and the stage to redo."""
        return read_parquet(path, self.layout.redo_hint(path)) if path.is_file() else None

    @cached_property
    def metrics(self) -> dict:
        return self._json(self.layout.metrics)

    @cached_property
    def labels(self) -> dict:
        return self._json(self.layout.labels)

    @cached_property
    def table(self) -> pd.DataFrame | None:
        return self._parquet(self.layout.table)

    @cached_property
    def folds(self) -> pd.DataFrame | None:
        return self._parquet(self.layout.folds)

    @cached_property
    def oof(self) -> pd.DataFrame | None:
        return self._parquet(self.layout.oof)

    @cached_property
    def test(self) -> pd.DataFrame | None:
        return self._parquet(self.layout.test_predictions)

    @cached_property
    def logs(self) -> dict[int, pd.DataFrame]:
        found = {}
        for path in sorted(self.layout.root.glob("fold*/log.csv")):
            suffix = path.parent.name[4:]
            if suffix.isdigit():
                found[int(suffix)] = read_csv_frame(path, "delete it: the next `medals run` writes it again")
        return found

    def stamp(self, stage: str) -> dict:
        from medals.stages.pipeline import read_stamp

        return read_stamp(self.layout, stage) or {}

    @cached_property
    def oof_rows(self) -> pd.DataFrame | None:
        """The table's rows in OOF order (the truth and the images of each OOF prediction)."""
        if self.oof is None or self.table is None:
            return None
        return self.table.set_index("id").loc[self.oof["id"].astype(str)].reset_index()

    @cached_property
    def classes(self) -> list[str]:
        k = self.labels.get("num_classes") or 0
        named = self.labels.get("classes") or []
        return [str(c) for c in named] if named else [str(i) for i in range(k)]

    def prob_columns(self, frame: pd.DataFrame) -> list[str]:
        """The class-probability columns p_0 .. p_{K-1} (not p_cls, p_max)."""
        return sorted(
            (c for c in frame.columns if c.startswith("p_") and c[2:].isdigit()), key=lambda c: int(c[2:])
        )

    def probs(self, frame: pd.DataFrame) -> np.ndarray:
        return frame[self.prob_columns(frame)].to_numpy(np.float64)
