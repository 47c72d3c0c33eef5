from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medals.data.rle import decode, decode_many, encode, split_parts
from medals.errors import MedalsError

# ---- hand-worked examples ------------------------------------------------------------------

# "1 3 10 5" on a 4x4 mask.
# row (1-based, row-major): pixels 1..3 -> flat 0,1,2 = (0,0) (0,1) (0,2);
#   pixels 10..14 -> flat 9..13 = (2,1) (2,2) (2,3) (3,0) (3,1).
ROW_1_3_10_5 = np.array(
    [
        [1, 1, 1, 0],
        [0, 0, 0, 0],
        [0, 1, 1, 1],
        [1, 1, 0, 0],
    ],
    dtype=bool,
)
# column (1-based, column-major, flat f -> (f % 4, f // 4)): flat 0,1,2 = (0,0) (1,0) (2,0);
#   flat 9..13 = (1,2) (2,2) (3,2) (0,3) (1,3).
COLUMN_1_3_10_5 = np.array(
    [
        [1, 0, 0, 1],
        [1, 0, 1, 1],
        [1, 0, 1, 0],
        [0, 0, 1, 0],
    ],
    dtype=bool,
)
# siim (relative, 0-based, column-major): "1 3" paints flat 1,2,3 and ends at 4; "10 5" would start
#   at 4 + 10 = 14 and paint 14..18, past the 16 pixels, so that string is an error on 4x4.
# "1 3 2 5" instead: flat 1,2,3 then 4 + 2 = 6 .. 10, i.e. (1,0) (2,0) (3,0) (2,1) (3,1) (0,2) (1,2) (2,2).
SIIM_1_3_2_5 = np.array(
    [
        [0, 0, 1, 0],
        [1, 0, 1, 0],
        [1, 1, 1, 0],
        [1, 1, 0, 0],
    ],
    dtype=bool,
)


def test_hand_worked_row():
    assert (decode("1 3 10 5", (4, 4), "row") == ROW_1_3_10_5).all()
    assert encode(ROW_1_3_10_5, "row") == "1 3 10 5"


def test_hand_worked_column():
    assert (decode("1 3 10 5", (4, 4), "column") == COLUMN_1_3_10_5).all()
    assert encode(COLUMN_1_3_10_5, "column") == "1 3 10 5"


def test_hand_worked_siim():
    assert (decode("1 3 2 5", (4, 4), "siim") == SIIM_1_3_2_5).all()
    assert encode(SIIM_1_3_2_5, "siim") == "1 3 2 5"
    with pytest.raises(MedalsError, match="runs to pixel 19, beyond the 4x4 mask"):
        decode("1 3 10 5", (4, 4), "siim")


def test_same_mask_in_each_format():
    # The row example's mask written in the other two layouts, worked out by hand:
    # column-major flat order of ROW_1_3_10_5 is 1 0 0 1 | 1 0 1 1 | 1 0 1 0 | 0 0 1 0,
    # runs (0-based, end exclusive) [0,1) [3,5) [6,9) [10,11) [14,15).
    assert encode(ROW_1_3_10_5, "column") == "1 1 4 2 7 3 11 1 15 1"
    # siim: each start relative to the previous run's end: 0, 3-1=2, 6-5=1, 10-9=1, 14-11=3.
    assert encode(ROW_1_3_10_5, "siim") == "0 1 2 2 1 3 1 1 3 1"


def test_non_square_orientation():
    # 2 rows x 3 columns; "2 2" paints flat 1,2 (0-based).
    assert decode("2 2", (2, 3), "row").tolist() == [[False, True, True], [False, False, False]]
    # column-major on 2 rows: flat 1 = (1,0), flat 2 = (0,1)
    assert decode("2 2", (2, 3), "column").tolist() == [[False, True, False], [True, False, False]]
    # siim "2 2" is 0-based: flat 2,3 = (0,1), (1,1)
    assert decode("2 2", (2, 3), "siim").tolist() == [[False, True, False], [False, True, False]]


def test_empty_masks():
    empty = np.zeros((5, 7), dtype=bool)
    assert encode(empty, "row") == ""
    assert encode(empty, "column") == ""
    assert encode(empty, "siim") == "-1"
    for value in ("", "-1", " -1 ", None, float("nan"), np.nan, pd.NA, -1):
        for fmt in ("row", "column", "siim"):
            out = decode(value, (5, 7), fmt)
            assert out.shape == (5, 7) and out.dtype == bool and not out.any()


def test_full_mask_and_corner_pixels():
    full = np.ones((3, 5), dtype=bool)
    assert encode(full, "row") == "1 15"
    assert encode(full, "column") == "1 15"
    assert encode(full, "siim") == "0 15"
    corners = np.zeros((3, 5), dtype=bool)
    corners[0, 0] = corners[-1, -1] = True
    assert encode(corners, "row") == "1 1 15 1"
    assert encode(corners, "column") == "1 1 15 1"
    assert encode(corners, "siim") == "0 1 13 1"


# ---- round trips against a naive reference ---------------------------------------------------


def naive_encode(mask: np.ndarray, fmt: str) -> str:
    """Pixel-by-pixel reference: walk the flattened mask and emit runs."""
    flat = mask.ravel(order="C" if fmt == "row" else "F").tolist()
    runs, start = [], None
    for i, on in enumerate([*flat, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append((start, i))
            start = None
    if fmt == "siim":
        if not runs:
            return "-1"
        out, previous_end = [], 0
        for s, e in runs:
            out += [s - previous_end, e - s]
            previous_end = e
        return " ".join(map(str, out))
    return " ".join(f"{s + 1} {e - s}" for s, e in runs)


@pytest.mark.parametrize("fmt", ["row", "column", "siim"])
def test_random_round_trips(fmt):
    rng = np.random.default_rng(7)
    for _ in range(300):
        height, width = rng.integers(1, 12, size=2)
        mask = rng.random((height, width)) < rng.choice([0.0, 0.1, 0.5, 0.9, 1.0])
        text = encode(mask, fmt)
        assert text == naive_encode(mask, fmt)
        back = decode(text, (height, width), fmt)
        assert back.dtype == bool and back.flags.c_contiguous
        assert (back == mask).all()


def test_encode_accepts_uint8_and_rejects_3d():
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[1, 1] = 255
    assert encode(mask, "row") == "6 1"
    with pytest.raises(MedalsError, match="2-D mask"):
        encode(np.zeros((2, 4, 4), dtype=bool))


# ---- errors -----------------------------------------------------------------------------------


def test_run_beyond_mask_is_an_error():
    with pytest.raises(MedalsError, match=r"RLE '15 3' runs to pixel 17, beyond the 4x4 mask \(16 pixels\)"):
        decode("15 3", (4, 4), "row")
    decode("15 2", (4, 4), "row")  # ends exactly at the last pixel: fine
    decode("1 1 13 4", (4, 4), "column")  # flat 12..15: fine
    with pytest.raises(MedalsError, match="runs to pixel 17"):
        decode("1 1 14 4", (4, 4), "column")
    with pytest.raises(MedalsError, match="runs to pixel 17"):
        decode("0 1 12 4", (4, 4), "siim")  # 1 + 12 = 13 .. 16, one past the end


def test_malformed_strings():
    with pytest.raises(MedalsError, match="odd count of numbers \\(3\\)"):
        decode("1 3 5", (4, 4), "row")
    with pytest.raises(MedalsError, match="value 'x', not a 64-bit integer"):
        decode("1 3 x 2", (4, 4), "row")
    with pytest.raises(MedalsError, match="value '2.5'"):
        decode("1 2.5", (4, 4), "siim")
    with pytest.raises(MedalsError, match="decode_many"):
        decode("1 2|5 1", (4, 4), "row")
    with pytest.raises(MedalsError, match="negative"):
        decode("3 -1", (4, 4), "row")
    with pytest.raises(MedalsError, match="below 1"):
        decode("0 2", (4, 4), "row")
    with pytest.raises(MedalsError, match="unknown RLE format 'rows'"):
        decode("1 2", (4, 4), "rows")


def test_long_text_is_abbreviated_in_errors():
    text = " ".join(["1 1"] * 200) + " 7"
    with pytest.raises(MedalsError) as info:
        decode(text, (64, 64), "row")
    assert "..." in str(info.value) and len(str(info.value)) < 160


# ---- several RLEs of one image ----------------------------------------------------------------


def test_decode_many_ors_parts():
    a = decode("1 3", (4, 4), "row")
    b = decode("3 4", (4, 4), "row")  # overlaps a at pixel 3
    expected = a | b
    assert expected.sum() == 6
    assert (decode_many("1 3|3 4", (4, 4), "row") == expected).all()
    assert (decode_many(["1 3", None, "", "-1", float("nan"), "3 4"], (4, 4), "row") == expected).all()
    assert (decode_many(pd.Series(["1 3|", "3 4"]), (4, 4), "row") == expected).all()
    assert not decode_many(None, (4, 4), "siim").any()
    assert not decode_many("-1|-1", (4, 4), "siim").any()
    assert split_parts(" -1|1 2| |3 4") == ["1 2", "3 4"]
    with pytest.raises(MedalsError, match="beyond"):
        decode_many("1 3|16 2", (4, 4), "row")


# ---- the real SIIM-ACR pneumothorax RLEs --------------------------------------------------------


def _siim_csv() -> Path:
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None:
        pytest.skip("torchxrayvision (which ships the SIIM-ACR RLE file) is not installed")
    return Path(spec.submodule_search_locations[0]) / "data" / "siim-pneumothorax-train-rle.csv.gz"


@pytest.fixture(scope="module")
def siim_rows() -> pd.DataFrame:
    frame = pd.read_csv(_siim_csv(), dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["ImageId", " EncodedPixels"]
    return frame.rename(columns={" EncodedPixels": "rle"})


def official_rle2mask(rle: str, width: int, height: int) -> np.ndarray:
    """The competition's own mask_functions.rle2mask (returns the transposed image)."""
    mask = np.zeros(width * height)
    array = np.asarray([int(x) for x in rle.split()])
    starts, lengths = array[0::2], array[1::2]
    current_position = 0
    for index, start in enumerate(starts):
        current_position += start
        mask[current_position : current_position + lengths[index]] = 255
        current_position += lengths[index]
    return mask.reshape(width, height)


def test_siim_every_row_round_trips(siim_rows):
    assert len(siim_rows) > 12000
    mismatches = []
    painted = 0
    for image_id, rle in zip(siim_rows["ImageId"], siim_rows["rle"], strict=True):
        mask = decode(rle, (1024, 1024), "siim")
        painted += int(mask.any())
        if encode(mask, "siim") != rle:
            mismatches.append(image_id)
    assert mismatches == []
    assert painted == int((siim_rows["rle"] != "-1").sum()) > 3000


def test_siim_matches_the_official_decoder(siim_rows):
    rles = siim_rows.loc[siim_rows["rle"] != "-1", "rle"].iloc[:5]
    for rle in rles:
        ours = decode(rle, (1024, 1024), "siim")
        official = official_rle2mask(rle, 1024, 1024).T > 0
        assert ours.any() and (ours == official).all()
        # The same mask in the absolute column-major layout decodes back to it too.
        assert (decode(encode(ours, "column"), (1024, 1024), "column") == ours).all()


def test_siim_several_rows_of_one_image(siim_rows):
    counts = siim_rows.groupby("ImageId")["rle"].size()
    image_id = counts.idxmax()
    rles = siim_rows.loc[siim_rows["ImageId"] == image_id, "rle"].tolist()
    assert len(rles) >= 3
    singles = [decode(rle, (1024, 1024), "siim") for rle in rles]
    union = decode_many("|".join(rles), (1024, 1024), "siim")
    assert (union == np.logical_or.reduce(singles)).all()
    assert (decode_many(rles, (1024, 1024), "siim") == union).all()
    # Each row adds pixels: the union is bigger than any single row's mask.
    assert union.sum() > max(single.sum() for single in singles)
