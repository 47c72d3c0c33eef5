"""Classification heads that sit on top of a pooled backbone feature vector."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class LinearHead(nn.Module):
    """Dropout (when > 0) then one linear layer."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(x))


class MultiSampleDropoutHead(nn.Module):
    """Several independent dropout masks through ONE shared linear layer, logits averaged.

    Multi-sample dropout (Inoue 2019) gives the regularisation of many dropout samples per step at
    the cost of a few extra small matmuls; in eval mode every sample is the identity, so the head is
    exactly the plain linear layer.
    """

    def __init__(self, in_features: int, num_classes: int, samples: int = 5, p: float = 0.5) -> None:
        super().__init__()
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.dropouts = nn.ModuleList(nn.Dropout(p) for _ in range(samples))
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return self.fc(x)
        return torch.stack([self.fc(drop(x)) for drop in self.dropouts]).mean(0)


class MetaBranch(nn.Module):
    """MLP over tabular meta features: (Linear, BatchNorm, SiLU, Dropout) blocks, the last without dropout."""

    def __init__(self, n_meta: int, hidden: Sequence[int] = (512, 128), dropout: float = 0.3) -> None:
        super().__init__()
        if n_meta < 1 or not hidden:
            raise ValueError("MetaBranch needs n_meta >= 1 and at least one hidden size")
        layers: list[nn.Module] = []
        sizes = [n_meta, *hidden]
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
            layers += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.SiLU()]
            if i < len(hidden) - 1:
                layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)
        self.out_features = int(hidden[-1])

    def forward(self, meta: Tensor) -> Tensor:
        return self.net(meta)
