from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from medals.data.cache import build_cache, cache_name
from medals.data.io import read_image
from medals.errors import MedalsError
from tests.dicom_files import write_dicom


def _table(tmp_path, n: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        image = rng.integers(0, 256, (40 + i, 60, 3), dtype=np.uint8)
        path = tmp_path / "src" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        rows.append(
            {
                "id": f"im/{i}",
                "split": "train" if i else "test",
                "path": str(path),
                "height": 40 + i,
                "width": 60,
            }
        )
    return pd.DataFrame(rows)


def test_cache_is_resized_and_points_at_npy(tmp_path):
    table = _table(tmp_path)
    out = build_cache(table, 16, tmp_path / "cache", workers=2)
    assert out["source_path"].tolist() == table["path"].tolist()
    assert table["path"][0].endswith("0.png")  # the input table is not modified
    assert out["height"].tolist() == [40, 41, 42]
    for row in out.itertuples():
        assert row.path.endswith(".npy") and f"/16/{row.split}/" in row.path
        cached = read_image(row.path)
        assert cached.shape == (16, 16, 3) and cached.dtype == np.uint8
        expected = cv2.resize(read_image(row.source_path), (16, 16), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(cached, expected)
    assert len({cache_name("im/1"), cache_name("im_1")}) == 2  # sanitised ids stay distinct


def test_cache_is_resumable(tmp_path):
    table = _table(tmp_path)
    out = build_cache(table, 8, tmp_path / "cache")
    # An existing cache file is trusted (it was written atomically), so it is not rewritten.
    marker = np.zeros((8, 8, 3), np.uint8)
    np.save(out["path"][1], marker)
    out2 = build_cache(table, 8, tmp_path / "cache")
    assert out2["path"].tolist() == out["path"].tolist()
    np.testing.assert_array_equal(np.load(out2["path"][1]), marker)
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    # a cached table is re-cached from its originals
    out3 = build_cache(out, 12, tmp_path / "cache")
    assert out3["source_path"].tolist() == table["path"].tolist()
    assert read_image(out3["path"][0]).shape == (12, 12, 3)


def test_cache_many_channels_and_gray(tmp_path):
    paths = []
    for c in range(5):
        path = tmp_path / f"c{c}.png"
        cv2.imwrite(str(path), np.full((30, 20), 10 * c, np.uint8))
        paths.append(str(path))
    table = pd.DataFrame(
        {"id": ["five", "gray"], "split": ["train", "train"], "path": ["|".join(paths), paths[3]]}
    )
    out = build_cache(table, 10, tmp_path / "cache")
    five = read_image(out["path"][0])
    assert five.shape == (10, 10, 5) and five[0, 0].tolist() == [0, 10, 20, 30, 40]
    assert read_image(out["path"][1]).shape == (10, 10, 1)


def test_cache_reports_unreadable_image(tmp_path):
    table = _table(tmp_path, 2)
    (tmp_path / "src" / "1.png").write_bytes(b"nope")
    with pytest.raises(MedalsError, match="1.png: corrupt or unsupported"):
        build_cache(table, 8, tmp_path / "cache")


# ---- png cache: DICOM -> PNG -------------------------------------------------------------------


def _write_dicom(path, pixels: np.ndarray, photometric: str) -> str:
    """A 16-bit (12 bits stored) X-ray-like file."""
    return write_dicom(path, pixels, photometric, bits_stored=12)


def _dicom_table(tmp_path) -> pd.DataFrame:
    from pydicom import examples

    rng = np.random.default_rng(1)
    # a smooth 12-bit ramp plus noise: non-square, so the resize to a square is exercised
    ramp = np.add.outer(np.arange(90) * 20, np.arange(120) * 10) + rng.integers(0, 200, (90, 120))
    ramp = np.clip(ramp, 0, 4095)
    src = tmp_path / "dicom"
    src.mkdir()
    paths = {
        "ct": str(examples.get_path("ct")),
        "mono2": _write_dicom(src / "mono2.dcm", ramp, "MONOCHROME2"),
        "mono1": _write_dicom(src / "mono1.dcm", ramp, "MONOCHROME1"),
        "1.2.840/x": _write_dicom(src / "test.dcm", ramp[::-1], "MONOCHROME2"),
    }
    splits = ["train", "train", "train", "test"]
    return pd.DataFrame({"id": list(paths), "split": splits, "path": list(paths.values())})


def test_png_cache_converts_dicom_at_two_sizes(tmp_path):
    table = _dicom_table(tmp_path)
    cache = tmp_path / "cache"
    outs = {size: build_cache(table, size, cache, workers=2, fmt="png") for size in (64, 48)}
    for size, out in outs.items():
        assert out["source_path"].tolist() == table["path"].tolist()
        for row in out.itertuples():
            assert row.path.endswith(".png") and f"/{size}_png/{row.split}/" in row.path
            with open(row.path, "rb") as handle:  # a real PNG file, not an npy with a png name
                assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
            image = read_image(row.path)
            assert image.shape == (size, size, 1) and image.dtype == np.uint8
            # the DICOM rules of read_image (rescale, min-max window, MONOCHROME1) then INTER_AREA
            expected = cv2.resize(read_image(row.source_path), (size, size), interpolation=cv2.INTER_AREA)
            np.testing.assert_array_equal(image[:, :, 0], expected)
        mono1 = read_image(out.set_index("id").loc["mono1", "path"])
        mono2 = read_image(out.set_index("id").loc["mono2", "path"])
        # full range used (area averaging softens the extreme pixels), dark corner to bright corner
        assert mono2.min() < 20 and mono2.max() > 235 and mono2[0, 0, 0] < mono2[-1, -1, 0]
        np.testing.assert_array_equal(mono1, 255 - mono2)  # MONOCHROME1 is inverted
        ct = read_image(out.set_index("id").loc["ct", "path"])
        assert ct.std() > 10  # the real CT slice is not blank
    assert len(list(cache.rglob("*.png"))) == 8 and not list(cache.rglob("*.npy"))
    assert not list(cache.rglob("*.tmp"))


def test_png_cache_is_resumable_and_apart_from_npy(tmp_path):
    table = _dicom_table(tmp_path)
    cache = tmp_path / "cache"
    out = build_cache(table, 64, cache, fmt="png")
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*.png")}
    time.sleep(0.02)
    again = build_cache(table, 64, cache, fmt="png")
    assert again["path"].tolist() == out["path"].tolist()
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.png")} == before  # nothing rewritten
    # a removed file is written again, the others are kept
    removed = Path(out["path"][2])
    removed.unlink()
    build_cache(table, 64, cache, fmt="png")
    assert removed.exists()
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p != removed)
    # the npy cache of the same size lives in its own folder and holds the same pixels
    npy = build_cache(out, 64, cache)
    for png_path, npy_path in zip(out["path"], npy["path"], strict=True):
        assert Path(npy_path).relative_to(cache).parts[0] == "64" and npy_path.endswith(".npy")
        assert Path(png_path).relative_to(cache).parts[0] == "64_png"
        np.testing.assert_array_equal(read_image(npy_path), read_image(png_path))


def test_png_cache_colour_and_channel_limits(tmp_path):
    table = _table(tmp_path)  # RGB sources
    out = build_cache(table, 16, tmp_path / "cache", fmt="png")
    for row in out.itertuples():
        expected = cv2.resize(read_image(row.source_path), (16, 16), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(read_image(row.path), expected)  # RGB order kept
    paths = []
    for c in range(5):
        path = tmp_path / f"c{c}.png"
        cv2.imwrite(str(path), np.full((30, 20), 10 * c, np.uint8))
        paths.append(str(path))
    five = pd.DataFrame({"id": ["five"], "split": ["train"], "path": ["|".join(paths)]})
    with pytest.raises(MedalsError, match="5 channels, which PNG cannot hold.*cache_format to npy"):
        build_cache(five, 10, tmp_path / "cache", fmt="png")
    with pytest.raises(MedalsError, match="cache format 'jpg'"):
        build_cache(table, 10, tmp_path / "cache", fmt="jpg")
