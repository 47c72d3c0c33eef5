"""Binary segmentation models from segmentation_models_pytorch with a timm or native smp encoder."""

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


class Segmenter(nn.Module):
    """Wraps an smp model; forward(image, meta=None) -> mask logits [B, 1, H, W] (meta is ignored)."""

    def __init__(
        self,
        arch: str,
        backbone: str,
        *,
        in_chans: int = 3,
        pretrained: bool = False,
        decoder: dict[str, Any] | None = None,
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
                classes=1,
                **(decoder or {}),
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise MedalsError(
                f"cannot build {arch} with encoder {self.encoder_name!r} and model.decoder {decoder}: {exc}"
            ) from None

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> Segmenter:
        return cls(
            cfg.arch,
            cfg.backbone,
            in_chans=cfg.in_chans,
            # A local weights file replaces the download, so never fetch when one is given.
            pretrained=cfg.pretrained and cfg.weights is None,
            decoder=cfg.decoder,
        )

    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder

    @property
    def is_timm_encoder(self) -> bool:
        """True for "tu-" encoders, whose timm model sits at `encoder.model` (features only)."""
        return self.encoder_name.startswith("tu-")

    def forward(self, image: Tensor, meta: Tensor | None = None) -> Tensor:
        return self.net(image)
