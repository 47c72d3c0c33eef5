"""Data adapters: registered frame builders used in place of the two CSVs."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from medals.config import recipe_from_dict
from medals.data.adapters import ADAPTERS, register_adapter
from medals.data.table import build_table
from medals.errors import MedalsError


@pytest.fixture()
def two_sources(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / folder / f"{folder}{i}.png"), np.full((8, 8, 3), 40 * i, np.uint8))

    @register_adapter("two_sources_test")
    def frames(recipe, second: bool = True):
        rows = [{"id": f"a{i}", "dir": "a", "label": "x" if i else "y", "is_ext": 0} for i in range(3)]
        if second:
            rows += [{"id": f"b{i}", "dir": "b", "label": "y", "is_ext": 1} for i in range(3)]
        return pd.DataFrame(rows), None

    yield tmp_path
    ADAPTERS.pop("two_sources_test")


def recipe(root, **data):
    tree = {
        "name": "t",
        "task": "multiclass",
        "source": str(root / "r.yaml"),
        "data": {
            "adapter": "two_sources_test",
            "label_column": "label",
            "image_path": "{dir}/{id}.png",
            "keep_columns": ["is_ext"],
            **data,
        },
    }
    return recipe_from_dict(tree, "test")


def test_adapter_frames_go_through_the_table(two_sources):
    table = build_table(recipe(two_sources))
    assert table["id"].tolist() == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert table["is_ext"].tolist() == [0, 0, 0, 1, 1, 1]
    assert table["path"].iloc[4].endswith("b/b1.png")
    table = build_table(recipe(two_sources, adapter_params={"second": False}))
    assert len(table) == 3


def test_unknown_adapter_and_parameter(two_sources):
    with pytest.raises(MedalsError, match="data.adapter 'nope' is not known"):
        build_table(recipe(two_sources, adapter="nope"))
    with pytest.raises(MedalsError, match="'third' is not a parameter of adapter 'two_sources_test'"):
        build_table(recipe(two_sources, adapter_params={"third": 1}))


def test_kept_column_missing_is_named(two_sources):
    with pytest.raises(MedalsError, match="'site'"):
        build_table(recipe(two_sources, keep_columns=["site"]))
