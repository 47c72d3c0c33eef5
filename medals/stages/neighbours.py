"""HPA1's nearest-neighbour post-processing, run by submit when ``submit.neighbours`` is set.

An ArcFace embedding (medals.models.arcface) is trained on the training rows with
``identity_column`` (HPA1: the antibody) as the class; the reference rows (``reference_query``, HPA1:
the external images) and the test rows are embedded; a test row whose nearest reference row has a
cosine similarity above ``threshold`` takes that row's labels instead of its prediction.

Everything expensive is cached under ``<run>/neighbours/``: ``arcface.pt`` (the trained weights, with
the digest of what they were trained from) and the reference and test embeddings (``.npy`` files named
by that digest and the test ids). The digest covers the neighbours settings (all but ``threshold``
and ``labels_column``, which only act afterwards), the image pipeline settings they use and the bytes
of table.parquet, so a re-run with the same inputs trains nothing and a changed input retrains.

``labels_column``: the labels a replaced prediction takes come from this table column instead of the
training labels (HPA1: the external images' corrected targets, data.label_corrections.column).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from medals.config import NeighboursConfig, Recipe
from medals.errors import MedalsError
from medals.files import read_npy, write_npy
from medals.stages.common import read_table, resolve_device, say
from medals.stages.layout import RunLayout

# Training sees flips only (HPA1's metric learning is not trained with the classifier's augmentation).
FLIPS = [{"name": "HorizontalFlip", "p": 0.5}, {"name": "VerticalFlip", "p": 0.5}]


def _settings(recipe: Recipe) -> NeighboursConfig:
    cfg = recipe.submit.neighbours
    if cfg is None:
        raise MedalsError("submit.neighbours is not set")
    return cfg


def _image_size(recipe: Recipe) -> int:
    return _settings(recipe).image_size or recipe.train.image_size


def _batch_size(recipe: Recipe) -> int:
    return _settings(recipe).batch_size or recipe.train.batch_size


def neighbours_digest(recipe: Recipe, layout: RunLayout) -> str:
    """Digest of what the trained embedding depends on: settings (not the threshold) and the table."""
    cfg = _settings(recipe)
    # Without a weights file the settings digest as they did before the key existed.
    # threshold and labels_column act after the embedding: changing them retrains nothing.
    settings = cfg.model_dump(
        mode="json",
        exclude={"threshold", "labels_column"} | ({"weights"} if cfg.weights is None else set()),
    )
    if cfg.weights is not None:
        from medals.models.factory import weights_file

        settings["weights"] = hashlib.sha256(
            weights_file(recipe, cfg.weights, "submit.neighbours.weights").read_bytes()
        ).hexdigest()
    payload = {
        "neighbours": settings,
        "image_size": _image_size(recipe),
        "batch_size": _batch_size(recipe),
        "in_chans": recipe.model.in_chans,
        "mean": recipe.train.mean,
        "std": recipe.train.std,
        "normalize": recipe.train.normalize,
        "seed": recipe.seed,
        "table": hashlib.sha256(layout.table.read_bytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _dataset(recipe: Recipe, rows: pd.DataFrame, train: bool, with_target: bool):
    from medals.augment.cpu import build_transform
    from medals.data.dataset import ImageDataset

    cfg = recipe.train
    transform = build_transform(
        FLIPS if train else [], _image_size(recipe), train, "multiclass", cfg.mean, cfg.std, cfg.normalize
    )
    num_classes = int(rows["label"].max()) + 1 if with_target else 1
    return ImageDataset(
        rows, "multiclass", num_classes, transform, recipe.model.in_chans, with_target=with_target
    )


def _identities(recipe: Recipe, train: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The training rows with an identity, ``label`` = the factorized identity; and the identity count."""
    column = _settings(recipe).identity_column
    if column not in train.columns:
        raise MedalsError(
            f"submit.neighbours.identity_column '{column}' is not a table column: add it to "
            f"data.keep_columns and re-run prepare"
        )
    rows = train[train[column].notna()].reset_index(drop=True)
    codes, uniques = pd.factorize(rows[column].astype(str), sort=True)
    if len(uniques) < 2:
        raise MedalsError(
            f"submit.neighbours.identity_column '{column}' has {len(uniques)} distinct value(s) among the "
            f"training rows: metric learning needs at least 2 identities"
        )
    rows["label"] = codes.astype(np.int64)
    return rows, len(uniques)


def _build_model(recipe: Recipe, n_identities: int):
    from medals.models.arcface import ArcFaceModel, EmbeddingNet
    from medals.models.factory import weights_file

    cfg = _settings(recipe)
    weights = weights_file(recipe, cfg.weights, "submit.neighbours.weights") if cfg.weights else None
    net = EmbeddingNet(cfg.backbone, cfg.embedding_dim, recipe.model.in_chans, cfg.pretrained, weights)
    return ArcFaceModel(net, n_identities, s=cfg.s, m=cfg.m)


def _trained_model(recipe: Recipe, layout: RunLayout, train: pd.DataFrame, digest: str, device):
    """The ArcFace model from arcface.pt when it was trained from the same inputs, else trained now."""
    from medals.data.dataset import make_loader
    from medals.runtime.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
    from medals.train.metric_learning import train_arcface

    cfg = _settings(recipe)
    rows, n_identities = _identities(recipe, train)
    path = layout.neighbours_dir / "arcface.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = _build_model(recipe, n_identities)
        if path.exists() and load_checkpoint(path).get("config_hash") == digest:
            load_model_weights(model, path)
            say(f"neighbours: reusing the ArcFace weights in {path}")
            return model.to(device)
        batch = _batch_size(recipe)
        # BatchNorm cannot train on a batch of one image: drop such a last batch.
        loader = make_loader(
            _dataset(recipe, rows, train=True, with_target=True),
            min(batch, len(rows)),
            shuffle=True,
            num_workers=recipe.train.num_workers,
            seed=recipe.seed,
            drop_last=len(rows) % min(batch, len(rows)) == 1,
        )
        say(
            f"neighbours: training ArcFace {cfg.backbone} on {len(rows)} images of {n_identities} "
            f"identities ({cfg.epochs} epochs)"
        )
        history = train_arcface(model, loader, cfg.epochs, cfg.lr, device)
    save_checkpoint(
        path, model, None, None, cfg.epochs, config_hash=digest, losses=[float(v) for v in history]
    )
    return model


def _embeddings(recipe, layout, name, rows, key, model, device) -> np.ndarray:
    """Embeddings of ``rows`` cached as <name>-<key>.npy (older <name>-*.npy files are removed)."""
    from medals.data.dataset import make_loader
    from medals.train.metric_learning import embed

    folder = layout.neighbours_dir
    path = folder / f"{name}-{key}.npy"
    if path.exists():
        cached = read_npy(path, "delete it: the embeddings are computed again")
        if cached.shape[0] == len(rows):
            return cached
    dataset = _dataset(recipe, rows, train=False, with_target=False)
    loader = make_loader(
        dataset, _batch_size(recipe), shuffle=False, num_workers=recipe.train.num_workers, seed=recipe.seed
    )
    out = embed(model, loader, device)
    write_npy(path, out)
    for old in folder.glob(f"{name}-*.npy"):
        if old != path:
            old.unlink(missing_ok=True)
    return out


def _rows_digest(digest: str, ids: Iterable[str]) -> str:
    return hashlib.sha256((digest + "\n" + "\n".join(ids)).encode()).hexdigest()[:16]


def apply_neighbours(
    recipe: Recipe,
    layout: RunLayout,
    test_ids: Iterable,
    decisions: np.ndarray,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(decisions [N, K] bool, replaced [N] bool): ``decisions`` (row i for ``test_ids[i]``) with every
    row whose nearest reference image has cosine > submit.neighbours.threshold replaced by that image's
    labels. ``device`` None: CUDA when available, else CPU."""
    from medals.data.dataset import _multi_hot
    from medals.train.metric_learning import nearest_neighbours, replace_by_neighbour

    cfg = _settings(recipe)
    device = resolve_device(None if device is None else str(device))
    decisions = np.asarray(decisions).astype(bool)
    ids = [str(v) for v in test_ids]
    if decisions.ndim != 2 or decisions.shape[0] != len(ids):
        raise MedalsError(
            f"neighbours: decisions {decisions.shape} must be [N, K] with one row per test id ({len(ids)})"
        )
    table = read_table(layout)
    table = table.assign(id=table["id"].astype(str))
    train = table[table["split"] == "train"].reset_index(drop=True)
    test = table[table["split"] == "test"].set_index("id")
    missing = [i for i in ids if i not in test.index]
    if missing:
        raise MedalsError(f"neighbours: test id {missing[0]!r} is not a test row of {layout.table}")
    test = test.loc[ids].reset_index()

    reference = train
    if cfg.reference_query:
        try:
            reference = train.query(cfg.reference_query)
        except Exception as exc:
            raise MedalsError(
                f"submit.neighbours.reference_query {cfg.reference_query!r} failed on the training rows: {exc}"
            ) from None
    reference = reference.reset_index(drop=True)
    if len(reference) == 0:
        raise MedalsError(
            f"submit.neighbours.reference_query {cfg.reference_query!r} selects no training rows"
        )
    column = cfg.labels_column or "labels"
    if column not in reference.columns:
        raise MedalsError(
            f"neighbours: the table has no {column!r} column (a multilabel task is needed"
            + (", and submit.neighbours.labels_column in data.keep_columns)" if cfg.labels_column else ")")
        )
    reference_labels = _multi_hot(reference.assign(labels=reference[column]), decisions.shape[1]).astype(bool)

    digest = neighbours_digest(recipe, layout)
    # The weights are checked (and retrained when stale) first; embeddings are named by the same digest.
    model = _trained_model(recipe, layout, train, digest, device)
    ref_emb = _embeddings(
        recipe, layout, "reference", reference, _rows_digest(digest, reference["id"]), model, device
    )
    test_emb = _embeddings(recipe, layout, "test", test, _rows_digest(digest, ids), model, device)
    index, cosine = nearest_neighbours(test_emb, ref_emb)
    out, replaced = replace_by_neighbour(decisions, reference_labels, index, cosine, cfg.threshold)
    say(
        f"neighbours: {int(replaced.sum())} of {len(ids)} test predictions replaced by their nearest "
        f"reference image's labels (cosine > {cfg.threshold})"
    )
    return out, replaced
