"""Blend several models' predictions: frames aligned by id, or segmentation probability stacks."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from medals.errors import MedalsError
from medals.post.metrics import percentile_rank

METHODS = ("mean", "rank")


def normalise_weights(weights: Sequence[float] | None, count: int) -> np.ndarray:
    """Weights summing to 1 (equal when None); wrong count, negatives or an all-zero set are errors."""
    if weights is None:
        return np.full(count, 1.0 / count)
    values = np.asarray(weights, dtype=np.float64).ravel()
    if len(values) != count:
        raise MedalsError(f"{len(values)} ensemble weights given for {count} models")
    if not np.isfinite(values).all() or (values < 0).any():
        raise MedalsError(f"ensemble weights must be finite and non-negative, got {values.tolist()}")
    if values.sum() <= 0:
        raise MedalsError("ensemble weights sum to zero")
    return values / values.sum()


def _few(values: Sequence) -> str:
    shown = ", ".join(str(value) for value in list(values)[:5])
    return shown + (", ..." if len(values) > 5 else "")


def prob_columns(frame: pd.DataFrame) -> list[str]:
    """The p_0..p_{K-1} columns in class order."""
    found = [c for c in frame.columns if re.fullmatch(r"p_\d+", str(c))]
    return sorted(found, key=lambda c: int(c[2:]))


def _aligned(frames: Sequence[pd.DataFrame]) -> list[pd.DataFrame]:
    """Each frame's rows in the first frame's id order; differing id sets or columns are errors."""
    for number, frame in enumerate(frames, start=1):
        if "id" not in frame.columns:
            raise MedalsError(f"prediction frame {number} has no 'id' column")
    columns = prob_columns(frames[0])
    if not columns:
        raise MedalsError("prediction frame 1 has no probability columns p_0, p_1, ...")
    ids = frames[0]["id"].astype(str)
    out = []
    for number, frame in enumerate(frames, start=1):
        if prob_columns(frame) != columns:
            raise MedalsError(
                f"prediction frame {number} has columns {prob_columns(frame)}, frame 1 has {columns}"
            )
        keyed = frame.assign(id=frame["id"].astype(str))
        duplicated = keyed["id"][keyed["id"].duplicated()].unique()
        if len(duplicated):
            raise MedalsError(
                f"prediction frame {number} repeats {len(duplicated)} ids (first: {_few(duplicated)})"
            )
        missing = ids[~ids.isin(keyed["id"])].tolist()
        if missing:
            raise MedalsError(
                f"prediction frame {number} lacks {len(missing)} ids of frame 1 (first: {_few(missing)})"
            )
        extra = keyed["id"][~keyed["id"].isin(ids)].tolist()
        if extra:
            raise MedalsError(
                f"prediction frame {number} has {len(extra)} ids that frame 1 lacks (first: {_few(extra)})"
            )
        out.append(keyed.set_index("id").loc[ids, columns].reset_index())
    return out


def combine(
    frames: Sequence[pd.DataFrame], method: str = "mean", weights: Sequence[float] | None = None
) -> pd.DataFrame:
    """Weighted blend of prediction frames (id, p_0..p_{K-1}), rows in the first frame's id order.

    "mean" averages probabilities; "rank" first turns each column into percentile ranks within its
    frame, which suits a ranking metric (AUC) when the models' probabilities are calibrated
    differently. Columns other than id and p_* (e.g. fold) come from the first frame.
    """
    if not frames:
        raise MedalsError("no prediction frames to ensemble")
    if method not in METHODS:
        raise MedalsError(f"unknown ensemble method '{method}': use one of {', '.join(METHODS)}")
    w = normalise_weights(weights, len(frames))
    aligned = _aligned(frames)
    columns = prob_columns(frames[0])
    total = np.zeros((len(aligned[0]), len(columns)))
    for weight, frame in zip(w, aligned, strict=True):
        values = frame[columns].to_numpy(dtype=np.float64)
        if method == "rank":
            values = np.column_stack([percentile_rank(values[:, k]) for k in range(len(columns))])
        total += weight * values
    first = frames[0]
    result = first.drop(columns=columns).assign(id=first["id"].astype(str)).reset_index(drop=True)
    return pd.concat([result, pd.DataFrame(total, columns=columns)], axis=1)


def combine_arrays(
    arrays: Sequence[np.ndarray], weights: Sequence[float] | None = None, chunk: int = 64
) -> np.ndarray:
    """Weighted mean of probability stacks of one shape (e.g. [N, H, W] masks), float32.

    Summed ``chunk`` images at a time, so memory-mapped float16 stacks never get a full float32 copy
    each.
    """
    if not arrays:
        raise MedalsError("no probability arrays to ensemble")
    w = normalise_weights(weights, len(arrays))
    shape = arrays[0].shape
    for number, array in enumerate(arrays, start=1):
        if array.shape != shape:
            raise MedalsError(f"probability array {number} has shape {array.shape}, array 1 has {shape}")
    if len(shape) == 0:
        raise MedalsError("probability arrays to ensemble must have at least one axis")
    out = np.empty(shape, dtype=np.float32)
    for start in range(0, shape[0], chunk):
        stop = start + chunk
        acc = np.zeros((min(stop, shape[0]) - start, *shape[1:]), dtype=np.float32)
        for weight, array in zip(w, arrays, strict=True):
            acc += np.float32(weight) * np.asarray(array[start:stop], dtype=np.float32)
        out[start:stop] = acc
    return out
