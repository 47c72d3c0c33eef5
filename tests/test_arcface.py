"""ArcFace margin, embedding net, metric-learning loop, nearest neighbours and label replacement (HPA1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from medals.data.dataset import make_loader
from medals.errors import MedalsError
from medals.models.arcface import ArcFaceModel, ArcMarginProduct, EmbeddingNet
from medals.train.metric_learning import embed, nearest_neighbours, replace_by_neighbour, train_arcface

# Every test here runs on one torch thread (see conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


def _margin_2d(s: float = 30.0, m: float = 0.5, easy_margin: bool = False) -> ArcMarginProduct:
    """Two classes in 2-d with weight rows e0 = (1, 0) and e1 = (0, 1)."""
    head = ArcMarginProduct(2, 2, s=s, m=m, easy_margin=easy_margin)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 5.0]]))  # norms do not matter
    return head


def test_margin_logits_match_hand_computation():
    s, m = 30.0, 0.5
    head = _margin_2d(s, m)
    # x = (3, 4) -> unit (0.6, 0.8): cos(theta_0) = 0.6, sin(theta_0) = 0.8; cos(theta_1) = 0.8.
    x = torch.tensor([[3.0, 4.0]])
    logits = head(x, torch.tensor([0]))
    # Target class 0: cos(theta_0 + m) = cos(theta_0) cos(m) - sin(theta_0) sin(m) = 0.6 cos m - 0.8 sin m.
    target_logit = s * (0.6 * math.cos(m) - 0.8 * math.sin(m))
    assert target_logit == pytest.approx(s * math.cos(math.acos(0.6) + m))
    expected = torch.tensor([[target_logit, s * 0.8]])  # class 1 keeps s * cos(theta_1)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)

    # Target class 1: cos(theta_1 + m) = 0.8 cos m - 0.6 sin m; class 0 unchanged.
    logits = head(x, torch.tensor([1]))
    expected = torch.tensor([[s * 0.6, s * (0.8 * math.cos(m) - 0.6 * math.sin(m))]])
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_margin_fallback_when_theta_plus_m_exceeds_pi():
    s, m = 30.0, 0.5
    head = _margin_2d(s, m)
    # x = (-0.96, 0.28): cos(theta_0) = -0.96 <= cos(pi - m) = -0.8776, so theta_0 + m > pi and the
    # target logit is cos(theta_0) - sin(pi - m) * m instead of the non-monotonic cos(theta_0 + m).
    x = torch.tensor([[-0.96, 0.28]])
    assert -0.96 <= math.cos(math.pi - m)
    logits = head(x, torch.tensor([0]))
    expected = torch.tensor([[s * (-0.96 - math.sin(math.pi - m) * m), s * 0.28]])
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    # easy_margin: no margin where cos(theta) <= 0.
    easy = _margin_2d(s, m, easy_margin=True)
    torch.testing.assert_close(easy(x, torch.tensor([0])), torch.tensor([[s * -0.96, s * 0.28]]))


def test_s_scaling_and_no_margin_without_target():
    x = torch.randn(5, 2)
    target = torch.tensor([0, 1, 1, 0, 1])
    one, thirty = _margin_2d(s=1.0), _margin_2d(s=30.0)
    torch.testing.assert_close(thirty(x, target), 30.0 * one(x, target))
    # Without a target: plain scaled cosines, which the target only lowers (m > 0) at the target class.
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.eye(2)
    torch.testing.assert_close(thirty(x), 30.0 * cos)
    with_margin = thirty(x, target)
    rows = torch.arange(5)
    assert torch.all(with_margin[rows, target] < thirty(x)[rows, target])
    torch.testing.assert_close(with_margin[rows, 1 - target], thirty(x)[rows, 1 - target])


class _Identities(Dataset):
    """24 generated 4-channel 32 px images of 3 identities: own channel colours and stripe direction."""

    def __init__(self, n_per: int = 8, size: int = 32, seed: int = 0):
        rng = np.random.default_rng(seed)
        colours = np.array([[0.9, 0.1, 0.1, 0.5], [0.1, 0.9, 0.2, 0.1], [0.2, 0.2, 0.9, 0.8]], np.float32)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        textures = [np.sin(xx / 2.0), np.sin(yy / 2.0), np.sin((xx + yy) / 1.5)]
        images, targets = [], []
        for identity in range(3):
            for _ in range(n_per):
                base = colours[identity][:, None, None] * (0.75 + 0.25 * textures[identity][None])
                noise = rng.normal(0.0, 0.05, size=(4, size, size)).astype(np.float32)
                images.append(base * rng.uniform(0.8, 1.2) + noise)
                targets.append(identity)
        self.images = torch.from_numpy(np.stack(images))
        self.targets = torch.tensor(targets, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "index": index, "target": self.targets[index]}


def _similarity_gap(emb: np.ndarray, ids: np.ndarray) -> tuple[float, float]:
    """(mean same-identity cosine, mean different-identity cosine), self-pairs left out."""
    sims = emb @ emb.T
    same = (ids[:, None] == ids[None, :]) & ~np.eye(len(ids), dtype=bool)
    return float(sims[same].mean()), float(sims[ids[:, None] != ids[None, :]].mean())


def test_trained_embedding_separates_identities():
    torch.manual_seed(0)
    data = _Identities()
    ids = data.targets.numpy()
    net = EmbeddingNet("resnet18", embedding_dim=32, in_chans=4, pretrained=False)
    model = ArcFaceModel(net, n_classes=3, s=30.0, m=0.5)
    same_before, diff_before = _similarity_gap(embed(net, make_loader(data, 8, shuffle=False), "cpu"), ids)

    history = train_arcface(
        model, make_loader(data, 8, shuffle=True, seed=0), epochs=6, lr=1e-3, device="cpu"
    )
    assert len(history) == 6 and all(np.isfinite(history))
    assert history[-1] < history[0]

    emb = embed(net, make_loader(data, 8, shuffle=True, seed=1), "cpu")  # shuffled: rows come back in order
    assert emb.shape == (24, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # An ArcFaceModel is embedded through its embedding_net.
    np.testing.assert_allclose(embed(model, make_loader(data, 8, shuffle=False), "cpu"), emb, atol=1e-5)

    same, different = _similarity_gap(emb, ids)
    assert same > different
    # Training widened the gap (a random net already groups the colours a little).
    assert same - different > (same_before - diff_before) + 0.05
    # Every image's nearest other image has its identity.
    sims = emb @ emb.T
    np.fill_diagonal(sims, -2.0)
    assert (ids[sims.argmax(axis=1)] == ids).all()


def test_train_arcface_rejects_multilabel_targets():
    model = ArcFaceModel(EmbeddingNet("resnet18", embedding_dim=8, in_chans=4), n_classes=3)
    batch = {"image": torch.randn(2, 4, 32, 32), "target": torch.zeros(2, 3)}
    with pytest.raises(MedalsError, match="integer identity"):
        train_arcface(model, [batch], epochs=1, lr=1e-3, device="cpu")


def test_nearest_neighbours_equals_brute_force():
    rng = np.random.default_rng(3)
    query = rng.normal(size=(50, 16)).astype(np.float32)
    reference = rng.normal(size=(37, 16)).astype(np.float32)
    index, cosine = nearest_neighbours(query, reference, block_size=7)
    qn = query / np.linalg.norm(query, axis=1, keepdims=True)
    rn = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    brute = qn @ rn.T
    np.testing.assert_array_equal(index, brute.argmax(axis=1))
    np.testing.assert_allclose(cosine, brute.max(axis=1), atol=1e-5)
    # A query equal to a reference row finds it with cosine 1.
    index, cosine = nearest_neighbours(reference[[5, 20]] * 3.0, reference)
    np.testing.assert_array_equal(index, [5, 20])
    np.testing.assert_allclose(cosine, 1.0, atol=1e-5)
    with pytest.raises(MedalsError):
        nearest_neighbours(query, reference[:, :8])


def test_replacement_only_above_threshold():
    pred = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0]], dtype=bool)
    neighbour_labels = np.array([[0, 1, 0], [0, 0, 1], [0, 1, 1]], dtype=bool)
    index = np.array([0, 1, 2, 2])
    cosine = np.array([0.9, 0.65, 0.3, 0.66])
    new, replaced = replace_by_neighbour(pred, neighbour_labels, index, cosine, threshold=0.65)
    np.testing.assert_array_equal(replaced, [True, False, False, True])
    np.testing.assert_array_equal(new, [[0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 1, 1]])
    assert new.dtype == bool and pred[0, 0]  # the input is not modified
    new, replaced = replace_by_neighbour(pred, neighbour_labels, index, cosine, threshold=0.95)
    assert not replaced.any() and np.array_equal(new, pred)
    with pytest.raises(MedalsError):
        replace_by_neighbour(pred, neighbour_labels[:, :2], index, cosine)


def test_embedding_stem_is_the_classifiers_for_the_same_pretrained_backbone(offline_timm):
    from medals.config import ModelConfig
    from medals.models.classifier import Classifier

    classifier = Classifier.from_config(ModelConfig(backbone="resnet18", in_chans=4, pretrained=True), 28)
    net = EmbeddingNet("resnet18", 16, in_chans=4, pretrained=True)
    stem, reference = net.backbone.conv1.weight, classifier.backbone.conv1.weight
    assert stem.shape[1] == 4
    assert torch.equal(stem, reference)
    assert torch.equal(stem[:, 3], stem[:, 0])  # the 4th channel: an unscaled copy of red, not timm's rule
    assert torch.equal(net.backbone.layer4[1].conv2.weight, classifier.backbone.layer4[1].conv2.weight)


def test_embedding_backbone_loads_a_local_weights_file_as_the_classifier_does(tmp_path):
    import timm

    from medals.config import recipe_from_dict
    from medals.models.factory import create_model

    torch.manual_seed(5)
    rgb = timm.create_model("resnet18", num_classes=10)  # an RGB checkpoint with its own classifier
    path = tmp_path / "resnet18.pth"
    torch.save(rgb.state_dict(), path)
    tree = {"name": "t", "task": "multilabel", "data": {"num_classes": 28}}
    tree["model"] = {"backbone": "resnet18", "in_chans": 4, "weights": str(path)}
    classifier = create_model(recipe_from_dict(tree, "t"), 28)
    net = EmbeddingNet("resnet18", 16, in_chans=4, weights=path)
    assert torch.equal(net.backbone.conv1.weight, classifier.backbone.conv1.weight)
    assert torch.equal(net.backbone.conv1.weight[:, :3], rgb.conv1.weight)
    assert torch.equal(net.backbone.layer2[0].bn1.running_var, rgb.layer2[0].bn1.running_var)
