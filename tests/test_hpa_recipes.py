"""The Human Protein Atlas recipe sets: bestfitting's four 1st-place classification models (seed 001) and
pudae's three 3rd-place models with their ensemble (seed 003), checked against SPEC HPA1/HPA3; then an
acceptance run of one scaled-down recipe of each on a miniature HPA layout (Kaggle PNG planes, an RGB
JPEG external set, duplicates planted across train, external and test)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from medals.augment.cpu import build_transform
from medals.cli import main
from medals.config import load_ensemble, load_recipe
from medals.stages.search import candidate_recipe
from medals.train.schedules import epoch_table

REPO = Path(__file__).resolve().parents[1]
HPA1 = REPO / "recipes" / "hpa_1st"
HPA3 = REPO / "recipes" / "hpa_3rd"

# name: (backbone, stem_pool, cache (img_size), crop, epochs, batch, infer batch, clean split)
HPA1_MODELS = {
    "d121_i768_crop512": ("densenet121", False, 768, 512, 55, 48, 12, False),
    "d121_large_i1536_crop1024": ("densenet121", True, 1536, 1024, 45, 36, 8, True),
    # the write-up's version of the final model: batch 12 x accumulation 3, up-sampling, two phases
    "d121_large_i1536_crop1024_writeup": ("densenet121", True, 1536, 1024, 45, 12, 8, True),
    "inceptionv3_i768_crop512": ("inception_v3", False, 768, 512, 45, 64, 24, True),
    "resnet34_i1536_crop1024": ("resnet34", False, 1536, 1024, 45, 48, 12, True),
}
FINAL_MODELS = ("d121_large_i1536_crop1024", "d121_large_i1536_crop1024_writeup")
# name: (backbone, size, epochs, head, aux head, batch, accumulate, normalize), from pudae's configs
HPA3_MODELS = {
    "resnet34": ("resnet34", 512, 41, "linear", False, 32, 1, "fixed"),
    "inceptionv3": ("inception_v3", 1024, 28, "attention", True, 24, 2, "image"),
    "se_resnext50": ("legacy_seresnext50_32x4d", 1024, 23, "attention", False, 8, 4, "image"),
}
DIHEDRAL = [
    {"name": "Transpose", "p": 0.5},
    {"name": "VerticalFlip", "p": 0.5},
    {"name": "HorizontalFlip", "p": 0.5},
]
# pudae's policy_transform base_aug: RandomRotate90, Flip (one of vertical, horizontal, both), Transpose
FLIP = [{"name": "VerticalFlip", "p": 1.0}, {"name": "HorizontalFlip", "p": 1.0}]
HPA3_DIHEDRAL = [
    {"name": "RandomRotate90", "p": 0.5},
    {"name": "OneOf", "p": 0.5, "transforms": [*FLIP, {"name": "Sequential", "p": 1.0, "transforms": FLIP}]},
    {"name": "Transpose", "p": 0.5},
]


def adam45(epochs: int) -> list[float]:
    """SPEC HPA1: 3e-4 for epochs 1-25, then 1.5e-4, 7.5e-5, 3e-5, 1e-5 in 5-epoch steps (last held)."""
    values = [3e-4] * 25 + [1.5e-4] * 5 + [7.5e-5] * 5 + [3e-5] * 5
    return (values + [1e-5] * epochs)[:epochs]


def adam55() -> list[float]:
    """The seed's Adam55 (src/layers/scheduler.py): 3e-4 to epoch 25, 1.5e-4 to 35, 7.5e-5 to 45, 3e-5
    to 50, 1e-5 to 55 (1-based epochs)."""
    return [3e-4] * 25 + [1.5e-4] * 10 + [7.5e-5] * 10 + [3e-5] * 5 + [1e-5] * 5


# ---- (a) the recipe files -------------------------------------------------------------------------


def test_folders_hold_the_expected_recipes():
    assert sorted(p.stem for p in HPA1.glob("*.yaml")) == sorted(HPA1_MODELS)
    assert sorted(p.stem for p in HPA3.glob("*.yaml")) == sorted([*HPA3_MODELS, "ensemble"])
    plan = load_ensemble(HPA3 / "ensemble.yaml")
    assert [p.name for p in plan.recipes] == [f"{m}.yaml" for m in HPA3_MODELS]
    spec = yaml.safe_load((HPA3 / "ensemble.yaml").read_text())["ensemble"]
    assert spec["method"] == "mean" and spec["weights"] == [1.0, 1.0, 1.0]
    assert main(["plan", str(HPA1)]) == 0
    assert main(["plan", str(HPA3)]) == 0


@pytest.mark.parametrize("name", list(HPA1_MODELS))
def test_hpa1_recipe(name):
    backbone, stem_pool, cache, crop, epochs, batch, infer_batch, clean = HPA1_MODELS[name]
    path = HPA1 / f"{name}.yaml"
    head_lines = path.read_text().splitlines()[:3]
    assert any(
        line.startswith("# python train.py") and f"--img_size {cache} --crop_size {crop}" in line
        for line in head_lines
    )
    r = load_recipe(path)
    assert r.task == "multilabel" and r.data.num_classes == 28
    d = r.data
    assert d.adapter == "hpa" and d.adapter_params.get("yellow", "plane:r") == "plane:r"
    assert d.image_path == d.test_image_path == "{image_path}"
    assert d.cache_size == cache and r.train.image_size == crop
    assert d.keep_columns[0] == "is_external"
    dup = d.duplicates
    assert (dup.kinds, dup.channels, dup.max_distance, dup.exact) == (["phash"], [0, 1, 2], 12, False)
    assert (r.split.method, r.split.column, r.split.n_folds) == ("hpa1", "is_external", 5)
    assert r.split.clean_external is clean
    m = r.model
    assert (m.backbone, m.pretrained, m.in_chans, m.head, m.dropout) == (
        backbone,
        True,
        4,
        "pool_concat",
        0.5,
    )
    assert m.stem_pool is stem_pool and not m.aux_head
    assert [(t.name, t.weight, t.params, t.output) for t in r.loss] == [
        ("focal", 0.5, {"gamma": 2.0, "reduction": "sum_classes"}, "main"),
        ("lovasz", 0.5, {}, "main"),
        ("hard_bce", 0.5, {}, "main"),
    ]
    t = r.train
    assert (t.epochs, t.batch_size, t.optimizer, t.clip_grad) == (epochs, batch, "adam", 1.0)
    assert t.schedule.name == "steps"
    table = adam55() if name == "d121_i768_crop512" else adam45(epochs)  # --scheduler Adam55 / adam45
    assert epoch_table(t) == pytest.approx(table, rel=1e-12)
    if name.endswith("_writeup"):
        assert t.accumulate * t.batch_size == 36  # the command's batch, accumulated
        assert (t.sampler.name, t.sampler.below, t.sampler.factor, t.sampler.mode) == (
            "rare_classes",
            0.01,
            4.0,
            "repeat",
        )
        assert [(p.epochs, p.freeze, p.lr) for p in t.phases] == [(1, "backbone", None), (None, None, None)]
    else:  # the public train.py: RandomSampler, one Adam over every parameter, a step per batch
        assert (t.accumulate, t.sampler, t.phases) == (1, None, None)
    assert t.augment == [*DIHEDRAL, {"name": "RandomSquareCropResize"}]
    assert [(c.name, c.metric, c.mode) for c in t.checkpoints] == [("best", "val_focal", "min")]
    assert t.normalize == "dataset" and t.swa is None  # the training images' channel mean/std
    i = r.infer
    assert (i.tta, i.crop_seeds, i.merge, i.checkpoint, i.batch_size) == (8, 4, "max", "best", infer_batch)
    s = r.submit
    assert (r.submit_kind, s.threshold, s.always_top1, s.average_duplicates) == (
        "multilabel",
        "prevalence_train",
        True,
        True,
    )
    assert not s.replace_leaks and r.policy_search is None
    if name in FINAL_MODELS:  # the final model gets the ArcFace post-processing
        n = s.neighbours
        assert (n.backbone, n.embedding_dim, n.s, n.m, n.threshold) == ("resnet50", 512, 30.0, 0.5, 0.65)
        assert (n.epochs, n.lr, n.image_size, n.batch_size) == (50, 1e-4, 768, 32)  # train_ml.py, FaceAdam
        assert n.identity_column == "antibody" and n.identity_column in d.keep_columns
        assert n.reference_query == "is_external == 1"
        # s10: the external targets corrected, read by the neighbour replacement only
        c = d.label_corrections
        assert (c.path, c.id_replace, c.keep_classes, c.rows) == (
            "train_extra.csv",
            {"/": "_"},
            [8, 9, 10, 20, 26],
            "is_external == 1",
        )
        assert c.column == n.labels_column == "target_corrected" and c.column in d.keep_columns
    else:
        assert s.neighbours is None and d.label_corrections is None
    # Training: the dihedral flips and the crop resized to the crop size; validation: the resize only.
    compose = build_transform(t.augment, 64, True, "multilabel")
    image = np.random.default_rng(0).integers(0, 256, (96, 96, 4), dtype=np.uint8)
    assert compose(image=image)["image"].shape == (64, 64, 4)


@pytest.mark.parametrize("name", list(HPA3_MODELS))
def test_hpa3_recipe(name):
    backbone, size, epochs, head, aux, batch, accumulate, normalize = HPA3_MODELS[name]
    r = load_recipe(HPA3 / f"{name}.yaml")
    d = r.data
    assert d.adapter == "hpa" and d.adapter_params["yellow"] == "lum"
    assert d.cache_size == size == r.train.image_size
    dup = d.duplicates
    assert (dup.kinds, dup.channels, dup.exact) == (["ahash", "phash"], [1], True)
    assert (r.split.method, r.split.n_folds) == ("hpa3", 5)  # 11 chunks, the last the hold-out
    m = r.model
    assert (m.backbone, m.in_chans, m.head, m.aux_head, m.pretrained) == (backbone, 4, head, aux, True)
    terms = [(t.name, t.weight, t.params.get("reduction"), t.output) for t in r.loss]
    expected = [("focal", 1.0, "mean", "main")]
    if aux:
        expected.append(("focal", 0.4, "mean", "aux"))
    assert terms == expected
    t = r.train
    assert (t.epochs, t.optimizer, t.lr, t.batch_size, t.accumulate, t.normalize) == (
        epochs,
        "adam",
        5e-4,
        batch,
        accumulate,
        normalize,
    )
    assert epoch_table(t) == [5e-4] * epochs
    assert t.augment == [*HPA3_DIHEDRAL, {"name": "PolicyFile", "path": "{run_dir}/policies.json"}]
    assert r.swa_epochs == list(range(epochs - 9, epochs + 1))
    assert (r.infer.tta, r.infer.merge, r.infer.checkpoint, r.infer.crop_seeds) == (8, "mean", "swa", 0)
    assert (r.submit.threshold, r.submit.replace_leaks) == ("prevalence_holdout", True)
    ps = r.policy_search
    assert (ps.candidates, ps.subpolicies, ps.keep, ps.file) == (50, 5, 5, "policies.json")
    assert ps.epochs == 60 and ps.sampler == "hpa3"
    candidate = candidate_recipe(r)
    assert (candidate.model.backbone, candidate.train.image_size) == ("resnet18", 256)
    assert candidate.train.swa is None and candidate.train.epochs == ps.epochs


# ---- (b) acceptance: a miniature HPA competition -------------------------------------------------

SIZE = 64
N_TRAIN, N_TEST, N_EXT = 32, 8, 8
PLANTED = (0, 7)  # learnable classes: a bright green blob (class 0) or a bright blue bar (class 7)
EXT_COPIES = {"ext_0": "tr_00", "ext_1": "tr_01"}  # external images re-encoded from train images
TEST_COPIES = {"te_0": "tr_02", "te_1": "tr_03"}  # test images re-encoded from train images


def smooth_planes(rng: np.random.Generator) -> np.ndarray:
    """Four smooth random planes (SIZE x SIZE x 4, uint8): hashes survive JPEG re-encoding."""
    low = rng.uniform(20, 200, (8, 8, 4)).astype(np.float32)
    return np.clip(cv2.resize(low, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def plant(image: np.ndarray, labels: list[int]) -> np.ndarray:
    image = image.copy()
    if 0 in labels:
        plane = image[:, :, 1].copy()
        cv2.circle(plane, (32, 32), 12, 255, -1)
        image[:, :, 1] = plane
    if 7 in labels:
        image[24:40, :, 2] = 250
    return image


def jpeg_roundtrip(plane: np.ndarray) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", plane, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def write_kaggle(folder: Path, id_: str, image: np.ndarray) -> None:
    for k, channel in enumerate(("red", "green", "blue", "yellow")):
        cv2.imwrite(str(folder / f"{id_}_{channel}.png"), image[:, :, k])


def write_external(folder: Path, id_: str, image: np.ndarray) -> None:
    """HPAv18 style: colour JPEGs, red/green/blue in their own plane, yellow = red + green."""
    zero = np.zeros((SIZE, SIZE), np.uint8)
    planes = {
        "red": (image[:, :, 0], zero, zero),
        "green": (zero, image[:, :, 1], zero),
        "blue": (zero, zero, image[:, :, 2]),
        "yellow": (image[:, :, 3], image[:, :, 3], zero),
    }
    for channel, (r, g, b) in planes.items():
        bgr = np.dstack([b, g, r])
        cv2.imwrite(str(folder / f"{id_}_{channel}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])


def make_hpa(root: Path) -> dict:
    rng = np.random.default_rng(11)
    for folder in ("train", "test", "external"):
        (root / folder).mkdir(parents=True)
    images, targets = {}, {}
    train_ids = [f"tr_{i:02d}" for i in range(N_TRAIN)]
    for i, id_ in enumerate(train_ids):
        labels = sorted({PLANTED[i % 2], int(rng.integers(1, 28))} - {7 if i % 2 == 0 else 0})
        if i % 4 == 3:
            labels = sorted({*labels, 0, 7})
        targets[id_] = labels
        images[id_] = plant(smooth_planes(rng), labels)
        write_kaggle(root / "train", id_, images[id_])
    ext_ids = [f"ext_{i}" for i in range(N_EXT)]
    ext_targets = {}
    for i, id_ in enumerate(ext_ids):
        if id_ in EXT_COPIES:  # same labels as the source, so the clean split keeps them
            source = EXT_COPIES[id_]
            image, labels = images[source], targets[source]
        else:
            labels = [PLANTED[i % 2]]
            image = plant(smooth_planes(rng), labels)
        ext_targets[id_] = labels
        write_external(root / "external", id_, image)
    test_ids = [f"te_{i}" for i in range(N_TEST)]
    for i, id_ in enumerate(test_ids):
        if id_ in TEST_COPIES:
            source = images[TEST_COPIES[id_]]
            image = np.dstack([jpeg_roundtrip(source[:, :, k]) for k in range(4)])
        else:
            image = plant(smooth_planes(rng), [PLANTED[i % 2]])
        write_kaggle(root / "test", id_, image)

    def target(labels):
        return " ".join(str(v) for v in labels)

    pd.DataFrame({"Id": train_ids, "Target": [target(targets[i]) for i in train_ids]}).to_csv(
        root / "train.csv", index=False
    )
    # The antibody id for the metric learning, derived from the Id in this miniature (4 identities).
    pd.DataFrame(
        {
            "Id": ext_ids,
            "Target": [target(ext_targets[i]) for i in ext_ids],
            "antibody": [f"HPA{int(i.split('_')[1]) % 4:06d}" for i in ext_ids],
        }
    ).to_csv(root / "external.csv", index=False)
    pd.DataFrame({"Id": test_ids[::-1], "Predicted": "0"}).to_csv(root / "sample_submission.csv", index=False)
    # HPA1's corrected external targets (train_extra.csv style: "/" in the ids): ext_2 gains label 5, and
    # its 8 (a class whose original call is kept) is dropped; an id beyond the external set is not used.
    pd.DataFrame({"Id": ["ext/2", "zz/9"], "Target": ["5 8", "3"]}).to_csv(
        root / "train_extra.csv", index=False
    )
    return {"train": train_ids, "test": test_ids, "external": ext_ids}


FAST = [
    "model.backbone=resnet18",
    "model.pretrained=false",
    "split.n_folds=2",
    "train.batch_size=16",
    "train.num_workers=0",
    "train.progress=false",
    "infer.batch_size=32",
]


def check_submission(path: Path, data: Path, ids: dict) -> pd.DataFrame:
    sub = pd.read_csv(path, dtype=str, keep_default_na=False)
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str)
    assert list(sub.columns) == list(sample.columns) == ["Id", "Predicted"]
    assert sorted(sub["Id"]) == sorted(sample["Id"]) == sorted(ids["test"])
    for value in sub["Predicted"]:
        labels = [int(v) for v in value.split(" ")] if value else []
        assert labels == sorted(set(labels)) and all(0 <= v < 28 for v in labels)
        assert value == " ".join(str(v) for v in labels)
    return sub


def check_duplicates(run: Path, planted: dict[str, str], holdout_ok: bool = False) -> None:
    pairs = pd.read_parquet(run / "duplicates.parquet")
    found = {frozenset(p) for p in zip(pairs["id_a"], pairs["id_b"], strict=True)}
    for a, b in planted.items():
        assert frozenset((a, b)) in found, (a, b, sorted(map(sorted, found)))
    folds = pd.read_parquet(run / "folds.parquet").set_index("id")["fold"]
    table = pd.read_parquet(run / "table.parquet").set_index("id")
    for a, b in planted.items():
        if a in folds.index and b in folds.index:
            assert folds[a] == folds[b], (a, b)
            assert table.loc[a, "dup_group"] == table.loc[b, "dup_group"]


def check_leaks(run: Path) -> None:
    leaks = pd.read_csv(run / "leaks.csv", dtype=str)
    for test_id, source in TEST_COPIES.items():
        assert source in set(leaks.loc[leaks["test_id"] == test_id, "labelled_id"])


@pytest.fixture(scope="module")
def hpa_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("hpa_data")
    return root, make_hpa(root)


def test_hpa1_final_model_end_to_end(hpa_data, tmp_path, monkeypatch):
    data, ids = hpa_data
    monkeypatch.chdir(tmp_path)
    argv = [
        "run",
        str(HPA1 / "d121_large_i1536_crop1024.yaml"),
        f"data.root={data}",
        *FAST,
        "model.stem_pool=false",  # a DenseNet-only stem; the tiny backbone is a ResNet
        "data.cache_size=48",
        "train.image_size=32",
        "train.epochs=2",
        "infer.tta=2",
        "infer.crop_seeds=2",
        "submit.neighbours.backbone=resnet18",
        "submit.neighbours.pretrained=false",
        "submit.neighbours.embedding_dim=32",
        "submit.neighbours.epochs=2",
        "submit.neighbours.image_size=32",
        "submit.neighbours.batch_size=8",
    ]
    assert main(argv) == 0
    run = tmp_path / "runs" / "hpa1_d121_large_i1536_crop1024"
    check_submission(run / "submission.csv", data, ids)
    check_duplicates(run, {**EXT_COPIES, **TEST_COPIES})
    check_leaks(run)
    table = pd.read_parquet(run / "table.parquet")
    assert table.loc[table["split"] == "train", "is_external"].sum() == N_EXT
    assert (run / "neighbours" / "arcface.pt").exists()
    corrected = table.set_index("id")["target_corrected"]
    assert corrected["ext_2"] == "5" and corrected["ext_3"] == "7"  # ext_3: no correction, its own
    assert table.set_index("id").loc["ext_2", "labels"] == "0"  # the classifier's labels: uncorrected
    stats = json.loads((run / "channel_stats.json").read_text())
    assert len(stats["mean"]) == len(stats["std"]) == 4 and all(0 < v < 1 for v in stats["mean"])
    log = pd.read_csv(run / "fold0" / "log.csv")
    assert "val_focal" in log.columns


def test_hpa1_writeup_model_trains_a_fold(hpa_data, tmp_path, monkeypatch):
    # The write-up's additions on the miniature: 2 epochs, the first with the backbone frozen, rows of a
    # class on fewer than 10% of the training rows 4 times an epoch, batches of 4 accumulated 3 times.
    data, _ = hpa_data
    monkeypatch.chdir(tmp_path)
    recipe = str(HPA1 / "d121_large_i1536_crop1024_writeup.yaml")
    common = [f"data.root={data}", *FAST, "model.stem_pool=false", "data.cache_size=48"]
    common += ["train.image_size=32", "train.epochs=2", "train.batch_size=4", "train.sampler.below=0.1"]
    assert main(["prepare", recipe, *common]) == 0
    assert main(["split", recipe, *common]) == 0
    assert main(["train", recipe, *common, "--fold", "0"]) == 0
    fold = tmp_path / "runs" / "hpa1_d121_large_i1536_crop1024_writeup" / "fold0"
    log = pd.read_csv(fold / "log.csv")
    assert log["epoch"].tolist() == [1, 2] and log["lr"].tolist() == pytest.approx([3e-4, 3e-4])
    assert (fold / "final.pt").exists() and np.isfinite(log["val_focal"]).all()


def test_hpa3_model_end_to_end(hpa_data, tmp_path, monkeypatch):
    data, ids = hpa_data
    monkeypatch.chdir(tmp_path)
    overrides = (
        "{model.backbone: resnet18, model.head: linear, model.aux_head: false, "
        "loss: [{name: focal, params: {gamma: 2.0}}], train.batch_size: 16, train.accumulate: 1}"
    )
    argv = [
        "run",
        str(HPA3 / "inceptionv3.yaml"),
        f"data.root={data}",
        *FAST,
        "data.cache_size=32",
        "train.image_size=32",
        "train.epochs=2",
        "train.swa.last=2",
        "infer.tta=2",
        "policy_search.candidates=2",
        "policy_search.subpolicies=2",
        "policy_search.keep=1",
        "policy_search.epochs=1",
        f"policy_search.overrides={overrides}",
    ]
    import medals.stages.evaluate as evaluate_stage
    import medals.stages.submit as submit_stage

    loads, reads = [], []
    load_fold_model, read_table = evaluate_stage.load_fold_model, submit_stage.read_table
    monkeypatch.setattr(
        evaluate_stage, "load_fold_model", lambda *a: loads.append(a[2]) or load_fold_model(*a)
    )
    monkeypatch.setattr(submit_stage, "read_table", lambda layout: reads.append(1) or read_table(layout))
    run_submit = submit_stage.run_submit

    def counted_submit(recipe, layout):
        reads.clear()  # the reads of the submit stage alone (the check before training reads it too)
        return run_submit(recipe, layout)

    monkeypatch.setattr(submit_stage, "run_submit", counted_submit)
    assert main(argv) == 0
    # evaluate predicts a fold's OOF and hold-out rows with one load of its model; submit (prevalence
    # thresholds from the hold-out, test duplicates averaged, leaks replaced) reads table.parquet once.
    assert loads == [0]  # train.folds: [0], as the seed submitted
    assert reads == [1]
    run = tmp_path / "runs" / "hpa3_inceptionv3"
    assert (run / "policies.json").exists()
    check_submission(run / "submission.csv", data, ids)
    check_duplicates(run, {**EXT_COPIES, **TEST_COPIES})
    check_leaks(run)
    folds = pd.read_parquet(run / "folds.parquet")["fold"]
    assert (folds == -2).any()  # the hold-out chunk used for the prevalence thresholds
    sub = pd.read_csv(run / "submission.csv", dtype=str, keep_default_na=False).set_index("Id")
    train = pd.read_csv(data / "train.csv", dtype=str).set_index("Id")
    for test_id, source in TEST_COPIES.items():  # replace_leaks: the leaked labels are submitted
        assert sub.loc[test_id, "Predicted"] == train.loc[source, "Target"]
