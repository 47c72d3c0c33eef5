"""Small generated competitions for `medals demo`: melanoma-like, cells-like and chest-X-ray-like.

Each generator writes a folder shaped like the real Kaggle data (CSV names, columns, file layout)
whose images carry a strong, visible signal, so a tiny randomly initialised CNN learns it in a few
CPU epochs. Every image is drawn from its own random stream seeded by (seed, split, index): the output
is deterministic for a seed, and one image can be re-rendered on its own (the tests do so).

One module per competition (melanoma, cells, chest) over shared helpers (draw). Only numpy and cv2 draw; images are built as float arrays in [0, 255] (or [0, 1]) and written once.
"""

from __future__ import annotations

from collections.abc import Callable

from medals.demo.cells import generate_cells
from medals.demo.chest import generate_chest
from medals.demo.melanoma import generate_melanoma

GENERATORS: dict[str, Callable[..., None]] = {
    "melanoma": generate_melanoma,
    "cells": generate_cells,
    "chest": generate_chest,
}
