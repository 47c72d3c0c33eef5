"""data.label_corrections (medals.data.corrections) with HPA1's s10 rules, and the hpa adapter's
antibody column (the identity of HPA1's ArcFace model, its s4/s9 steps)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medals.config import recipe_from_dict
from medals.data.competitions.hpa import hpa_frames
from medals.data.corrections import corrected_labels
from medals.data.table import build_table
from medals.errors import MedalsError
from tests.test_hpa_data import EXT_IDS, TRAIN_IDS, hpa_root  # noqa: F401 (hpa_root is a fixture)

RARE = [8, 9, 10, 20, 26]  # Peroxisomes, Endosomes, Lysosomes, Lipid droplets, Cytoplasmic bodies


def test_the_correction_rule_row_by_row():
    # a class of keep_classes follows the original: 8 stays on, 9 stays off
    assert corrected_labels("0 8", "5", RARE, "f") == "5 8"
    assert corrected_labels("0", "5 9", RARE, "f") == "5"
    # the other classes follow the correction; the result is sorted numerically
    assert corrected_labels("0 25", "25 2 10", [], "f") == "2 10 25"
    # an empty correction, or one left empty by the kept classes, keeps the original labels
    assert corrected_labels("0 3", "", RARE, "f") == "0 3"
    assert corrected_labels("0 3", np.nan, RARE, "f") == "0 3"
    assert corrected_labels("0 3", "9", RARE, "f") == "0 3"
    with pytest.raises(MedalsError, match="f: labels 'x' are not space-separated integers"):
        corrected_labels("0", "x", RARE, "f")


def _recipe(root, corrections: dict | None, keep: list[str] | None = None):
    tree = {
        "name": "hpa",
        "task": "multilabel",
        "source": str(root / "r.yaml"),
        "data": {
            "adapter": "hpa",
            "adapter_params": {"external_csv": "ext.csv", "external_ext": "png"},
            "id_column": "Id",
            "label_column": "Target",
            "num_classes": 28,
            "image_path": "{image_path}",
            "test_image_path": "{image_path}",
            "keep_columns": ["is_external", *(keep or [])],
        },
        "model": {"in_chans": 4},
    }
    if corrections is not None:
        tree["data"]["label_corrections"] = corrections
    return recipe_from_dict(tree, "test")


def _extra(root, ids, targets, name="extra.csv") -> str:
    pd.DataFrame({"Id": ids, "Target": targets}).to_csv(root / name, index=False)
    return name


HPA1 = {"id_replace": {"/": "_"}, "keep_classes": RARE, "rows": "is_external == 1"}


def test_corrections_reach_the_table_as_the_seed_applies_them(hpa_root):  # noqa: F811
    # external 10_2_B2_1 is "7 8", corrected to "9 3": 8 (kept, on originally) stays on, 9 (kept, off
    # originally) stays off, 3 comes from the correction, 7 goes: "3 8". The Kaggle row t0 is not in
    # `rows`; zz_1 is no row at all; the repeated line counts once.
    path = _extra(hpa_root, ["10/2_B2_1", "t0", "zz/1", "10/2_B2_1"], ["9 3", "3", "4", "9 3"])
    cfg = {"path": path, **HPA1, "unknown_ids": "ignore"}
    table = build_table(_recipe(hpa_root, cfg)).set_index("id")
    assert table.loc[EXT_IDS[1], "labels"] == "3 8"
    assert table.loc[EXT_IDS[0], "labels"] == "5"  # no correction
    assert table.loc["t0", "labels"] == "0"  # a Kaggle row: not corrected
    # into a column of its own: the training labels stay the originals
    cfg["column"] = "target_corrected"
    table = build_table(_recipe(hpa_root, cfg, keep=["target_corrected"])).set_index("id")
    assert table.loc[EXT_IDS[1], "labels"] == "7 8"
    assert table.loc[EXT_IDS[1], "target_corrected"] == "3 8"
    assert table.loc[EXT_IDS[0], "target_corrected"] == "5" and table.loc["t0", "target_corrected"] == "0"
    # a recipe without the key builds the table it always did
    plain = build_table(_recipe(hpa_root, None)).set_index("id")
    assert plain.loc[EXT_IDS[1], "labels"] == "7 8"


def test_bad_correction_files_are_one_sentence(hpa_root):  # noqa: F811
    unknown = _extra(hpa_root, ["10/2_B2_1", "zz/1"], ["9", "4"], "unknown.csv")
    with pytest.raises(MedalsError, match=r"names 1 ids that are no correctable training row.*'zz_1'"):
        build_table(_recipe(hpa_root, {"path": unknown, **HPA1}))
    clash = _extra(hpa_root, ["t1", "t1"], ["3", "4"], "clash.csv")
    with pytest.raises(MedalsError, match=r"different labels for one id, first: \['t1'\]"):
        build_table(_recipe(hpa_root, {"path": clash}))
    with pytest.raises(MedalsError, match="missing.csv does not exist"):
        build_table(_recipe(hpa_root, {"path": "missing.csv"}))
    with pytest.raises(MedalsError, match=r"label_corrections.rows 'nope == 1' cannot be applied"):
        build_table(_recipe(hpa_root, {"path": unknown, "rows": "nope == 1"}))


def test_the_adapter_derives_the_antibody_of_external_rows(hpa_root):  # noqa: F811
    recipe = _recipe(hpa_root, None, keep=["antibody"])
    train, _ = hpa_frames(recipe, external_csv="ext.csv", external_ext="png")
    antibody = dict(zip(train["Id"], train["antibody"], strict=True))
    # HPAv18 ids are {antibody}_{plate}_{well}_{field}: both external images are antibody 10
    assert [antibody[i] for i in EXT_IDS] == ["10", "10"]
    assert all(pd.isna(antibody[i]) for i in TRAIN_IDS)  # Kaggle rows have none
    table = build_table(recipe).set_index("id")
    assert table.loc[EXT_IDS[0], "antibody"] == "10" and pd.isna(table.loc["t0", "antibody"])
    # an antibody column of the external CSV wins; an Id without "_" names no antibody
    pd.DataFrame({"Id": [*EXT_IDS, "loose"], "Target": ["5", "7 8", "1"]}).to_csv(
        hpa_root / "ext2.csv", index=False
    )
    train, _ = hpa_frames(recipe, external_csv="ext2.csv", external_ext="png")
    assert train["antibody"].iloc[-3:-1].tolist() == ["10", "10"] and pd.isna(train["antibody"].iloc[-1])
    pd.DataFrame({"Id": EXT_IDS, "Target": ["5", "7"], "antibody": ["HPA1", "HPA2"]}).to_csv(
        hpa_root / "ext3.csv", index=False
    )
    train, _ = hpa_frames(recipe, external_csv="ext3.csv", external_ext="png")
    assert train["antibody"].iloc[-2:].tolist() == ["HPA1", "HPA2"]


def test_the_new_data_and_neighbours_keys_leave_old_dumps_alone(hpa_root):  # noqa: F811
    # At their default the keys are left out of the dump (and so out of every stage digest).
    dumped = _recipe(hpa_root, None).model_dump(mode="json")
    assert "label_corrections" not in dumped["data"]
    with_key = _recipe(hpa_root, {"path": "x.csv"}).model_dump(mode="json")
    assert with_key["data"]["label_corrections"]["path"] == "x.csv"
    from medals.config import NeighboursConfig

    assert "labels_column" not in NeighboursConfig(identity_column="antibody").model_dump(mode="json")
    assert NeighboursConfig(identity_column="a", labels_column="b").model_dump()["labels_column"] == "b"
