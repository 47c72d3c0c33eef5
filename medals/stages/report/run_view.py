"""What the report reads of one run folder, each file read once and only when a section asks for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from medals.config import Recipe
from medals.config.recipe import main_metric_of
from medals.files import read_json
from medals.stages.layout import RunLayout


@dataclass
class RunView:
    layout: RunLayout
    config: dict = field(default_factory=dict)

    @classmethod
    def of(cls, folder: Path) -> RunView:
        layout = RunLayout(folder)
        return cls(layout, yaml.safe_load(layout.config.read_text()) or {})

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

    @cached_property
    def metrics(self) -> dict:
        return read_json(self.layout.metrics) if self.layout.metrics.is_file() else {}

    @cached_property
    def labels(self) -> dict:
        return read_json(self.layout.labels) if self.layout.labels.is_file() else {}

    @cached_property
    def table(self) -> pd.DataFrame | None:
        return pd.read_parquet(self.layout.table) if self.layout.table.is_file() else None

    @cached_property
    def folds(self) -> pd.DataFrame | None:
        return pd.read_parquet(self.layout.folds) if self.layout.folds.is_file() else None

    @cached_property
    def oof(self) -> pd.DataFrame | None:
        return pd.read_parquet(self.layout.oof) if self.layout.oof.is_file() else None

    @cached_property
    def test(self) -> pd.DataFrame | None:
        path = self.layout.test_predictions
        return pd.read_parquet(path) if path.is_file() else None

    @cached_property
    def logs(self) -> dict[int, pd.DataFrame]:
        found = {}
        for path in sorted(self.layout.root.glob("fold*/log.csv")):
            suffix = path.parent.name[4:]
            if suffix.isdigit():
                found[int(suffix)] = pd.read_csv(path)
        return found

    def stamp(self, stage: str) -> dict:
        path = self.layout.stamps / f"{stage}.json"
        return read_json(path) if path.is_file() else {}

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
