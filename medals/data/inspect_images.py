"""Where a competition folder keeps the images of its ids, as path templates, and what they are like:
format, typical size, channels (one file each, or planes of one file), mask files.

A template is a path relative to the folder with the id as ``{id}`` (and ``{channel}`` for one file per
channel), the form of data.image_path; ids are matched to file names exactly.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medals.data.io import CV2_EXTS, DICOM_EXTS, NPY_EXTS, TIFF_EXTS, read_image
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


def find_images(
    root: Path, ids: list[str], what: str, index: dict[str, list[str]], exclude: str = ""
) -> Images:
    """The template of `ids`' images (what: e.g. "train.csv's ids"); `exclude` skips paths containing it."""
    sample = ids[:: max(1, len(ids) // SAMPLE)][:SAMPLE]
    if not sample:
        raise MedalsError(f"{what}: no ids to look for images of")
    by_prefix = _prefixes(index)
    templates: Counter = Counter()
    channels: list[str] | None = None
    for ident in sample:
        paths = [p for p in index.get(ident, []) if not (exclude and exclude in p)]
        if paths:
            templates[_template(paths[0], ident)] += 1
            continue
        per_channel = {
            c: p for c, p in _channels_of(ident, index, by_prefix).items() if not (exclude and exclude in p)
        }
        if per_channel:
            names = sorted(
                per_channel, key=lambda c: (KNOWN_CHANNELS.index(c) if c in KNOWN_CHANNELS else 9, c)
            )
            channels = channels or names
            first = per_channel[names[0]]
            templates[_template(first, f"{ident}_{names[0]}").replace("{id}", "{id}_{channel}")] += 1
    if not templates:
        raise MedalsError(
            f"no image file under {root} is named after {what} (e.g. '{sample[0]}.png' or '{sample[0]}_red.png')"
        )
    if len(templates) > 1:
        shown = ", ".join(sorted(templates)[:3])
        raise MedalsError(
            f"the images of {what} follow {len(templates)} layouts ({shown}): medals init needs one per split; "
            "write data.image_path yourself"
        )
    template = next(iter(templates))
    return _describe(root, template, channels, sample)


def _template(path: str, stem: str) -> str:
    folder, name = os.path.split(path)
    ext = os.path.splitext(name)[1]
    return os.path.join(folder, "{id}" + ext).replace(os.sep, "/")


def _paths(root: Path, template: str, ident: str, channels: list[str] | None) -> str:
    names = channels or [None]
    parts = [template.replace("{id}", ident).replace("{channel}", c or "") for c in names]
    return "|".join(str(root / part) for part in parts)


def _describe(root: Path, template: str, channels: list[str] | None, ids: list[str]) -> Images:
    sizes, depth = [], 0
    for ident in ids[:5]:
        path = _paths(root, template, ident, channels)
        image = read_image(path)  # an unreadable image is a MedalsError naming its file
        sizes.append(image.shape[:2])
        depth = image.shape[2] if image.ndim == 3 else 1
    height, width = (int(v) for v in np.median(np.array(sizes), axis=0))
    return Images(template, channels, os.path.splitext(template)[1].lower(), (height, width), depth)


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
