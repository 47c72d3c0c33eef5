"""HPA 3rd place (pudae/kaggle-hpa) parity: each recipe setting and post-processing function against
values worked out by hand from the seed's public code (configs/*.yml, train.py, swa.py + utils/swa.py,
make_submission.py, transforms/policy_transform.py, augmentation_search.py, albumentations 0.1.8).

Frequencies are checked within binomial bounds |k - n p| <= 5 sqrt(n p (1 - p)) at a fixed seed.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from medals.augment.cpu import build_ops, build_transform
from medals.augment.jitter import jitter_matrix, jitter_points
from medals.augment.policy import OPS, PROBABILITIES, op_spec, policy_to_spec, random_policy
from medals.config import load_recipe
from medals.data.dataset import reseed_transform
from medals.data.io import read_image
from medals.files import write_json, write_parquet
from medals.post.thresholds import HPA3_GRID, prevalence_thresholds
from medals.runtime.settings import resolve_runtime
from medals.train.averaging import recompute_batchnorm
from medals.train.checkpointing import bn_source

HPA3 = Path(__file__).resolve().parents[1] / "recipes" / "hpa_3rd"
N_DRAWS = 6000


def within_binomial(k: int, n: int, p: float) -> bool:
    return abs(k - n * p) <= 5 * math.sqrt(n * p * (1 - p))


def seed_find_best_thres(probs: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """make_submission.find_best_thres re-derived: per class, scan 0.05, 0.06, ..., 0.99 upwards and keep
    the first threshold whose predicted-positive fraction (p > t) is strictly nearest the true fraction."""
    n = len(probs)
    out = []
    for k in range(probs.shape[1]):
        proportion = truth[:, k].sum() / n
        best_diff, best = 1000.0, 0.0
        for t in np.arange(0.05, 1.00, 0.01):
            diff = abs(proportion - int((probs[:, k] > t).sum()) / n)
            if diff < best_diff:
                best_diff, best = diff, t
        out.append(best)
    return np.array(out)


# ---- thresholds on find_best_thres's grid ------------------------------------------------------


def test_grid_is_the_seeds_arange():
    # np.arange(0.05, 1.00, 0.01): 95 values, not rounded (0.05 + 2 * 0.01 is 0.07000000000000001).
    assert len(HPA3_GRID) == 95 and HPA3_GRID[0] == 0.05 and HPA3_GRID[-1] == pytest.approx(0.99)
    assert np.array_equal(HPA3_GRID, np.arange(0.05, 1.00, 0.01))


def test_prevalence_thresholds_on_the_grid_match_find_best_thres():
    # Class 0, rate 2/10 (hand): counts are 10 for t <= 0.10, 4 for 0.11..0.40, 3 for 0.41..0.95, 0 above;
    # 3 is nearest 2, first at t = 0.41. The exact rule (medals without the grid) gives 2 positives
    # at (0.952 + 0.951) / 2 = 0.9515.
    # Class 1, rate 2/10: counts 10 (t <= 0.30), 3 (0.31..0.69), 1 (0.70..0.89), 0: 3 is nearest
    # (|0.2 - 0.3| = 0.09999999999999998 < |0.2 - 0.1| = 0.1 in floats), first at 0.31; the exact rule
    # ties 3 and 1 positives (one from 2 each) and takes fewer: (0.9 + 0.7) / 2 = 0.8.
    # On the first 8 rows with rate 2/8 the grid's diffs tie exactly (0.125, binary fractions): the scan
    # keeps the lower threshold, 0.31, the first it met.
    class0 = [0.955, 0.952, 0.951, 0.405] + [0.105] * 6
    class1 = [0.9, 0.7, 0.7] + [0.305] * 7
    probs = np.column_stack([class0, class1])
    truth = np.zeros((10, 2), dtype=int)
    truth[:2, 0] = 1
    truth[:2, 1] = 1
    grid = prevalence_thresholds(probs, truth.mean(axis=0), grid=HPA3_GRID)
    assert grid.tolist() == seed_find_best_thres(probs, truth).tolist()
    assert grid == pytest.approx([0.41, 0.31], abs=1e-12)
    exact = prevalence_thresholds(probs, truth.mean(axis=0))
    assert exact == pytest.approx([0.9515, (0.9 + 0.7) / 2])
    eight = np.array(class1[:8])[:, None]
    tie = np.zeros((8, 1), dtype=int)
    tie[:2] = 1
    assert prevalence_thresholds(eight, tie.mean(axis=0), grid=HPA3_GRID) == pytest.approx([0.31], abs=1e-12)
    assert prevalence_thresholds(eight, tie.mean(axis=0)) == pytest.approx([0.8])  # fewer positives
    # max |diff| of the old (exact) rule on this fixture:
    assert np.abs(exact - grid).max() == pytest.approx(0.5415)


def test_recipes_take_the_grid():
    for name in ("resnet34", "inceptionv3", "se_resnext50"):
        s = load_recipe(HPA3 / f"{name}.yaml").submit
        assert (s.threshold, s.prevalence_grid) == ("prevalence_holdout", "hpa3")


# ---- settings from the configs -----------------------------------------------------------------

# config: (num_epochs, batch_size, num_grad_acc (None = a step per batch), per_image_norm)
SEED_CONFIGS = {
    "resnet34": (41, 32, None, False),  # resnet34.[0-4].policy.yml
    "inceptionv3": (28, 24, 2, True),  # inceptionv3.attention.policy.per_image_norm.1024.yml
    "se_resnext50": (23, 8, 4, True),  # se_resnext50.attention.policy.per_image_norm.1024.yml
}


@pytest.mark.parametrize("name", list(SEED_CONFIGS))
def test_epochs_batch_and_accumulation(name):
    epochs, batch, grad_acc, _ = SEED_CONFIGS[name]
    t = load_recipe(HPA3 / f"{name}.yaml").train
    # train.py: `for epoch in range(start_epoch, num_epochs)` from 0: num_epochs epochs, 0..num_epochs-1.
    assert t.epochs == len(range(0, epochs))
    assert (t.batch_size, t.accumulate) == (batch, grad_acc or 1)


@pytest.mark.parametrize("name", list(SEED_CONFIGS))
def test_swa_window(name):
    epochs = SEED_CONFIGS[name][0]
    r = load_recipe(HPA3 / f"{name}.yaml")
    # swa.py without --epoch_end: the last 10 of the sorted epoch_%04d.pth files, i.e. epochs
    # (0-based) num_epochs-10 .. num_epochs-1; resnet34: 31..40. medals counts epochs from 1.
    seed_window = sorted(f"epoch_{e:04d}.pth" for e in range(epochs))[-10:]
    assert [f"epoch_{e - 1:04d}.pth" for e in r.swa_epochs] == seed_window
    if name == "resnet34":
        assert [e - 1 for e in r.swa_epochs] == list(range(31, 41))
    assert r.train.swa.bn_data == "plain"  # get_dataloader(config, 'train', get_transform(config, 'val'))


def test_policy_search_settings():
    for name in SEED_CONFIGS:
        ps = load_recipe(HPA3 / f"{name}.yaml").policy_search
        assert (ps.epochs, ps.sampler, ps.candidates, ps.subpolicies, ps.keep) == (60, "hpa3", 50, 5, 5)
    quick = load_recipe(HPA3 / "resnet34.yaml", ["policy_search.epochs=5"]).policy_search
    assert quick.epochs == 5  # the CPU-friendly override


# ---- normalisation -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SEED_CONFIGS))
def test_normalisation_constants(name):
    per_image = SEED_CONFIGS[name][3]
    r = load_recipe(HPA3 / f"{name}.yaml")
    t = r.train
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 4), dtype=np.uint8)
    out = build_transform([], 32, False, "multilabel", t.mean, t.std, normalize=t.normalize)(image=image)[
        "image"
    ]
    x = image.astype(np.float32)
    if per_image:  # policy_transform: (x - mean) / (std + 1e-7), per channel, population std
        seed = (x - x.reshape(-1, 4).mean(axis=0)) / (x.reshape(-1, 4).std(axis=0) + 1e-7)
    else:  # means 127.5, stds 255 for all four channels
        seed = (x - 127.5) / 255.0
    assert np.abs(out - seed).max() < 1e-5


# ---- BatchNorm recompute -----------------------------------------------------------------------


def test_bn_recompute_weights_each_batch_by_its_images():
    # utils/swa.bn_update: momentum b / (n + b) before a batch of b after n images, so the running mean is
    # sum_i b_i mean_i / N and the running variance sum_i b_i var_i / N (var_i unbiased, as BN keeps it).
    rng = np.random.default_rng(0)
    batches = [rng.normal(0, 1, (3, 2, 4, 4)), rng.normal(5, 2, (1, 2, 4, 4))]
    sizes = np.array([3, 1])
    means = np.array([b.mean(axis=(0, 2, 3)) for b in batches])
    variances = np.array([b.transpose(1, 0, 2, 3).reshape(2, -1).var(axis=1, ddof=1) for b in batches])
    model = nn.Sequential(nn.BatchNorm2d(2))
    model.forward = lambda x, meta=None: nn.Sequential.forward(model, x)
    loader = [{"image": torch.tensor(b, dtype=torch.float32)} for b in batches]
    assert recompute_batchnorm(model, loader, torch.device("cpu")) == 4
    bn = model[0]
    expected_mean = (sizes[:, None] * means).sum(axis=0) / 4
    assert bn.running_mean.numpy() == pytest.approx(expected_mean, abs=1e-5)
    assert bn.running_var.numpy() == pytest.approx((sizes[:, None] * variances).sum(axis=0) / 4, abs=1e-4)
    assert not np.allclose(expected_mean, means.mean(axis=0), atol=0.1)  # equal batch weights differ
    assert bn.momentum == 0.1  # restored


def test_bn_data_plain_is_the_un_augmented_training_rows(tmp_path):
    # A pass over un-augmented images: each item equals the validation transform, (x - 127.5) / 255.
    paths = []
    for i in range(2):
        image = np.random.default_rng(i).integers(0, 256, (32, 32, 4), dtype=np.uint8)
        paths.append(str(tmp_path / f"im{i}.png"))
        cv2.imwrite(paths[-1], image)
    rows = pd.DataFrame({"id": ["a", "b"], "path": paths, "labels": ["0", "1 2"]})
    invert = "train.augment=[{name: InvertImg, p: 1.0}]"
    for bn_data in ("plain", "train"):
        recipe = load_recipe(
            HPA3 / "resnet34.yaml", [invert, "train.image_size=32", f"train.swa.bn_data={bn_data}"]
        )
        runtime = resolve_runtime(recipe, "cpu")
        from medals.infer.batches import batch_source

        train_set, prepare = batch_source(recipe, runtime, rows, 28, True, torch.device("cpu"))
        run = SimpleNamespace(
            recipe=recipe,
            runtime=runtime,
            train_rows=rows,
            info={"num_classes": 28},
            device=torch.device("cpu"),
            train_set=train_set,
            prepare_train=prepare,
        )
        dataset, _ = bn_source(run)
        for i, path in enumerate(paths):
            plain = (np.transpose(read_image(path), (2, 0, 1)).astype(np.float32) - 127.5) / 255.0
            item = dataset[i]["image"].numpy()
            if bn_data == "plain":
                assert np.abs(item - plain).max() < 1e-6
            else:  # the training fold as trained: inverted
                assert np.abs(item + plain).max() < 1e-5


# ---- policy parameter distributions (augmentation_search.sample_policy) ------------------------


def _draws(op: str, n: int = N_DRAWS, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [OPS[op].draw(rng) for _ in range(n)]


@pytest.mark.parametrize("op", ["blur", "motion_blur"])
def test_blur_kernel_limit_is_uniform_on_3_4_5(op):
    # sample_params((3, 5)) = random.randint(3, 5): P(limit 5) = 1/3 (medals' magnitude sampler: 1/2).
    limits = np.array([3 + 2 * m for m, _ in _draws(op)])
    for value in (3, 4, 5):
        assert within_binomial(int((limits == value).sum()), N_DRAWS, 1 / 3)
    # albumentations 0.1.8 Blur: ksize from arange(3, limit + 1, 2): limit 4 blurs like 3, 5 with 3 or 5.
    assert [op_spec(op, 1.0, (k - 3) / 2)["blur_limit"] for k in (3, 4, 5)] == [[3, 3], [3, 3], [3, 5]]
    rng = np.random.default_rng(1)
    old = np.array([round(rng.uniform(*OPS[op].search), 3) for _ in range(N_DRAWS)])
    assert not within_binomial(int((np.round(old) == 1).sum()), N_DRAWS, 1 / 3)


def test_grid_distortion_num_steps_3_to_5_and_distort_limit():
    draws = _draws("grid_distortion")
    steps = np.array([q["num_steps"] for _, q in draws])
    limits = np.array([0.5 * m for m, _ in draws])
    for value in (3, 4, 5):
        assert within_binomial(int((steps == value).sum()), N_DRAWS, 1 / 3)
    assert limits.min() >= 0.1 and limits.max() < 0.5
    assert within_binomial(int((limits < 0.3).sum()), N_DRAWS, 0.5)  # uniform(0.1, 0.5)
    spec = op_spec_with(draws[0], "grid_distortion")
    assert spec["num_steps"] == steps[0] and spec["distort_limit"] == pytest.approx(limits[0])
    assert spec["normalized"] is False  # 0.1.8's grid_distortion: steps as drawn
    out = A.Compose(build_ops([{**spec, "p": 1.0}]))(image=np.zeros((64, 64, 4), np.uint8))["image"]
    assert out.shape == (64, 64, 4)


def op_spec_with(draw, op: str) -> dict:
    (one_of,) = policy_to_spec([((op, 1.0, draw[0], tuple(draw[1].items())), ("invert", 0.0, 0.0))])
    return one_of["transforms"][0]["transforms"][0]


def test_elastic_sigma_and_alpha_affine_30_to_70():
    draws = _draws("elastic")
    for key in ("sigma", "alpha_affine"):
        values = np.array([q[key] for _, q in draws])
        assert values.min() == 30 and values.max() == 70 and np.all(values == values.round())
        assert within_binomial(int((values <= 50).sum()), N_DRAWS, 21 / 41)  # randint(30, 70)
    spec = op_spec_with(draws[0], "elastic")
    assert spec["name"] == "ElasticAffine" and spec["alpha_affine"] == draws[0][1]["alpha_affine"]


def test_gamma_rotate_and_probabilities():
    gammas = _draws("gamma")
    low = np.array([q["low"] for _, q in gammas])
    high = np.array([q["high"] for _, q in gammas])
    assert (low.min(), low.max(), high.min(), high.max()) == (70, 90, 110, 130)
    assert within_binomial(int((low <= 80).sum()), N_DRAWS, 11 / 21)
    assert within_binomial(int((high <= 120).sum()), N_DRAWS, 11 / 21)
    assert abs(np.corrcoef(low, high)[0, 1]) < 0.05  # drawn independently (medals' old: symmetric)
    limits = np.array([45 * m for m, _ in _draws("rotate")])
    assert np.allclose(limits, limits.round()) and (limits.min(), limits.max()) == pytest.approx((5, 45))
    assert within_binomial(int((limits.round() <= 25).sum()), N_DRAWS, 21 / 41)
    steps = [step for seed in range(300) for sub in random_policy(seed) for step in sub]
    for p in PROBABILITIES:
        assert within_binomial(sum(step.p == p for step in steps), len(steps), 1 / 4)
    for op in ("blur", "elastic", "rotate"):  # random.sample(POLICIES, 2): each of 11 ops alike
        assert within_binomial(sum(step.op == op for step in steps), len(steps), 1 / 11)
    assert all(sub.first.op != sub.second.op for seed in range(50) for sub in random_policy(seed))


def test_elastic_affine_is_albumentations_0x_affine():
    # elastic_transform_fast: centre (h, w) // 2, side min(h, w) // 3, points c + s, (c0 + s, c1 - s), c - s,
    # moved by uniform(-alpha_affine, alpha_affine); the affine through them, reflect-101 border.
    assert jitter_points(96, 96).tolist() == [[80, 80], [80, 16], [16, 16]]
    assert np.allclose(jitter_matrix(96, 96, np.zeros((3, 2))), [[1, 0, 0], [0, 1, 0]])
    shift = jitter_matrix(96, 96, np.full((3, 2), 4.0))
    assert np.allclose(shift, [[1, 0, 4], [0, 1, 4]])  # the same jitter at every point: a translation
    image = np.random.default_rng(0).integers(0, 256, (96, 96, 4), dtype=np.uint8)
    op = build_ops([{"name": "ElasticAffine", "alpha_affine": 0.0, "p": 1.0}])[0]
    assert np.array_equal(A.Compose([op])(image=image)["image"], image)
    # The elastic field at alpha 1, sigma >= 30 is below a twentieth of a pixel (dropped):
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(np.random.default_rng(0).random((512, 512)) * 2 - 1, 30)
    assert np.abs(field).max() < 0.05


# ---- the dihedral base augmentation ------------------------------------------------------------


def test_dihedral_distribution_is_rotate90_flip_transpose():
    # RandomRotate90 (p 0.5, k uniform 0..3): k = 0 with 5/8, 1, 2, 3 with 1/8; Flip (p 0.5, d uniform in
    # {-1, 0, 1}): none 1/2, vertical, horizontal, both 1/6; Transpose 1/2. By hand: identity =
    # 1/2 P(F R = id) + 1/2 P(F R = transpose) = 1/2 (5/16 + 1/48) + 1/2 (2/48) = 3/16; transpose 3/16
    # likewise; the six other elements 5/48 each (the old recipe's three flips: 1/8 each).
    spec = [op for op in load_recipe(HPA3 / "resnet34.yaml").train.augment if op["name"] != "PolicyFile"]
    compose = A.Compose(build_ops(spec))
    # Seeded as the training loader seeds it (albumentations 2's own set_random_seed would seed every op
    # alike and make the three p = 0.5 decisions one: see reseed_transform).
    reseed_transform(SimpleNamespace(transform=compose), 0)
    grid = np.arange(4, dtype=np.uint8).reshape(2, 2, 1)
    counts: dict[tuple, int] = {}
    n = 8000
    for _ in range(n):
        key = tuple(compose(image=grid)["image"].ravel().tolist())
        counts[key] = counts.get(key, 0) + 1
    identity, transpose = (0, 1, 2, 3), (0, 2, 1, 3)
    assert len(counts) == 8
    for key, k in counts.items():
        p = 3 / 16 if key in (identity, transpose) else 5 / 48
        assert within_binomial(k, n, p), (key, k, n * p)
    assert not within_binomial(counts[identity], n, 1 / 8)


# ---- the ensemble: thresholds from the ensembled hold-out --------------------------------------


def _member(root: Path, name: str, holdout: np.ndarray, test: np.ndarray, data: Path):
    run = root / name
    run.mkdir(parents=True)
    holdout_ids = [f"h{i}" for i in range(len(holdout))]
    test_ids = [f"t{i}" for i in range(len(test))]
    labels = ["0", "0"] + [""] * (len(holdout) - 2)  # class 0: 2 of 8 positive
    table = pd.DataFrame(
        {
            "id": holdout_ids + test_ids,
            "split": ["train"] * len(holdout_ids) + ["test"] * len(test_ids),
            "labels": labels + [""] * len(test_ids),
        }
    )
    write_parquet(run / "table.parquet", table)
    write_json(run / "labels.json", {"classes": [str(k) for k in range(28)], "num_classes": 28})

    def frame(ids, class0):
        probs = np.full((len(ids), 28), 0.01)
        probs[:, 0] = class0
        return pd.DataFrame({"id": ids, **{f"p_{k}": probs[:, k] for k in range(28)}})

    write_parquet(run / "holdout.parquet", frame(holdout_ids, holdout))
    write_parquet(run / "test.parquet", frame(test_ids, test))
    return load_recipe(
        HPA3 / f"{name}.yaml", [f"run_dir={run}", f"data.root={data}", "submit.replace_leaks=false"]
    )


def test_ensemble_thresholds_come_from_the_ensembled_holdout(tmp_path, monkeypatch):
    from medals.stages import submit as submit_stage
    from medals.stages.ensemble import run_ensemble

    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"Id": ["t0", "t1"], "Predicted": ["0", "0"]}).to_csv(
        data / "sample_submission.csv", index=False
    )
    a = np.array([0.9, 0.7, 0.7, 0.305, 0.305, 0.305, 0.305, 0.305])
    b = np.array([0.5, 0.5, 0.11, 0.1, 0.1, 0.1, 0.1, 0.1])
    members = [
        _member(tmp_path / "runs", "resnet34", a, np.array([0.3, 0.9]), data),
        _member(tmp_path / "runs", "inceptionv3", b, np.array([0.4, 0.1]), data),
    ]
    seen = []
    thresholds = submit_stage._thresholds
    monkeypatch.setattr(submit_stage, "_thresholds", lambda *args: seen.append(thresholds(*args)) or seen[-1])
    out = tmp_path / "ensemble"
    out.mkdir()
    path = run_ensemble(members, "mean", [1.0, 1.0], out)
    truth = np.zeros((8, 28), dtype=int)
    truth[:2, 0] = 1
    mean = np.full((8, 28), 0.01)
    mean[:, 0] = (a + b) / 2  # 0.7, 0.6, 0.405, 0.2025 x 5: 2 positives for 0.41..0.59, the first 0.41
    first = np.full((8, 28), 0.01)
    first[:, 0] = a  # alone: counts 3 and 1 tie around 2, the lower 0.31
    expected, first_member = seed_find_best_thres(mean, truth), seed_find_best_thres(first, truth)
    assert (expected[0], first_member[0]) == pytest.approx((0.41, 0.31), abs=1e-12)
    (got,) = seen
    assert got.tolist() == expected.tolist()
    assert got[0] != first_member[0]
    # t0: mean 0.35 is under 0.41 (the first member's 0.31 would submit class 0); t1: mean 0.5 is over.
    sub = pd.read_csv(path, dtype=str, keep_default_na=False).set_index("Id")["Predicted"]
    assert sub.to_dict() == {"t0": "", "t1": "0"}
    assert pd.read_parquet(out / "holdout.parquet")["p_0"].to_numpy() == pytest.approx((a + b) / 2)


def test_reseeded_ops_decide_independently():
    # albumentations 2's Compose.set_random_seed seeds each op alike: three p = 0.5 flips then move
    # together (2 outcomes). The loader's reseed_transform shares one stream: all 8 combinations.
    grid = np.arange(4, dtype=np.uint8).reshape(2, 2, 1)
    for reseed, outcomes in ((lambda c: c.set_random_seed(0), 2), (None, 8)):
        compose = A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.Transpose(p=0.5)])
        if reseed is None:
            reseed_transform(SimpleNamespace(transform=compose), 0)
        else:
            reseed(compose)
        seen = {tuple(compose(image=grid)["image"].ravel().tolist()) for _ in range(400)}
        assert len(seen) == outcomes


def test_tta_8_is_the_seeds_eight_images():
    # tta_transform(num_tta=8) on HWC: image, fliplr, flipud, flipud+fliplr, then the transpose and
    # its flipud, fliplr, fliplr+flipud; the model's sigmoids are averaged over them (inference.py).
    from medals.infer.tta import apply_view, views_for

    image = np.arange(9.0).reshape(3, 3, 1)
    seed = [image, np.fliplr(image), np.flipud(image), np.fliplr(np.flipud(image))]
    t = np.transpose(image, (1, 0, 2))
    seed += [t, np.flipud(t), np.fliplr(t), np.flipud(np.fliplr(t))]
    x = torch.tensor(image[:, :, 0])[None, None]
    recipe = load_recipe(HPA3 / "resnet34.yaml")
    assert (recipe.infer.tta, recipe.infer.merge) == (8, "mean")
    ours = {tuple(apply_view(x, v).flatten().tolist()) for v in views_for(recipe.infer.tta)}
    assert ours == {tuple(s[:, :, 0].flatten().tolist()) for s in seed} and len(ours) == 8


def test_focal_loss_and_aux_weight_are_the_seeds():
    # losses/loss_factory.binary_focal_loss re-derived: bce(x, t) * exp(gamma * logsigmoid(-x (2t - 1))),
    # mean over every element; train.py adds 0.4 x the same loss of the aux logits.
    from medals.train.losses import build_loss

    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(0, 3, (4, 28)))
    aux = torch.tensor(rng.normal(0, 3, (4, 28)))
    t = torch.tensor((rng.random((4, 28)) < 0.2).astype(np.float64))

    def seed_focal(logits):
        bce = logits - logits * t + torch.log1p(torch.exp(-logits.abs())) + (-logits).clamp(min=0)
        return (torch.exp(2.0 * torch.nn.functional.logsigmoid(-logits * (t * 2 - 1))) * bce).mean()

    recipe = load_recipe(HPA3 / "inceptionv3.yaml")
    loss = build_loss(recipe.loss, "multilabel")((x, aux), {"target": t})
    assert abs(float(loss) - float(seed_focal(x) + 0.4 * seed_focal(aux))) < 1e-9


def test_ensemble_without_a_members_holdout_names_it(tmp_path):
    from medals.errors import MedalsError
    from medals.stages.ensemble import run_ensemble

    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"Id": ["t0"], "Predicted": [""]}).to_csv(data / "sample_submission.csv", index=False)
    probs = np.linspace(0.1, 0.9, 8)
    members = [
        _member(tmp_path / "runs", "resnet34", probs, np.array([0.5]), data),
        _member(tmp_path / "runs", "inceptionv3", probs, np.array([0.5]), data),
    ]
    (tmp_path / "runs" / "inceptionv3" / "holdout.parquet").unlink()
    out = tmp_path / "ensemble"
    out.mkdir()
    with pytest.raises(MedalsError, match="member\\(s\\) hpa3_inceptionv3 have no hold-out predictions"):
        run_ensemble(members, "mean", None, out)


def test_swa_bn_data_default_keeps_existing_digests():
    from medals.config.train import digest_train

    old = {"epochs": 5, "swa": {"epochs": None, "last": 2}}
    assert digest_train({**old, "swa": {**old["swa"], "bn_data": "train"}}) == digest_train(old)
    assert digest_train({**old, "swa": {**old["swa"], "bn_data": "plain"}}) != digest_train(old)


def test_search_candidates_train_after_the_recipes_own_base():
    # augmentation_search.search_once builds the candidates' transform with policy_transform, whose
    # base_aug (RandomRotate90, Flip, Transpose) precedes the candidate's sub-policies.
    from medals.stages.search import DIHEDRAL, base_augment

    recipe = load_recipe(HPA3 / "resnet34.yaml")
    base = base_augment(recipe)
    assert base == recipe.train.augment[:3] and [op["name"] for op in base] == [
        "RandomRotate90",
        "OneOf",
        "Transpose",
    ]
    assert base_augment(load_recipe(HPA3 / "resnet34.yaml", ["train.augment=null"])) == DIHEDRAL
