"""Competition layouts medals reads, each as a tiny generated folder with the real competition's column names
and file layout: `medals init` infers the recipe, `medals run` (1 epoch, 2 folds, resnet10t at 32 px, CPU)
writes a submission whose header, row ids, row order and value types are the sample's. A declaration that
does not fit the folder stops with one sentence and exit 2."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from medals.cli import main
from medals.data.rle import encode
from tests.dicom_files import write_dicom

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
SIDE = 32
RANZCR = [
    "ETT - Abnormal",
    "ETT - Borderline",
    "ETT - Normal",
    "NGT - Abnormal",
    "NGT - Borderline",
    "NGT - Incompletely Imaged",
    "NGT - Normal",
    "CVC - Abnormal",
    "CVC - Borderline",
    "CVC - Normal",
    "Swan Ganz Catheter Present",
]
ISIC = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
ICH = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"]


def _image(path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (SIDE, SIDE), dtype=np.uint8)
    if path.suffix == ".dcm":
        write_dicom(path, pixels)
    else:
        cv2.imwrite(str(path), np.dstack([pixels] * 3))


def _csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False)


# ---- the folders -----------------------------------------------------------------------------------
# Each builder writes a folder and returns what init must have inferred (dotted keys of the recipe).


def ranzcr(root: Path, rng) -> dict:
    """RANZCR CLiP: StudyInstanceUID + 11 independent 0/1 columns + PatientID; the sample lists the test ids."""
    uids = [f"1.2.826.0.1.3680043.8.498.{10000 + i}" for i in range(32)]
    train = pd.DataFrame({"StudyInstanceUID": uids[:24]})
    labels = (rng.random((24, len(RANZCR))) < 0.35).astype(int)
    labels[0, :2] = 1  # some rows have several findings: not one-hot
    for k, name in enumerate(RANZCR):
        train[name] = labels[:, k]
    train["PatientID"] = [f"ec{i // 2:05d}" for i in range(24)]
    _csv(train, root / "train.csv")
    _csv(
        pd.DataFrame({"StudyInstanceUID": uids[24:], **dict.fromkeys(RANZCR, 0)}),
        root / "sample_submission.csv",
    )
    for i, uid in enumerate(uids):
        _image(root / ("train" if i < 24 else "test") / f"{uid}.jpg", rng)
    return {
        "task": "multilabel",
        "data.target_layout": "wide",
        "data.classes": RANZCR,
        "data.group_column": "PatientID",
    }


def isic2019(root: Path, rng) -> dict:
    """ISIC 2019: image + one-hot MEL..UNK (UNK never 1 in training); one probability column per class."""
    ids = [f"ISIC_{i:07d}" for i in range(32)]
    truth = np.arange(24) % 8  # every class but UNK
    onehot = np.eye(len(ISIC), dtype=float)[truth]  # the real file writes 1.0 / 0.0
    train = pd.DataFrame(onehot, columns=ISIC)
    train.insert(0, "image", ids[:24])
    _csv(train, root / "ISIC_2019_Training_GroundTruth.csv")
    _csv(pd.DataFrame({"image": ids[24:], **dict.fromkeys(ISIC, 0.0)}), root / "sample_submission.csv")
    for i, ident in enumerate(ids):
        folder = "ISIC_2019_Training_Input" if i < 24 else "ISIC_2019_Test_Input"
        _image(root / folder / f"{ident}.jpg", rng)
    return {"task": "multiclass", "data.target_layout": "wide", "data.classes": ISIC}


def rsna_ich(root: Path, rng) -> dict:
    """RSNA ICH: one row per (image, subtype) keyed ID_<image>_<subtype>, `any` the sixth subtype; DICOM."""
    ids = [f"ID_{rng.integers(16**9):09x}" for _ in range(30)]
    rows = []
    for ident in ids[:22]:
        found = rng.random(5) < 0.25
        rows += [(f"{ident}_{name}", int(v)) for name, v in zip(ICH, [*found, found.any()], strict=True)]
    _csv(pd.DataFrame(rows, columns=["ID", "Label"]), root / "stage_2_train.csv")
    sample = [(f"{ident}_{name}", 0.5) for ident in ids[22:] for name in ICH]
    _csv(pd.DataFrame(sample, columns=["ID", "Label"]), root / "stage_2_sample_submission.csv")
    for i, ident in enumerate(ids):
        _image(root / ("stage_2_train" if i < 22 else "stage_2_test") / f"{ident}.dcm", rng)
    return {
        "task": "multilabel",
        "data.target_layout": "long",
        "data.long_key": "{image}_{class}",
        "data.label_column": "Label",
        "data.classes": ICH,
        "data.image_path": "stage_2_train/{id}.dcm",
    }


def _breast_rows(patients: list[int], rng, test: bool) -> pd.DataFrame:
    rows = []
    for patient in patients:
        site = int(rng.integers(1, 3))
        age = int(rng.integers(40, 80))
        for side in ("L", "R"):
            cancer = int(rng.random() < 0.4)
            for view in ("CC", "MLO"):
                image = int(rng.integers(10**8, 10**9))
                row = {"site_id": site, "patient_id": patient, "image_id": image, "laterality": side}
                row.update({"view": view, "age": age})
                row.update({"prediction_id": f"{patient}_{side}"} if test else {"cancer": cancer})
                rows.append(row)
    return pd.DataFrame(rows)


def rsna_breast(root: Path, rng) -> dict:
    """RSNA breast screening: several views per breast, one submission row per `{patient_id}_{laterality}`;
    images in train_images/{patient_id}/{image_id}.dcm."""
    train = _breast_rows(list(range(10006, 10014)), rng, test=False)
    train.loc[train.index[:4], "cancer"] = [1, 1, 0, 0]  # both classes in every fold
    test = _breast_rows([20001, 20002, 20003], rng, test=True)
    _csv(train, root / "train.csv")
    _csv(test, root / "test.csv")
    _csv(
        pd.DataFrame({"prediction_id": test["prediction_id"].unique(), "cancer": 0}),
        root / "sample_submission.csv",
    )
    for split, frame in (("train_images", train), ("test_images", test)):
        for row in frame.itertuples():
            _image(root / split / str(row.patient_id) / f"{row.image_id}.dcm", rng)
    return {
        "task": "binary",
        "data.id_column": "image_id",
        "data.prediction_id": "{patient_id}_{laterality}",
        "data.image_path": "train_images/{patient_id}/{id}.dcm",
        "data.test_image_path": "test_images/{patient_id}/{id}.dcm",
        "data.group_column": "patient_id",
    }


def cassava(root: Path, rng) -> dict:
    """Cassava leaf disease: image_id carries the extension (1000015157.jpg); the label's integer submitted."""
    ids = [f"{rng.integers(10**9, 5 * 10**9)}.jpg" for _ in range(30)]
    _csv(pd.DataFrame({"image_id": ids[:24], "label": np.arange(24) % 5}), root / "train.csv")
    _csv(pd.DataFrame({"image_id": ids[24:], "label": 4}), root / "sample_submission.csv")
    for i, ident in enumerate(ids):
        _image(root / ("train_images" if i < 24 else "test_images") / ident, rng)
    return {"task": "multiclass", "submit.kind": "label", "data.image_path": "train_images/{id}"}


def path_column(root: Path, rng) -> dict:
    """A CSV column holds each image's path, in folders and names that have nothing to do with the ids."""
    ids = [f"case{i:03d}" for i in range(30)]
    paths = [f"scans/site{i % 3}/img_{rng.integers(10**6):06d}_{i}.png" for i in range(30)]
    _csv(
        pd.DataFrame({"image_id": ids[:24], "filepath": paths[:24], "target": np.arange(24) % 2}),
        root / "train.csv",
    )
    _csv(pd.DataFrame({"image_id": ids[24:], "filepath": paths[24:]}), root / "test.csv")
    _csv(pd.DataFrame({"image_id": ids[24:], "target": 0.5}), root / "sample_submission.csv")
    for path in paths:
        _image(root / path, rng)
    return {"task": "binary", "data.path_column": "filepath"}


def nested_dicom(root: Path, rng) -> dict:
    """DICOMs in one folder per patient, the folder named by a CSV column: train_images/{patient_id}/{image_id}.dcm."""
    frame = pd.DataFrame(
        {
            "patient_id": [int(10000 + i // 3) for i in range(30)],
            "image_id": [int(rng.integers(10**8, 10**9)) for _ in range(30)],
            "cancer": np.arange(30) % 2,
        }
    )
    _csv(frame.iloc[:22], root / "train.csv")
    _csv(frame.iloc[22:, :2], root / "test.csv")
    _csv(
        pd.DataFrame({"image_id": frame["image_id"].iloc[22:], "cancer": 0.0}), root / "sample_submission.csv"
    )
    for i, row in enumerate(frame.itertuples()):
        _image(
            root
            / ("train_images" if i < 22 else "test_images")
            / str(row.patient_id)
            / f"{row.image_id}.dcm",
            rng,
        )
    return {"task": "binary", "data.image_path": "train_images/{patient_id}/{id}.dcm", "data.cache_size": 32}


def zero_padded(root: Path, rng) -> dict:
    """Integer ids (17) whose files are zero-padded (train/00017.png)."""
    _csv(pd.DataFrame({"id": range(1, 25), "label": np.arange(24) % 3}), root / "train.csv")
    _csv(pd.DataFrame({"id": range(25, 31)}), root / "test.csv")
    _csv(pd.DataFrame({"id": range(25, 31), "label": 0}), root / "sample_submission.csv")
    for i in range(1, 31):
        _image(root / ("train" if i < 25 else "test") / f"{i:05d}.png", rng)
    return {
        "task": "multiclass",
        "data.image_path": "train/{id:05d}.png",
        "data.test_image_path": "test/{id:05d}.png",
    }


def siim_acr(root: Path, rng) -> dict:
    """The SIIM-ACR download: train-rle.csv ("ImageId, EncodedPixels", -1 empty, relative RLE) and DICOMs
    nested as dicom-images-train/<study>/<series>/<ImageId>.dcm."""
    stem = "1.2.276.0.7230010.3.1.{}.8323329.{}.1517875{}.{}"
    rows, test_ids = [], []
    for i in range(28):
        ident = stem.format(4, 5000 + i, 160 + i, 900000 + i)
        study, series = (
            stem.format(2, 5000 + i, 160 + i, 800000 + i),
            stem.format(3, 5000 + i, 160 + i, 700000 + i),
        )
        folder = "dicom-images-train" if i < 22 else "dicom-images-test"
        _image(root / folder / study / series / f"{ident}.dcm", rng)
        if i >= 22:
            test_ids.append(ident)
            continue
        mask = np.zeros((SIDE, SIDE), bool)
        if i % 2:
            mask[4 + i % 5 : 14 + i % 5, 6:16] = True
        rows.append((ident, encode(mask, "siim")))
    (root / "train-rle.csv").write_text("ImageId, EncodedPixels\n" + "".join(f"{a}, {b}\n" for a, b in rows))
    _csv(pd.DataFrame({"ImageId": test_ids, "EncodedPixels": "-1"}), root / "sample_submission.csv")
    return {
        "task": "segmentation",
        "data.rle_format": "siim",
        "data.image_path": "dicom-images-train/**/{id}.dcm",
        "data.test_image_path": "dicom-images-test/**/{id}.dcm",
    }


FOLDERS: dict[str, Callable[[Path, np.random.Generator], dict]] = {
    "ranzcr_wide_multilabel": ranzcr,
    "isic2019_one_hot": isic2019,
    "rsna_ich_long": rsna_ich,
    "rsna_breast_groups": rsna_breast,
    "cassava_ids_with_extension": cassava,
    "path_column": path_column,
    "nested_dicom_template": nested_dicom,
    "zero_padded_ids": zero_padded,
    "siim_acr_nested_dicom": siim_acr,
}


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
    ("ranzcr_wide_multilabel", "run", ["task=multiclass"], "task multiclass (one-hot) needs exactly one"),
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
