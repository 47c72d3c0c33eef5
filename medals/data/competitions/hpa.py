"""Human Protein Atlas Image Classification (2018): the Kaggle set plus the HPAv18 external set.

Reads, under ``data.root``, the Kaggle layout::

    train.csv (Id, Target)              train/{Id}_{red,green,blue,yellow}.{channel_ext}
    sample_submission.csv (Id, ...)     test/{Id}_{red,green,blue,yellow}.{channel_ext}

and optionally the external HPAv18 set: a CSV (Id, Target) with RGB JPEGs
``{external_dir}/{Id}_{channel}.{external_ext}``. It returns the training rows (Kaggle + external) and the
test rows with the CSV columns plus:

- ``image_dir``: "train", "test" or ``external_dir``; ``channel_ext``: the channel files' extension;
- ``is_external``: 1 for external rows, 0 otherwise (e.g. for ``metrics.subsets`` or ``data.query``);
- ``image_path``: the four channel files, absolute and "|"-joined in the order red|green|blue|yellow.

The recipe uses ``image_path: "{image_path}"`` and ``test_image_path: "{image_path}"`` and leaves
``data.channels`` unset: a "{channel}" template cannot vary the file per channel, and the external
yellow file needs a plane selector (see medals.data.io) that the Kaggle files do not.

External channel files are colour JPEGs (the red file is red, the yellow file red+green). ``yellow``
says how they become one plane: "lum" (HPA 3rd place: every external channel file converted to
luminance, as PIL's convert("L") does) or "plane:r" / "plane:g" / "plane:b" (the yellow file's red,
green or blue plane; red, green and blue files then take their own plane). The default "plane:r" is an
assumption: the 1st-place solution's external-image conversion script is not in the public sources
we could read, and the red plane of the yellow JPEG carries the full yellow stain.

``label_corrections``: a CSV (Id, Target) whose rows replace the labels of those ids (Kaggle or
external) as they are; ``data.label_corrections`` (medals.data.corrections) is the general form, with
the 1st place's rules for its XML-corrected external targets.

``antibody`` (external rows): the HPA antibody of each external image, the identity class of HPA1's
ArcFace model (its s4_generate_meta.py / s9_generate_antibody_split.py). An ``antibody`` column of the
external CSV is kept as it is; without one it is the Id's first "_"-separated field (HPAv18 ids are
``{antibody}_{plate}_{well}_{field}``, e.g. 10580_1610_C1_1 -> 10580; an Id without "_" gets none).
Kaggle rows get none, so the metric learning skips them. List ``antibody`` in data.keep_columns to carry
it into the table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medals.config import Recipe
from medals.data.adapters import register_adapter
from medals.data.csv import read_csv
from medals.errors import MedalsError

CHANNELS = ("red", "green", "blue", "yellow")
YELLOW_MODES = ("plane:r", "plane:g", "plane:b", "lum")
OWN_PLANE = {"red": "#r", "green": "#g", "blue": "#b"}
SHOWN = 5


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    return read_csv(path, required=columns, dtype={"Id": str, "Target": str}, who="hpa")


def _paths(root: Path, image_dir: str, ids: pd.Series, ext: str, selectors: dict[str, str]) -> list[str]:
    base = (root / image_dir).resolve()
    return [
        "|".join(f"{base / f'{id_}_{channel}.{ext}'}{selectors.get(channel, '')}" for channel in CHANNELS)
        for id_ in ids.astype(str)
    ]


def _frame(
    frame: pd.DataFrame, root: Path, image_dir: str, ext: str, external: int, selectors: dict
) -> pd.DataFrame:
    frame = frame.copy()
    frame["Id"] = frame["Id"].astype(str).str.strip()
    frame["image_dir"] = image_dir
    frame["is_external"] = external
    frame["channel_ext"] = ext
    frame["image_path"] = _paths(root, image_dir, frame["Id"], ext, selectors)
    return frame


def _apply_corrections(train: pd.DataFrame, path: Path) -> pd.DataFrame:
    fixes = _read(path, ["Id", "Target"])
    ids = fixes["Id"].astype(str).str.strip()
    dup = ids[ids.duplicated()].unique().tolist()
    if dup:
        raise MedalsError(f"hpa: label corrections {path} list ids more than once: {dup[:SHOWN]}")
    known = set(train["Id"])
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise MedalsError(
            f"hpa: label corrections {path} name {len(unknown)} ids that are not training or external "
            f"rows, first: {unknown[:SHOWN]}"
        )
    new = dict(zip(ids, fixes["Target"], strict=True))
    train = train.copy()
    hit = train["Id"].isin(new)
    train.loc[hit, "Target"] = train.loc[hit, "Id"].map(new)
    return train


def _with_antibody(ext: pd.DataFrame) -> pd.DataFrame:
    """The external rows with an ``antibody`` column: the CSV's own, else the Id's first field."""
    if "antibody" in ext.columns:
        return ext
    ids = ext["Id"].astype(str).str.strip()
    antibody = ids.str.split("_", n=1).str[0]
    # An Id without a "{antibody}_" prefix names no antibody (left empty, as a Kaggle row's).
    antibody = antibody.where(ids.str.contains("_", regex=False) & (antibody != ""))
    return ext.assign(antibody=antibody)


def _check_name(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip() or "|" in value or "#" in value:
        raise MedalsError(
            f"data.adapter_params.{key} must be a non-empty name without '|' or '#', got {value!r}"
        )
    return value.strip().lstrip(".") if key.endswith("_ext") else value.strip()


@register_adapter("hpa")
def hpa_frames(
    recipe: Recipe,
    train_csv: str = "train.csv",
    test_csv: str | None = "sample_submission.csv",
    external_csv: str | None = None,
    external_dir: str = "external",
    label_corrections: str | None = None,
    channel_ext: str = "png",
    external_ext: str = "jpg",
    yellow: str = "plane:r",
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(train, test) frames: Kaggle rows (+ external rows) with image_path, image_dir, is_external."""
    if yellow not in YELLOW_MODES:
        raise MedalsError(
            f"data.adapter_params.yellow must be one of {', '.join(YELLOW_MODES)}, got {yellow!r}"
        )
    channel_ext = _check_name(channel_ext, "channel_ext")
    external_ext = _check_name(external_ext, "external_ext")
    external_dir = _check_name(external_dir, "external_dir")
    root = recipe.data_root

    train = _frame(_read(root / train_csv, ["Id", "Target"]), root, "train", channel_ext, 0, {})
    frames = [train]
    if external_csv is not None:
        if yellow == "lum":
            selectors = {}
        else:
            selectors = {**OWN_PLANE, "yellow": "#" + yellow.split(":")[1]}
        ext = _with_antibody(_read(root / external_csv, ["Id", "Target"]))
        frames.append(_frame(ext, root, external_dir, external_ext, 1, selectors))
    train = pd.concat(frames, ignore_index=True)
    if label_corrections is not None:
        train = _apply_corrections(train, root / label_corrections)

    test = None
    if test_csv is not None:
        test = _frame(_read(root / test_csv, ["Id"]), root, "test", channel_ext, 0, {})
    return train, test
