"""The SIIM-ISIC melanoma 1st-place recipe set: its 18 recipes against the seed's commands, its schedule,
clipping and augmentation, the melanoma_isic adapter on a miniature Kaggle layout, and an end-to-end
run of two scaled-down models and their rank ensemble."""

from __future__ import annotations

import math
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from medals.augment.cpu import build_transform
from medals.cli import main
from medals.config import load_recipe
from medals.data.adapters import run_adapter
from medals.data.table import build_table
from medals.errors import MedalsError
from medals.files import read_json
from medals.train.schedules import epoch_table

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "melanoma_1st"
FOLDER = 64  # the miniature sets' resolution
MAIN_DIR, EXT_DIR = f"jpeg-melanoma-{FOLDER}x{FOLDER}", f"jpeg-isic2019-{FOLDER}x{FOLDER}"

# Seed 000's 18 training commands, read by hand: kernel type, data folder, image size, timm backbone
# (seed name), meta hidden sizes (None: no --use-meta), init lr, out dim, epochs, fold scheme.
B4, B5, B6, B7 = (f"tf_efficientnet_b{k}.ns_jft_in1k" for k in (4, 5, 6, 7))
EXPECTED = [
    ("9c_meta_b3_768_512_ext_18ep", 768, 512, "efficientnet_b3.ra2_in1k", [512, 128], 3e-5, 9, 18, "default"),
    ("9c_b4ns_2e_896_ext_15ep", 1024, 896, B4, None, 2e-5, 9, 15, "default"),
    ("9c_b4ns_448_ext_15ep-newfold", 512, 448, B4, None, 3e-5, 9, 15, "newfold"),
    ("9c_b4ns_768_640_ext_15ep", 768, 640, B4, None, 3e-5, 9, 15, "default"),
    ("9c_b4ns_768_768_ext_15ep", 768, 768, B4, None, 3e-5, 9, 15, "default"),
    ("9c_meta_b4ns_640_ext_15ep", 768, 640, B4, [512, 128], 3e-5, 9, 15, "default"),
    ("4c_b5ns_1.5e_640_ext_15ep", 768, 640, B5, None, 1.5e-5, 4, 15, "default"),
    ("9c_b5ns_1.5e_640_ext_15ep", 768, 640, B5, None, 1.5e-5, 9, 15, "default"),
    ("9c_b5ns_448_ext_15ep-newfold", 512, 448, B5, None, 3e-5, 9, 15, "newfold"),
    ("9c_meta128_32_b5ns_384_ext_15ep", 512, 384, B5, [128, 32], 3e-5, 9, 15, "default"),
    ("9c_b6ns_448_ext_15ep-newfold", 512, 448, B6, None, 3e-5, 9, 15, "newfold"),
    ("9c_b6ns_576_ext_15ep_oldfold", 768, 576, B6, None, 3e-5, 9, 15, "oldfold"),
    ("9c_b6ns_640_ext_15ep", 768, 640, B6, None, 3e-5, 9, 15, "default"),
    ("9c_b7ns_1e_576_ext_15ep_oldfold", 768, 576, B7, None, 1e-5, 9, 15, "oldfold"),
    ("9c_b7ns_1e_640_ext_15ep", 768, 640, B7, None, 1e-5, 9, 15, "default"),
    # No --init-lr in the command: the default 3e-5 ran, whatever the name says.
    ("9c_meta_1.5e-5_b7ns_384_ext_15ep", 512, 384, B7, [512, 128], 3e-5, 9, 15, "default"),
    ("9c_nest101_2e_640_ext_15ep", 768, 640, "resnest101e.in1k", None, 2e-5, 9, 15, "default"),
    ("9c_se_x101_640_ext_15ep", 768, 640, "legacy_seresnext101_32x4d.in1k", None, 3e-5, 9, 15, "default"),
]
CLASSES_9 = ["AK", "BCC", "BKL", "DF", "SCC", "VASC", "melanoma", "nevus", "unknown"]
CLASSES_4 = ["BKL", "melanoma", "nevus", "unknown"]
DEFAULT = {2: 0, 4: 0, 5: 0, 1: 1, 10: 1, 13: 1, 0: 2, 9: 2, 12: 2, 3: 3, 8: 3, 11: 3, 6: 4, 7: 4, 14: 4}
NEWFOLD = {8: 0, 5: 0, 11: 0, 7: 1, 0: 1, 6: 1, 10: 2, 12: 2, 13: 2, 9: 3, 1: 3, 3: 3, 14: 4, 2: 4, 4: 4}


def recipe_path(kernel: str) -> Path:
    return RECIPES / f"{kernel}.yaml"


def spec_lr(epoch: int, epochs: int, lr: float) -> float:
    if epoch == 1:
        return lr
    if epoch == 2:
        return 10 * lr
    return 10 * lr * (1 + math.cos(math.pi * (epoch - 2) / (epochs - 1))) / 2


# ---- (a)-(d): the recipe files ------------------------------------------------------------------


def test_recipe_folder_holds_the_18_models_and_the_ensemble():
    names = sorted(p.stem for p in RECIPES.glob("*.yaml"))
    assert names == sorted([row[0] for row in EXPECTED] + ["ensemble"])
    spec = yaml.safe_load((RECIPES / "ensemble.yaml").read_text())
    assert spec == {
        "ensemble": {
            "name": "melanoma_1st",
            "method": "rank",
            "members": [f"{row[0]}.yaml" for row in EXPECTED],
            "weights": None,
        }
    }
    from medals.config import load_ensemble

    plan = load_ensemble(RECIPES / "ensemble.yaml")
    assert [p.name for p in plan.recipes] == [f"{row[0]}.yaml" for row in EXPECTED]
    assert main(["plan", str(RECIPES)]) == 0


@pytest.mark.parametrize("row", EXPECTED, ids=[row[0] for row in EXPECTED])
def test_recipe_matches_the_seed_command(row):
    kernel, folder, size, backbone, meta_hidden, lr, out_dim, epochs, scheme = row
    path = recipe_path(kernel)
    first = path.read_text().splitlines()[:3]
    assert any(f"--kernel-type {kernel} " in line and line.startswith("#") for line in first)
    r = load_recipe(path)
    assert r.name == kernel and r.task == "multiclass" and r.seed == 0
    d = r.data
    assert d.root == "../../data" and r.data_root == (RECIPES / "../../data").resolve()
    assert d.adapter == "melanoma_isic"
    assert d.adapter_params == {"folder": folder, "out_dim": out_dim, "fold_scheme": scheme}
    assert d.id_column == "image_name" and d.label_column == "target_label"
    assert d.classes == (CLASSES_9 if out_dim == 9 else CLASSES_4)
    assert d.image_path == d.test_image_path == "{image_dir}/{id}.jpg"
    assert d.keep_columns == ["is_ext"] and d.group_column == "patient_id"
    assert d.sample_submission == f"jpeg-melanoma-{folder}x{folder}/sample_submission.csv"
    if meta_hidden is None:
        assert d.meta is None and r.model.head == "msd"
    else:
        assert r.model.head == "meta" and r.model.meta_hidden == meta_hidden
        assert r.model.meta_dropout == 0.3
        m = d.meta
        assert m.mapped["sex"].values == {"male": 1, "female": 0} and m.mapped["sex"].fill == -1
        assert m.numeric["age_approx"].scale == 90 and m.numeric["age_approx"].fill == 0
        assert m.categorical == ["anatom_site_general_challenge"]
        assert m.group_counts == ["patient_id"] and m.file_size is True
    assert (r.split.method, r.split.column, r.split.n_folds, r.split.mapping) == (
        "fixed",
        "fold_key",
        5,
        None,
    )
    assert r.model.arch == "classifier" and r.model.backbone == backbone and r.model.pretrained
    assert (r.model.msd_samples, r.model.msd_dropout) == (5, 0.5)
    assert [term.name for term in r.loss] == ["ce"]
    t = r.train
    assert (t.epochs, t.batch_size, t.image_size, t.optimizer) == (epochs, 64, size, "adam")
    assert isinstance(t.lr, float) and t.lr == pytest.approx(lr, rel=1e-12)
    assert t.precision == "auto" and t.weight_decay == 0
    assert [(c.name, c.metric, c.mode) for c in t.checkpoints] == [
        ("best", "auc", "max"),
        ("best_20", "auc_20", "max"),
    ]
    assert r.metrics.subsets == {"20": "is_ext == 0"} and r.metrics.rank
    assert (r.infer.tta, r.infer.checkpoint) == (8, "best")
    assert (r.submit_kind, r.submit.target_class) == ("probability", "melanoma")


def test_backbones_exist_in_timm():
    import timm

    for backbone in sorted({row[3] for row in EXPECTED}):
        name, _, tag = backbone.partition(".")
        assert timm.is_model(name), backbone
        assert backbone in timm.list_models(name, pretrained=True), backbone


@pytest.mark.parametrize("epochs", [15, 18])
def test_formula_schedule_is_the_spec_table(epochs):
    kernel = next(row[0] for row in EXPECTED if row[7] == epochs)
    train = load_recipe(recipe_path(kernel)).train
    table = epoch_table(train)
    expected = [spec_lr(k, epochs, train.lr) for k in range(1, epochs + 1)]
    assert len(table) == epochs
    assert table == pytest.approx(expected, rel=1e-12, abs=0)
    assert table[1] == pytest.approx(10 * train.lr) and max(table) == table[1]


def test_every_recipe_has_the_same_schedule_and_clips_only_at_576_and_896():
    for kernel, *_rest in EXPECTED:
        train = load_recipe(recipe_path(kernel)).train
        assert train.schedule.name == "formula"
        expected = [spec_lr(k, train.epochs, train.lr) for k in range(1, train.epochs + 1)]
        assert epoch_table(train) == pytest.approx(expected, rel=1e-12, abs=0)
        assert train.clip_grad == (0.5 if train.image_size in (576, 896) else None), kernel


def _params(op) -> dict:
    return op.get_transform_init_args()


def test_augmentation_pipeline_is_the_solutions_list():
    specs = {
        yaml.safe_dump(load_recipe(recipe_path(row[0])).train.augment, sort_keys=True) for row in EXPECTED
    }
    assert len(specs) == 1  # every model trains with the same list
    recipe = load_recipe(recipe_path("9c_b4ns_768_640_ext_15ep"))
    compose = build_transform(recipe.train.augment, 640, True, "multiclass")
    ops = list(compose.transforms)
    names = [type(op).__name__ for op in ops]
    assert names == [
        "Transpose",
        "VerticalFlip",
        "HorizontalFlip",
        "RandomBrightnessContrast",
        "RandomBrightnessContrast",
        "OneOf",
        "OneOf",
        "CLAHE",
        "HueSaturationValue",
        "Affine",
        "CoarseDropout",
        "Resize",
        "ChannelNormalize",
    ]
    assert [op.p for op in ops[:11]] == [0.5, 0.5, 0.5, 0.75, 0.75, 0.7, 0.7, 0.7, 0.5, 0.85, 0.7]
    brightness, contrast = _params(ops[3]), _params(ops[4])
    assert brightness["brightness_limit"] == pytest.approx((-0.2, 0.2))
    assert brightness["contrast_limit"] == pytest.approx((0, 0))
    assert contrast["brightness_limit"] == pytest.approx((0, 0))
    assert contrast["contrast_limit"] == pytest.approx((-0.2, 0.2))
    assert brightness["brightness_by_max"] and contrast["brightness_by_max"]

    blur = {type(op).__name__: op for op in ops[5].transforms}
    assert list(blur) == ["MotionBlur", "MedianBlur", "GaussianBlur", "GaussNoise"]
    assert len({op.p for op in blur.values()}) == 1  # picked with equal chance
    assert tuple(blur["MotionBlur"].blur_limit) == (3, 5)
    assert tuple(blur["MedianBlur"].blur_limit) == (3, 5)
    assert tuple(blur["GaussianBlur"].blur_limit) == (3, 5)
    # OpenCV's sigma for kernels 3 and 5 (what sigma 0 meant in albumentations 0.4.6).
    assert blur["GaussianBlur"].sigma_limit == pytest.approx(
        tuple(0.3 * ((k - 1) * 0.5 - 1) + 0.8 for k in (3, 5))
    )
    noise = blur["GaussNoise"]
    # var_limit (5, 30) in 0-255 pixel units -> std sqrt(5)..sqrt(30) as a fraction of 255.
    assert noise.std_range == pytest.approx((math.sqrt(5) / 255, math.sqrt(30) / 255), rel=1e-6)
    assert noise.mean_range == (0, 0) and noise.per_channel

    # ElasticTransform is built as medals' CoarseElasticTransform (same op, fields on a coarse grid, with
    # 0.4.6's alpha_affine), OpticalDistortion as ShiftedOpticalDistortion (with 0.4.6's shift_limit).
    warp = {type(op).__name__.removeprefix("Coarse").removeprefix("Shifted"): op for op in ops[6].transforms}
    assert list(warp) == ["OpticalDistortion", "GridDistortion", "ElasticTransform"]
    assert isinstance(warp["ElasticTransform"], A.ElasticTransform)
    assert len({op.p for op in warp.values()}) == 1
    assert warp["OpticalDistortion"].distort_limit == pytest.approx((-1.0, 1.0))
    assert warp["GridDistortion"].num_steps == 5
    assert warp["GridDistortion"].distort_limit == pytest.approx((-1.0, 1.0))
    assert warp["GridDistortion"].normalized is False
    assert warp["ElasticTransform"].alpha == 3 and warp["ElasticTransform"].sigma == 50
    assert warp["ElasticTransform"].alpha_affine == 50  # 0.4.6's default
    assert warp["OpticalDistortion"].shift_limit == pytest.approx((-0.05, 0.05))  # 0.4.6's default
    assert all(op.border_mode == cv2.BORDER_REFLECT_101 for op in warp.values())

    assert ops[7].clip_limit == pytest.approx((1.0, 4.0))
    hsv = _params(ops[8])
    assert hsv["hue_shift_limit"] == pytest.approx((-10, 10))
    assert hsv["sat_shift_limit"] == pytest.approx((-20, 20))
    assert hsv["val_shift_limit"] == pytest.approx((-10, 10))
    affine = ops[9]
    assert affine.translate_percent == {"x": pytest.approx((-0.1, 0.1)), "y": pytest.approx((-0.1, 0.1))}
    assert affine.scale == {"x": pytest.approx((0.9, 1.1)), "y": pytest.approx((0.9, 1.1))}
    assert affine.keep_ratio and affine.rotate == pytest.approx((-15, 15))
    assert affine.shear == {"x": (0, 0), "y": (0, 0)}
    assert affine.border_mode == cv2.BORDER_CONSTANT and affine.fill == 0
    cutout = ops[10]
    assert tuple(cutout.num_holes_range) == (1, 1)
    assert cutout.hole_height_range == pytest.approx((0.375, 0.375))
    assert cutout.hole_width_range == pytest.approx((0.375, 0.375))
    assert cutout.fill == 0
    assert (ops[11].height, ops[11].width) == (640, 640)

    # The whole list runs on a uint8 image; validation is Resize + normalisation only.
    image = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    out = compose(image=image)["image"]
    assert out.shape == (640, 640, 3) and out.dtype == np.float32
    val = build_transform(recipe.train.augment, 640, False, "multiclass")
    assert [type(op).__name__ for op in val.transforms] == ["Resize", "ChannelNormalize"]
    assert isinstance(ops[5], A.OneOf) and isinstance(ops[6], A.OneOf)


# ---- a miniature Kaggle layout -------------------------------------------------------------------

SITES_2020 = ["torso", "lower extremity", "upper extremity", "head/neck", None]
SITES_EXT = ["anterior torso", "posterior torso", "lower extremity", None]
SITES_TEST = ["torso", "palms/soles", "oral/genital", None]
OTHER_2020 = [
    "nevus",
    "unknown",
    "seborrheic keratosis",
    "lichenoid keratosis",
    "solar lentigo",
    "lentigo NOS",
    "cafe-au-lait macule",
    "atypical melanocytic proliferation",
]
EXT_DIAGNOSES = ["MEL", "NV", "BCC", "BKL", "AK", "SCC", "VASC", "DF"]


def _lesion(rng: np.random.Generator, dark: bool) -> np.ndarray:
    """A skin-coloured square with a dark (melanoma) or light (other) blob; BGR for cv2."""
    image = np.empty((FOLDER, FOLDER, 3), np.float32)
    image[:] = (150, 170, 205)
    centre = tuple(int(v) for v in rng.integers(24, 40, 2))
    radius = int(rng.integers(10, 16))
    colour = (35, 40, 55) if dark else (120, 140, 180)
    cv2.circle(image, centre, radius, colour, -1)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _write_images(folder: Path, names: list[str], dark: list[bool], rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, is_dark in zip(names, dark, strict=True):
        cv2.imwrite(str(folder / f"{name}.jpg"), _lesion(rng, is_dark), [cv2.IMWRITE_JPEG_QUALITY, 90])


def make_kaggle(root: Path) -> dict[str, pd.DataFrame]:
    """jpeg-melanoma-64x64 (train/test/sample) and jpeg-isic2019-64x64 (train) as Kaggle lays them out."""
    rng = np.random.default_rng(7)
    rows = []
    for t in range(15):
        for j in range(3):
            i = len(rows)
            diagnosis = "melanoma" if j == 0 else OTHER_2020[(t + j) % len(OTHER_2020)] if j == 1 else "nevus"
            rows.append((f"ISIC_{2000000 + i}", f"IP_{i % 10}", t, diagnosis))
    for k in range(3):  # duplicates: no image files, dropped by tfrecord -1
        rows.append((f"ISIC_{2900000 + k}", f"IP_{k}", -1, "nevus"))
    train = pd.DataFrame(rows, columns=["image_name", "patient_id", "tfrecord", "diagnosis"])
    n = len(train)
    train["sex"] = [["male", "female", None][i % 3] for i in range(n)]
    train["age_approx"] = [[30.0, 45.0, 60.0, np.nan, 75.0][i % 5] for i in range(n)]
    train["anatom_site_general_challenge"] = [SITES_2020[i % 5] for i in range(n)]
    train["benign_malignant"] = np.where(train["diagnosis"] == "melanoma", "malignant", "benign")
    train["target"] = (train["diagnosis"] == "melanoma").astype(int)
    train["width"] = train["height"] = FOLDER
    train = train[
        [
            "image_name",
            "patient_id",
            "sex",
            "age_approx",
            "anatom_site_general_challenge",
            "diagnosis",
            "benign_malignant",
            "target",
            "tfrecord",
            "width",
            "height",
        ]
    ]

    ext_rows = []
    for t in list(range(30)) + [-1, -2]:
        i = len(ext_rows)
        patient = "-1" if i % 7 else None
        ext_rows.append((f"ISIC_{i:07d}", patient, t, EXT_DIAGNOSES[i % len(EXT_DIAGNOSES)]))
    ext = pd.DataFrame(ext_rows, columns=["image_name", "patient_id", "tfrecord", "diagnosis"])
    m = len(ext)
    ext["sex"] = [["female", "male", None, "male"][i % 4] for i in range(m)]
    ext["age_approx"] = [[50.0, np.nan, 35.0][i % 3] for i in range(m)]
    ext["anatom_site_general_challenge"] = [SITES_EXT[i % 4] for i in range(m)]
    ext["target"] = (ext["diagnosis"] == "MEL").astype(int)
    ext = ext[
        [
            "image_name",
            "patient_id",
            "sex",
            "age_approx",
            "anatom_site_general_challenge",
            "diagnosis",
            "target",
            "tfrecord",
        ]
    ]

    test = pd.DataFrame(
        {
            "image_name": [f"ISIC_{3000000 + i}" for i in range(12)],
            "patient_id": [f"IP_{100 + i // 3}" for i in range(12)],
            "sex": [["male", "female"][i % 2] if i != 5 else None for i in range(12)],
            "age_approx": [40.0 + 5 * (i % 4) if i != 7 else np.nan for i in range(12)],
            "anatom_site_general_challenge": [SITES_TEST[i % 4] for i in range(12)],
            "width": FOLDER,
            "height": FOLDER,
        }
    )
    sample = pd.DataFrame({"image_name": test["image_name"], "target": 0})

    main_dir, ext_dir = root / MAIN_DIR, root / EXT_DIR
    main_dir.mkdir(parents=True)
    ext_dir.mkdir(parents=True)
    train.to_csv(main_dir / "train.csv", index=False)
    test.to_csv(main_dir / "test.csv", index=False)
    sample.to_csv(main_dir / "sample_submission.csv", index=False)
    ext.to_csv(ext_dir / "train.csv", index=False)
    kept = train[train["tfrecord"] >= 0]
    _write_images(main_dir / "train", kept["image_name"].tolist(), (kept["target"] == 1).tolist(), rng)
    kept_ext = ext[ext["tfrecord"] >= 0]
    _write_images(ext_dir / "train", kept_ext["image_name"].tolist(), (kept_ext["target"] == 1).tolist(), rng)
    _write_images(main_dir / "test", test["image_name"].tolist(), [i % 2 == 0 for i in range(12)], rng)
    return {"train": train, "ext": ext, "test": test, "sample": sample}


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    root = tmp_path_factory.mktemp("melanoma_data")
    return root, make_kaggle(root)


def mini_recipe(root: Path, kernel: str = "9c_meta_b3_768_512_ext_18ep", *extra: str):
    return load_recipe(
        recipe_path(kernel),
        [f"data.root={root}", f"data.adapter_params.folder={FOLDER}", *extra],
    )


# ---- (e): the adapter ----------------------------------------------------------------------------


def test_adapter_drops_duplicates_and_marks_external_rows(kaggle):
    root, frames = kaggle
    train, test = run_adapter(mini_recipe(root))
    src, ext = frames["train"], frames["ext"]
    expected_ids = (
        src[src["tfrecord"] != -1]["image_name"].tolist() + ext[ext["tfrecord"] >= 0]["image_name"].tolist()
    )
    assert train["image_name"].tolist() == expected_ids
    assert len(train) == 45 + 30
    assert train["is_ext"].tolist() == [0] * 45 + [1] * 30
    assert train["image_dir"].tolist() == [f"{MAIN_DIR}/train"] * 45 + [f"{EXT_DIR}/train"] * 30
    assert test["image_name"].tolist() == frames["test"]["image_name"].tolist()
    assert test["is_ext"].tolist() == [0] * 12
    assert set(test["image_dir"]) == {f"{MAIN_DIR}/test"}
    # The external "unknown patient" (-1) is missing; an empty id is the solution's fillna(0).
    kept_ext = ext[ext["tfrecord"] >= 0]["patient_id"].tolist()
    assert train["patient_id"].iloc[45:].tolist() == [None if p == "-1" else "0" for p in kept_ext]
    assert "0" in train["patient_id"].tolist() and train["patient_id"].isna().any()
    assert train["patient_id"].iloc[:45].tolist() == src["patient_id"].iloc[:45].tolist()


def test_adapter_maps_diagnoses_to_9_and_4_classes(kaggle):
    root, frames = kaggle
    map_2020 = {
        "melanoma": "melanoma",
        "nevus": "nevus",
        "unknown": "unknown",
        "seborrheic keratosis": "BKL",
        "lichenoid keratosis": "BKL",
        "solar lentigo": "BKL",
        "lentigo NOS": "BKL",
        "cafe-au-lait macule": "unknown",
        "atypical melanocytic proliferation": "unknown",
    }
    map_ext_9 = {
        "MEL": "melanoma",
        "NV": "nevus",
        **{k: k for k in ("BCC", "BKL", "AK", "SCC", "VASC", "DF")},
    }
    map_ext_4 = {"MEL": "melanoma", "NV": "nevus", "BKL": "BKL"} | {
        k: "unknown" for k in ("BCC", "AK", "SCC", "VASC", "DF")
    }
    src = frames["train"][frames["train"]["tfrecord"] != -1]
    ext = frames["ext"][frames["ext"]["tfrecord"] >= 0]
    assert set(src["diagnosis"]) == set(map_2020)  # every 2020 name is in the miniature set
    assert set(ext["diagnosis"]) == set(map_ext_9)
    train9, _ = run_adapter(mini_recipe(root))
    assert train9["target_label"].tolist() == [map_2020[d] for d in src["diagnosis"]] + [
        map_ext_9[d] for d in ext["diagnosis"]
    ]
    assert sorted(set(train9["target_label"])) == CLASSES_9
    train4, _ = run_adapter(mini_recipe(root, "4c_b5ns_1.5e_640_ext_15ep"))
    assert train4["target_label"].tolist() == [map_2020[d] for d in src["diagnosis"]] + [
        map_ext_4[d] for d in ext["diagnosis"]
    ]
    assert sorted(set(train4["target_label"])) == CLASSES_4
    # And through the table: label indices in the sorted class lists (melanoma 6 of 9, 1 of 4).
    table = build_table(mini_recipe(root, "4c_b5ns_1.5e_640_ext_15ep"))
    assert table.attrs["classes"] == CLASSES_4
    rows = table[table["split"] == "train"]
    assert ((rows["label"] == 1) == (train4["target_label"] == "melanoma").to_numpy()).all()


@pytest.mark.parametrize(
    "kernel, scheme",
    [
        ("9c_b4ns_768_640_ext_15ep", "default"),
        ("9c_b5ns_448_ext_15ep-newfold", "newfold"),
        ("9c_b6ns_576_ext_15ep_oldfold", "oldfold"),
    ],
)
def test_adapter_fold_schemes(kaggle, kernel, scheme):
    root, frames = kaggle
    recipe = mini_recipe(root, kernel)
    assert recipe.data.adapter_params["fold_scheme"] == scheme
    train, _ = run_adapter(recipe)
    t2020 = frames["train"]["tfrecord"][frames["train"]["tfrecord"] != -1].tolist()
    t_ext = frames["ext"]["tfrecord"][frames["ext"]["tfrecord"] >= 0].tolist()
    assert sorted(set(t2020)) == list(range(15)) and sorted(set(t_ext)) == list(range(30))
    if scheme == "default":
        expected = [DEFAULT[t] for t in t2020] + [t % 5 for t in t_ext]
    elif scheme == "newfold":
        expected = [NEWFOLD[t] for t in t2020] + [NEWFOLD[t % 15] for t in t_ext]
    else:
        expected = [t % 5 for t in t2020] + [t % 5 for t in t_ext]
    assert train["fold_key"].tolist() == expected
    # split.method fixed turns the key into the folds unchanged.
    from medals.data.splits import make_folds

    table = build_table(recipe)
    assert make_folds(table[table["split"] == "train"], recipe).tolist() == expected


def test_adapter_meta_features(kaggle):
    root, frames = kaggle
    table = build_table(mini_recipe(root))
    src = frames["train"][frames["train"]["tfrecord"] != -1]
    ext = frames["ext"][frames["ext"]["tfrecord"] >= 0]
    test = frames["test"]
    train_all = pd.concat([src, ext], ignore_index=True)

    def expected(frame: pd.DataFrame, split: str, kept_patients: pd.Series) -> pd.DataFrame:
        out = pd.DataFrame(index=range(len(frame)))
        out["meta_age_approx"] = (frame["age_approx"] / 90).fillna(0).to_numpy()
        out["meta_sex"] = frame["sex"].map({"male": 1, "female": 0}).fillna(-1).to_numpy()
        sites = sorted(
            {s for s in pd.concat([train_all, test])["anatom_site_general_challenge"] if isinstance(s, str)}
        )
        for site in sites:
            out[f"meta_anatom_site_general_challenge_{site}"] = (
                frame["anatom_site_general_challenge"] == site
            ).to_numpy(float)
        out["meta_anatom_site_general_challenge_nan"] = (
            frame["anatom_site_general_challenge"].isna().to_numpy(float)
        )
        counts = kept_patients.value_counts()
        out["meta_patient_id_count"] = np.log1p(
            [counts[p] if isinstance(p, str) and p != "-1" else 1 for p in kept_patients]
        )
        folder = {"train": None, "test": f"{MAIN_DIR}/test"}[split]
        paths = [
            root / (folder or (f"{MAIN_DIR}/train" if i < len(src) else f"{EXT_DIR}/train")) / f"{name}.jpg"
            for i, name in enumerate(frame["image_name"])
        ]
        out["meta_file_size"] = np.log([p.stat().st_size for p in paths])
        return out

    meta_cols = [c for c in table.columns if c.startswith("meta_")]
    for split, frame in (("train", train_all), ("test", test)):
        got = table[table["split"] == split][meta_cols].reset_index(drop=True)
        # The solution fills a missing TRAINING id with 0 (one pooled patient), test ids as they are.
        patients = frame["patient_id"].fillna("0") if split == "train" else frame["patient_id"]
        want = expected(frame, split, patients)
        assert sorted(got.columns) == sorted(want.columns)
        np.testing.assert_allclose(
            got[want.columns].to_numpy(np.float64), want.to_numpy(np.float64), rtol=1e-6, atol=1e-6
        )
    # A NaN site column exists and the one-hot covers values seen only in test.
    assert "meta_anatom_site_general_challenge_palms/soles" in meta_cols
    assert "meta_anatom_site_general_challenge_anterior torso" in meta_cols
    assert table.loc[table["split"] == "train", "meta_anatom_site_general_challenge_nan"].sum() > 0


def test_adapter_errors_name_the_problem(kaggle, tmp_path):
    root, _ = kaggle
    with pytest.raises(MedalsError, match="fold_scheme.*'newfolds'"):
        run_adapter(mini_recipe(root, "9c_b4ns_768_640_ext_15ep", "data.adapter_params.fold_scheme=newfolds"))
    with pytest.raises(MedalsError, match="out_dim must be 9 or 4, got 5"):
        run_adapter(mini_recipe(root, "9c_b4ns_768_640_ext_15ep", "data.adapter_params.out_dim=5"))
    with pytest.raises(MedalsError, match="folder"):
        run_adapter(mini_recipe(root, "9c_b4ns_768_640_ext_15ep", "data.adapter_params.folder=big"))
    with pytest.raises(MedalsError, match="jpeg-melanoma-512x512.*train.csv does not exist"):
        run_adapter(mini_recipe(root, "9c_b4ns_768_640_ext_15ep", "data.adapter_params.folder=512"))
    with pytest.raises(MedalsError, match="not a parameter of adapter"):
        run_adapter(mini_recipe(root, "9c_b4ns_768_640_ext_15ep", "data.adapter_params.size=5"))

    # A copy of the layout with a broken external CSV, then a 2020 CSV without tfrecord.
    broken = tmp_path / "broken"
    for name in (MAIN_DIR, EXT_DIR):
        (broken / name).mkdir(parents=True)
        for csv in (root / name).glob("*.csv"):
            (broken / name / csv.name).write_bytes(csv.read_bytes())
    ext = pd.read_csv(broken / EXT_DIR / "train.csv")
    ext.loc[3, "diagnosis"] = "XYZ"
    ext.to_csv(broken / EXT_DIR / "train.csv", index=False)
    with pytest.raises(MedalsError, match=r"isic2019.*'diagnosis'.*'XYZ'"):
        run_adapter(mini_recipe(broken, "9c_b4ns_768_640_ext_15ep"))
    # Without the external set the broken file is not read.
    train, _ = run_adapter(
        mini_recipe(broken, "9c_b4ns_768_640_ext_15ep", "data.adapter_params.external=false")
    )
    assert len(train) == 45 and (train["is_ext"] == 0).all()
    ext.drop(columns=["tfrecord"]).to_csv(broken / EXT_DIR / "train.csv", index=False)
    with pytest.raises(MedalsError, match=r"isic2019.*train.csv has no column\(s\) 'tfrecord'"):
        run_adapter(mini_recipe(broken, "9c_b4ns_768_640_ext_15ep"))
    main_csv = pd.read_csv(broken / MAIN_DIR / "train.csv")
    main_csv.loc[0, "tfrecord"] = 15
    main_csv.to_csv(broken / MAIN_DIR / "train.csv", index=False)
    with pytest.raises(MedalsError, match=r"'tfrecord' has values \[15\]"):
        run_adapter(mini_recipe(broken, "9c_b4ns_768_640_ext_15ep", "data.adapter_params.external=false"))
    main_csv.drop(columns=["diagnosis"]).to_csv(broken / MAIN_DIR / "train.csv", index=False)
    with pytest.raises(MedalsError, match=r"melanoma-64x64.*train.csv has no column\(s\) 'diagnosis'"):
        run_adapter(mini_recipe(broken, "9c_b4ns_768_640_ext_15ep"))


# ---- (f): acceptance, two scaled-down models and their rank ensemble ----------------------------

TINY = [
    f"data.adapter_params.folder={FOLDER}",
    f"data.sample_submission={MAIN_DIR}/sample_submission.csv",
    "model.backbone=resnet10t",
    "model.pretrained=false",
    "train.epochs=1",
    "train.image_size=32",
    "train.batch_size=16",
    "train.folds=[0,1]",
    "train.num_workers=0",
    "train.progress=false",
]
PAIR = ["9c_meta_b3_768_512_ext_18ep", "9c_b4ns_448_ext_15ep-newfold"]


@pytest.mark.slow
def test_two_models_and_their_rank_ensemble(kaggle, tmp_path, monkeypatch):
    root, frames = kaggle
    monkeypatch.chdir(tmp_path)  # runs/<name> of each member and of the ensemble
    ensemble = tmp_path / "pair.yaml"
    ensemble.write_text(
        yaml.safe_dump(
            {
                "ensemble": {
                    "name": "melanoma_pair",
                    "method": "rank",
                    "members": [str(recipe_path(kernel)) for kernel in PAIR],
                    "weights": None,
                }
            }
        )
    )
    # The recipes' own augmentation list runs at 64 px sources (Resize to 32 comes after it).
    assert main(["run", str(ensemble), f"data.root={root}", *TINY]) == 0

    sample = frames["sample"]
    subs = []
    for kernel in PAIR:
        run = tmp_path / "runs" / kernel
        for fold in (0, 1):
            for name in ("best", "best_20", "final"):
                assert (run / f"fold{fold}" / f"{name}.pt").exists()
        metrics = read_json(run / "metrics.json")
        assert set(metrics["folds"]) == {"0", "1"}
        pooled = metrics["pooled"]
        for key in ("auc", "auc_20", "auc_rank", "auc_20_rank"):
            assert 0.0 <= pooled[key] <= 1.0, (kernel, key)
        oof = pd.read_parquet(run / "oof.parquet")
        assert set(oof["fold"]) == {0, 1}
        sub = pd.read_csv(run / "submission.csv")
        assert list(sub.columns) == ["image_name", "target"]
        assert sub["image_name"].tolist() == sample["image_name"].tolist()
        subs.append(sub.set_index("image_name")["target"])

    final = pd.read_csv(tmp_path / "runs" / "melanoma_pair" / "submission.csv")
    assert list(final.columns) == ["image_name", "target"]
    assert final["image_name"].tolist() == sample["image_name"].tolist()
    ranks = [s.rank(pct=True) for s in subs]  # ensemble.py: target.rank(pct=True), r / n
    expected = (ranks[0] + ranks[1]) / 2
    got = final.set_index("image_name")["target"]
    np.testing.assert_allclose(got.loc[expected.index], expected, atol=1e-5)


@pytest.mark.slow
def test_rank_ensemble_across_9_and_4_class_models(kaggle, tmp_path, monkeypatch, capsys):
    root, frames = kaggle
    monkeypatch.chdir(tmp_path)
    members = ["9c_b4ns_768_640_ext_15ep", "4c_b5ns_1.5e_640_ext_15ep"]
    ensemble = tmp_path / "mixed.yaml"
    ensemble.write_text(
        yaml.safe_dump(
            {
                "ensemble": {
                    "name": "mixed",
                    "method": "rank",
                    "members": [str(recipe_path(k)) for k in members],
                }
            }
        )
    )
    # Each member submits its melanoma probability (index 6 of 9, index 1 of 4): that is what is ranked.
    assert main(["run", str(ensemble), f"data.root={root}", *TINY]) == 0, capsys.readouterr().err
    final = pd.read_csv(tmp_path / "runs" / "mixed" / "submission.csv")
    assert final["image_name"].tolist() == frames["sample"]["image_name"].tolist()
    subs = [pd.read_csv(tmp_path / "runs" / k / "submission.csv").set_index("image_name") for k in members]
    expected = sum(sub["target"].rank(pct=True) for sub in subs) / 2
    got = final.set_index("image_name")["target"]
    np.testing.assert_allclose(got.loc[expected.index], expected, atol=1e-5)
