from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from medals.data import hashing
from medals.data.hashing import (
    channel_hashes,
    duplicate_groups,
    exact_duplicate_pairs,
    hamming,
    hash_table,
    leaks,
    near_duplicate_pairs,
    pack_hash,
    pack_hashes,
    popcount,
)
from medals.errors import MedalsError


def _cells(seed: int, size: int = 128) -> np.ndarray:
    """Blurry blobs on three planes, like a fluorescence image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((size, size, 3), np.float32)
    for c in range(3):
        for _ in range(10):
            cy, cx = rng.uniform(0, size, 2)
            r = rng.uniform(4, 15)
            image[:, :, c] += rng.uniform(0.4, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    image += rng.normal(0, 0.03, image.shape)
    return np.clip(image / image.max() * 220, 0, 255).astype(np.uint8)


def _reencoded(image: np.ndarray, quality: int = 40, brighter: int = 12) -> np.ndarray:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED).astype(np.int16) + brighter
    return np.clip(decoded, 0, 255).astype(np.uint8)


def test_pack_matches_hex_string_and_popcount():
    hashes = channel_hashes(_cells(0))
    assert len(hashes) == 3
    for value in hashes:
        assert int(pack_hash(value)) == int(str(value), 16)
    values = np.array([0, 1, 0xFF, 2**64 - 1, 0x8000000000000001], dtype=np.uint64)
    assert popcount(values).tolist() == [0, 1, 8, 64, 2]
    # the lookup-table path (numpy < 2) gives the same counts
    table = hashing._BYTE_POPCOUNT[values.view(np.uint8)].reshape(-1, 8).sum(axis=1)
    assert table.tolist() == [0, 1, 8, 64, 2]
    a, b = channel_hashes(_cells(0)), channel_hashes(_cells(1))
    assert hamming(pack_hashes([a]), pack_hashes([b]))[0].tolist() == [
        x - y for x, y in zip(a, b, strict=True)
    ]


def test_reencoded_brightened_copy_is_a_near_duplicate_and_another_image_is_not():
    original, other = _cells(1), _cells(2)
    copy = _reencoded(original)
    table = pack_hashes([channel_hashes(im) for im in (original, copy, other)])
    distances = hamming(table[[0]], table[[1]])[0]
    assert (distances <= 12).all()
    assert (hamming(table[[0]], table[[2]])[0] > 12).any()
    pairs = near_duplicate_pairs(table)
    assert pairs[["a", "b"]].values.tolist() == [[0, 1]]
    assert pairs["distance"].iloc[0] == distances.max()
    # the ImageHash lists are accepted as they are
    rows = [channel_hashes(im) for im in (original, copy, other)]
    pd.testing.assert_frame_equal(near_duplicate_pairs(rows), pairs)


def test_all_planes_must_be_close():
    a = np.array([[0, 0, 0]], dtype=np.uint64)
    b = np.array([[0b111, 0, (1 << 13) - 1]], dtype=np.uint64)  # 3 bits, 0 bits, 13 bits
    assert near_duplicate_pairs(a, b).empty
    assert near_duplicate_pairs(a, b, max_distance=13)[["a", "b", "distance"]].values.tolist() == [[0, 0, 13]]


def test_blocked_search_equals_brute_force(monkeypatch):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=(40, 3), dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, size=(40, 3)).astype(np.uint64)
    table = np.concatenate([base, base ^ flips, base[:5]])  # 1-bit twins and exact copies
    brute = popcount(table[:, None, :] ^ table[None, :, :]).max(axis=2)
    expected = sorted((i, j) for i, j in zip(*np.nonzero(brute <= 12), strict=True) if i < j)
    monkeypatch.setattr(hashing, "_BLOCK_ELEMENTS", 37)  # many small blocks
    pairs = near_duplicate_pairs(table)
    assert list(map(tuple, pairs[["a", "b"]].values.tolist())) == expected
    assert (pairs["distance"].to_numpy() == brute[pairs["a"], pairs["b"]]).all()
    between = near_duplicate_pairs(table[:40], table[40:])
    assert sorted(map(tuple, between[["a", "b"]].values.tolist())) == sorted(
        (i, j) for i in range(40) for j in range(45) if brute[i, 40 + j] <= 12
    )


def test_exact_pairs_on_the_green_plane_skip_blank():
    green = np.array([5, 7, 5, 0, 0, 9, 5], dtype=np.uint64)
    pairs = exact_duplicate_pairs(green)
    assert pairs[["a", "b"]].values.tolist() == [[0, 2], [0, 6], [2, 6]]
    assert (pairs["distance"] == 0).all()
    with_blank = exact_duplicate_pairs(green, skip_blank=False)
    assert [3, 4] in with_blank[["a", "b"]].values.tolist()
    test = np.array([9, 1, 5], dtype=np.uint64)
    between = exact_duplicate_pairs(test, green)
    assert between[["a", "b"]].values.tolist() == [[0, 5], [2, 0], [2, 2], [2, 6]]


def test_hpa3_rule_from_images_green_only():
    original, other = _cells(3), _cells(4)
    same_green = other.copy()
    same_green[:, :, 1] = original[:, :, 1]
    for kind in ("ahash", "phash"):
        table = pack_hashes([channel_hashes(im, kind, channels=(1,)) for im in (original, other, same_green)])
        assert table.shape == (3, 1)
        assert exact_duplicate_pairs(table)[["a", "b"]].values.tolist() == [[0, 2]]


def test_groups_are_transitive_and_numbered_by_first_row():
    groups = duplicate_groups(6, np.array([[3, 4], [0, 5], [4, 1]]))
    assert groups.tolist() == [0, 1, 2, 1, 1, 0]
    assert duplicate_groups(3, np.zeros((0, 2))).tolist() == [0, 1, 2]
    frame = pd.DataFrame({"a": [0, 1], "b": [1, 2], "distance": [3, 4]})
    assert duplicate_groups(4, frame).tolist() == [0, 0, 0, 1]
    with pytest.raises(MedalsError, match="outside"):
        duplicate_groups(2, np.array([[0, 2]]))


def test_leak_report_lists_matches_nearest_first():
    pairs = pd.DataFrame({"a": [1, 0, 1], "b": [2, 0, 1], "distance": [7, 0, 3]})
    report = leaks(["t0", "t1", "t2"], ["l0", "l1", "l2"], pairs)
    assert report["test_id"].tolist() == ["t0", "t1", "t1"]
    assert report["labelled_id"].tolist() == ["l0", "l1", "l2"]
    assert report["distance"].tolist() == [0, 3, 7]
    assert report["test_index"].tolist() == [0, 1, 1]
    assert report["labelled_index"].tolist() == [0, 1, 2]


def test_hash_table_reads_files_and_joined_channels(tmp_path):
    image = _cells(5)
    rgb_path = tmp_path / "a.png"
    cv2.imwrite(str(rgb_path), image[:, :, ::-1])  # cv2 writes BGR
    planes = []
    for c, name in enumerate("rgb"):
        path = tmp_path / f"a_{name}.png"
        cv2.imwrite(str(path), image[:, :, c])
        planes.append(str(path))
    table = hash_table([str(rgb_path), "|".join(planes)], "phash", workers=2)
    assert table.dtype == np.uint64 and table.shape == (2, 3)
    assert (table[0] == table[1]).all()
    assert (table[0] == pack_hashes([channel_hashes(image)])[0]).all()
    green = hash_table(["|".join(planes)], "ahash", channels=(1,), workers=1)
    assert green.shape == (1, 1)
    with pytest.raises(MedalsError, match="unknown hash kind"):
        hash_table([str(rgb_path)], "dhash")
    with pytest.raises(MedalsError, match="channel"):
        channel_hashes(image, channels=(3,))
