"""Metric learning for HPA1's nearest-neighbour post-processing: an ArcFace margin and an embedding net.

HPA1 trains a resnet50 with an additive angular margin (ArcFace, s=30, m=0.5) on a 512-d embedding,
with the antibody as the identity class; its embeddings then find, for each test image, the most
similar external image (``medals.train.metric_learning``).
"""

from __future__ import annotations

import math
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medals.errors import MedalsError
from medals.models.weights import create_timm_backbone, load_local_weights


class ArcMarginProduct(nn.Module):
    """Additive angular margin logits: s * cos(theta_j), with cos(theta_y + m) for the target class y.

    theta_j is the angle between the embedding and class j's weight vector (both L2-normalised).
    cos(theta + m) = cos(theta) cos(m) - sin(theta) sin(m) is not monotonic once theta + m > pi, so
    there (cos(theta) <= th = cos(pi - m)) the target logit falls back to cos(theta) - mm with
    mm = sin(pi - m) * m (the usual insightface fallback). easy_margin instead applies the margin only
    where cos(theta) > 0. Without a target, no margin: s * cos(theta) for every class (inference).
    """

    def __init__(
        self, in_features: int, n_classes: int, s: float = 30.0, m: float = 0.5, easy_margin: bool = False
    ) -> None:
        super().__init__()
        if in_features < 1 or n_classes < 1:
            raise MedalsError(f"ArcMarginProduct needs positive sizes, got {in_features} -> {n_classes}")
        self.in_features = in_features
        self.n_classes = n_classes
        self.s = float(s)
        self.m = float(m)
        self.easy_margin = easy_margin
        self.weight = nn.Parameter(torch.empty(n_classes, in_features))
        nn.init.xavier_uniform_(self.weight)
        self.cos_m = math.cos(self.m)
        self.sin_m = math.sin(self.m)
        self.th = math.cos(math.pi - self.m)
        self.mm = math.sin(math.pi - self.m) * self.m

    def cosine(self, embedding: Tensor) -> Tensor:
        """cos(theta) [B, n_classes] between the normalised embeddings and class weights."""
        return F.linear(F.normalize(embedding.float(), dim=1), F.normalize(self.weight.float(), dim=1))

    def forward(self, embedding: Tensor, target: Tensor | None = None) -> Tensor:
        cosine = self.cosine(embedding)
        if target is None:
            return cosine * self.s
        target = target.long().view(-1)
        if target.shape[0] != cosine.shape[0]:
            raise MedalsError(f"ArcFace target has {target.shape[0]} rows for {cosine.shape[0]} embeddings")
        sine = torch.sqrt((1.0 - cosine * cosine).clamp(0.0, 1.0))
        phi = cosine * self.cos_m - sine * self.sin_m  # cos(theta + m)
        if self.easy_margin:
            phi = torch.where(cosine > 0, phi, cosine)
        else:
            phi = torch.where(cosine > self.th, phi, cosine - self.mm)
        one_hot = F.one_hot(target, self.n_classes).to(cosine.dtype)
        return (one_hot * phi + (1.0 - one_hot) * cosine) * self.s


class EmbeddingNet(nn.Module):
    """timm backbone (num_classes=0, pooled features) -> Linear -> BatchNorm1d -> L2-normalised embedding.

    The backbone is built as the classifier's is (medals.models.weights): a pretrained 4-channel stem
    keeps the RGB filters and adds a copy of the red ones, and a local `weights` file (in place of the
    hub's) is loaded with the same key matching and first-conv adaptation.
    """

    def __init__(
        self,
        backbone: str,
        embedding_dim: int = 512,
        in_chans: int = 4,
        pretrained: bool = False,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        if not timm.is_model(backbone):
            raise MedalsError(f"backbone {backbone!r} is not a timm model name (see timm.list_models)")
        self.backbone = create_timm_backbone(backbone, pretrained and weights is None, in_chans)
        if weights is not None:
            load_local_weights(self.backbone, weights)
        self.num_features = int(self.backbone.num_features)
        self.embedding_dim = embedding_dim
        self.fc = nn.Linear(self.num_features, embedding_dim)
        self.bn = nn.BatchNorm1d(embedding_dim)

    def forward(self, image: Tensor) -> Tensor:
        return F.normalize(self.bn(self.fc(self.backbone(image))), dim=1)


class ArcFaceModel(nn.Module):
    """An EmbeddingNet and an ArcMarginProduct: forward(image, target=None) -> logits [B, n_classes].

    The margin is applied only when a target is given (training); ``embedding_net`` alone is what
    nearest-neighbour search uses afterwards.
    """

    def __init__(
        self,
        embedding_net: EmbeddingNet,
        n_classes: int,
        s: float = 30.0,
        m: float = 0.5,
        easy_margin: bool = False,
    ) -> None:
        super().__init__()
        self.embedding_net = embedding_net
        self.margin = ArcMarginProduct(int(embedding_net.embedding_dim), n_classes, s, m, easy_margin)

    def forward(self, image: Tensor, target: Tensor | None = None) -> Tensor:
        return self.margin(self.embedding_net(image), target)
