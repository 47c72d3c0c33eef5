"""The `data` section: where the competition files are and how to read labels, metadata and duplicates."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from medals.config.base import RleFormat, Strict


class NumericMeta(Strict):
    """A numeric column used as a feature: value / scale, missing values set to fill."""

    scale: float = 1.0
    fill: float = 0.0


class MappedMeta(Strict):
    """A column whose values map to numbers (e.g. sex: male 1, female 0); others get fill."""

    values: dict[str, float]
    fill: float = -1.0


class MetaConfig(Strict):
    numeric: dict[str, NumericMeta] = Field(default_factory=dict)
    mapped: dict[str, MappedMeta] = Field(default_factory=dict)
    # One-hot over the values seen in train and test together, plus a column for missing.
    categorical: list[str] = Field(default_factory=list)
    # log1p(number of rows sharing the value), counted within train and within test.
    group_counts: list[str] = Field(default_factory=list)
    # log(image file size in bytes): a surprisingly strong feature in the melanoma data.
    file_size: bool = False


class DuplicatesConfig(Strict):
    """Perceptual-hash duplicate search in prepare: groups kept in one fold, test leaks reported."""

    kinds: list[Literal["phash", "ahash"]] = Field(default_factory=lambda: ["phash"])
    channels: list[int] = Field(default_factory=lambda: [0, 1, 2])  # planes hashed (HPA3: green only)
    max_distance: int = 12  # a pair: Hamming distance <= this on every plane (HPA1)
    exact: bool = False  # HPA3: identical hashes instead


# Data settings added after runs existed, with their defaults: at its default such a key is left out of the
# digests (digest_data), so runs made before it existed keep their digests (and their trained folds).
LATER_DATA_DEFAULTS: dict[str, Any] = {
    "target_layout": "column",
    "long_key": None,
    "class_column": None,
    "key_column": None,
    "unlisted_images": "skip",
}


def digest_data(data: dict[str, Any]) -> dict[str, Any]:
    """A dumped data section as the digests see it: later keys at their default left out."""
    return {k: v for k, v in data.items() if not (k in LATER_DATA_DEFAULTS and v == LATER_DATA_DEFAULTS[k])}


class DataConfig(Strict):
    root: str = "."  # relative to the recipe file's folder
    train_csv: str = "train.csv"
    test_csv: str | None = "test.csv"
    sample_submission: str | None = "sample_submission.csv"
    id_column: str = "id"
    label_column: str | None = None
    classes: list[str] | None = None
    num_classes: int | None = None
    label_map: dict[str, str] = Field(default_factory=dict)
    query: str | None = None  # pandas query applied to the training rows, e.g. "tfrecord >= 0"
    image_path: str = "train/{id}.png"  # {id} and, for multi-file channels, {channel}
    test_image_path: str = "test/{id}.png"
    channels: list[str] | None = None  # values for {channel}; the files are stacked in this order
    mask_column: str | None = None  # RLE column; several rows of one id are OR-ed
    mask_path: str | None = None  # or a template for mask image files
    rle_format: RleFormat = "siim"
    # How the training CSV lays out the targets: "column" (one label or mask column) or "long" (one row per
    # image and class, pivoted on read to one row per image: medals/data/long_masks.py for masks, e.g.
    # Severstal's ImageId,ClassId,EncodedPixels or UW-Madison's id,class,segmentation). A long row names
    # its class in data.class_column, or its key (data.id_column, or data.key_column where the CSV has
    # that column instead) joins image and class by data.long_key (Severstal's older "0001.jpg_1" is
    # "{image}_{class}"); the training CSV and the sample submission may use different forms.
    target_layout: Literal["column", "wide", "long"] = "column"
    long_key: str | None = None
    class_column: str | None = None
    key_column: str | None = None
    # Images in data.image_path's folder that the long training CSV does not list: "no_mask" trains on
    # them as images without any mask (Severstal's newer train.csv lists only images with a defect).
    unlisted_images: Literal["skip", "no_mask"] = "skip"
    group_column: str | None = None
    meta: MetaConfig | None = None
    keep_columns: list[str] = Field(default_factory=list)  # CSV columns carried into the table
    # A registered function that builds the train/test frames instead of reading the two CSVs
    # (e.g. merging a competition's data with an external set): see medals/data/adapters.py.
    adapter: str | None = None
    adapter_params: dict[str, Any] = Field(default_factory=dict)
    duplicates: DuplicatesConfig | None = None
    cache_size: int | None = None  # side of the resized uint8 cache made by prepare
    # File format of that cache: npy (any channel count) or 8-bit png (1, 3 or 4 channels; DICOM -> PNG).
    cache_format: Literal["npy", "png"] = "npy"

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_text(cls, value: Any) -> Any:
        # Labels are compared as the text of the CSV cell (1.0 -> "1"), so integer and boolean class
        # lists, as `classes: [0, 1]` gives them, are that text too.
        if isinstance(value, list):
            return [_cell_text(v) for v in value]
        return value


def _cell_text(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return value
