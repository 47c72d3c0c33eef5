"""Competition layouts medals reads, each as a tiny generated folder with the real competition's column names
and file layout: `medals init` infers the recipe, `medals run` (1 epoch, 2 folds, resnet10t at 32 px, CPU)
writes a submission whose header, row ids, row order and value types are the sample's. A declaration that
does not fit the folder stops with one sentence and exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from medals.cli import main
from tests.format_folders import FOLDERS, ICH, ISIC, RANZCR

FAST = [
    "model.pretrained=false",
    "model.backbone=resnet10t",
    "train.epochs=1",
    "train.image_size=32",
    "train.batch_size=8",
    "split.n_folds=2",
    "infer.tta=1",
    "train.progress=false",
    "train.num_workers=0",
    "--device",
    "cpu",
]
# ---- helpers ------------------------------------------------------------------------------------------


def _get(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        node = node[part]
    return node


def build(name: str, tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / name
    root.mkdir()
    expected = FOLDERS[name](root, np.random.default_rng(len(name)))
    return root, expected


def init(root: Path, *overrides: str) -> dict:
    assert main(["init", str(root), *overrides]) == 0
    return yaml.safe_load((root / "recipe.yaml").read_text())


_TOKENS = re.compile(r"^(-1|\d+( \d+)*)?$")


def _kind(values: pd.Series) -> str:
    """The value type of a submission column: probability, integer, RLE or text."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all() and (numbers == numbers.round()).all() and not values.str.contains(r"\.").any():
        return "integer" if not values.isin(["-1"]).all() else "rle"
    if numbers.notna().all() and numbers.between(0, 1).all():
        return "probability"
    return "rle" if values.map(lambda v: bool(_TOKENS.match(v))).all() else "text"


def check_submission(root: Path, run_dir: Path, kinds: dict[str, str]) -> pd.DataFrame:
    """The submission's header is the sample's, byte for byte; its ids and their order are the sample's;
    each value column holds values of the given kind."""
    sample_path = root / yaml.safe_load((root / "recipe.yaml").read_text())["data"]["sample_submission"]
    sub_path = run_dir / "submission.csv"
    assert sub_path.read_text().splitlines()[0] == sample_path.read_text().splitlines()[0]
    sub = pd.read_csv(sub_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    sample = pd.read_csv(sample_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    assert sub.iloc[:, 0].tolist() == sample.iloc[:, 0].tolist()
    for column in sample.columns[1:]:
        want = kinds.get(column, kinds.get("*"))
        assert _kind(sub[column]) == want, (column, sub[column].head().tolist())
    return sub


# ---- the tests --------------------------------------------------------------------------------------------

# The value type each folder's submission must hold (the sample's: probabilities where it lists 0 or 0.5 as
# placeholders, the integer class where the competition scores a label, RLE masks).
KINDS = {
    "ranzcr_wide_multilabel": {"*": "probability"},
    "isic2019_one_hot": {"*": "probability"},
    "rsna_ich_long": {"*": "probability"},
    "rsna_breast_groups": {"*": "probability"},
    "cassava_ids_with_extension": {"*": "integer"},
    "path_column": {"*": "probability"},
    "nested_dicom_template": {"*": "probability"},
    "zero_padded_ids": {"*": "integer"},
    "siim_acr_nested_dicom": {"*": "rle"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FOLDERS))
def test_init_then_run_writes_the_samples_format(name, tmp_path, capsys):
    root, expected = build(name, tmp_path)
    tree = init(root)
    said = capsys.readouterr().out
    assert "init: train images: " in said and "init: test images: " in said  # which discovery it picked
    for key, value in expected.items():
        assert _get(tree, key) == value, key
    text = (root / "recipe.yaml").read_text()
    layout_keys = [
        k for k in ("target_layout", "prediction_id", "path_column", "image_path") if k in tree["data"]
    ]
    assert all(re.search(rf"^  {k}: .*  # \S", text, re.M) for k in layout_keys)  # each says why
    overrides = ["model.backbone=resnet18"] if tree["task"] == "segmentation" else []
    run_dir = tmp_path / "run"
    assert main(["run", str(root / "recipe.yaml"), f"run_dir={run_dir}", *overrides, *FAST]) == 0
    sub = check_submission(root, run_dir, KINDS[name])
    if name == "cassava_ids_with_extension":
        assert set(sub["label"]) <= {"0", "1", "2", "3", "4"}
    if name == "siim_acr_nested_dicom":
        metrics = yaml.safe_load((run_dir / "metrics.json").read_text())
        assert 0.0 <= metrics["pooled"]["dice"] <= 1.0
    if name in TRUTH:  # the labels the pivot read are the CSV's
        table = pd.read_parquet(run_dir / "table.parquet").query("split == 'train'").set_index("id")
        truth = TRUTH[name](root)
        column = "labels" if tree["task"] == "multilabel" else "label"
        assert table.loc[truth.index, column].tolist() == truth.tolist()
    if name == "rsna_breast_groups":  # OOF metrics on the groups: one per breast, not per image
        oof = pd.read_parquet(run_dir / "oof.parquet")
        assert len(oof) == 32 and len(sub) == 6
        train = pd.read_csv(root / "train.csv").astype({"image_id": str})
        oof = oof.merge(train, left_on="id", right_on="image_id")
        breasts = oof.groupby(["patient_id", "laterality"]).agg(p=("p_0", "mean"), y=("cancer", "max"))
        metrics = yaml.safe_load((run_dir / "metrics.json").read_text())
        assert metrics["pooled"]["auc"] == pytest.approx(roc_auc_score(breasts["y"], breasts["p"]))


def _ich_truth(root: Path) -> pd.Series:
    frame = pd.read_csv(root / "stage_2_train.csv")
    parts = frame["ID"].str.rpartition("_")
    ones = frame.assign(image=parts[0], k=parts[2].map(ICH.index)).query("Label == 1")
    images = pd.unique(parts[0])
    return (
        ones.groupby("image")["k"].agg(lambda k: " ".join(map(str, sorted(k)))).reindex(images, fill_value="")
    )


def _ranzcr_truth(root: Path) -> pd.Series:
    frame = pd.read_csv(root / "train.csv").set_index("StudyInstanceUID")[RANZCR]
    return frame.apply(lambda row: " ".join(str(k) for k in range(len(RANZCR)) if row.iloc[k] == 1), axis=1)


def _isic_truth(root: Path) -> pd.Series:
    frame = pd.read_csv(root / "ISIC_2019_Training_GroundTruth.csv").set_index("image")[ISIC]
    return frame.to_numpy().argmax(axis=1) + pd.Series(0, index=frame.index)


TRUTH = {
    "rsna_ich_long": _ich_truth,
    "ranzcr_wide_multilabel": _ranzcr_truth,
    "isic2019_one_hot": _isic_truth,
}


def test_init_uses_the_image_templates_it_is_given(tmp_path, capsys):
    """Overrides settle the search itself: with two copies of the test images, init reads the one it is told."""
    import shutil

    root, _ = build("zero_padded_ids", tmp_path)
    shutil.copytree(root / "test", root / "test_full")
    assert init(root)["data"]["test_image_path"] == "test/{id:05d}.png"  # the first found
    tree = init(root, "data.test_image_path=test_full/{id:05d}.png", "--force")
    assert tree["data"]["test_image_path"] == "test_full/{id:05d}.png"
    assert (
        "init: test images: test_full/{id:05d}.png (data.test_image_path as given)" in capsys.readouterr().out
    )


# A declaration that does not fit the folder: (folder, verb, overrides, words of the one sentence).
WRONG = [
    ("ranzcr_wide_multilabel", "init", ["data.classes=[ETT, NGT]"], "are not the value columns"),
    (
        "ranzcr_wide_multilabel",
        "run",
        ["task=multiclass", "train.checkpoints=[{name: best, metric: auc}]"],
        "task multiclass (one-hot) needs exactly one",
    ),
    ("ranzcr_wide_multilabel", "run", ["data.classes=[a, b, c, d, e, f, g, h, i, j, k]"], "has no column(s)"),
    ("rsna_ich_long", "run", ["data.long_key=ID_{class}_{image}"], "are not data.long_key"),
    ("rsna_breast_groups", "run", ["data.prediction_id={patient_id}_{side}"], "'side'"),
    ("zero_padded_ids", "init", ["data.image_path=train/{id:04d}.png"], "names files that do not exist"),
]


@pytest.mark.parametrize(("name", "verb", "overrides", "words"), WRONG)
def test_a_wrong_declaration_gets_one_sentence(name, verb, overrides, words, tmp_path, capsys):
    root, _ = build(name, tmp_path)
    if verb == "run":
        init(root)
        args = ["run", str(root / "recipe.yaml"), f"run_dir={tmp_path / 'run'}", *overrides, *FAST]
    else:
        args = ["init", str(root), *overrides]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medals: error: ") and err.count("\n") == 0 and words in err, err


def test_init_refuses_what_it_cannot_tell_apart(tmp_path, capsys):
    """One sentence naming the key to set: sample ids no column spells; sample columns the CSV lacks."""
    root, _ = build("rsna_breast_groups", tmp_path)
    sample = pd.read_csv(root / "sample_submission.csv")
    sample.assign(prediction_id="P" + sample["prediction_id"]).to_csv(
        root / "sample_submission.csv", index=False
    )
    capsys.readouterr()
    assert main(["init", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "data.prediction_id (a template" in err and "data.id_column" in err
    # The override settles it.
    tree = init(root, "data.id_column=image_id", "data.prediction_id=P{patient_id}_{laterality}")
    assert tree["data"]["prediction_id"] == "P{patient_id}_{laterality}"

    root, _ = build("isic2019_one_hot", tmp_path)
    sample = pd.read_csv(root / "sample_submission.csv")
    sample.rename(columns={"UNK": "unknown"}).to_csv(root / "sample_submission.csv", index=False)
    assert main(["init", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert "'unknown'" in err and "data.target_layout wide" in err and err.count("\n") == 0
