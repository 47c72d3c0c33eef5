"""HPA1's metric-learning nearest-neighbour step (medals.stages.neighbours) on a miniature 4-channel table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import medals.train.metric_learning
from medals.config import Recipe
from medals.errors import MedalsError
from medals.files import write_parquet
from medals.stages.layout import RunLayout
from medals.stages.neighbours import apply_neighbours

# Three identities ("antibodies"), each its own 4-channel colour and its own labels (K = 5).
COLOURS = [(220, 40, 40, 120), (40, 220, 40, 30), (40, 40, 220, 200)]
IDENTITY_LABELS = ["1 3", "0", "2 4"]
K = 5
PER_IDENTITY = 8  # 24 training rows; the odd ones are the reference (external) rows


# Every test here runs on one torch thread (see conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


def _image(colour, rng: np.random.Generator, noise: int = 25) -> np.ndarray:
    base = np.array(colour, dtype=np.int64)[None, None, :]
    return np.clip(base + rng.integers(-noise, noise + 1, size=(32, 32, 4)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunLayout:
    root = tmp_path_factory.mktemp("neighbours_run")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    rows, references = [], {}
    for identity, colour in enumerate(COLOURS):
        for j in range(PER_IDENTITY):
            ident = f"tr{identity}_{j}"
            image = _image(colour, rng)
            path = images / f"{ident}.npy"
            np.save(path, image)
            external = j % 2
            if external:
                references.setdefault(identity, []).append(image)
            rows.append(
                {
                    "id": ident,
                    "split": "train",
                    "path": str(path),
                    "labels": IDENTITY_LABELS[identity],
                    "antibody": f"ab{identity}",
                    "is_external": external,
                }
            )
    # Near-copies of reference images: two per identity.
    for identity in range(3):
        for j in range(2):
            image = np.clip(
                references[identity][j].astype(np.int64) + rng.integers(-3, 4, (32, 32, 4)), 0, 255
            )
            path = images / f"te{identity}_{j}.npy"
            np.save(path, image.astype(np.uint8))
            rows.append({"id": f"te{identity}_{j}", "split": "test", "path": str(path)})
    # Unlike every reference: a half-black, half-white checkerboard.
    board = np.kron((np.indices((4, 4)).sum(0) % 2) * 255, np.ones((8, 8)))[:, :, None].repeat(4, axis=2)
    np.save(images / "odd.npy", board.astype(np.uint8))
    rows.append({"id": "odd", "split": "test", "path": str(images / "odd.npy")})
    table = pd.DataFrame(rows)
    table["is_external"] = table["is_external"].astype("Int64")
    layout = RunLayout(root)
    write_parquet(layout.table, table)
    return layout


def _recipe(**neighbours) -> Recipe:
    settings = {
        "identity_column": "antibody",
        "reference_query": "is_external == 1",
        "backbone": "resnet18",
        "embedding_dim": 32,
        "epochs": 4,
        "lr": 1e-3,
        "threshold": 0.5,
        **neighbours,
    }
    return Recipe(
        name="t",
        task="multilabel",
        model={"in_chans": 4},
        train={"image_size": 32, "batch_size": 8, "progress": False},
        submit={"neighbours": settings},
    )


TEST_IDS = [f"te{i}_{j}" for i in range(3) for j in range(2)] + ["odd"]


def _predictions() -> np.ndarray:
    pred = np.zeros((len(TEST_IDS), K), dtype=bool)
    pred[:, 4] = True  # every row predicts class 4 only: different from identities 0 and 1
    return pred


@pytest.fixture(scope="module")
def first(run):
    pred = _predictions()
    out, replaced = apply_neighbours(_recipe(), run, pd.Series(TEST_IDS), pred, "cpu")
    return pred, out, replaced


def _multi_hot(text: str) -> np.ndarray:
    row = np.zeros(K, dtype=bool)
    row[[int(t) for t in text.split()]] = True
    return row


def test_near_copies_take_their_reference_labels(first, run):
    pred, out, replaced = first
    assert out.shape == pred.shape and out.dtype == bool and replaced.shape == (len(TEST_IDS),)
    for row, ident in enumerate(TEST_IDS[:-1]):
        identity = int(ident[2])
        assert replaced[row], ident
        np.testing.assert_array_equal(out[row], _multi_hot(IDENTITY_LABELS[identity]), err_msg=ident)
    np.testing.assert_array_equal(out[~replaced], pred[~replaced])  # the others keep their prediction
    folder = run.root / "neighbours"
    assert (folder / "arcface.pt").is_file()
    assert len(list(folder.glob("reference-*.npy"))) == 1 and len(list(folder.glob("test-*.npy"))) == 1
    reference = np.load(next(folder.glob("reference-*.npy")))
    assert reference.shape == (3 * PER_IDENTITY // 2, 32)
    np.testing.assert_allclose(np.linalg.norm(reference, axis=1), 1.0, rtol=1e-5)


def test_a_rerun_reuses_the_cache_and_a_high_threshold_keeps_unlike_images(first, run, monkeypatch):
    folder = run.root / "neighbours"
    files = [folder / "arcface.pt", *folder.glob("*.npy")]
    before = {path: path.stat().st_mtime_ns for path in files}

    def no_training(*args, **kwargs):
        raise AssertionError("the cached ArcFace weights should have been reused")

    monkeypatch.setattr(medals.train.metric_learning, "train_arcface", no_training)
    pred = _predictions()
    # The threshold acts after the embedding: changing it reuses the cached weights and embeddings.
    out, replaced = apply_neighbours(_recipe(threshold=0.999), run, TEST_IDS, pred, None)
    assert {path: path.stat().st_mtime_ns for path in files} == before
    assert replaced[:-1].all()  # near-copies stay above even 0.999
    assert not replaced[-1]
    np.testing.assert_array_equal(out[-1], pred[-1])
    np.testing.assert_array_equal(out[~replaced], pred[~replaced])


def test_a_changed_setting_retrains(first, run):
    path = run.root / "neighbours" / "arcface.pt"
    before = path.stat().st_mtime_ns
    apply_neighbours(_recipe(epochs=1, embedding_dim=8), run, TEST_IDS, _predictions(), "cpu")
    assert path.stat().st_mtime_ns != before
    assert len(list(path.parent.glob("test-*.npy"))) == 1  # the stale embeddings were replaced


def test_a_missing_identity_column_is_named(run):
    with pytest.raises(MedalsError, match="identity_column 'plate'.*keep_columns"):
        apply_neighbours(_recipe(identity_column="plate"), run, TEST_IDS, _predictions(), "cpu")


def test_one_identity_is_not_enough(tmp_path: Path, run):
    table = pd.read_parquet(run.table)
    table["antibody"] = table["antibody"].where(table["split"] != "train", "ab0")
    layout = RunLayout(tmp_path)
    write_parquet(layout.table, table)
    with pytest.raises(MedalsError, match="'antibody' has 1 distinct value"):
        apply_neighbours(_recipe(), layout, TEST_IDS, _predictions(), "cpu")


def test_decisions_must_match_the_test_ids(run):
    with pytest.raises(MedalsError, match="one row per test id"):
        apply_neighbours(_recipe(), run, TEST_IDS[:3], _predictions(), "cpu")


def test_labels_column_gives_the_replacing_labels(tmp_path: Path, run):
    # HPA1: the reference images' corrected targets (data.label_corrections.column), not the labels the
    # classifier trained on, replace a matched prediction.
    table = pd.read_parquet(run.table)
    corrected = table["labels"].where(~table["id"].str.startswith("tr1_"), "0 3")
    layout = RunLayout(tmp_path)
    write_parquet(layout.table, table.assign(target_corrected=corrected))
    pred = _predictions()
    out, replaced = apply_neighbours(_recipe(labels_column="target_corrected"), layout, TEST_IDS, pred, "cpu")
    for row, ident in enumerate(TEST_IDS[:-1]):
        labels = "0 3" if ident.startswith("te1_") else IDENTITY_LABELS[int(ident[2])]
        assert replaced[row], ident
        np.testing.assert_array_equal(out[row], _multi_hot(labels), err_msg=ident)
    with pytest.raises(MedalsError, match="no 'fixed' column.*labels_column in data.keep_columns"):
        apply_neighbours(_recipe(labels_column="fixed"), layout, TEST_IDS, pred, "cpu")
