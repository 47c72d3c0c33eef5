"""The library versions that bit-exact comparisons hold for, as skip markers."""

from __future__ import annotations

import cv2
import pytest


def major(version: str) -> int:
    return int(version.split(".")[0])


# Tests that compare medals' ops bit for bit with OpenCV hold for the OpenCV 4 builds that albumentations
# 2.0.8 (the seeds' augmentation) was made on: OpenCV 5 changed its 8-bit Lab conversion and its CLAHE.
opencv4_exact = pytest.mark.skipif(
    major(cv2.__version__) != 4,
    reason=f"bit-exact against OpenCV 4 (what albumentations 2.0.8 ran on), found {cv2.__version__}; "
    "install under constraints.txt",
)
