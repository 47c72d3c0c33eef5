"""Where a competition folder keeps the images of its ids, as path templates, and what they are like:
format, typical size, channels (one file each, or planes of one file), mask files.

A template is a path relative to the folder with the id as ``{id}`` (and ``{channel}`` for one file per
channel), the form of data.image_path (medals/data/templates.py): file names are the ids, the ids with
their extension, or zero-padded integer ids ({id:05d}); folders may be named by CSV columns
(train_images/{patient_id}/{id}.dcm), or, one per image, searched by file name (dicom-images-train/**/{id}.dcm);
a CSV column may hold the paths instead (data.path_column).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medals.data.io import CV2_EXTS, DICOM_EXTS, NPY_EXTS, TIFF_EXTS, read_image
from medals.data.templates import resolve_paths
from medals.errors import MedalsError

IMAGE_EXTS = CV2_EXTS | TIFF_EXTS | DICOM_EXTS | NPY_EXTS
KNOWN_CHANNELS = ("red", "green", "blue", "yellow")  # Human Protein Atlas order
MAX_FILES = 500_000
SAMPLE = 20  # ids looked up per split; images read for the size


@dataclass
class Images:
    template: str
    channels: list[str] | None
    extension: str
    size: tuple[int, int]  # median (height, width) of the sampled images
    in_chans: int
    how: str = ""  # which way of naming the files was found, for init's comment


def index_files(root: Path) -> dict[str, list[str]]:
    """File stem -> paths relative to root of every image file under root (hidden folders skipped)."""
    found: dict[str, list[str]] = {}
    count = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_EXTS:
                continue
            found.setdefault(stem, []).append(os.path.relpath(os.path.join(folder, name), root))
            count += 1
            if count > MAX_FILES:
                raise MedalsError(
                    f"{root} holds more than {MAX_FILES} image files: write data.image_path yourself"
                )
    return found


def _channels_of(ident: str, index: dict[str, list[str]], by_prefix: dict[str, list[str]]) -> dict[str, str]:
    """{channel: path} of files named <id>_<channel>.<ext>."""
    out = {}
    for stem in by_prefix.get(ident, []):
        for path in index[stem]:
            out[stem[len(ident) + 1 :]] = path
    return out


def _prefixes(index: dict[str, list[str]]) -> dict[str, list[str]]:
    by_prefix: dict[str, list[str]] = {}
    for stem in index:
        head, sep, tail = stem.rpartition("_")
        if sep and tail:
            by_prefix.setdefault(head, []).append(stem)
    return by_prefix


@dataclass
class _Hit:
    path: str  # relative to the folder
    name: str  # the file name as a template: "{id}.png", "{id}", "{id:05d}.png", "{id}_{channel}.png"
    how: str
    channels: list[str] | None = None
    files: str = ""  # every file of the image, "|"-joined (one per channel); "" for path alone


def _name_indexes(index: dict[str, list[str]]) -> tuple[dict[str, list[str]], dict[int, list[str]]]:
    """(file name -> paths, integer value of an all-digit stem -> paths) for ids with an extension and
    zero-padded file names."""
    by_name: dict[str, list[str]] = {}
    by_int: dict[int, list[str]] = {}
    for stem, paths in index.items():
        for path in paths:
            by_name.setdefault(os.path.basename(path), []).append(path)
            if stem.isdigit():
                by_int.setdefault(int(stem), []).append(path)
    return by_name, by_int


def _hit(ident: str, index, by_name, by_int, by_prefix, keep) -> _Hit | None:
    """How the file of one id is named, trying: the id as the stem, as the whole name, zero-padded,
    one file per channel."""
    paths = [p for p in index.get(ident, []) if keep(p)]
    if paths:
        return _Hit(paths[0], "{id}" + os.path.splitext(paths[0])[1], "file names are the ids")
    paths = [p for p in by_name.get(ident, []) if keep(p)]
    if paths:
        return _Hit(paths[0], "{id}", "the ids are file names, extension included")
    if ident.isdigit():
        paths = [p for p in by_int.get(int(ident), []) if keep(p)]
        if paths:
            stem, ext = os.path.splitext(os.path.basename(paths[0]))
            return _Hit(
                paths[0],
                f"{{id:0{len(stem)}d}}{ext}",
                f"file names are the integer ids zero-padded to {len(stem)} digits",
            )
    per_channel = {c: p for c, p in _channels_of(ident, index, by_prefix).items() if keep(p)}
    if per_channel:
        names = sorted(per_channel, key=lambda c: (KNOWN_CHANNELS.index(c) if c in KNOWN_CHANNELS else 9, c))
        first = per_channel[names[0]]
        files = "|".join(per_channel[c] for c in names)
        return _Hit(
            first, "{id}_{channel}" + os.path.splitext(first)[1], "one file per channel", names, files
        )
    return None


def _folders(folder: str, row: dict[str, str], id_column: str) -> tuple[str, list[str]]:
    """The folder as a template: a part equal to the row's id, or to one of its CSV cells, becomes that
    field (train_images/10006 -> train_images/{patient_id}); (template, the columns used)."""
    parts, used = [], []
    for part in folder.split("/") if folder else []:
        if part == row.get(id_column):
            parts.append("{id}")
            continue
        column = next((c for c, v in row.items() if c != id_column and v and v == part), None)
        parts.append("{" + column + "}" if column else part)
        if column:
            used.append(column)
    return "/".join(parts), used


def path_column(root: Path, frame: pd.DataFrame, id_column: str) -> str | None:
    """A CSV column whose cells are paths of image files under root (relative to it)."""
    sample = frame.iloc[:: max(1, len(frame) // SAMPLE)].head(SAMPLE)
    for column in frame.columns:
        if column == id_column:
            continue
        cells = [str(v) for v in sample[column]]
        if cells and all(
            os.path.splitext(v)[1].lower() in IMAGE_EXTS and (root / v).is_file() for v in cells
        ):
            return column
    return None


def find_images(
    root: Path, frame: pd.DataFrame, id_column: str, what: str, index: dict[str, list[str]], exclude: str = ""
) -> Images:
    """The template of the images of `frame`'s ids (what: e.g. "train.csv's ids"); `exclude` skips paths
    containing it. A path column wins; else the file names (tried as the ids, the ids with their extension,
    zero-padded integers, one file per channel) in folders that may be named by CSV columns; folders no
    column names (one per image) become a search by file name under their common folder (`**`)."""
    rows = frame.drop_duplicates(id_column).astype(str)
    rows = rows.iloc[:: max(1, len(rows) // SAMPLE)].head(SAMPLE).to_dict("records")
    if not rows:
        raise MedalsError(f"{what}: no ids to look for images of")
    column = path_column(root, frame, id_column)
    if column is not None:
        paths = [row[column] for row in rows]
        return _describe(root, "{" + column + "}", None, paths, f"column '{column}' holds each image's path")

    def keep(path: str) -> bool:
        return not (exclude and exclude in path)

    by_name, by_int = _name_indexes(index)
    by_prefix = _prefixes(index)
    hits = [(row, _hit(row[id_column], index, by_name, by_int, by_prefix, keep)) for row in rows]
    hits = [(row, hit) for row, hit in hits if hit is not None]
    if not hits:
        ident = rows[0][id_column]
        raise MedalsError(
            f"no image file under {root} is named after {what} (e.g. '{ident}.png', '{ident}_red.png' or "
            f"a path column): set data.image_path (a template such as 'train/{{id}}.png') or data.path_column"
        )
    templates: Counter = Counter()
    used: set[str] = set()
    for row, hit in hits:
        folder, columns = _folders(os.path.dirname(hit.path).replace(os.sep, "/"), row, id_column)
        templates[f"{folder}/{hit.name}" if folder else hit.name] += 1
        used.update(columns)
    how = hits[0][1].how + (f", in folders named by {', '.join(map(repr, sorted(used)))}" if used else "")
    names = {hit.name for _, hit in hits}
    if len(templates) > 1 and len(names) == 1:
        # One folder per image (SIIM-ACR: <study>/<series>/<id>.dcm): find each file by its name.
        common = os.path.commonpath([os.path.dirname(hit.path) for _, hit in hits]).replace(os.sep, "/")
        templates = Counter({f"{common}/**/{names.pop()}" if common else f"**/{names.pop()}": len(hits)})
        how += f", each in its own folder under {common or '.'}/ (found by name)"
    if len(templates) > 1:
        shown = ", ".join(sorted(templates)[:3])
        raise MedalsError(
            f"the images of {what} follow {len(templates)} layouts ({shown}): medals init needs one per split; "
            "set data.image_path"
        )
    template = next(iter(templates))
    return _describe(root, template, hits[0][1].channels, [hit.files or hit.path for _, hit in hits], how)


def given_images(
    root: Path, frame: pd.DataFrame, id_column: str, template: str, key: str, channels
) -> Images:
    """The images of a template set on the command line (data.image_path=...): checked and described."""
    rows = frame.drop_duplicates(id_column).astype(str).head(SAMPLE).to_dict("records")
    rows = [{**row, "id": row[id_column]} for row in rows]
    names = channels or [None]
    per_channel = [
        resolve_paths(str(root), template, [{**r, "channel": c} for r in rows] if c else rows, key)
        for c in names
    ]
    paths = ["|".join(parts) for parts in zip(*per_channel, strict=True)]
    missing = [p for path in paths for p in path.split("|") if not os.path.isfile(p)]
    if missing:
        raise MedalsError(f"{key} '{template}' names files that do not exist, first: {missing[0]}")
    return _describe(root, template, channels, paths, f"{key} as given")


def _template(path: str, stem: str) -> str:
    folder, name = os.path.split(path)
    ext = os.path.splitext(name)[1]
    return os.path.join(folder, "{id}" + ext).replace(os.sep, "/")


def _describe(root: Path, template: str, channels: list[str] | None, paths: list[str], how: str) -> Images:
    sizes, depth = [], 0
    for path in paths[:5]:
        image = read_image("|".join(str(root / p) for p in path.split("|")))  # an unreadable image is named
        sizes.append(image.shape[:2])
        depth = image.shape[2] if image.ndim == 3 else 1
    height, width = (int(v) for v in np.median(np.array(sizes), axis=0))
    ext = os.path.splitext(paths[0].split("|")[0])[1].lower()
    return Images(template, channels, ext, (height, width), depth, how)


def find_masks(root: Path, ids: list[str], index: dict[str, list[str]]) -> str | None:
    """The template of mask files named after the training ids, in a folder whose name says 'mask'."""
    templates: Counter = Counter()
    for ident in ids[:SAMPLE]:
        for path in index.get(ident, []):
            if "mask" in os.path.dirname(path).lower():
                templates[_template(path, ident)] += 1
    return templates.most_common(1)[0][0] if templates else None


def template_images(root: Path, template: str, ids: list[str]) -> Images:
    """The images of a template given on the command line (data.image_path=...), described as found ones."""
    if "{channel}" in template:
        raise MedalsError(
            f"data.image_path '{template}' with {{channel}}: set data.channels in the recipe instead"
        )
    return _describe(root, template, None, ids[:: max(1, len(ids) // SAMPLE)][:SAMPLE])
