from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from medals.data.cache import build_cache, cache_name
from medals.data.io import read_image
from medals.errors import MedalsError


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
