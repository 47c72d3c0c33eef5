"""The `data` section: where the competition files are and how to read labels, metadata and duplicates."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from medals.config.base import RleFormat, Strict, without_later_defaults


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
    max_distance: int = Field(12, ge=0)  # a pair: Hamming distance <= this on every plane (HPA1)
    exact: bool = False  # HPA3: identical hashes instead


class LabelCorrections(Strict):
    """A table of corrected labels (medals.data.corrections), applied to the training rows after the
    CSV or the adapter has read them: HPA1 corrects the external images' targets from the HPA XML
    files (its s10_generate_correct_external_meta.py)."""

    path: str  # CSV, relative to data.root
    id_column: str = "Id"
    label_column: str = "Target"
    # Text replacements in the file's ids before matching (HPA's train_extra.csv: {"/": "_"})
    id_replace: dict[str, str] = Field(default_factory=dict)
    # Multilabel: classes whose presence the original labels keep (HPA1: 8, 9, 10, 20, 26)
    keep_classes: list[int] = Field(default_factory=list)
    rows: str | None = None  # pandas query: the training rows the file may correct (None: all)
    # Where the corrected labels go: None = data.label_column (training uses them); a new column name =
    # written there, data.label_column kept (e.g. for submit.neighbours.labels_column)
    column: str | None = None
    unknown_ids: Literal["error", "ignore"] = "error"  # file ids that are no correctable row


# Data settings added after runs existed, with their defaults: left out of the dump (and so out of every
# digest) at their default, so runs made before them keep their stamps.
LATER_DATA_DEFAULTS: dict[str, Any] = {
    "label_corrections": None,
    "target_layout": "column",
    "long_key": None,
    "class_column": None,
    "path_column": None,
    "prediction_id": None,
    "prediction_aggregate": "mean",
    "key_column": None,
    "unlisted_images": "skip",
}


class DataConfig(Strict):
    root: str = "."  # relative to the recipe file's folder
    train_csv: str = "train.csv"
    test_csv: str | None = "test.csv"
    sample_submission: str | None = "sample_submission.csv"
    id_column: str = "id"
    label_column: str | None = None
    classes: list[str] | None = None
    num_classes: int | None = Field(None, ge=1)
    label_map: dict[str, str] = Field(default_factory=dict)
    query: str | None = None  # pandas query applied to the training rows, e.g. "tfrecord >= 0"
    image_path: str = "train/{id}.png"  # {id} and, for multi-file channels, {channel}
    test_image_path: str = "test/{id}.png"
    channels: list[str] | None = None  # values for {channel}; the files are stacked in this order
    mask_column: str | None = None  # RLE column; several rows of one id are OR-ed
    mask_path: str | None = None  # or a template for mask image files
    rle_format: RleFormat = "siim"
    # How the training CSV lays out the targets: "column" (one label or mask column), "wide" (one 0/1
    # column per class, the columns named by data.classes: RANZCR CLiP, ISIC 2019; medals/data/
    # target_shapes.py) or "long" (one row per image and class: RSNA ICH's ID_<image>_<subtype> labels
    # become one label column, medals/data/target_shapes.py; masks are pivoted to one row per image,
    # medals/data/long_masks.py, e.g.
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
    cache_size: int | None = Field(None, ge=8)  # side of the resized uint8 cache made by prepare
    # File format of that cache: npy (any channel count) or 8-bit png (1, 3 or 4 channels; DICOM -> PNG).
    cache_format: Literal["npy", "png"] = "npy"
    # A CSV column holding each image's path relative to data.root (train and test): the image templates
    # then default to "{<path_column>}".
    path_column: str | None = None
    # Many images, one submission row: a template over CSV columns naming each image's row, e.g.
    # "{patient_id}_{laterality}" (RSNA breast); its images' probabilities are combined by prediction_aggregate,
    # in the OOF metrics and in the submission.
    prediction_id: str | None = None
    prediction_aggregate: Literal["mean", "max"] = "mean"
    label_corrections: LabelCorrections | None = None

    @model_serializer(mode="wrap")
    def _drop_later_defaults(self, handler: Any) -> dict[str, Any]:
        return without_later_defaults(handler(self), LATER_DATA_DEFAULTS)

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_text(cls, value: Any) -> Any:
        # Labels are compared as the text of the CSV cell (1.0 -> "1"), so integer and boolean class
        # lists, as `classes: [0, 1]` gives them, are that text too.
        if isinstance(value, list):
            return [_cell_text(v) for v in value]
        return value

    @model_validator(mode="after")
    def _layout_keys(self) -> DataConfig:
        if self.path_column:
            template = "{" + self.path_column + "}"
            for key in ("image_path", "test_image_path"):
                if key not in self.model_fields_set:
                    setattr(self, key, template)
        if self.target_layout == "long" and not (self.long_key or self.class_column):
            raise ValueError(
                "data.target_layout 'long' needs data.long_key (e.g. '{image}_{class}') or data.class_column"
            )
        if self.long_key and ("{image}" not in self.long_key or "{class}" not in self.long_key):
            raise ValueError(f"data.long_key '{self.long_key}' needs both {{image}} and {{class}}")
        if self.target_layout in ("wide", "long") and not self.classes:
            raise ValueError(
                f"data.target_layout '{self.target_layout}' needs data.classes (the class columns or key suffixes)"
            )
        return self


def _cell_text(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return value
