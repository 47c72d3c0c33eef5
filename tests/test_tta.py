from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medals.infer.predict import predict_with_cls
from medals.infer.tta import apply_view, invert_view, merge, views_for


def test_views_for():
    assert views_for(1) == [0]
    assert views_for(2) == [0, 2]
    assert views_for(4) == [0, 1, 2, 3]
    assert views_for(8) == list(range(8))
    with pytest.raises(ValueError):
        views_for(3)


@pytest.mark.parametrize("view", range(8))
def test_invert_undoes_apply_on_non_square_batches(view):
    x = torch.randn(2, 3, 5, 7)
    y = apply_view(x, view)
    assert y.shape == ((2, 3, 7, 5) if view >= 4 else (2, 3, 5, 7))
    assert torch.equal(invert_view(y, view), x)


def test_views_follow_the_definition_and_are_distinct():
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    t = x.transpose(-2, -1)
    expected = [
        x,
        x.flip(-2),
        x.flip(-1),
        x.flip(-2).flip(-1),
        t,
        t.flip(-2),
        t.flip(-1),
        t.flip(-2).flip(-1),
    ]
    views = [apply_view(x, i) for i in range(8)]
    for got, want in zip(views, expected, strict=True):
        assert torch.equal(got, want)
    flat = {tuple(v.flatten().tolist()) for v in views}
    assert len(flat) == 8
    # Spot-check on explicit numbers: view 1 reverses rows, view 2 reverses columns.
    assert views[1][0, 0, 0].tolist() == [6.0, 7.0, 8.0]
    assert views[2][0, 0, 0].tolist() == [2.0, 1.0, 0.0]
    assert views[4][0, 0, 0].tolist() == [0.0, 3.0, 6.0]


def test_merge_mean_and_max():
    a = torch.tensor([[0.2, 0.8]])
    b = torch.tensor([[0.6, 0.4]])
    assert torch.allclose(merge([a, b], "mean"), torch.tensor([[0.4, 0.6]]))
    assert torch.allclose(merge([a, b], "max"), torch.tensor([[0.6, 0.8]]))
    with pytest.raises(ValueError):
        merge([a, b], "median")


class _Images(Dataset):
    def __init__(self, n: int, h: int, w: int):
        self.images = torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "index": i}


def test_per_pixel_model_gives_same_masks_with_and_without_tta():
    torch.manual_seed(0)
    model = nn.Conv2d(3, 1, kernel_size=1)
    loader = DataLoader(_Images(5, 6, 10), batch_size=2)
    one = predict_with_cls(model, loader, "segmentation", tta=1)[0]
    for n in (2, 4, 8):
        many = predict_with_cls(model, loader, "segmentation", tta=n)[0]
        assert many.shape == (5, 6, 10)
        np.testing.assert_allclose(many, one, atol=1e-6)


def test_segmentation_outputs_are_mapped_back_from_each_view():
    # A model that ignores its input and always outputs the same position ramp: mapped back from view i,
    # the ramp lands in invert_view(ramp, i), so the merged map is the mean of those, not the ramp itself.
    class Ramp(nn.Module):
        def forward(self, x):
            h, w = x.shape[-2:]
            ramp = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w) / (h * w)
            return ramp.expand(x.shape[0], 1, h, w)

    loader = DataLoader(_Images(2, 4, 4), batch_size=2)
    probs = torch.sigmoid(torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4) / 16)
    for n in (2, 8):
        got = predict_with_cls(Ramp(), loader, "segmentation", tta=n)[0]
        want = torch.stack([invert_view(probs, i) for i in views_for(n)]).mean(0)[0, 0]
        np.testing.assert_allclose(got[1], want.numpy(), atol=1e-6)
        assert not np.allclose(got[1], probs[0, 0].numpy())
