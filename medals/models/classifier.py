"""Image classifier: a timm backbone, then a head on its pooled features (linear, msd, meta) or on its
feature map (pool_concat, attention)."""

from __future__ import annotations

from collections.abc import Sequence

import timm
import torch
from torch import Tensor, nn

from medals.config import ModelConfig
from medals.errors import MedalsError
from medals.models.heads import (
    AttentionHead,
    LinearHead,
    MetaBranch,
    MultiSampleDropoutHead,
    PoolConcatHead,
)
from medals.models.weights import create_timm_backbone

# Heads that read the unpooled feature map [B, F, H, W] (backbone made with global_pool="").
MAP_HEADS = ("pool_concat", "attention")


def add_stem_pool(backbone: nn.Module, name: str) -> None:
    """HPA1's "large" DenseNet: an extra MaxPool2d(2) right after the stem's max-pool (features.pool0).

    The pool has no weights, so state dicts and weight files are unchanged; every later map is halved.
    """
    pool0 = getattr(getattr(backbone, "features", None), "pool0", None)
    if not isinstance(backbone, timm.models.densenet.DenseNet) or pool0 is None:
        raise MedalsError(f"model.stem_pool is for densenet backbones, not {name!r}")
    backbone.features.pool0 = nn.Sequential(pool0, nn.MaxPool2d(kernel_size=2, stride=2))


class Classifier(nn.Module):
    """`backbone` (timm, num_classes=0) -> pooled features [B, num_features] -> `head` -> logits [B, K].

    With head "meta", `meta_branch` maps the meta features and its output is concatenated to the
    image features before a multi-sample-dropout head. Heads "pool_concat" and "attention" read the
    unpooled feature map instead. With aux_head, forward returns (logits, aux logits) in train and eval:
    the aux logits come from an attention head on the penultimate stage and only feed a loss term.
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
        stem_pool: bool = False,
        aux_head: bool = False,
        output_scale: bool = False,
    ) -> None:
        super().__init__()
        # num_classes=0 makes timm return pooled features (or, with global_pool="", the map); the head is ours.
        self.map_head = head in MAP_HEADS
        extra = {"global_pool": ""} if self.map_head else {}
        self.backbone = create_timm_backbone(backbone, pretrained, in_chans, **extra)
        if stem_pool:
            add_stem_pool(self.backbone, backbone)
        self.num_features: int = int(self.backbone.num_features)
        self.head_kind = head
        self.meta_branch: MetaBranch | None = None
        self.aux_head: AttentionHead | None = None
        if head == "linear":
            self.head: nn.Module = LinearHead(self.num_features, num_classes, dropout)
        elif head == "msd":
            self.head = MultiSampleDropoutHead(self.num_features, num_classes, msd_samples, msd_dropout)
        elif head == "meta":
            self.meta_branch = MetaBranch(n_meta, meta_hidden, meta_dropout)
            width = self.num_features + self.meta_branch.out_features
            self.head = MultiSampleDropoutHead(width, num_classes, msd_samples, msd_dropout)
        elif head == "pool_concat":
            self.head = PoolConcatHead(self.num_features, num_classes, dropout)
        elif head == "attention":
            self.head = AttentionHead(self.num_features, num_classes)
        else:
            raise ValueError(f"unknown head {head!r}")
        if aux_head:
            if head != "attention":
                raise MedalsError("model.aux_head needs model.head 'attention'")
            if not hasattr(self.backbone, "forward_intermediates"):
                raise MedalsError(f"model.aux_head: backbone {backbone!r} has no forward_intermediates")
            # The penultimate feature stage (inception_v3: Mixed_6e, as in the HPA3 solution).
            self.aux_head = AttentionHead(int(self.backbone.feature_info[-2]["num_chs"]), num_classes)

        # Regression and ordinal tasks: the head predicts the standardised target and forward returns
        # target_mean + target_std * it, so every prediction is in the target's units. The two buffers
        # are set from the fold's training targets (set_target_scale) and saved with the weights.
        self.output_scale = output_scale
        if output_scale:
            self.register_buffer("target_mean", torch.zeros(1))
            self.register_buffer("target_std", torch.ones(1))

    def set_target_scale(self, mean: float, std: float) -> None:
        if not self.output_scale:
            raise MedalsError("set_target_scale is for a classifier built with output_scale")
        self.target_mean.fill_(float(mean))
        self.target_std.fill_(float(std))

    @classmethod
    def from_config(
        cls, cfg: ModelConfig, num_classes: int, n_meta: int = 0, output_scale: bool = False
    ) -> Classifier:
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
            stem_pool=cfg.stem_pool,
            aux_head=cfg.aux_head,
            output_scale=output_scale,
        )

    def features(self, image: Tensor) -> Tensor:
        """Pooled backbone features [B, num_features] (the map's average for the map heads)."""
        if self.map_head:
            return self.backbone.forward_features(image).mean((2, 3))
        return self.backbone(image)

    def forward(self, image: Tensor, meta: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        out = self._logits(image, meta)
        if not self.output_scale:
            return out
        if isinstance(out, tuple):
            return self._unscale(out[0]), self._unscale(out[1])
        return self._unscale(out)

    def _unscale(self, z: Tensor) -> Tensor:
        # In float32 even under autocast: bf16 resolves 150 months only to the nearest 1.
        return self.target_mean + self.target_std * z.float()

    def _logits(self, image: Tensor, meta: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        if self.aux_head is not None:
            fmap, (penultimate, _) = self.backbone.forward_intermediates(image, indices=2)
            return self.head(fmap), self.aux_head(penultimate)
        if self.map_head:
            return self.head(self.backbone.forward_features(image))
        feats = self.backbone(image)
        if self.meta_branch is not None:
            if meta is None:
                raise MedalsError("model.head is 'meta' but the batch has no meta features")
            feats = torch.cat([feats, self.meta_branch(meta.to(feats.dtype))], dim=1)
        return self.head(feats)
