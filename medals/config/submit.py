"""The `submit` section: thresholds, the submission file, and the nearest-neighbour replacement."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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


class SubmitConfig(Strict):
    # default by task; "label": the most probable class's name per row (multiclass)
    kind: Literal["probability", "label", "multilabel", "rle"] | None = None
    target_class: str | int | None = None  # probability: which class's probability (a name, or an index)
    # probability: the sum of these classes' probabilities, e.g. [2, 3] for P(grade >= 2)
    target_classes: list[str | int] | None = None
    # multilabel: "oof" (best F1 per class on OOF), a number, or matched to a prevalence: the training
    # labels' rate on the test predictions (HPA1), or the hold-out's true rate on its predictions (HPA3)
    threshold: float | Literal["oof", "prevalence_train", "prevalence_holdout"] = "oof"
    average_duplicates: bool = False  # near-duplicate test images get their group's mean prediction
    replace_leaks: bool = False  # a test image duplicating a labelled one takes its labels
    always_top1: bool = True
    pixel_threshold: float = 0.5
    min_area: int = 0
    # Keep a mask only when the image-level probability (the model's cls head, or an ensemble's
    # stacked gate) is above this; otherwise the image is submitted empty.
    gate_threshold: float | None = None
    # Segmentation: "oof" searches each mask class's pixel threshold, smallest component and empty-mask
    # gate (its highest pixel probability) on the OOF masks (medals.post.mask_search), in place of the
    # three keys above; None applies them as given, to every class.
    mask_search: Literal["oof"] | None = None
    file: str = "submission.csv"
    neighbours: NeighboursConfig | None = None  # HPA1 nearest-neighbour replacement (multilabel)
