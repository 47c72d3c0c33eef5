"""The SIIM-ACR pneumothorax 2nd-place recipe set: its recipes against SPEC PTX and seed 004, the
per-epoch schedules, the siim_acr adapter on the nested DICOM layout, and an end-to-end run of the real
recipes (scaled down) on a miniature competition whose masks are real SIIM RLE rows."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import pytest
import segmentation_models_pytorch as smp
import torch
import yaml

from medals.augment.cpu import build_transform
from medals.cli import main
from medals.config import load_recipe, make_plan
from medals.data.adapters import run_adapter
from medals.data.io import read_image
from medals.data.rle import decode, decode_many, encode
from medals.data.table import build_table
from medals.demo.chest import chest_case
from medals.errors import MedalsError
from medals.files import read_json
from medals.models.segmenter import Segmenter
from medals.train.schedules import epoch_table
from tests.dicom_files import write_dicom

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "pneumothorax_2nd"
SIZE = 1024  # the competition's image and mask size

# Seed 004's training commands: recipe name -> (arch, smp encoder, image size, train batch, cls head).
SEGMENTATION = {
    "seg_unet_se50_1024": ("unet", "se_resnext50_32x4d", 1024, 4, True),
    "seg_unet_se101_1024": ("unet", "se_resnext101_32x4d", 1024, 4, True),
    "seg_unet_ef3_1024": ("unet", "efficientnet-b3", 1024, 6, False),
    "seg_unet_ef5_768": ("unet", "efficientnet-b5", 768, 4, False),
    "seg_deeplab_se50_1024": ("deeplabv3plus", "se_resnext50_32x4d", 1024, 4, False),
}
# Classification (gate) runs: recipe name -> (image size, train batch, smp encoder, CheXpert rows added).
CLASSIFICATION = {
    "cls_unet_se50_768": (768, 16, "se_resnext50_32x4d", False),
    "cls_unet_se50_1024": (1024, 8, "se_resnext50_32x4d", False),
    "cls_unet_ef3_1024": (1024, 16, "efficientnet-b3", False),
    "cls_unet_se50_768_chexpert": (768, 16, "se_resnext50_32x4d", True),
}
CHEXPERT_CSV = "chexpert/chexpert-pseudo.csv"  # where the CheXpert recipe expects the user's pseudo labels


def recipe_file(name: str) -> Path:
    return RECIPES / f"{name}.yaml"


# ---- (a) the recipes ------------------------------------------------------------------------------


def test_folder_is_the_ensemble_of_five_models_gated_by_four():
    plan = make_plan(RECIPES)
    assert plan.ensemble is not None and plan.ensemble.method == "mean"
    assert [p.stem for p in plan.recipes] == list(SEGMENTATION)
    assert plan.ensemble.weights is None
    gate = plan.ensemble.gate
    assert gate is not None and gate.members == [f"{n}.yaml" for n in CLASSIFICATION]
    assert gate.folds == 5 and gate.threshold == 0.65
    # every file of the folder is a member, a gate member, or the ensemble file itself
    files = {p.name for p in RECIPES.glob("*.yaml")}
    assert files == {f"{n}.yaml" for n in [*SEGMENTATION, *CLASSIFICATION]} | {"ensemble.yaml"}


def test_plan_trains_the_gate_members_too():
    # `medals run ensemble.yaml` trains plan.all_recipes: the classification models must be among them.
    plan = make_plan(RECIPES / "ensemble.yaml")
    assert [p.stem for p in plan.gate_recipes] == list(CLASSIFICATION)
    assert [p.stem for p in plan.all_recipes] == [*SEGMENTATION, *CLASSIFICATION]


def _common(recipe, name: str, size: int, batch: int) -> None:
    data = recipe.data
    assert recipe.name == name and recipe.task == "segmentation"
    assert data.adapter == "siim_acr"
    assert data.id_column == "ImageId" and data.mask_column == "EncodedPixels"
    assert data.rle_format == "siim"
    assert data.image_path == data.test_image_path == "{dicom_path}"
    assert data.cache_format == "png" and data.cache_size == size == recipe.train.image_size
    assert data.sample_submission and data.sample_submission.endswith(".csv")
    assert recipe.model.in_chans == 3 and recipe.model.pretrained
    assert recipe.model.backbone in smp.encoders.get_encoder_names()  # native smp encoders
    train = recipe.train
    assert train.optimizer == "adam" and train.lr == 5e-4 and train.weight_decay == 0
    assert train.batch_size == batch
    assert train.schedule.name == "formula"
    assert recipe.metrics.dice_size == 128
    assert recipe.infer.tta == 1 and recipe.infer.checkpoint == "swa"
    assert recipe.submit_kind == "rle"
    assert recipe.submit.pixel_threshold == 0.4 and recipe.submit.min_area == 0
    assert recipe.submit.gate_threshold is None  # the ensemble's stacked gate decides


@pytest.mark.parametrize("name", list(SEGMENTATION))
def test_segmentation_recipe(name):
    arch, backbone, size, batch, head = SEGMENTATION[name]
    recipe = load_recipe(recipe_file(name))
    _common(recipe, name, size, batch)
    assert recipe.split.query == "has_mask == 1"  # positive images only
    assert recipe.split.n_folds == 5
    assert (recipe.model.arch, recipe.model.backbone, recipe.model.cls_head) == (arch, backbone, head)
    terms = [(t.name, t.output, t.weight, t.params) for t in recipe.loss]
    dice = (
        "dice",
        "main",
        1.0,
        {"smooth": 0.01, "squared": True, "smooth_intersection": True, "clamp": True},
    )
    assert terms == ([dice, ("bce", "cls", 1.0, {})] if head else [dice])
    assert recipe.train.epochs == 44
    assert recipe.swa_epochs == [35, 40, 44]  # seed epochs 34, 39, 43 counted from 0
    if arch == "deeplabv3plus":
        assert recipe.model.decoder["encoder_output_stride"] == 8
    else:
        assert recipe.model.decoder == {}


def test_deeplab_encoder_runs_at_output_stride_8():
    recipe = load_recipe(recipe_file("seg_deeplab_se50_1024"))
    model = Segmenter.from_config(recipe.model.model_copy(update={"pretrained": False})).eval()
    assert model.encoder_name == "se_resnext50_32x4d"
    with torch.no_grad():
        deepest = model.encoder(torch.zeros(1, 3, 64, 64))[-1]
        out = model(torch.zeros(1, 3, 64, 64))
    assert deepest.shape[-2:] == (8, 8)  # 64 / 8
    assert out.shape == (1, 1, 64, 64)


@pytest.mark.parametrize("name", list(CLASSIFICATION))
def test_classification_recipe(name):
    size, batch, backbone, chexpert = CLASSIFICATION[name]
    recipe = load_recipe(recipe_file(name))
    _common(recipe, name, size, batch)
    assert recipe.split.query is None and recipe.split.method == "stratified"  # all images
    assert recipe.split.n_folds == 5
    model = recipe.model
    assert (model.arch, model.backbone, model.cls_head) == ("unet", backbone, True)
    # CheXpert images with pseudo labels train in every fold and are never validated on.
    assert recipe.data.adapter_params["extra_csv"] == (CHEXPERT_CSV if chexpert else None)
    assert recipe.split.train_only == ("is_extra == 1" if chexpert else None)
    terms = [(t.name, t.output, t.weight, t.params) for t in recipe.loss]
    assert terms == [
        ("focal", "cls", 1.0, {"gamma": 2.0}),
        ("bce", "cls", 1.0, {}),
        ("bce", "main", 1.0, {}),
    ]
    assert recipe.train.epochs == 34
    assert recipe.swa_epochs == [25, 30, 31, 32, 33, 34]  # seed epochs 24, 29-33 counted from 0


@pytest.mark.parametrize("name", [*SEGMENTATION, *CLASSIFICATION])
def test_augment_is_the_seed_list(name):
    recipe = load_recipe(recipe_file(name))
    spec = recipe.train.augment
    assert [op["name"] for op in spec] == ["OneOf", "OneOf", "HorizontalFlip", "Affine"]
    tone, blur, flip, affine = spec
    assert tone["p"] == 0.5  # the seed's OneOf had no p: albumentations' default
    assert [(t["name"], t["p"]) for t in tone["transforms"]] == [
        ("RandomGamma", 0.9),
        ("RandomBrightnessContrast", 0.9),
        ("CLAHE", 0.9),
    ]
    assert blur["p"] == 0.5 and [t["name"] for t in blur["transforms"]] == [
        "Blur",
        "MotionBlur",
        "MedianBlur",
    ]
    assert flip["p"] == 0.5
    assert affine["p"] == 1.0 and affine["rotate"] == [-20, 20] and affine["scale"] == [0.8, 1.2]
    assert affine["translate_percent"] == [-0.2, 0.2] and affine["keep_ratio"] is True

    transform = build_transform(spec, 64, True, "segmentation", recipe.train.mean, recipe.train.std)
    ops = transform.transforms
    assert isinstance(ops[-2], A.Resize) and ops[-2].height == 64  # appended by medals
    gamma, contrast, clahe = ops[0].transforms
    assert gamma.gamma_limit == (60, 120) and clahe.clip_limit == (1, 4.0) and clahe.tile_grid_size == (4, 4)
    assert contrast.brightness_limit == (-0.2, 0.2) and contrast.contrast_limit == (-0.2, 0.2)
    assert all(t.blur_limit == (3, 3) for t in ops[1].transforms)
    image = np.repeat(np.random.default_rng(0).integers(0, 256, (96, 96, 1), dtype=np.uint8), 3, axis=2)
    mask = np.zeros((96, 96), np.uint8)
    mask[30:60, 20:50] = 1
    out = transform(image=image, mask=mask)
    assert out["image"].shape == (64, 64, 3) and out["image"].dtype == np.float32
    assert set(np.unique(out["mask"])) <= {0, 1}


# ---- (b) the schedules ----------------------------------------------------------------------------


def seed_lr_table(epochs: int, cosine_epochs: int, eta_min: float, base: float = 5e-4) -> list[float]:
    """The lr of each seed epoch (0-based), replaying the seed's loop: WarmRestart(T_max=5, T_mult=1)
    stepped at the start of every epoch but the first while epoch < cosine_epochs, then fixed values."""
    t_max, last_epoch, lr = 5, 0, base  # the constructor's step: last_epoch 0, lr = base
    table = []
    for epoch in range(epochs):
        if epoch < cosine_epochs:
            if epoch != 0:
                last_epoch += 1  # scheduler.step()
                if last_epoch == t_max:  # WarmRestart.get_lr restarts the cycle
                    last_epoch = 0
                lr = eta_min + (base - eta_min) * (1 + math.cos(math.pi * last_epoch / t_max)) / 2
                # warm_restart(scheduler, T_mult=2) never fires: last_epoch is never T_max here
        elif epoch < cosine_epochs + 2:
            lr = 1e-5
        else:
            lr = 5e-6
        table.append(lr)
    return table


def test_seed_table_by_hand():
    seg = seed_lr_table(44, 40, 1e-6)
    assert seg[0] == seg[5] == seg[35] == 5e-4  # a restart every 5 epochs
    assert seg[4] == pytest.approx(1e-6 + (5e-4 - 1e-6) * (1 + math.cos(4 * math.pi / 5)) / 2)
    assert seg[40:] == [1e-5, 1e-5, 5e-6, 5e-6]
    cls = seed_lr_table(34, 30, 1e-5)
    assert cls[30:] == [1e-5, 1e-5, 5e-6, 5e-6]


@pytest.mark.parametrize("name", [*SEGMENTATION, *CLASSIFICATION])
def test_formula_gives_the_seed_table(name):
    recipe = load_recipe(recipe_file(name))
    if name in SEGMENTATION:
        expected = seed_lr_table(44, 40, 1e-6)
    else:
        expected = seed_lr_table(34, 30, 1e-5)
    # epoch_table's index 0 is the engine's epoch 1, the seed's epoch 0
    assert epoch_table(recipe.train) == pytest.approx(expected, rel=1e-12)


# ---- (c) the adapter --------------------------------------------------------------------------------


def write_siim_dicom(path: Path, pixels: np.ndarray, monochrome1: bool = False) -> None:
    """An 8-bit grayscale DICOM file as in the SIIM set; MONOCHROME1 stores the inverted values."""
    stored = 255 - pixels if monochrome1 else pixels
    write_dicom(path, stored, "MONOCHROME1" if monochrome1 else "MONOCHROME2")


def nested(folder: str, k: int, image_id: str) -> str:
    """<folder>/<study>/<series>/<ImageId>.dcm, as the Kaggle download nests them."""
    return f"{folder}/1.2.276.0.7230010.3.1.2.{k}/1.2.276.0.7230010.3.1.3.{k}/{image_id}.dcm"


def write_rle_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    # The competition's file: a space after each comma, in the header and in the values.
    path.write_text("ImageId, EncodedPixels\n" + "".join(f"{i}, {r}\n" for i, r in rows))


def test_adapter_on_nested_dicom_layout(tmp_path):
    square = np.zeros((16, 16), np.uint8)
    square[4:8, 2:6] = 1
    rle_a = encode(square, "siim")
    other = np.zeros((16, 16), np.uint8)
    other[10:12, 10:14] = 1
    rle_b = encode(other, "siim")
    image = np.add.outer(np.arange(16) * 8, np.arange(16) * 8).clip(0, 255).astype(np.uint8)
    for k, image_id in enumerate(["a1", "b2", "c3", "orphan"]):
        write_siim_dicom(tmp_path / nested("dicom-images-train", k, image_id), image, monochrome1=k == 1)
    write_siim_dicom(tmp_path / "dicom-images-test" / "t1.dcm", image)  # a flat folder works too
    write_siim_dicom(tmp_path / nested("dicom-images-test", 9, "t0"), image)
    write_rle_csv(tmp_path / "train-rle.csv", [("a1", rle_a), ("b2", "-1"), ("a1", rle_b), ("c3", "-1")])
    (tmp_path / "sample_submission.csv").write_text("ImageId,EncodedPixels\nt0,-1\nt1,-1\n")

    recipe = load_recipe(recipe_file("seg_unet_se50_1024"), [f"data.root={tmp_path}"])
    train, test = run_adapter(recipe)
    assert train["ImageId"].tolist() == ["a1", "b2", "a1", "c3"]  # rows kept; "orphan" has no row
    assert train["EncodedPixels"].tolist() == [rle_a, "-1", rle_b, "-1"]  # leading spaces stripped
    assert train["dicom_path"].tolist()[:2] == [
        nested("dicom-images-train", 0, "a1"),
        nested("dicom-images-train", 1, "b2"),
    ]
    assert train["is_extra"].tolist() == [0, 0, 0, 0]
    assert test["ImageId"].tolist() == ["t0", "t1"]
    assert test["dicom_path"].tolist() == [nested("dicom-images-test", 9, "t0"), "dicom-images-test/t1.dcm"]

    table = build_table(recipe)
    rows = table[table["split"] == "train"].set_index("id")
    assert rows.index.tolist() == ["a1", "b2", "c3"]
    assert rows["has_mask"].tolist() == [1, 0, 0]
    assert (rows["height"] == 16).all() and Path(rows.loc["a1", "path"]).is_file()
    for image_id in ("a1", "b2"):  # b2 is MONOCHROME1: read back as the same (not inverted) film
        assert np.array_equal(read_image(rows.loc[image_id, "path"])[:, :, 0], image)
    both = decode_many(rows.loc["a1", "rle"], (16, 16), "siim")
    assert np.array_equal(both, square | other)  # the two rows of a1 OR-ed
    assert table[table["split"] == "test"]["id"].tolist() == ["t0", "t1"]

    # Extra images with pseudo masks (e.g. CheXpert PNGs) are appended with is_extra 1.
    cv2.imwrite(str(tmp_path / "x1.png"), image)
    (tmp_path / "extra.csv").write_text(f"ImageId,EncodedPixels,path\nx1,{rle_a},x1.png\n")
    extra = load_recipe(
        recipe_file("seg_unet_se50_1024"),
        [f"data.root={tmp_path}", "data.adapter_params.extra_csv=extra.csv"],
    )
    train, _ = run_adapter(extra)
    assert train["ImageId"].tolist()[-1] == "x1" and train["is_extra"].tolist() == [0, 0, 0, 0, 1]
    assert train["dicom_path"].tolist()[-1] == "x1.png"
    table = build_table(extra)
    assert table.set_index("id").loc["x1", "has_mask"] == 1

    # An RLE row without its DICOM file: one sentence with the count and the first ids.
    write_rle_csv(
        tmp_path / "train-rle.csv", [("a1", "-1"), ("gone1", "-1"), ("gone2", "-1"), ("gone1", "-1")]
    )
    with pytest.raises(MedalsError, match=r"2 of 3 ImageIds .* have no DICOM file .*'gone1', 'gone2'"):
        run_adapter(recipe)
    with pytest.raises(MedalsError, match="DICOM folder .*nowhere does not exist"):
        run_adapter(
            load_recipe(
                recipe_file("seg_unet_se50_1024"),
                [f"data.root={tmp_path}", "data.adapter_params.test_dir=nowhere"],
            )
        )


# ---- (d) acceptance: the real recipes end to end ----------------------------------------------------


def real_siim_rle() -> pd.DataFrame:
    """The real SIIM-ACR training RLE rows shipped in the torchxrayvision package (not imported)."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchxrayvision is not installed (pip install --no-deps torchxrayvision)")
    path = Path(spec.submodule_search_locations[0]) / "data" / "siim-pneumothorax-train-rle.csv.gz"
    frame = pd.read_csv(path, dtype=str, skipinitialspace=True)
    frame.columns = [c.strip() for c in frame.columns]
    return frame


def chest_film(k: int, mask: np.ndarray) -> np.ndarray:
    """A chest-like 1024 px film; the pneumothorax (the real mask) drawn darker, as air is."""
    image = cv2.resize(chest_case(7, 0, k, 256, 0)[0], (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    image = image.astype(np.float32)
    image[mask > 0] *= 0.3
    return np.clip(image, 0, 255).astype(np.uint8)


def miniature_competition(root: Path) -> dict[str, list[str]]:
    """12 positive images (some with several RLE rows) and 12 empty ones with their real RLE rows, 4 test
    images, as nested DICOM files (a few MONOCHROME1), train-rle.csv and the sample submission."""
    rle = real_siim_rle()
    counts = rle.groupby("ImageId").size()
    positive = rle[rle["EncodedPixels"] != "-1"]["ImageId"].drop_duplicates()
    several = [i for i in positive if counts[i] > 1][:4]
    single = [i for i in positive if counts[i] == 1][:8]
    empty = rle[rle["EncodedPixels"] == "-1"]["ImageId"].drop_duplicates().tolist()
    train_ids = several + single + empty[:12]
    test_ids = [*[i for i in positive if counts[i] == 1][8:10], *empty[12:14]]
    rows = rle[rle["ImageId"].isin(train_ids)]
    write_rle_csv(root / "train-rle.csv", list(rows.itertuples(index=False, name=None)))
    for k, image_id in enumerate(train_ids + test_ids):
        parts = rle[rle["ImageId"] == image_id]["EncodedPixels"].tolist()
        mask = decode_many("|".join(parts), (SIZE, SIZE), "siim")
        folder = "dicom-images-train" if image_id in train_ids else "dicom-images-test"
        write_siim_dicom(root / nested(folder, k, image_id), chest_film(k, mask), monochrome1=k % 5 == 2)
    recipe = load_recipe(recipe_file("seg_unet_se50_1024"))
    sample = pd.DataFrame({"ImageId": test_ids[::-1], "EncodedPixels": "-1"})
    sample.to_csv(root / recipe.data.sample_submission, index=False)
    return {"train": train_ids, "test": test_ids, "positive": several + single, "extra": chexpert(root)}


def chexpert(root: Path) -> list[str]:
    """What a user puts at the CheXpert recipe's extra_csv: 256 px PNG films, two with a pseudo mask."""
    rle = real_siim_rle()
    masks = rle[rle["EncodedPixels"] != "-1"]["EncodedPixels"].tolist()[-2:]
    folder = root / "chexpert"
    folder.mkdir()
    rows = []
    for k in range(4):
        mask = decode(masks[k], (SIZE, SIZE), "siim") if k < 2 else np.zeros((SIZE, SIZE), np.uint8)
        # OpenCV 4 resizes no bool arrays (decode returns bool): as uint8, then back.
        small = cv2.resize(mask.astype(np.uint8), (256, 256), interpolation=cv2.INTER_NEAREST) > 0
        film = cv2.resize(chest_film(40 + k, mask), (256, 256), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"chex{k}.png"), film)
        rows.append((f"chex{k}", encode(small, "siim") if small.any() else "-1", f"chexpert/chex{k}.png"))
    pd.DataFrame(rows, columns=["ImageId", "EncodedPixels", "path"]).to_csv(root / CHEXPERT_CSV, index=False)
    return [row[0] for row in rows]


SCALED_DOWN = [
    "model.backbone=test_resnet",  # timm's 0.5 M-parameter ResNet: 2 MB checkpoints, not 60 MB
    "model.pretrained=false",
    "train.epochs=2",
    "train.swa.epochs=[1,2]",
    "split.n_folds=2",
    "data.cache_size=32",
    "train.image_size=32",
    "train.batch_size=8",
    "train.num_workers=0",
    "train.progress=false",
]


@pytest.mark.slow
def test_real_recipes_end_to_end(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    ids = miniature_competition(data)
    # The real ensemble file and all seven real recipes, scaled down by overrides that apply to each.
    monkeypatch.chdir(tmp_path)  # runs go to tmp_path/runs/<name>
    assert main(["run", str(RECIPES / "ensemble.yaml"), f"data.root={data}", *SCALED_DOWN]) == 0

    runs = tmp_path / "runs"
    sub = pd.read_csv(runs / "pneumothorax_2nd" / "submission.csv", dtype=str, keep_default_na=False)
    sample_name = load_recipe(recipe_file("seg_unet_se50_1024")).data.sample_submission
    sample = pd.read_csv(data / sample_name, dtype=str)
    assert list(sub.columns) == ["ImageId", "EncodedPixels"]
    assert sorted(sub["ImageId"]) == sorted(sample["ImageId"]) == sorted(ids["test"])
    for value in sub["EncodedPixels"]:
        if value != "-1":
            assert decode(value, (SIZE, SIZE), "siim").any()
    gate = pd.read_parquet(runs / "pneumothorax_2nd" / "test.parquet")
    assert gate["p_cls"].between(0, 1).all()  # the stacked classification probability

    # The same members with the gate open and every pixel on: each test image gets a 1024 px mask.
    spec = yaml.safe_load((RECIPES / "ensemble.yaml").read_text())["ensemble"]
    spec["members"] = [str(RECIPES / m) for m in spec["members"]]
    spec["gate"] = {
        **spec["gate"],
        "members": [str(RECIPES / m) for m in spec["gate"]["members"]],
        "threshold": 0.0,
    }
    (tmp_path / "open.yaml").write_text(yaml.safe_dump({"ensemble": spec}))
    opened = tmp_path / "open"
    argv = [
        "ensemble",
        str(tmp_path / "open.yaml"),
        f"data.root={data}",
        *SCALED_DOWN,
        "submit.pixel_threshold=0.0",
    ]
    assert main([*argv, "--out", str(opened)]) == 0
    sub = pd.read_csv(opened / "submission.csv", dtype=str, keep_default_na=False)
    assert sorted(sub["ImageId"]) == sorted(ids["test"])
    for value in sub["EncodedPixels"]:
        assert value != "-1" and decode(value, (SIZE, SIZE), "siim").any()

    for name in [*SEGMENTATION, *CLASSIFICATION]:
        run = runs / name
        metrics = read_json(run / "metrics.json")["pooled"]
        assert 0.0 <= metrics["dice"] <= 1.0  # at metrics.dice_size 128
        assert "dice_best" in metrics and "pixel_threshold_best" in metrics
        # The head is scored only where there is something to separate: the classification models
        # validate on all images; the segmentation models on positives only, where every label is 1.
        assert ("cls_auc" in metrics) == (name in CLASSIFICATION)
        has_head = name in CLASSIFICATION or SEGMENTATION[name][4]
        assert ("p_cls" in pd.read_parquet(run / "oof.parquet").columns) == has_head
        oof = pd.read_parquet(run / "oof.parquet")
        expected = ids["train"] if name in CLASSIFICATION else ids["positive"]
        assert sorted(oof["id"]) == sorted(expected)  # segmentation folds: positive images only
        assert (run / "fold0" / "swa.pt").is_file()
        table = pd.read_parquet(run / "table.parquet")
        folds = pd.read_parquet(run / "folds.parquet").set_index("id")["fold"]
        if CLASSIFICATION.get(name, (0, 0, "", False))[3]:
            # The CheXpert rows are in the table and train in every fold (-1), never in the OOF rows.
            assert set(ids["extra"]) <= set(table["id"])
            assert (folds.loc[ids["extra"]] == -1).all()
            assert not set(ids["extra"]) & set(oof["id"])
        else:
            assert not set(ids["extra"]) & set(table["id"])
        assert np.load(run / "test_masks.npy").shape[0] == len(ids["test"])
