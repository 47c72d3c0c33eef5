from __future__ import annotations

import json
import math

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import pytest

from medals.augment.cpu import build_ops, build_transform
from medals.augment.policy import (
    HPA3_OPS,
    OPS,
    PROBABILITIES,
    Step,
    SubPolicy,
    load_subpolicies,
    op_spec,
    policy_to_spec,
    random_policy,
    read_policies,
    write_policies,
)
from medals.config import Recipe
from medals.errors import MedalsError
from medals.stages.search import default_score_fn, search_policies


def _smooth_image(size: int = 64, seed: int = 0) -> np.ndarray:
    """A 4-channel uint8 image with blob-like structure (resampling barely changes it)."""
    noise = np.random.default_rng(seed).random((size, size, 4)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), 4)
    return cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def _apply(spec: list[dict], image: np.ndarray, seed: int = 1) -> np.ndarray:
    transform = A.Compose(build_ops(spec))
    transform.set_random_seed(seed)
    return transform(image=image)["image"]


def test_random_policy_is_deterministic_for_a_seed_and_follows_hpa3_sampling():
    a = random_policy(np.random.default_rng(7))
    assert a == random_policy(np.random.default_rng(7)) == random_policy(7)
    assert a != random_policy(np.random.default_rng(8))
    assert len(a) == 5 and all(isinstance(sub, SubPolicy) for sub in a)
    for seed in range(20):
        for sub in random_policy(seed, n_subpolicies=3):
            assert sub.first.op != sub.second.op  # two different ops
            for step in sub:
                assert step.op in HPA3_OPS and step.p in PROBABILITIES
                lo, hi = OPS[step.op].search
                assert lo - 1e-3 <= step.magnitude <= hi + 1e-3
    extra = random_policy(0, 5, ops=["shear", "noise"])
    assert {step.op for sub in extra for step in sub} == {"shear", "noise"}
    with pytest.raises(MedalsError, match="nope"):
        random_policy(0, ops=["rotate", "nope"])


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_builds_and_runs_on_a_4_channel_uint8_image(name):
    image = _smooth_image()
    outputs = {}
    for magnitude in (0.0, 1.0):
        out = _apply([op_spec(name, 1.0, magnitude)], image)
        assert out.shape == image.shape and out.dtype == np.uint8
        outputs[magnitude] = np.abs(out.astype(np.int16) - image).mean()
    if OPS[name].geometric:
        # Magnitude 0 leaves the image in place (the grid resamples a little even at distort_limit 0).
        assert outputs[0.0] < (5.0 if name == "grid_distortion" else 0.5)
        assert outputs[1.0] > outputs[0.0] + 1.0
    # Probability 0 never changes the image.
    assert np.array_equal(_apply([op_spec(name, 0.0, 1.0)], image), image)


def test_bad_steps_are_named():
    with pytest.raises(MedalsError, match="'twirl'"):
        op_spec("twirl")
    with pytest.raises(MedalsError, match="magnitude 1.5"):
        op_spec("rotate", 0.5, 1.5)
    with pytest.raises(MedalsError, match="probability 2"):
        policy_to_spec([SubPolicy(Step("rotate", 2, 0.5), Step("blur", 0.5, 0.5))])


def test_policy_to_spec_is_one_of_over_two_step_sequences_and_builds():
    policy = random_policy(3, n_subpolicies=4, sampler="magnitude")  # each step's class is OPS'
    spec = policy_to_spec(policy)
    assert len(spec) == 1 and spec[0]["name"] == "OneOf" and spec[0]["p"] == 1.0
    children = spec[0]["transforms"]
    assert [child["name"] for child in children] == ["Sequential"] * 4
    for child, sub in zip(children, policy, strict=True):
        assert [op["name"] for op in child["transforms"]] == [OPS[step.op].transform for step in sub]
        assert [op["p"] for op in child["transforms"]] == [step.p for step in sub]
    # JSON round trip (lists for tuples) still builds, and the pipeline runs on 4-channel images.
    transform = build_transform(json.loads(json.dumps(spec)), 32, train=True, task="multilabel")
    (one_of,) = [op for op in transform.transforms if isinstance(op, A.OneOf)]
    assert len(one_of.transforms) == 4 and all(isinstance(t, A.Sequential) for t in one_of.transforms)
    transform.set_random_seed(0)
    for _ in range(5):
        out = transform(image=_smooth_image(48))["image"]
        assert out.shape == (32, 32, 4) and out.dtype == np.float32
    assert policy_to_spec([]) == []


def test_search_keeps_the_top_candidates_sorted():
    seen = []

    def score_fn(policy):
        score = sum(step.magnitude * (1 - step.p) for sub in policy for step in sub)
        seen.append((score, policy))
        return score

    kept = search_policies(score_fn, n_candidates=12, n_subpolicies=3, keep=4, seed=5)
    assert len(seen) == 12 and len(kept) == 4
    expected = sorted(seen, key=lambda item: -item[0])[:4]
    assert [score for score, _ in kept] == [score for score, _ in expected]
    assert [policy for _, policy in kept] == [policy for _, policy in expected]
    # Same seed, same candidates; NaN scores rank last.
    again = search_policies(lambda p: float("nan"), n_candidates=12, n_subpolicies=3, keep=12, seed=5)
    assert [policy for _, policy in again] == [policy for _, policy in seen]
    # Mixed: every finite score ranks above every NaN; the NaNs keep candidate order.
    scores = iter([float("nan"), 0.3, float("nan"), 0.7, 0.1, float("nan")])
    mixed = search_policies(lambda p: next(scores), n_candidates=6, n_subpolicies=3, keep=6, seed=5)
    assert [score for score, _ in mixed[:3]] == [0.7, 0.3, 0.1]
    assert all(math.isnan(score) for score, _ in mixed[3:])
    assert [policy for _, policy in mixed] == [seen[i][1] for i in (3, 1, 4, 0, 2, 5)]


def test_policies_file_round_trip_keeps_the_best(tmp_path):
    scored = [(0.2, random_policy(1, 2)), (0.9, random_policy(2, 2)), (0.5, random_policy(3, 2))]
    path = write_policies(tmp_path / "p.json", scored, keep=2)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temporary file
    back = read_policies(path)
    assert [score for score, _ in back] == [0.9, 0.5]
    assert [policy for _, policy in back] == [scored[1][1], scored[2][1]]
    assert load_subpolicies(path) == scored[1][1] + scored[2][1]


def test_policy_file_op_loads_relative_and_absolute_paths(tmp_path, monkeypatch):
    scored = [(0.9, random_policy(2)), (0.5, random_policy(3))]
    path = write_policies(tmp_path / "policies.json", scored)
    monkeypatch.chdir(tmp_path)
    for given in ("policies.json", str(path)):
        (op,) = build_ops([{"name": "PolicyFile", "path": given}])
        assert isinstance(op, A.OneOf) and op.p == 1.0 and len(op.transforms) == 10
    (op,) = build_ops([{"name": "PolicyFile", "path": "policies.json", "p": 0.5}])
    assert op.p == 0.5


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, ["missing.json", "does not exist"]),
        ("{not json", ["missing.json", "JSON"]),
        (json.dumps({"policies": []}), ["missing.json", "format"]),
        (
            json.dumps(
                {
                    "format": "medals.augment_policy/1",
                    "policies": [
                        {"score": 1, "subpolicies": [[{"op": "warp", "p": 0.5, "magnitude": 0.1}] * 2]}
                    ],
                }
            ),
            ["missing.json", "'warp'"],
        ),
        (
            json.dumps({"format": "medals.augment_policy/1", "policies": []}),
            ["missing.json", "no sub-policies"],
        ),
    ],
)
def test_policy_file_op_names_a_missing_or_broken_file(tmp_path, content, words):
    path = tmp_path / "missing.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(MedalsError) as info:
        build_transform([{"name": "PolicyFile", "path": str(path)}], 16, train=True, task="multilabel")
    for word in words:
        assert word in str(info.value)
    with pytest.raises(MedalsError, match="'paths'"):
        build_ops([{"name": "PolicyFile", "paths": str(path)}])


def test_tiny_real_search_writes_a_file_that_policy_file_applies(tmp_path, one_thread):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        image = rng.integers(0, 40, (24, 24, 4), dtype=np.uint8)
        label = i % 2
        image[4:20, 4:20, 1 + label] = 220  # the class shows in the green or blue plane
        path = tmp_path / f"img{i:02d}.npy"
        np.save(path, image)
        rows.append({"id": f"img{i:02d}", "path": str(path), "labels": str(label), "fold": i % 2})
    table = pd.DataFrame(rows)
    recipe = Recipe.model_validate(
        {
            "name": "search",
            "task": "multilabel",
            "seed": 1,
            "data": {"num_classes": 2},
            "model": {"backbone": "test_resnet", "in_chans": 4},
            "train": {
                "epochs": 5,
                "batch_size": 4,
                "image_size": 16,
                "optimizer": "adam",
                "lr": 1e-3,
                "schedule": {"name": "constant"},
                "swa": {"last": 2},
                "progress": False,
            },
        }
    )
    score_fn = default_score_fn(recipe, table, 0, tmp_path / "search", epochs=1)
    out = tmp_path / "policies.json"
    kept = search_policies(score_fn, n_candidates=2, n_subpolicies=2, keep=1, seed=0, path=out)
    assert len(kept) == 1 and np.isfinite(kept[0][0])
    folders = sorted((tmp_path / "search").iterdir())
    assert len(folders) == 2 and all((folder / "final.pt").exists() for folder in folders)
    log = pd.read_csv(folders[0] / "log.csv")
    assert log["epoch"].tolist() == [1]
    # A re-run reuses the finished candidates and gives the same scores.
    assert search_policies(score_fn, n_candidates=2, n_subpolicies=2, keep=1, seed=0) == kept

    assert read_policies(out) == kept
    transform = build_transform(
        [{"name": "HorizontalFlip", "p": 0.5}, {"name": "PolicyFile", "path": str(out)}],
        16,
        train=True,
        task="multilabel",
    )
    transform.set_random_seed(0)
    image = np.load(table["path"][0])
    out_image = transform(image=image)["image"]
    assert out_image.shape == (16, 16, 4) and out_image.dtype == np.float32


def test_recipe_policy_path_is_relative_to_the_recipe_and_its_content_is_a_training_input(tmp_path):
    from medals.config import recipe_from_dict
    from medals.data.dataset import recipe_dataset
    from medals.train.loop import augment_files_digest

    folder = tmp_path / "recipes"
    folder.mkdir()
    write_policies(folder / "policies.json", [(0.5, random_policy(0))])
    recipe = recipe_from_dict(
        {
            "name": "p",
            "task": "multilabel",
            "source": str(folder / "r.yaml"),
            "data": {"num_classes": 2, "label_column": "Target"},
            "model": {"in_chans": 4},
            "train": {"image_size": 16, "augment": [{"name": "PolicyFile", "path": "policies.json"}]},
        },
        "test",
    )
    image_path = tmp_path / "x.npy"
    np.save(image_path, np.full((16, 16, 4), 100, np.uint8))
    rows = pd.DataFrame([{"id": "x", "path": str(image_path), "labels": "1", "height": 16, "width": 16}])
    item = recipe_dataset(recipe, rows, 2, train=True)[0]  # found next to the recipe, not in the cwd
    assert item["image"].shape == (4, 16, 16)
    before = augment_files_digest(recipe)
    write_policies(folder / "policies.json", [(0.7, random_policy(1))])
    assert augment_files_digest(recipe) != before
