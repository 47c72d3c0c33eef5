"""The `submit` section: thresholds, the submission file, and the nearest-neighbour replacement."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_serializer

from medals.config.base import Strict


class NeighboursConfig(Strict):
    """HPA1's metric-learning post-processing (medals.stages.neighbours): an ArcFace embedding trained on
    the training rows with identity_column as the class (HPA1: the antibody); a test prediction takes its
    nearest reference image's labels when their cosine similarity is above threshold."""

    identity_column: str  # a table column (listed in data.keep_columns); rows without a value are skipped
    reference_query: str | None = None  # pandas query choosing reference training rows; None: all of them
    backbone: str = "resnet50"
    pretrained: bool = False
    # A local weights file for the embedding backbone (as model.weights: relative to the recipe's folder,
    # then the working directory), loaded as the classifier loads its own.
    weights: str | None = None
    embedding_dim: int = Field(512, ge=1)
    s: float = 30.0
    m: float = 0.5
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-4, gt=0)
    image_size: int | None = Field(None, ge=8)  # None: train.image_size
    batch_size: int | None = Field(None, ge=2)  # None: train.batch_size
    threshold: float = 0.65
    # The table column whose labels a replaced prediction takes (space-separated label ids, e.g. the
    # corrected external targets of data.label_corrections.column; listed in data.keep_columns).
    # None: the training labels.
    labels_column: str | None = None

    @model_serializer(mode="wrap")
    def _drop_later_defaults(self, handler: Any) -> dict[str, Any]:
        # Left out at its default, so runs made before the key existed keep their digests.
        out = handler(self)
        if out.get("labels_column", "") is None:
            del out["labels_column"]
        return out


class SubmitConfig(Strict):
    # default by task; "label": the most probable class's name per row (multiclass); "value": the
    # regression output (regression); "ordinal": an integer grade, the prediction (ordinal) or the
    # expected grade sum_k k p_k (multiclass) cut at submit.cutpoints
    kind: Literal["probability", "label", "multilabel", "rle", "value", "ordinal"] | None = None
    target_class: str | int | None = None  # probability: which class's probability (a name, or an index)
    # probability: the sum of these classes' probabilities, e.g. [2, 3] for P(grade >= 2)
    target_classes: list[str | int] | None = None
    # multilabel: "oof" (best F1 per class on OOF), a number, or matched to a prevalence: the training
    # labels' rate on the test predictions (HPA1), or the hold-out's true rate on its predictions (HPA3)
    threshold: float | Literal["oof", "prevalence_train", "prevalence_holdout"] = "oof"
    # Where a prevalence threshold may lie: "hpa3" the grid 0.05, 0.06, ..., 0.99 that HPA3's
    # find_best_thres scans (lowest of equally near), "exact" anywhere between two scores. None: the
    # rule's own seed: hpa3 for prevalence_holdout, exact for prevalence_train.
    prevalence_grid: Literal["hpa3", "exact"] | None = None
    average_duplicates: bool = False  # near-duplicate test images get their group's mean prediction
    replace_leaks: bool = False  # a test image duplicating a labelled one takes its labels
    always_top1: bool = True
    pixel_threshold: float = Field(0.5, ge=0, le=1)
    min_area: int = Field(0, ge=0)
    # Keep a mask only when the image-level probability (the model's cls head, or an ensemble's
    # stacked gate) is above this; otherwise the image is submitted empty.
    gate_threshold: float | None = Field(None, ge=0, le=1)
    # Segmentation: "oof" searches each mask class's pixel threshold, smallest component and empty-mask
    # gate (its highest pixel probability) on the OOF masks (medals.post.mask_search), in place of the
    # three keys above; None applies them as given, to every class.
    mask_search: Literal["oof"] | None = None
    file: str = "submission.csv"
    # value: "train" clips predictions to the training targets' range; None leaves them as predicted.
    clip: Literal["train"] | None = None
    # ordinal: the K-1 cut-points between grades (in class-index units): "oof" fits them on the OOF
    # predictions to maximise QWK (the APTOS/DR "optimised rounder"), "round" keeps the midpoints
    # 0.5, 1.5, ..., or a list of numbers.
    cutpoints: Literal["oof", "round"] | list[float] = "oof"
    neighbours: NeighboursConfig | None = None  # HPA1 nearest-neighbour replacement (multilabel)


# Submit keys added after runs existed, with their defaults (left out of the submit digest there).
LATER_SUBMIT_DEFAULTS: dict[str, Any] = {"clip": None, "cutpoints": "oof"}
