"""What a network returns: the main logits, and the image-level logit of a classification head if it has one."""

from __future__ import annotations

from torch import Tensor


def split_outputs(outputs: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor | None]:
    """(main logits, second output or None) from a model's forward output.

    The second output is a segmentation model's image-level cls logit (model.cls_head) or a
    classifier's auxiliary-head logits (model.aux_head); only the former is a prediction.
    """
    if isinstance(outputs, tuple):
        return outputs[0], outputs[1]
    return outputs, None
