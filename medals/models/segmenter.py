"""Segmentation models from segmentation_models_pytorch with a timm or native smp encoder: one output
channel per mask class (sigmoid each; one channel for a binary mask)."""

from __future__ import annotations

from typing import Any

import segmentation_models_pytorch as smp
import timm
from torch import Tensor, nn

from medals.config import ModelConfig
from medals.errors import MedalsError

ARCHS: dict[str, type[nn.Module]] = {
    "unet": smp.Unet,
    "fpn": smp.FPN,
    "deeplabv3plus": smp.DeepLabV3Plus,
}


def smp_encoder_name(backbone: str) -> str:
    """The smp encoder name for `backbone`: a native smp encoder as is, any other timm model as "tu-<name>"."""
    if backbone in smp.encoders.get_encoder_names():
        return backbone
    timm_name = backbone.removeprefix("tu-")
    if timm.is_model(timm_name):
        return f"tu-{timm_name}"
    raise MedalsError(
        f"model.backbone {backbone!r} is neither a segmentation_models_pytorch encoder nor a timm model"
    )


class ClassificationHead(nn.Module):
    """Pneumothorax 2nd place's image-level head on the deepest encoder map: GAP, Linear(C, C), Linear(C, 1).

    Two linear layers with nothing between them, as the solution had them.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Linear(channels, channels)
        self.out = nn.Linear(channels, 1)

    def forward(self, features: Tensor) -> Tensor:
        return self.out(self.hidden(self.pool(features).flatten(1)))


class Segmenter(nn.Module):
    """Wraps an smp model; forward(image, meta=None) -> mask logits [B, classes, H, W] (meta is ignored).

    With cls_head, forward returns (mask logits, image logits [B, 1]): smp calls its
    classification_head on the deepest encoder features.
    """

    def __init__(
        self,
        arch: str,
        backbone: str,
        *,
        in_chans: int = 3,
        pretrained: bool = False,
        decoder: dict[str, Any] | None = None,
        cls_head: bool = False,
        classes: int = 1,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise MedalsError(f"model.arch {arch!r} is not a segmentation arch; known: {', '.join(ARCHS)}")
        self.encoder_name = smp_encoder_name(backbone)
        try:
            self.net = ARCHS[arch](
                encoder_name=self.encoder_name,
                encoder_weights="imagenet" if pretrained else None,
                in_channels=in_chans,
                classes=int(classes),
                **(decoder or {}),
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise MedalsError(
                f"cannot build {arch} with encoder {self.encoder_name!r} and model.decoder {decoder}: {exc}"
            ) from None
        if cls_head:
            self.net.classification_head = ClassificationHead(self.net.encoder.out_channels[-1])

    @property
    def has_cls_head(self) -> bool:
        return self.net.classification_head is not None

    @classmethod
    def from_config(cls, cfg: ModelConfig, classes: int = 1) -> Segmenter:
        return cls(
            cfg.arch,
            cfg.backbone,
            in_chans=cfg.in_chans,
            # A local weights file replaces the download, so never fetch when one is given.
            pretrained=cfg.pretrained and cfg.weights is None,
            decoder=cfg.decoder,
            cls_head=cfg.cls_head,
            classes=classes,
        )

    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder

    @property
    def is_timm_encoder(self) -> bool:
        """True for "tu-" encoders, whose timm model sits at `encoder.model` (features only)."""
        return self.encoder_name.startswith("tu-")

    def forward(self, image: Tensor, meta: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        return self.net(image)
