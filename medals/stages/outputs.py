"""What a finished stage left: its outputs' sizes and checksums, and its inputs' signatures.

A finished stage's stamp lists its outputs (RunLayout.outputs) with size and sha256 (of the whole file
up to 8 MiB; of its first and last MiB and its size above, so checking a run of large checkpoints costs
milliseconds), and the signature of each earlier stage it read (the digest and outputs of that stage's
stamp). The next run trusts the stage only while both still hold: an output missing, truncated or
rewritten, or an earlier stage redone with other outputs since (or reopened: an unfinished stamp has no
signature), makes the stage run again. So nothing downstream of a redone stage reads "done".
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from medals.stages.layout import RunLayout

WHOLE = 8 << 20
EDGE = 1 << 20

# The earlier stages whose outputs each stage reads (directly; an earlier one's change reaches it
# through these, since they are then redone first).
READS = {
    "prepare": (),
    "split": ("prepare",),
    "search": ("prepare", "split"),
    "train": ("prepare", "split", "search"),
    "evaluate": ("prepare", "split", "train"),
    "predict": ("prepare", "train"),
    "submit": ("prepare", "evaluate", "predict"),
}


def checksum(path: Path) -> dict:
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= WHOLE:
            digest.update(handle.read())
        else:
            digest.update(handle.read(EDGE))
            handle.seek(size - EDGE)
            digest.update(handle.read(EDGE))
            digest.update(str(size).encode())
    return {"size": size, "sha256": digest.hexdigest()[:32]}


def record(layout: RunLayout, stage: str, named: tuple[str, ...] = ()) -> dict[str, dict]:
    """{run-relative path: checksum} of the stage's outputs as they are now."""
    return {str(p.relative_to(layout.root)): checksum(p) for p in layout.outputs(stage, named)}


def changed(layout: RunLayout, outputs: dict[str, dict]) -> list[str]:
    """The recorded outputs that are gone or differ now (size first: a truncated file costs no hash)."""
    bad = []
    for relative, expected in outputs.items():
        path = layout.root / relative
        if not path.is_file() or path.stat().st_size != expected.get("size"):
            bad.append(relative)
        elif checksum(path) != expected:
            bad.append(relative)
    return bad


def signature(stamp: dict | None) -> str | None:
    """What a later stage records of an earlier one: None while it is not finished."""
    if not stamp or not stamp.get("done"):
        return None
    text = json.dumps([stamp.get("digest"), stamp.get("outputs")], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
