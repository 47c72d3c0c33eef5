"""SIIM-ACR Pneumothorax Segmentation (2nd place recipe): DICOM folders and the RLE table.

The Kaggle download nests one DICOM file per image under its study and series folders::

    <data.root>/dicom-images-train/<study>/<series>/<ImageId>.dcm
    <data.root>/dicom-images-test/<study>/<series>/<ImageId>.dcm
    <data.root>/train-rle.csv            # header "ImageId, EncodedPixels" (note the space)

so the image of an id cannot be written as a path template of the id. This adapter walks both folders
(any depth; a flat folder works too), maps each ImageId (the file name without ``.dcm``) to its path
relative to data.root, and returns:

- train rows: the rows of train-rle.csv, several per image kept as they are (the table ORs the masks of
  one id; "-1" is an empty mask). An id of the CSV without a DICOM file is an error naming the count and
  the first few ids. DICOM files without a row in the CSV are not training images and are left out.
- test rows: one per DICOM file of the test folder (sorted by id).
- ``dicom_path``: the file relative to data.root, for ``image_path: "{dicom_path}"`` (and the same
  ``test_image_path``).
- ``is_extra``: 0 for the competition's rows, 1 for rows of ``extra_csv``.

``extra_csv`` (optional, relative to data.root) adds images with model-made (pseudo) masks, as the
solution did with about 1000 CheXpert images: a CSV with the columns ``ImageId``, ``EncodedPixels``
(SIIM RLE at the image's own size, "-1" for none) and ``path`` (the image file relative to data.root, any
format medals reads, e.g. PNG). Those rows are appended to the training rows with ``is_extra`` 1 and
then treated like any other training row (they get folds, so they are validated on as well); list
``is_extra`` in data.keep_columns to use it in a query. Their ids must differ from the competition's.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medals.config import Recipe
from medals.data.adapters import register_adapter
from medals.data.csv import read_csv
from medals.data.labels import show_values
from medals.errors import MedalsError

ID, RLE, PATH = "ImageId", "EncodedPixels", "dicom_path"


def dicom_index(root: Path, folder: str) -> dict[str, str]:
    """ImageId (file stem) -> the .dcm file's path relative to root, for every file under root/folder."""
    base = root / folder
    if not base.is_dir():
        raise MedalsError(f"siim_acr: DICOM folder {base} does not exist")
    index: dict[str, str] = {}
    clashes: list[str] = []
    for path in sorted(base.rglob("*.dcm")):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        if path.stem in index:
            clashes.append(f"{index[path.stem]} and {rel}")
        index[path.stem] = rel
    if clashes:
        raise MedalsError(
            f"siim_acr: {len(clashes)} ImageIds have more than one DICOM file under {base}: {show_values(clashes)}"
        )
    return index


def _read_rle_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    # Values like " -1" carry the header's leading space too: read as text, strip below.
    frame = read_csv(path, required=columns, dtype=str, keep_default_na=False, who="siim_acr")
    frame = frame[list(columns)].copy()
    for column in columns:
        frame[column] = frame[column].str.strip()
    empty_ids = frame[ID] == ""
    if empty_ids.any():
        raise MedalsError(f"siim_acr: CSV file {path} has {int(empty_ids.sum())} rows without an {ID}")
    return frame


@register_adapter("siim_acr")
def siim_acr_frames(
    recipe: Recipe,
    train_dir: str = "dicom-images-train",
    test_dir: str = "dicom-images-test",
    rle_csv: str = "train-rle.csv",
    extra_csv: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) frames with ImageId, EncodedPixels (train), dicom_path and is_extra."""
    root = recipe.data_root
    train_files = dicom_index(root, train_dir)
    test_files = dicom_index(root, test_dir)

    rle_path = root / rle_csv
    train = _read_rle_csv(rle_path, (ID, RLE))
    if train.empty:
        raise MedalsError(f"siim_acr: CSV file {rle_path} has no rows")
    ids = train[ID].tolist()
    without = list(dict.fromkeys(i for i in ids if i not in train_files))
    if without:
        raise MedalsError(
            f"siim_acr: {len(without)} of {len(set(ids))} ImageIds of {rle_path} have no DICOM file under "
            f"{root / train_dir}, first: {show_values(without)}"
        )
    train[PATH] = [train_files[i] for i in ids]
    train["is_extra"] = 0

    if extra_csv is not None:
        extra_path = root / extra_csv
        extra = _read_rle_csv(extra_path, (ID, RLE, "path"))
        clash = sorted(set(extra[ID]) & (set(train_files) | set(test_files)))
        if clash:
            raise MedalsError(
                f"siim_acr: {len(clash)} ImageIds of {extra_path} are competition images: {show_values(clash)}"
            )
        extra = extra.rename(columns={"path": PATH})
        extra["is_extra"] = 1
        train = pd.concat([train, extra], ignore_index=True)

    test_ids = sorted(test_files)
    test = pd.DataFrame({ID: test_ids, PATH: [test_files[i] for i in test_ids], "is_extra": 0})
    return train.reset_index(drop=True), test
