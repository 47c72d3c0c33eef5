"""The pieces the checks before work rely on: image channel counts from headers and their conversions,
the hub-cache lookup for pretrained weights, and the metric names a checkpoint rule may use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from medals.cli import main
from medals.config import recipe_from_dict
from medals.data.channels import fit_channels, source_channels
from medals.data.io import read_image
from medals.errors import MedalsError
from medals.post.metrics import TASK_METRICS, task_metrics


def _pixels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)


def _save(path, mode: str) -> None:
    rgb = Image.fromarray(_pixels())
    if mode == "P+transparency":
        rgb.convert("P").save(path, transparency=0)
    elif mode == "I;16":
        Image.fromarray((np.arange(256).reshape(16, 16) * 200).astype(np.uint16)).save(path)
    else:
        rgb.convert(mode).save(path)


@pytest.mark.parametrize(
    ("mode", "ext"),
    [
        ("1", "png"),
        ("L", "png"),
        ("P", "png"),
        ("P+transparency", "png"),
        ("LA", "png"),
        ("RGB", "png"),
        ("RGBA", "png"),
        ("I;16", "png"),
        ("CMYK", "jpg"),
        ("RGB", "jpg"),
    ],
)
def test_header_channels_agree_with_the_decoder(tmp_path, mode, ext):
    """The channel count prepare reads from a header is the one read_image returns after decoding."""
    path = tmp_path / f"x.{ext}"
    _save(path, mode)
    assert source_channels(str(path)) == read_image(str(path)).shape[2]


def test_tiff_and_npy_channels_from_headers(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "two.tif", np.zeros((20, 20, 2), np.uint16))
    planar = {"photometric": "minisblack", "planarconfig": "separate"}
    tifffile.imwrite(tmp_path / "planar.tif", np.zeros((4, 20, 20), np.uint8), **planar)
    np.save(tmp_path / "five.npy", np.zeros((20, 20, 5), np.uint8))
    for name in ("two.tif", "planar.tif", "five.npy"):
        assert source_channels(str(tmp_path / name)) == read_image(str(tmp_path / name)).shape[2]


def test_fit_channels_drops_alpha_and_repeats_gray():
    rgba = np.dstack([_pixels(), np.full((16, 16), 7, np.uint8)])
    assert np.array_equal(fit_channels(rgba, 3, "x"), rgba[:, :, :3])
    gray = _pixels()[:, :, :1]
    assert np.array_equal(fit_channels(gray, 3, "x"), np.repeat(gray, 3, axis=2))
    with pytest.raises(MedalsError, match="image x has 2 channels but model.in_chans is 3"):
        fit_channels(np.zeros((4, 4, 2), np.uint8), 3, "x")


def test_rgba_palette_and_16_bit_images_are_prepared_as_documented(tmp_path, monkeypatch, capsys):
    """prepare accepts RGBA (alpha dropped, said once), palette and 16-bit PNGs; the dataset then yields
    3-channel uint8 images: the RGB planes of the RGBA file, the 16-bit file scaled to the full 0..255."""
    from medals.data.dataset import ImageDataset

    (tmp_path / "train").mkdir()
    modes = ["RGBA", "P", "I;16", "RGB"] * 2
    for i, mode in enumerate(modes):
        _save(tmp_path / "train" / f"c{i}.png", mode)
    pd.DataFrame({"id": [f"c{i}" for i in range(8)], "label": ["a", "b"] * 4}).to_csv(
        tmp_path / "train.csv", index=False
    )
    tree = {
        "name": "t",
        "task": "binary",
        "run_dir": "run",
        "data": {"label_column": "label", "test_csv": None, "sample_submission": None},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(tree))
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", "r.yaml"]) == 0
    assert "2 images have 4 channels (RGBA): their alpha channel is dropped" in capsys.readouterr().out
    table = pd.read_parquet(tmp_path / "run" / "table.parquet")
    data = ImageDataset(table[table["split"] == "train"], "binary", 1, None, in_chans=3)
    images = [data._image(i) for i in range(8)]
    assert all(image.shape == (16, 16, 3) and image.dtype == np.uint8 for image in images)
    assert np.array_equal(images[0], _pixels())  # RGBA: its RGB planes, alpha dropped
    assert images[2].min() == 0 and images[2].max() == 255  # 16-bit: min-max scaled to 8 bits


def _cache_file(cache, repo: str, name: str) -> None:
    """A file as huggingface_hub stores it: models--org--name/snapshots/<commit>/<file>, refs/main."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / name).write_bytes(b"weights")


def test_pretrained_weights_in_the_hub_cache_need_no_network(tmp_path, monkeypatch):
    from medals.models.hub import check_pretrained

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(MedalsError, match=r"model\.pretrained: .*resnet10t.*127\.0\.0\.1 cannot be reached"):
        check_pretrained("resnet10t", "model.pretrained")
    _cache_file(tmp_path, "timm/resnet10t.c3_in1k", "model.safetensors")
    check_pretrained("resnet10t", "model.pretrained")  # cached: no network needed, no error
    # A native segmentation_models_pytorch encoder needs its config and its weights in the cache.
    with pytest.raises(MedalsError, match="submit.neighbours.pretrained: .*resnet34"):
        check_pretrained("resnet34", "submit.neighbours.pretrained", smp_native=True)


def test_task_metric_names_are_what_task_metrics_returns():
    rng = np.random.default_rng(0)
    truth = {
        "binary": np.array([0, 1, 0, 1]),
        "multiclass": np.array([0, 1, 2, 1]),
        "multilabel": (rng.random((4, 3)) > 0.5).astype(np.uint8),
        "segmentation": rng.random((4, 8, 8)) > 0.5,
    }
    probs = {
        "binary": rng.random((4, 1)),
        "multiclass": rng.dirichlet(np.ones(3), 4),
        "multilabel": rng.random((4, 3)),
        "segmentation": rng.random((4, 8, 8)),
    }
    for task, names in TASK_METRICS.items():
        assert tuple(task_metrics(task, truth[task], probs[task])) == names


def test_segmentation_loss_terms_and_subsets_are_checkpoint_metrics():
    from medals.train.metric_names import check_checkpoint_metrics, epoch_metric_names

    def recipe(metric: str):
        tree = {
            "name": "s",
            "task": "segmentation",
            "model": {"arch": "unet", "cls_head": True},
            "metrics": {"subsets": {"pos": "has_mask == 1"}},
            "train": {"checkpoints": [{"name": "best", "metric": metric, "mode": "min"}]},
        }
        return recipe_from_dict(tree, "s")

    names = epoch_metric_names(recipe("val_dice"))
    for name in ("dice", "dice_pos", "val_bce", "val_dice", "cls_auc"):
        assert name in names
    check_checkpoint_metrics(recipe("val_dice"))
    with pytest.raises(MedalsError, match=r"train.checkpoints\[0\].metric 'dice_neg' is not computed"):
        check_checkpoint_metrics(recipe("dice_neg"))  # no subset "neg"
