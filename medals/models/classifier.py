"""Image classifier: a timm backbone giving pooled features, then a head (linear, msd or meta)."""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
from torch import Tensor, nn

from medals.config import ModelConfig
from medals.errors import MedalsError
from medals.models.heads import LinearHead, MetaBranch, MultiSampleDropoutHead


class Classifier(nn.Module):
    """`backbone` (timm, num_classes=0) -> pooled features [B, num_features] -> `head` -> logits [B, K].

    With head "meta", `meta_branch` maps the meta features and its output is concatenated to the
    image features before a multi-sample-dropout head.
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        *,
        in_chans: int = 3,
        pretrained: bool = False,
        head: str = "linear",
        dropout: float = 0.0,
        msd_samples: int = 5,
        msd_dropout: float = 0.5,
        n_meta: int = 0,
        meta_hidden: Sequence[int] = (512, 128),
        meta_dropout: float = 0.3,
    ) -> None:
        super().__init__()
        # num_classes=0 makes timm return pooled features; the head is ours.
        self.backbone = timm.create_model(backbone, pretrained=pretrained, num_classes=0, in_chans=in_chans)
        self.num_features: int = int(self.backbone.num_features)
        self.head_kind = head
        self.meta_branch: MetaBranch | None = None
        if head == "linear":
            self.head: nn.Module = LinearHead(self.num_features, num_classes, dropout)
        elif head == "msd":
            self.head = MultiSampleDropoutHead(self.num_features, num_classes, msd_samples, msd_dropout)
        elif head == "meta":
            self.meta_branch = MetaBranch(n_meta, meta_hidden, meta_dropout)
            width = self.num_features + self.meta_branch.out_features
            self.head = MultiSampleDropoutHead(width, num_classes, msd_samples, msd_dropout)
        else:
            raise ValueError(f"unknown head {head!r}")

    @classmethod
    def from_config(cls, cfg: ModelConfig, num_classes: int, n_meta: int = 0) -> Classifier:
        return cls(
            cfg.backbone,
            num_classes,
            in_chans=cfg.in_chans,
            # A local weights file replaces the download, so never fetch when one is given.
            pretrained=cfg.pretrained and cfg.weights is None,
            head=cfg.head,
            dropout=cfg.dropout,
            msd_samples=cfg.msd_samples,
            msd_dropout=cfg.msd_dropout,
            n_meta=n_meta,
            meta_hidden=cfg.meta_hidden,
            meta_dropout=cfg.meta_dropout,
        )

    def features(self, image: Tensor) -> Tensor:
        """Pooled backbone features [B, num_features]."""
        return self.backbone(image)

    def forward(self, image: Tensor, meta: Tensor | None = None) -> Tensor:
        feats = self.backbone(image)
        if self.meta_branch is not None:
            if meta is None:
                raise MedalsError("model.head is 'meta' but the batch has no meta features")
            feats = torch.cat([feats, self.meta_branch(meta.to(feats.dtype))], dim=1)
        return self.head(feats)
