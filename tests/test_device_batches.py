"""The GPU data path (bytes read by workers, decode + augmentation on the device), run on CPU tensors."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from medals.config import Recipe
from medals.data.dataset import make_loader, recipe_dataset
from medals.data.device_batches import EncodedDataset, collate_encoded, recipe_device_data
from medals.errors import MedalsError
from medals.runtime.settings import resolve_runtime
from medals.train.loop import train_fold

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def _photo(rng: np.random.Generator, side: int) -> np.ndarray:
    """A smooth colour field with a few blobs: JPEG-friendly like a real photograph."""
    small = rng.integers(0, 255, size=(6, 6, 3)).astype(np.uint8)
    image = cv2.resize(small, (side, side), interpolation=cv2.INTER_CUBIC)
    for _ in range(3):
        centre = tuple(int(v) for v in rng.integers(0, side, size=2))
        cv2.circle(image, centre, int(side // 6), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return image


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Twelve 48 px photographs stored as JPEG, PNG and npy (same pixels), with masks."""
    root = tmp_path_factory.mktemp("device")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        rgb = _photo(rng, 48)
        jpeg = root / f"im{i}.jpg"
        cv2.imwrite(str(jpeg), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        decoded = cv2.imread(str(jpeg))[:, :, ::-1]  # what the CPU path sees
        np.save(root / f"im{i}.npy", np.ascontiguousarray(decoded))
        cv2.imwrite(str(root / f"im{i}.png"), decoded[:, :, ::-1])
        mask = np.zeros((48, 48), np.uint8)
        mask[5 + i : 20 + i, 2:12] = 1  # a bar on the left: flips must move it
        cv2.imwrite(str(root / f"m{i}.png"), mask)
        rows.append({"id": f"im{i}", "label": i % 3, "fold": i % 2, "stem": str(root / f"im{i}")})
    table = pd.DataFrame(rows)
    table["mask_path"] = [str(root / f"m{i}.png") for i in range(12)]
    table["height"] = table["width"] = 48
    return table


def _table(files: pd.DataFrame, ext: str) -> pd.DataFrame:
    table = files.copy()
    table["path"] = table["stem"] + ext
    return table.drop(columns="stem")


def _recipe(task: str = "multiclass", augment=None, **train) -> Recipe:
    model = {"backbone": "test_resnet"}
    if task == "segmentation":
        model = {"arch": "unet", "backbone": "test_resnet", "decoder": {"decoder_channels": [16, 8, 8, 8, 8]}}
    settings = {"epochs": 1, "batch_size": 4, "image_size": 32, "augment": augment or [], "progress": False}
    settings.update(train)
    data = {"classes": ["a", "b", "c"]} if task == "multiclass" else {}
    return Recipe.model_validate(
        {"name": "dev", "task": task, "data": data, "model": model, "train": settings}
    )


def _device_batches(recipe, table, train: bool, seed: int = 0):
    classes = 1 if recipe.task == "segmentation" else 3  # segmentation: the mask channels
    dataset, batcher = recipe_device_data(recipe, table, classes, train, CPU, channels_last=False)
    loader = make_loader(dataset, 4, False, 0, seed, collate_fn=dataset.collate_fn)
    generator = torch.Generator().manual_seed(seed)
    return [batcher(batch, generator) for batch in loader]


def _cpu_batches(recipe, table, train: bool):
    loader = make_loader(recipe_dataset(recipe, table, 3, train=train), 4, False, 0, 0)
    return list(loader)


@pytest.mark.parametrize("ext", [".jpg", ".npy", ".png"])
def test_validation_batches_match_the_cpu_path(files, ext):
    # No augmentation: decode (or read), resize 48 -> 32 and normalise must give the CPU path's tensors.
    recipe, table = _recipe(), _table(files, ext)
    device = _device_batches(recipe, table, train=False)
    cpu = _cpu_batches(recipe, table, train=False)
    for got, want in zip(device, cpu, strict=True):
        assert got["image"].shape == want["image"].shape == (4, 3, 32, 32)
        assert torch.equal(got["target"], want["target"]) and torch.equal(got["index"], want["index"])
        # One uint8 level is 1/255/0.225 ~ 0.017 after ImageNet normalisation: the paths agree to about that.
        diff = (got["image"] - want["image"]).abs()
        assert diff.mean() < 0.01 and diff.max() < 0.12


def test_jpeg_bytes_are_decoded_like_opencv(files):
    table = _table(files, ".jpg")
    dataset = EncodedDataset(table, "multiclass", 3, in_chans=3)
    item = dataset[0]
    assert item["jpeg"].dtype == torch.uint8 and item["jpeg"].ndim == 1  # bytes, not pixels
    batcher = recipe_device_data(_recipe(), table, 3, False, CPU, channels_last=False)[1]
    decoded = batcher._decode(collate_encoded([item]))[0].permute(1, 2, 0).numpy().astype(int)
    opencv = cv2.imread(table["path"][0])[:, :, ::-1].astype(int)
    assert np.abs(decoded - opencv).mean() < 1.0


def test_masks_follow_the_geometry(files):
    recipe = _recipe("segmentation", augment=[{"name": "HorizontalFlip", "p": 1.0}], image_size=48)
    table = _table(files, ".jpg")
    batch = _device_batches(recipe, table, train=True)[0]
    mask = batch["mask"]
    assert mask.shape == (4, 1, 48, 48) and set(mask.unique().tolist()) == {0.0, 1.0}
    # The bar drawn in columns 2..11 is now in columns 36..45, rows unchanged.
    for k in range(4):
        columns = torch.nonzero(mask[k, 0].sum(0)).flatten()
        rows = torch.nonzero(mask[k, 0].sum(1)).flatten()
        assert columns.min() == 36 and columns.max() == 45
        assert rows.min() == 5 + k and rows.max() == 19 + k
    assert batch["target"].tolist() == [1.0] * 4


def test_the_generator_repeats_the_augmentation(files):
    augment = [{"name": "Affine", "rotate": [-30, 30], "p": 1.0}, {"name": "GaussNoise", "p": 0.5}]
    recipe, table = _recipe(augment=augment), _table(files, ".npy")
    first = _device_batches(recipe, table, train=True, seed=5)
    again = _device_batches(recipe, table, train=True, seed=5)
    other = _device_batches(recipe, table, train=True, seed=6)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0]["image"], other[0]["image"])


def test_mixed_sizes_are_brought_to_the_training_size(files, tmp_path):
    table = _table(files, ".npy").head(4).copy()
    big = np.zeros((64, 80, 3), np.uint8)
    np.save(tmp_path / "big.npy", big)
    table.loc[0, "path"] = str(tmp_path / "big.npy")
    batch = _device_batches(_recipe(), table, train=False)[0]
    assert batch["image"].shape == (4, 3, 32, 32)


def test_gray_jpegs_feed_a_three_channel_model(files, tmp_path):
    table = _table(files, ".jpg").head(4).copy()
    gray = cv2.cvtColor(cv2.imread(table["path"][0]), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "gray.jpg"), gray)
    table.loc[0, "path"] = str(tmp_path / "gray.jpg")
    batch = _device_batches(_recipe(), table, train=False)[0]
    image = batch["image"][0]
    # The grey value repeated over RGB: the channels differ only by ImageNet's per-channel statistics.
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(3, 1, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(3, 1, 1)
    raw = image * std + mean
    assert torch.allclose(raw[0], raw[1], atol=1e-5) and torch.allclose(raw[1], raw[2], atol=1e-5)


def test_a_corrupt_jpeg_is_named(files, tmp_path):
    table = _table(files, ".jpg").head(4).copy()
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    table.loc[2, "path"] = str(tmp_path / "bad.jpg")
    with pytest.raises(MedalsError, match="dataset rows"):
        _device_batches(_recipe(), table, train=False)


def test_runtime_defaults_per_device():
    cpu = resolve_runtime(_recipe(), "cpu")
    assert (cpu.amp_dtype, cpu.use_scaler, cpu.channels_last, cpu.compile, cpu.data_path) == (
        None,
        False,
        False,
        False,
        "cpu",
    )
    forced = resolve_runtime(_recipe(data_path="gpu", channels_last=True, compile=False), "cpu")
    assert forced.data_path == "gpu" and forced.channels_last


def test_an_op_without_a_gpu_version_is_refused_when_asked_for():
    recipe = _recipe(augment=[{"name": "ToGray", "p": 0.5}], data_path="gpu")
    with pytest.raises(MedalsError, match="train.data_path is 'gpu'"):
        resolve_runtime(recipe, "cpu")
    # a setting the device op lacks names the op that has it
    wrap = _recipe(augment=[{"name": "Affine", "rotate": [-5, 5], "border_mode": 3}], data_path="gpu")
    with pytest.raises(MedalsError, match=r"Affine: border_mode 3 \(supported: 0 constant"):
        resolve_runtime(wrap, "cpu")


@pytest.mark.parametrize("task", ["multiclass", "segmentation"])
def test_a_fold_trains_on_the_gpu_data_path(files, tmp_path, task):
    augment = [{"name": "HorizontalFlip", "p": 0.5}, {"name": "RandomBrightnessContrast", "p": 0.5}]
    recipe = _recipe(task, augment=augment, epochs=2, data_path="gpu", lr=3e-3, optimizer="adam")
    table = _table(files, ".jpg")
    if task == "segmentation":
        table = table.drop(columns="label")
    result = train_fold(recipe, table, 0, tmp_path / "fold0", num_classes=3 if task == "multiclass" else None)
    log = pd.read_csv(tmp_path / "fold0" / "log.csv")
    assert log["epoch"].tolist() == [1, 2]
    assert all(math.isfinite(v) for v in log["train_loss"]) and math.isfinite(result["val_loss"])
    # Resuming a finished fold is a no-op that returns the stored metrics.
    assert train_fold(recipe, table, 0, tmp_path / "fold0", num_classes=3 if task == "multiclass" else None)[
        "val_loss"
    ] == pytest.approx(result["val_loss"])


def test_auto_picks_the_gpu_path_on_cuda_unless_an_op_lacks_one(capsys):
    from medals.runtime.settings import resolve_data_path

    cuda = torch.device("cuda")  # only its type is read: no GPU is needed
    assert resolve_data_path(_recipe(augment=[{"name": "HorizontalFlip", "p": 0.5}]), cuda) == "gpu"
    assert resolve_data_path(_recipe(augment=[{"name": "HorizontalFlip", "p": 0.5}]), CPU) == "cpu"
    lacking = _recipe(augment=[{"name": "ToGray", "p": 0.5}])
    assert resolve_data_path(lacking, cuda) == "cpu"
    assert resolve_data_path(lacking, cuda) == "cpu"
    out = capsys.readouterr().out
    assert out.count("data path: cpu (augmentation op 'ToGray' has no GPU version") == 1  # said once


def test_the_cpu_data_path_leaves_row_indices_on_the_host():
    # predict places each batch's probabilities by batch["index"] with numpy: on CUDA a moved index
    # cannot be read there. "meta" stands for a device whose tensors the host cannot read.
    from medals.infer.batches import to_device

    batch = {
        "image": torch.zeros(2, 3, 4, 4),
        "target": torch.zeros(2),
        "index": torch.tensor([5, 2]),
        "id": ["a", "b"],
    }
    moved = to_device(batch, torch.device("meta"), channels_last=True)
    assert moved["image"].device.type == "meta" and moved["target"].device.type == "meta"
    assert moved["image"].is_contiguous(memory_format=torch.channels_last)
    assert moved["index"] is batch["index"] and moved["id"] == ["a", "b"]
    assert np.asarray(moved["index"]).tolist() == [5, 2]
