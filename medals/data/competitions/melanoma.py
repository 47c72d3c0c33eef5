"""SIIM-ISIC Melanoma 2020 (1st place recipe): the 2020 set plus the ISIC 2019/2018 external set.

Reads Chris Deotte's resized Kaggle sets under ``data.root``::

    jpeg-melanoma-{folder}x{folder}/{train.csv, test.csv, sample_submission.csv, train/, test/}
    jpeg-isic2019-{folder}x{folder}/{train.csv, train/}

and returns the training rows of both sets and the 2020 test rows, with columns added for the recipe:

- ``target_label``: the diagnosis in the solution's class space. 2020 names are merged (seborrheic
  keratosis, lichenoid keratosis, solar lentigo, lentigo NOS -> BKL; cafe-au-lait macule, atypical
  melanocytic proliferation -> unknown); external NV -> nevus, MEL -> melanoma. With out_dim 4 the
  external DF, AK, SCC, VASC and BCC become unknown.
- ``is_ext``: 1 for external rows, 0 for 2020 rows (train and test).
- ``image_dir``: the image folder relative to data.root, for the template "{image_dir}/{id}.jpg".
- ``fold_key``: the fold (0..4) from tfrecord for split.method "fixed": 2020 rows through the scheme's
  tfrecord -> fold map ("oldfold": tfrecord % 5); external rows through (tfrecord % 15) and the map
  for "newfold", tfrecord % 5 otherwise.

Rows whose tfrecord is -1 (2020) or negative (external) are duplicates and are dropped. An external
``patient_id`` of -1 means "unknown" and becomes missing, so that the images-per-patient meta feature
counts such a row alone (log1p(1)), as the solution did. A training row with NO patient id (an empty
cell, in either set) is handled by ``missing_patient``:

- ``"pooled"`` (default, the solution's get_meta_data): the id is filled with "0" before counting, so
  all such rows count as ONE patient (k such rows: log1p(k) each; 4 rows give 1.609, not 0.693).
- ``"alone"``: such a row counts only itself (log1p(1)), as an -1 row does; medals' earlier behaviour,
  for data where pooling unrelated images into one "patient" is not wanted.

The solution did not fill test ids; a test row without one counts alone (the solution's count would
be NaN there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.data.adapters import register_adapter
from medals.data.csv import read_csv
from medals.errors import MedalsError

CLASSES_9 = ["AK", "BCC", "BKL", "DF", "SCC", "VASC", "melanoma", "nevus", "unknown"]
CLASSES_4 = ["BKL", "melanoma", "nevus", "unknown"]

DIAGNOSIS_2020 = {
    "seborrheic keratosis": "BKL",
    "lichenoid keratosis": "BKL",
    "solar lentigo": "BKL",
    "lentigo NOS": "BKL",
    "cafe-au-lait macule": "unknown",
    "atypical melanocytic proliferation": "unknown",
}
DIAGNOSIS_EXT = {"NV": "nevus", "MEL": "melanoma"}
# out_dim 4: the external classes the 2020 set does not have.
DIAGNOSIS_EXT_4 = {name: "unknown" for name in ("DF", "AK", "SCC", "VASC", "BCC")}


def _fold_map(groups: list[tuple[int, int, int]]) -> dict[int, int]:
    return {tfrecord: fold for fold, members in enumerate(groups) for tfrecord in members}


FOLD_MAPS = {
    "default": _fold_map([(2, 4, 5), (1, 10, 13), (0, 9, 12), (3, 8, 11), (6, 7, 14)]),
    "newfold": _fold_map([(8, 5, 11), (7, 0, 6), (10, 12, 13), (9, 1, 3), (14, 2, 4)]),
    "oldfold": {tfrecord: tfrecord % 5 for tfrecord in range(15)},
}
N_TFRECORDS = 15

TRAIN_COLUMNS = ["image_name", "patient_id", "diagnosis", "tfrecord"]
EXT_COLUMNS = ["image_name", "diagnosis", "tfrecord"]
TEST_COLUMNS = ["image_name"]


def melanoma_dirs(folder: int) -> tuple[str, str]:
    """The 2020 and external set folders (relative to data.root) for a source resolution."""
    return f"jpeg-melanoma-{folder}x{folder}", f"jpeg-isic2019-{folder}x{folder}"


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    return read_csv(path, required=columns, dtype={"image_name": str, "patient_id": str}, who="melanoma_isic")


def _tfrecords(frame: pd.DataFrame, path: Path) -> np.ndarray:
    values = pd.to_numeric(frame["tfrecord"], errors="coerce")
    bad = frame["tfrecord"][values.isna() | (values != values.round())]
    if len(bad):
        shown = ", ".join(repr(v) for v in bad.unique()[:5])
        raise MedalsError(f"melanoma_isic: CSV file {path} column 'tfrecord' has non-integer values: {shown}")
    return values.to_numpy(dtype=np.int64)


def _labels(diagnosis: pd.Series, mapping: dict[str, str], classes: list[str], path: Path) -> list[str]:
    labels = [mapping.get(str(d), str(d)) if isinstance(d, str) else None for d in diagnosis.tolist()]
    bad = list(dict.fromkeys("(missing)" if x is None else x for x in labels if x not in classes))
    if bad:
        shown = ", ".join(repr(v) for v in bad[:5])
        raise MedalsError(
            f"melanoma_isic: CSV file {path} column 'diagnosis' has values outside the "
            f"{len(classes)}-class space ({', '.join(classes)}) after mapping: {shown}"
        )
    return labels


MISSING_PATIENT = ("pooled", "alone")
# The id the solution's fillna(0) gives every training row without a patient id.
POOLED_PATIENT = "0"


def _fill_patients(values: pd.Series, missing_patient: str) -> pd.Series:
    """Training patient ids with empty cells filled by POOLED_PATIENT ("pooled") or left missing."""
    text = values.astype(object).where(values.notna(), None)
    if missing_patient == "pooled":
        text = text.where(text.notna(), POOLED_PATIENT)
    return text


def _unknown_patients(values: pd.Series) -> pd.Series:
    """External patient ids: -1 (the set's "unknown") becomes missing."""
    text = values.astype(object).where(values.notna(), None)
    unknown = text.map(lambda v: v is not None and str(v).strip() in ("-1", "-1.0"))
    return text.where(~unknown, None)


@register_adapter("melanoma_isic")
def melanoma_frames(
    recipe: Recipe,
    folder: int = 768,
    out_dim: int = 9,
    fold_scheme: str = "default",
    external: bool = True,
    missing_patient: str = "pooled",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) frames of the 2020 set (+ the external set) in the solution's class and fold space."""
    if isinstance(folder, bool) or not isinstance(folder, int) or folder < 1:
        raise MedalsError(f"data.adapter_params.folder must be a positive integer (e.g. 768), got {folder!r}")
    if out_dim not in (9, 4) or isinstance(out_dim, bool):
        raise MedalsError(f"data.adapter_params.out_dim must be 9 or 4, got {out_dim!r}")
    if fold_scheme not in FOLD_MAPS:
        raise MedalsError(
            f"data.adapter_params.fold_scheme must be one of {', '.join(FOLD_MAPS)}, got {fold_scheme!r}"
        )
    if not isinstance(external, bool):
        raise MedalsError(f"data.adapter_params.external must be true or false, got {external!r}")
    if missing_patient not in MISSING_PATIENT:
        raise MedalsError(
            f"data.adapter_params.missing_patient must be one of {', '.join(MISSING_PATIENT)}, "
            f"got {missing_patient!r}"
        )
    classes = CLASSES_9 if out_dim == 9 else CLASSES_4
    fold_map = FOLD_MAPS[fold_scheme]
    root = recipe.data_root
    main_dir, ext_dir = melanoma_dirs(folder)

    # 2020 training rows: tfrecord -1 marks duplicates.
    path = root / main_dir / "train.csv"
    train = _read(path, TRAIN_COLUMNS)
    tfrecord = _tfrecords(train, path)
    keep = tfrecord != -1
    train, tfrecord = train[keep].reset_index(drop=True), tfrecord[keep]
    outside = sorted(set(tfrecord.tolist()) - set(fold_map))
    if outside:
        raise MedalsError(
            f"melanoma_isic: CSV file {path} column 'tfrecord' has values {outside[:5]} outside "
            f"-1..{N_TFRECORDS - 1}"
        )
    train["patient_id"] = _fill_patients(train["patient_id"], missing_patient)
    train["target_label"] = _labels(train["diagnosis"], DIAGNOSIS_2020, classes, path)
    train["fold_key"] = [fold_map[int(t)] for t in tfrecord]
    train["is_ext"] = 0
    train["image_dir"] = f"{main_dir}/train"
    frames = [train]

    if external:
        path = root / ext_dir / "train.csv"
        ext = _read(path, EXT_COLUMNS)
        tfrecord = _tfrecords(ext, path)
        keep = tfrecord >= 0
        ext, tfrecord = ext[keep].reset_index(drop=True), tfrecord[keep]
        mapping = dict(DIAGNOSIS_EXT)
        if out_dim == 4:
            mapping.update(DIAGNOSIS_EXT_4)
        ext["target_label"] = _labels(ext["diagnosis"], mapping, classes, path)
        if fold_scheme == "newfold":
            ext["fold_key"] = [fold_map[int(t) % N_TFRECORDS] for t in tfrecord]
        else:
            ext["fold_key"] = (tfrecord % 5).tolist()
        ext["is_ext"] = 1
        ext["image_dir"] = f"{ext_dir}/train"
        # Fill first: an empty cell (or no column: the solution's concat leaves NaN) is the solution's
        # 0, an -1 its "unknown" (counted alone).
        ids = ext["patient_id"] if "patient_id" in ext.columns else pd.Series(None, index=ext.index)
        ext["patient_id"] = _unknown_patients(_fill_patients(ids, missing_patient))
        frames.append(ext)

    train = pd.concat(frames, ignore_index=True)
    train["fold_key"] = train["fold_key"].astype(np.int64)
    train["is_ext"] = train["is_ext"].astype(np.int64)

    path = root / main_dir / "test.csv"
    test = _read(path, TEST_COLUMNS)
    test["is_ext"] = 0
    test["image_dir"] = f"{main_dir}/test"
    return train, test
