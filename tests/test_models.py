"""Models: output shapes per head and arch, msd/meta heads, backbone checks, local weight loading."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from medals.config import Recipe
from medals.errors import MedalsError
from medals.models.factory import create_model
from medals.models.heads import MetaBranch, MultiSampleDropoutHead
from medals.models.weights import copy_to_features, load_local_weights, read_state_dict

torch.set_num_threads(2)


def recipe(task: str = "multiclass", **model) -> Recipe:
    return Recipe(name="t", task=task, model=model)


def images(c: int, size: int = 32, b: int = 2) -> torch.Tensor:
    return torch.randn(b, c, size, size, generator=torch.Generator().manual_seed(0))


# ---- classifier heads -----------------------------------------------------------------------


@pytest.mark.parametrize(("head", "in_chans"), [("linear", 4), ("msd", 1)])
def test_classifier_shapes(head, in_chans):
    model = create_model(
        recipe(backbone="resnet18", head=head, in_chans=in_chans, dropout=0.2), num_classes=5
    )
    assert model.num_features == 512
    assert model(images(in_chans)).shape == (2, 5)
    model.eval()
    assert model.features(images(in_chans)).shape == (2, 512)


def test_meta_head_shapes_and_wiring():
    model = create_model(
        recipe(backbone="resnet18", head="meta", meta_hidden=[16, 8], msd_samples=3), 4, n_meta=6
    )
    meta = torch.randn(2, 6)
    assert model(images(3), meta).shape == (2, 4)
    assert model.head.fc.in_features == 512 + 8
    model.eval()
    # The meta features reach the logits.
    assert not torch.allclose(model(images(3), meta), model(images(3), meta + 1.0))
    with pytest.raises(MedalsError, match="meta"):
        model(images(3))


def test_meta_head_without_meta_features_is_an_error():
    with pytest.raises(MedalsError, match="model.head"):
        create_model(recipe(backbone="resnet18", head="meta"), 2, n_meta=0)


def test_msd_head_eval_is_the_linear_layer():
    head = MultiSampleDropoutHead(8, 3, samples=4, p=0.5)
    assert sum(isinstance(m, nn.Linear) for m in head.modules()) == 1
    x = torch.randn(5, 8)
    head.eval()
    torch.testing.assert_close(head(x), nn.functional.linear(x, head.fc.weight, head.fc.bias))
    head.train()
    torch.manual_seed(0)
    train_out = head(x)
    assert not torch.allclose(train_out, head.fc(x))
    # Training output = mean of the shared linear over 4 independent dropout masks.
    torch.manual_seed(0)
    manual = torch.stack([head.fc(nn.functional.dropout(x, 0.5)) for _ in range(4)]).mean(0)
    torch.testing.assert_close(train_out, manual)


def test_meta_branch_layers_and_shapes():
    branch = MetaBranch(7, [16, 8], dropout=0.3)
    kinds = [type(m) for m in branch.net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.SiLU, nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.SiLU]
    assert branch(torch.randn(4, 7)).shape == (4, 8)
    assert branch.out_features == 8
    one = MetaBranch(3, [5])
    assert [type(m) for m in one.net] == [nn.Linear, nn.BatchNorm1d, nn.SiLU]


def test_unknown_backbone_names_the_key():
    with pytest.raises(MedalsError, match=r"model\.backbone 'resnet_nope'"):
        create_model(recipe(backbone="resnet_nope"), 2)
    with pytest.raises(MedalsError, match=r"model\.backbone 'resnet_nope'"):
        create_model(recipe("segmentation", arch="unet", backbone="resnet_nope"), 1)


# ---- segmentation ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["unet", "fpn", "deeplabv3plus"])
@pytest.mark.parametrize(("backbone", "in_chans"), [("resnet18", 4), ("resnet10t", 1)])
def test_segmenter_shapes(arch, backbone, in_chans):
    model = create_model(recipe("segmentation", arch=arch, backbone=backbone, in_chans=in_chans), 1)
    # resnet18 is a native smp encoder; resnet10t only exists in timm, so it goes through "tu-".
    assert model.encoder_name == ("resnet18" if backbone == "resnet18" else "tu-resnet10t")
    out = model(images(in_chans, size=64), meta=torch.randn(2, 3))
    assert out.shape == (2, 1, 64, 64)


def test_segmenter_decoder_kwargs():
    model = create_model(
        recipe(
            "segmentation", arch="unet", backbone="resnet10t", decoder={"decoder_channels": [32, 16, 8, 8, 4]}
        ),
        1,
    )
    assert model.net.segmentation_head[0].in_channels == 4
    with pytest.raises(MedalsError, match="model.decoder"):
        create_model(
            recipe("segmentation", arch="unet", backbone="resnet10t", decoder={"decoder_chanels": 3}), 1
        )


# ---- local weights --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    """A full resnet18 (with a 10-class fc) saved the way training scripts do: wrapped, DataParallel keys."""
    torch.manual_seed(1)
    full = timm.create_model("resnet18", num_classes=10).eval()
    with torch.no_grad():  # non-trivial BN statistics, so loading them shows in the outputs
        for m in full.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("w") / "resnet18.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in full.state_dict().items()}}, path)
    return full, path


def pooled(full: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return full.forward_head(full.forward_features(x), pre_logits=True)


def test_weights_by_name_round_trip(resnet_file):
    full, path = resnet_file
    model = create_model(recipe(backbone="resnet18", weights=str(path)), 3).eval()
    x = images(3)
    torch.testing.assert_close(model.features(x), pooled(full, x))
    random_init = create_model(recipe(backbone="resnet18"), 3).eval()
    assert not torch.allclose(random_init.features(x), pooled(full, x))
    # init_weights=False: the file is not read (rebuilding a model before loading its checkpoint).
    bare = create_model(recipe(backbone="resnet18", weights="/nowhere/absent.pth"), 3, init_weights=False)
    assert not torch.equal(bare.backbone.conv1.weight, full.conv1.weight)


def test_weights_by_position_round_trip(resnet_file, tmp_path):
    full, _ = resnet_file
    # Other names, same order: like an efficientnet_pytorch checkpoint for a timm model.
    renamed = {
        (f"_{k}" if k.startswith("fc.") else f"net{i}.{k.rsplit('.', 1)[1]}"): v
        for i, (k, v) in enumerate(full.state_dict().items())
    }
    path = tmp_path / "renamed.pth"
    torch.save(renamed, path)
    model = create_model(recipe(backbone="resnet18", weights=str(path), weights_mapping="position"), 3).eval()
    x = images(3)
    torch.testing.assert_close(model.features(x), pooled(full, x))
    with pytest.raises(MedalsError, match=r"renamed\.pth.*'net0\.weight'"):
        create_model(recipe(backbone="resnet18", weights=str(path), weights_mapping="name"), 3)


def test_weights_mismatch_errors(resnet_file, tmp_path):
    _, path = resnet_file
    # resnet18 tensors into resnet34: the pairs diverge at layer1.2 (resnet34 has 3 blocks there).
    with pytest.raises(MedalsError, match=r"resnet18\.pth.*layer"):
        create_model(recipe(backbone="resnet34", weights=str(path), weights_mapping="position"), 3)
    with pytest.raises(MedalsError, match=r"resnet18\.pth.*'layer1\.2\.conv1\.weight'.*missing"):
        create_model(recipe(backbone="resnet34", weights=str(path)), 3)
    state = read_state_dict(path)
    del state["layer4.1.bn2.running_var"]
    short = tmp_path / "short.pth"
    torch.save(state, short)
    # A tensor missing mid-way: the first pair that no longer fits is named.
    with pytest.raises(
        MedalsError,
        match=r"short\.pth: tensor 'layer4\.1\.bn2\.num_batches_tracked'.*'layer4\.1\.bn2\.running_var'",
    ):
        create_model(recipe(backbone="resnet18", weights=str(short), weights_mapping="position"), 3)
    # A tensor missing at the end: every pair fits, the count does not.
    state = read_state_dict(path)
    del state["layer4.1.bn2.num_batches_tracked"]
    torch.save(state, short)
    with pytest.raises(
        MedalsError, match=r"short\.pth.*first unmatched: model key 'layer4\.1\.bn2\.num_batches_tracked'"
    ):
        create_model(recipe(backbone="resnet18", weights=str(short), weights_mapping="position"), 3)
    with pytest.raises(MedalsError, match="does not exist"):
        create_model(recipe(backbone="resnet18", weights=str(tmp_path / "absent.pth")), 3)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(MedalsError, match="junk.pth"):
        load_local_weights(timm.create_model("resnet18", num_classes=0), tmp_path / "junk.pth")


@pytest.mark.parametrize("mapping", ["name", "position"])
def test_four_channel_adaptation_copies_red(resnet_file, mapping):
    full, path = resnet_file
    rgb = full.conv1.weight.detach()
    model = create_model(
        recipe(backbone="resnet18", in_chans=4, weights=str(path), weights_mapping=mapping), 3
    )
    w = model.backbone.conv1.weight.detach()
    assert w.shape == (64, 4, 7, 7)
    torch.testing.assert_close(w[:, :3], rgb)
    torch.testing.assert_close(w[:, 3], rgb[:, 0])
    torch.testing.assert_close(model.backbone.layer1[0].conv1.weight, full.layer1[0].conv1.weight)


def test_one_channel_adaptation_sums_rgb(resnet_file):
    full, path = resnet_file
    model = create_model(recipe(backbone="resnet18", in_chans=1, weights=str(path)), 3)
    torch.testing.assert_close(model.backbone.conv1.weight, full.conv1.weight.sum(1, keepdim=True))


def test_segmentation_encoder_weights(resnet_file, tmp_path):
    full, path = resnet_file
    native = create_model(recipe("segmentation", arch="unet", backbone="resnet18", weights=str(path)), 1)
    torch.testing.assert_close(native.encoder.layer4[1].bn2.running_var, full.layer4[1].bn2.running_var)
    # A timm-only encoder ("tu-"): features-only model, flattened names, 4 input channels.
    src = timm.create_model("resnet10t", num_classes=7)
    tu_path = tmp_path / "resnet10t.pth"
    torch.save(src.state_dict(), tu_path)
    seg = create_model(
        recipe("segmentation", arch="fpn", backbone="resnet10t", in_chans=4, weights=str(tu_path)), 1
    )
    enc = seg.encoder.model
    stem = src.state_dict()["conv1.0.weight"]
    torch.testing.assert_close(enc.state_dict()["conv1.0.weight"][:, 3], stem[:, 0])
    torch.testing.assert_close(enc.state_dict()["layer3.0.conv2.weight"], src.layer3[0].conv2.weight)


def test_copy_to_features_matches_flattened_names():
    # timm's FeatureListNet renames convnext's "stem.0" to "stem_0" and drops the head norm.
    full = timm.create_model("convnext_atto", num_classes=0)
    feats = timm.create_model("convnext_atto", features_only=True)
    assert "stem_0.weight" in feats.state_dict()
    assert copy_to_features(full, feats) == len(feats.state_dict())
    torch.testing.assert_close(feats.state_dict()["stem_0.weight"], full.stem[0].weight)
    torch.testing.assert_close(
        feats.stages_3.blocks[1].mlp.fc2.weight, full.stages[3].blocks[1].mlp.fc2.weight
    )


def test_pretrained_four_channel_stem_keeps_rgb_and_an_unscaled_red_copy(offline_timm):
    from medals.models.weights import create_timm_backbone

    rgb = offline_timm("resnet18", pretrained=True, num_classes=0, in_chans=3)
    four = create_timm_backbone("resnet18", pretrained=True, in_chans=4)
    weight, reference = four.conv1.weight.detach(), rgb.conv1.weight.detach()
    assert weight.shape[1] == 4
    assert torch.equal(weight[:, :3], reference)  # RGB filters as they are
    assert torch.equal(weight[:, 3], reference[:, 0])  # yellow: an unscaled copy of red
    assert torch.equal(four.layer1[0].conv1.weight, rgb.layer1[0].conv1.weight)
