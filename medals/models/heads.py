"""Classification heads: on a pooled backbone feature vector, or (pool_concat, attention) on its feature map."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
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


class PoolConcatHead(nn.Module):
    """HPA 1st place head on a feature map [B, F, H, W]: concat(global avg pool, global max pool) [B, 2F],
    BatchNorm, Dropout, Linear(2F -> F), ReLU, BatchNorm, Dropout, Linear(F -> K) (bias starts at 0)."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm1d(2 * in_features)
        self.drop1 = nn.Dropout(dropout)
        self.fc1 = nn.Linear(2 * in_features, in_features)
        self.bn2 = nn.BatchNorm1d(in_features)
        self.drop2 = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)
        nn.init.zeros_(self.fc.bias)

    def forward(self, fmap: Tensor) -> Tensor:
        x = torch.cat([fmap.mean((2, 3)), fmap.amax((2, 3))], dim=1)
        x = self.drop1(self.bn1(x))
        x = F.relu(self.fc1(x))
        x = self.drop2(self.bn2(x))
        return self.fc(x)


class AttentionHead(nn.Module):
    """HPA 3rd place per-class spatial attention on a feature map [B, C, H, W] -> logits [B, K].

    A 1x1 conv gives a logit map [B, K, H, W]; another 1x1 conv gives attention logits, softmaxed over the
    H*W pixels of each class; the output is the attention-weighted sum of the logit map over pixels.
    Uniform attention makes it the mean of the logit map (global average pooling, then a linear layer).
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.logits = nn.Conv2d(in_channels, num_classes, kernel_size=1)
        self.attention = nn.Conv2d(in_channels, num_classes, kernel_size=1)

    def forward(self, fmap: Tensor) -> Tensor:
        logit_map = self.logits(fmap).flatten(2)  # [B, K, H*W]
        weights = torch.softmax(self.attention(fmap).flatten(2).float(), dim=2).to(logit_map.dtype)
        return (logit_map * weights).sum(2)
