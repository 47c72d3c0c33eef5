"""Competition-specific pieces (data adapters) that recipes name; importing registers them."""

from medals.data.competitions import (
    hpa,  # noqa: F401  (registers "hpa")
    melanoma,  # noqa: F401  (registers "melanoma_isic")
    pneumothorax,  # noqa: F401  (registers "siim_acr")
)
