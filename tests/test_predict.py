from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medals.infer.predict import predict_with_cls


class _Rows(Dataset):
    """Item i has an image whose pixels all equal i, so a model can read the row back."""

    def __init__(self, n: int, size: int = 4, meta: bool = False):
        self.n, self.size, self.meta = n, size, meta

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        image = torch.full((3, self.size, self.size), float(i))
        image[0, 0, 0] += 1.0  # a corner mark, so that views differ
        item = {"image": image, "index": i}
        if self.meta:
            item["meta"] = torch.tensor([float(i) * 10])
        return item


class _MeanLogit(nn.Module):
    """Logits [mean pixel, -mean pixel, (meta)]: row i's prediction depends on i."""

    def forward(self, image, meta=None):
        m = image.mean(dim=(1, 2, 3))
        cols = [m, -m]
        if meta is not None:
            cols.append(meta[:, 0])
        return torch.stack(cols, dim=1) / 10


class _CornerMark(nn.Module):
    """One logit: large when the top-left pixel of channel 0 is the marked one."""

    def forward(self, image, meta=None):
        corner = image[:, 0, 0, 0] - image[:, 1, 0, 0]
        return (corner * 4 - 2)[:, None]


def predict(*args, **kwargs):
    """The probabilities alone."""
    return predict_with_cls(*args, **kwargs)[0]


def _expected_softmax(n: int) -> np.ndarray:
    means = np.array([(3 * 16 * i + 1) / 48 for i in range(n)], dtype=np.float64)
    logits = np.stack([means, -means], axis=1) / 10
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_rows_are_placed_by_index_whatever_the_loader_order():
    ds = _Rows(7)
    order = [5, 2, 6, 0, 3, 1, 4]
    loader = DataLoader(ds, batch_size=3, sampler=order)
    probs = predict(_MeanLogit(), loader, "multiclass")
    assert probs.dtype == np.float32 and probs.shape == (7, 2)
    np.testing.assert_allclose(probs, _expected_softmax(7), atol=1e-6)
    in_order = predict(_MeanLogit(), DataLoader(ds, batch_size=2), "multiclass")
    np.testing.assert_array_equal(probs, in_order)


def test_meta_is_passed_and_multilabel_uses_sigmoid():
    loader = DataLoader(
        _Rows(4, meta=True), batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    probs = predict(_MeanLogit(), loader, "multilabel")
    assert probs.shape == (4, 3)
    np.testing.assert_allclose(probs[:, 2], 1 / (1 + np.exp(-np.arange(4) * 10 / 10)), atol=1e-6)
    means = np.array([(48 * i + 1) / 48 for i in range(4)])
    np.testing.assert_allclose(probs[:, 0], 1 / (1 + np.exp(-means / 10)), atol=1e-6)


def test_max_and_mean_merge_over_views():
    # Only the identity view keeps the mark in the top-left corner: with tta=4 one view of four sees it.
    loader = DataLoader(_Rows(3), batch_size=2)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    hit, miss = sig(1 * 4 - 2), sig(0 * 4 - 2)
    mean = predict(_CornerMark(), loader, "multilabel", tta=4, merge="mean")
    peak = predict(_CornerMark(), loader, "multilabel", tta=4, merge="max")
    one = predict(_CornerMark(), loader, "multilabel", tta=1)
    np.testing.assert_allclose(one[:, 0], hit, atol=1e-6)
    np.testing.assert_allclose(mean[:, 0], (hit + 3 * miss) / 4, atol=1e-6)
    np.testing.assert_allclose(peak[:, 0], hit, atol=1e-6)


def test_segmentation_shape_and_eval_mode():
    model = nn.Sequential(nn.Conv2d(3, 1, 1), nn.Dropout(0.9))
    model.train()
    loader = DataLoader(_Rows(3, size=6), batch_size=2)
    a = predict(model, loader, "segmentation", tta=2)
    b = predict(model, loader, "segmentation", tta=2)
    assert not model.training
    assert a.shape == (3, 6, 6) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)  # dropout off: deterministic
    assert ((a > 0) & (a < 1)).all()


def test_dropped_rows_are_an_error():
    loader = DataLoader(_Rows(5), batch_size=2, drop_last=True)
    with pytest.raises(ValueError, match="4 of 5"):
        predict(_MeanLogit(), loader, "multiclass")


def test_identity_view_is_the_untransformed_prediction_beside_the_tta_merge():
    # _CornerMark answers the corner mark: only the identity view keeps it at the top left, so the
    # identity view's probability differs from the 4-view mean, and equals a tta=1 prediction.
    loader = DataLoader(_Rows(6), batch_size=4)
    merged, _, identity = predict_with_cls(_CornerMark(), loader, "binary", tta=4, identity=True)
    alone = predict(_CornerMark(), loader, "binary", tta=1)
    np.testing.assert_array_equal(identity, alone)
    assert np.all(identity > merged + 0.1)  # three of four views lose the mark
    only, _, same = predict_with_cls(_CornerMark(), loader, "binary", tta=1, identity=True)
    np.testing.assert_array_equal(only, same)
