"""Path and id templates over CSV columns: `train_images/{patient_id}/{id}.dcm`, `train/{id:05d}.png`
(a format spec: the value is an integer then), `{patient_id}_{laterality}` (prediction groups), and
`dicom-images-train/**/{id}.dcm` (a file found by its name anywhere under a folder, as SIIM-ACR's
download nests each image in its own study/series folders).
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping, Sequence
from typing import Any

from medals.data.meta import value_key
from medals.errors import MedalsError

RECURSIVE = "**"
_INTEGER_TYPES = set("bdoxXn")


def template_fields(template: str, key: str) -> list[str]:
    """The field names of a template (`key` names it in errors, e.g. "data.image_path")."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError as exc:
        raise MedalsError(f"{key} '{template}' is not a valid template ({exc})") from None


def _integer_fields(template: str) -> set[str]:
    """Fields whose format spec formats an integer ({id:05d}): their text values are converted first."""
    out = set()
    for _, name, spec, _ in string.Formatter().parse(template):
        if name and spec and (spec[-1] in _INTEGER_TYPES or spec.isdigit()):
            out.add(name)
    return out


def render(template: str, rows: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    """The template filled in with each row's values (CSV cells as text, 1.0 -> "1")."""
    fields = [f for f in dict.fromkeys(template_fields(template, key))]
    integers = _integer_fields(template)
    out = []
    for row in rows:
        fill: dict[str, Any] = {}
        for name in fields:
            if name not in row:
                raise MedalsError(f"{key} '{template}' names '{name}', which is not a column of the CSV")
            text = value_key(row[name])
            if name in integers:
                try:
                    fill[name] = int(float(text))
                except (TypeError, ValueError):
                    raise MedalsError(
                        f"{key} '{template}' formats '{name}' as an integer, but one value is {text!r}"
                    ) from None
            else:
                fill[name] = "" if text is None else text
        try:
            out.append(template.format(**fill))
        except (KeyError, IndexError, ValueError) as exc:
            raise MedalsError(
                f"{key} '{template}' cannot be filled in ({type(exc).__name__}: {exc})"
            ) from None
    return out


def split_recursive(template: str, key: str) -> tuple[str, str] | None:
    """(folder, file name template) of a `folder/**/name` template; None without `**`."""
    parts = template.replace(os.sep, "/").split("/")
    if RECURSIVE not in parts:
        return None
    at = parts.index(RECURSIVE)
    if at != len(parts) - 2 or parts.count(RECURSIVE) > 1:
        raise MedalsError(f"{key} '{template}': '**' must be the last folder, followed by the file name")
    return "/".join(parts[:at]), parts[-1]


def index_names(folder: str) -> dict[str, str]:
    """File name -> path of every file under folder (hidden folders skipped); a name twice is an error."""
    if not os.path.isdir(folder):
        return {}
    found: dict[str, str] = {}
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            path = os.path.join(here, name)
            if name in found:
                raise MedalsError(
                    f"two files are named {name} under {folder} ({found[name]}, {path}): a '**' template "
                    "needs unique file names; write data.image_path with their folders"
                )
            found[name] = path
    return found


def resolve_paths(root: str, template: str, rows: Sequence[Mapping[str, Any]], key: str) -> list[str]:
    """Full paths of each row's file. A `**` template looks each file name up in one index of its folder;
    a name not found there keeps the `**` in its path, which the existence check then reports."""
    nested = split_recursive(template, key)
    if nested is None:
        return [os.path.normpath(os.path.join(root, rel)) for rel in render(template, rows, key)]
    folder, name_template = nested
    base = os.path.normpath(os.path.join(root, folder))
    names = index_names(base)
    return [names.get(name, os.path.join(base, RECURSIVE, name)) for name in render(name_template, rows, key)]
