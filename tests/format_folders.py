"""Tiny generated competition folders, one per layout medals reads, with the real competition's column names
and file layout (tens of 32 px images; DICOMs where the competition ships DICOMs). Each builder returns the
recipe keys `medals init` must infer for its folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medals.data.rle import encode
from tests.dicom_files import write_dicom

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
