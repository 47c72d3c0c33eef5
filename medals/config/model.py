"""The `model` section: backbone, head and decoder of the network."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt

from medals.config.base import Strict


class ModelConfig(Strict):
    arch: Literal["classifier", "unet", "fpn", "deeplabv3plus"] = "classifier"
    backbone: str = "resnet18"  # timm name (classifier and segmentation encoder)
    pretrained: bool = False
    weights: str | None = None  # local weights file for the backbone
    weights_mapping: Literal["name", "position"] = "name"
    in_chans: int = Field(3, ge=1)
    # pool_concat (HPA1: concat(avg, max) pool, BN, Dropout(model.dropout), Linear(2F->F), ReLU, BN, Dropout,
    # Linear) and attention (HPA3: per-class spatial attention) work on the backbone's unpooled feature map.
    head: Literal["linear", "msd", "meta", "pool_concat", "attention"] = "linear"
    dropout: float = Field(0.0, ge=0, lt=1)
    msd_samples: int = Field(5, ge=1)
    msd_dropout: float = Field(0.5, ge=0, lt=1)
    meta_hidden: list[PositiveInt] = Field(default_factory=lambda: [512, 128])
    meta_dropout: float = Field(0.3, ge=0, lt=1)
    decoder: dict[str, Any] = Field(default_factory=dict)  # extra keyword arguments for the smp model
    # Segmentation: an image-level "is anything there" logit from the deepest encoder map, trained by
    # loss terms with output: cls and used by submit.gate_threshold.
    cls_head: bool = False
    # HPA1 "large" DenseNet: an extra 2x2 max-pool after the stem (densenet backbones only).
    stem_pool: bool = False
    # HPA3 InceptionV3: a second per-class attention head on the penultimate backbone stage; its logits are
    # the model's second output, trained by loss terms with output: aux (HPA3 weight 0.4), unused in predictions.
    aux_head: bool = False
