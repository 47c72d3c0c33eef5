"""Perceptual hashes per channel plane and the duplicate / leak searches built on them.

Two rules from the Human Protein Atlas winners:

- HPA1 (near duplicates): a pair of images is a duplicate when the pHash Hamming distance is at most
  12 on each of the red, green and blue planes (``near_duplicate_pairs``).
- HPA3 (exact duplicates): a pair is a duplicate when the aHash, or the pHash, of the green plane is
  identical (``exact_duplicate_pairs``, once per hash kind; concatenate the pair tables).

Hashes are 64-bit (imagehash's default ``hash_size=8``) and are packed into ``uint64`` so that distances
are computed with numpy (XOR and popcount) rather than one Python call per pair. A hash table is an
array ``[N, C]`` of ``uint64``: one row per image, one column per hashed plane; the packed value equals
``int(str(imagehash_hash), 16)``.

Pair tables are DataFrames with integer columns ``a``, ``b`` (row indices into the hash tables) and
``distance`` (the largest per-plane Hamming distance; 0 for exact pairs). Within one table ``a < b``;
between two tables ``a`` indexes the first and ``b`` the second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from medals.data.io import read_image
from medals.errors import MedalsError

HASH_KINDS: dict[str, Callable[..., imagehash.ImageHash]] = {
    "phash": imagehash.phash,
    "ahash": imagehash.average_hash,
}
HASH_BITS = 64
PAIR_COLUMNS = ["a", "b", "distance"]

# Number of set bits of every byte value, for numpy versions without np.bitwise_count (< 2.0).
_BYTE_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)
# Pair comparisons per block: bounds the temporary arrays to a few tens of MB whatever the table sizes.
_BLOCK_ELEMENTS = 1 << 22


def _hash_function(kind: str) -> Callable[..., imagehash.ImageHash]:
    if kind not in HASH_KINDS:
        raise MedalsError(f"unknown hash kind '{kind}' (choose from {', '.join(sorted(HASH_KINDS))})")
    return HASH_KINDS[kind]


def channel_hashes(
    image: np.ndarray, kind: str = "phash", channels: Sequence[int] = (0, 1, 2)
) -> list[imagehash.ImageHash]:
    """One perceptual hash (``phash`` or ``ahash``) per listed channel of a uint8 H x W (x C) image."""
    function = _hash_function(kind)
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise MedalsError(f"an image to hash must be H x W or H x W x C, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise MedalsError(f"an image to hash must be uint8, got {image.dtype}")
    bad = [c for c in channels if not -image.shape[2] <= c < image.shape[2]]
    if bad:
        raise MedalsError(f"channel(s) {bad} asked for, but the image has {image.shape[2]} channel(s)")
    return [function(Image.fromarray(np.ascontiguousarray(image[:, :, c]), mode="L")) for c in channels]


def pack_hash(value: imagehash.ImageHash) -> np.uint64:
    """A 64-bit ImageHash as one unsigned integer (the same number as its hex string)."""
    bits = np.asarray(value.hash, dtype=bool).ravel()
    if bits.size != HASH_BITS:
        raise MedalsError(f"only 64-bit hashes (hash_size=8) can be packed, got {bits.size} bits")
    return np.packbits(bits).view(">u8")[0].astype(np.uint64)


def pack_hashes(rows: Sequence[Sequence[imagehash.ImageHash]]) -> np.ndarray:
    """Rows of ImageHash (one list per image, one hash per plane) -> uint64 table [N, C]."""
    table = np.array([[pack_hash(h) for h in row] for row in rows], dtype=np.uint64)
    return table.reshape(len(rows), -1) if len(rows) else np.zeros((0, 0), dtype=np.uint64)


def hash_table(
    paths: Sequence[str], kind: str = "phash", channels: Sequence[int] = (0, 1, 2), workers: int = 4
) -> np.ndarray:
    """uint64 hash table [N, len(channels)] of image files (``medals.data.io.read_image`` paths,
    "|"-joined channel files included), read and hashed on a thread pool of ``workers`` threads."""
    _hash_function(kind)
    channels = tuple(channels)

    def one(path: str) -> list[np.uint64]:
        return [pack_hash(h) for h in channel_hashes(read_image(path), kind, channels)]

    paths = list(paths)
    if workers <= 1:
        rows = [one(p) for p in paths]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(one, paths))
    return np.array(rows, dtype=np.uint64).reshape(len(paths), len(channels))


def _as_table(hashes: np.ndarray | Sequence[Sequence[imagehash.ImageHash]], name: str) -> np.ndarray:
    """A uint64 table [N, C] from a packed table, a 1-D packed column, or rows of ImageHash."""
    if isinstance(hashes, np.ndarray) and hashes.dtype != object:
        if not np.issubdtype(hashes.dtype, np.integer):
            raise MedalsError(f"{name} must hold packed integer hashes, got dtype {hashes.dtype}")
        table = hashes.astype(np.uint64, copy=False)
    else:
        rows = list(hashes)
        if rows and isinstance(rows[0], imagehash.ImageHash):  # one plane, one hash per image
            rows = [[h] for h in rows]
        table = pack_hashes(rows)
    if table.ndim == 1:
        table = table[:, None]
    if table.ndim != 2:
        raise MedalsError(f"{name} must be a table [N, C] of hashes, got shape {table.shape}")
    return table


def popcount(values: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64 (as uint8), same shape."""
    values = np.ascontiguousarray(values, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    return _BYTE_POPCOUNT[values.view(np.uint8)].reshape(*values.shape, 8).sum(axis=-1, dtype=np.uint8)


def hamming(hashes_a: np.ndarray, hashes_b: np.ndarray) -> np.ndarray:
    """Per-plane Hamming distances of aligned rows of two tables [N, C] -> [N, C]."""
    return popcount(np.bitwise_xor(_as_table(hashes_a, "hashes_a"), _as_table(hashes_b, "hashes_b")))


def _pair_frame(a: np.ndarray, b: np.ndarray, distance: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "a": np.asarray(a, dtype=np.int64),
            "b": np.asarray(b, dtype=np.int64),
            "distance": np.asarray(distance, dtype=np.int64),
        }
    )
    return frame.sort_values(["a", "b"], kind="stable").reset_index(drop=True)


def _pair_tables(hashes_a, hashes_b) -> tuple[np.ndarray, np.ndarray, bool]:
    """(table a, table b, within): b is a itself when hashes_b is None; both hash the same planes."""
    table_a = _as_table(hashes_a, "hashes_a")
    within = hashes_b is None
    table_b = table_a if within else _as_table(hashes_b, "hashes_b")
    if table_a.shape[1] != table_b.shape[1]:
        raise MedalsError(
            f"the two hash tables hash different numbers of planes ({table_a.shape[1]} and {table_b.shape[1]})"
        )
    return table_a, table_b, within


def near_duplicate_pairs(
    hashes_a: np.ndarray | Sequence[Sequence[imagehash.ImageHash]],
    hashes_b: np.ndarray | Sequence[Sequence[imagehash.ImageHash]] | None = None,
    max_distance: int = 12,
) -> pd.DataFrame:
    """Pairs whose Hamming distance is at most ``max_distance`` on every plane (HPA1: pHash of R, G, B, 12).

    Without ``hashes_b`` the pairs are within ``hashes_a`` (``a < b``); otherwise ``a`` indexes
    ``hashes_a`` and ``b`` indexes ``hashes_b``. All pairs are compared, block by block: the first plane
    filters the candidates and only those are checked on the other planes, so memory stays bounded and
    100k images are a matter of minutes.
    """
    table_a, table_b, within = _pair_tables(hashes_a, hashes_b)
    n_a, n_b = len(table_a), len(table_b)
    if n_a == 0 or n_b == 0 or table_a.shape[1] == 0:
        return _pair_frame([], [], [])
    block = max(1, _BLOCK_ELEMENTS // n_b)
    found_a, found_b, found_d = [], [], []
    for start in range(0, n_a, block):
        stop = min(start + block, n_a)
        first = start + 1 if within else 0  # within one table, compare only with later rows
        if first >= n_b:
            break
        rows = table_a[start:stop]
        columns = table_b[first:]
        distance = popcount(np.bitwise_xor(rows[:, None, 0], columns[None, :, 0]))
        close = distance <= max_distance
        if within:
            # row start+i vs column first+j is a later row only when j >= i
            close &= np.arange(len(columns))[None, :] >= np.arange(len(rows))[:, None]
        i, j = np.nonzero(close)
        worst = distance[i, j]
        for plane in range(1, table_a.shape[1]):
            if len(i) == 0:
                break
            plane_distance = popcount(np.bitwise_xor(rows[i, plane], columns[j, plane]))
            keep = plane_distance <= max_distance
            i, j = i[keep], j[keep]
            worst = np.maximum(worst[keep], plane_distance[keep])
        found_a.append(i + start)
        found_b.append(j + first)
        found_d.append(worst)
    if not found_a:
        return _pair_frame([], [], [])
    return _pair_frame(np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_d))


def exact_duplicate_pairs(
    hashes_a: np.ndarray | Sequence[Sequence[imagehash.ImageHash]],
    hashes_b: np.ndarray | Sequence[Sequence[imagehash.ImageHash]] | None = None,
    skip_blank: bool = True,
) -> pd.DataFrame:
    """Pairs whose hashes are identical on every plane (HPA3: the green plane's aHash, or its pHash).

    ``skip_blank`` ignores the all-zero hash, which every blank (or flat) plane has under aHash: such
    images are not duplicates of one another. Rows are grouped by hash value, so the cost is
    O(N log N) plus the number of pairs.
    """
    table_a, table_b, within = _pair_tables(hashes_a, hashes_b)
    if len(table_a) == 0 or len(table_b) == 0:
        return _pair_frame([], [], [])
    both = np.concatenate([table_a, table_b]) if not within else table_a
    _, key = np.unique(both, axis=0, return_inverse=True)
    key = key.ravel()
    blank = (both == 0).all(axis=1) if skip_blank else np.zeros(len(both), dtype=bool)
    key_a = key[: len(table_a)]
    key_b = key_a if within else key[len(table_a) :]
    blank_a = blank[: len(table_a)]
    blank_b = blank_a if within else blank[len(table_a) :]

    members_b: dict[int, list[int]] = {}
    for index in np.flatnonzero(~blank_b):
        members_b.setdefault(int(key_b[index]), []).append(int(index))
    found_a: list[int] = []
    found_b: list[int] = []
    for index in np.flatnonzero(~blank_a):
        for other in members_b.get(int(key_a[index]), ()):
            if not within or other > index:
                found_a.append(int(index))
                found_b.append(other)
    return _pair_frame(found_a, found_b, np.zeros(len(found_a), dtype=np.int64))


def _pair_indices(pairs: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(pairs, pd.DataFrame):
        if not {"a", "b"} <= set(pairs.columns):
            raise MedalsError("a pair table needs the columns 'a' and 'b'")
        return pairs["a"].to_numpy(np.int64), pairs["b"].to_numpy(np.int64)
    array = np.asarray(pairs, dtype=np.int64)
    if array.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise MedalsError(f"pairs must be an array [P, 2] of row indices, got shape {array.shape}")
    return array[:, 0], array[:, 1]


def duplicate_groups(n: int, pairs: pd.DataFrame | np.ndarray) -> np.ndarray:
    """Group id (0..G-1) of each of ``n`` rows, pairs merged transitively (a-b and b-c: one group).

    Groups are numbered in order of their first row, so a table without pairs gets ``arange(n)``.
    Union-find with path halving, no recursion.
    """
    a, b = _pair_indices(pairs)
    if len(a) and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n):
        raise MedalsError(f"a pair refers to a row outside 0..{n - 1}")
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)  # the smaller index stays the root
    roots = np.array([root(x) for x in range(n)], dtype=np.int64)
    _, groups = np.unique(roots, return_inverse=True)  # roots are each group's first row: order kept
    return groups.ravel().astype(np.int64)


def leaks(
    test_ids: Sequence[str], labelled_ids: Sequence[str], pairs: pd.DataFrame | np.ndarray
) -> pd.DataFrame:
    """Test images that duplicate labelled images, from pairs between a test and a labelled hash table.

    One row per match (a test image can match several labelled images), nearest first per test image:
    ``test_id``, ``labelled_id``, ``distance``, and the row indices ``test_index``, ``labelled_index``.
    """
    test_ids = [str(i) for i in test_ids]
    labelled_ids = [str(i) for i in labelled_ids]
    a, b = _pair_indices(pairs)
    if len(a) and (a.min() < 0 or a.max() >= len(test_ids)):
        raise MedalsError(f"a pair refers to a test row outside 0..{len(test_ids) - 1}")
    if len(b) and (b.min() < 0 or b.max() >= len(labelled_ids)):
        raise MedalsError(f"a pair refers to a labelled row outside 0..{len(labelled_ids) - 1}")
    if isinstance(pairs, pd.DataFrame) and "distance" in pairs.columns:
        distance = pairs["distance"].to_numpy(np.int64)
    else:
        distance = np.zeros(len(a), dtype=np.int64)
    frame = pd.DataFrame(
        {
            "test_id": pd.Series([test_ids[i] for i in a], dtype=object),
            "labelled_id": pd.Series([labelled_ids[j] for j in b], dtype=object),
            "distance": distance,
            "test_index": a,
            "labelled_index": b,
        }
    )
    return frame.sort_values(["test_index", "distance", "labelled_index"], kind="stable").reset_index(
        drop=True
    )
