"""predict: test predictions with TTA per fold, then their mean over folds.

Under torchrun every rank predicts its share of the rows and gets all of them; rank 0 writes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medals.config import Recipe
from medals.data.dataset import meta_columns
from medals.errors import MedalsError
from medals.files import write_npy, write_parquet
from medals.infer.rows import predict_rows
from medals.runtime.distributed import is_main
from medals.stages.common import fold_ids, load_fold_model, prob_frame, read_labels, say, test_rows
from medals.stages.layout import RunLayout


def run_predict(recipe: Recipe, layout: RunLayout, device) -> None:
    rows = test_rows(layout)
    if rows.empty:
        raise MedalsError(f"{recipe.data.test_csv}: there are no test images to predict")
    num_classes = read_labels(layout)["num_classes"]
    n_meta = len(meta_columns(rows))
    ids = rows["id"].astype(str)
    outputs, cls_outputs = [], []
    for fold in fold_ids(recipe):
        model = load_fold_model(recipe, layout, fold, num_classes, n_meta, device)
        probs, cls_probs = predict_rows(
            recipe, model, rows, num_classes, device, with_target=False, mask_size=recipe.infer.mask_size
        )
        paths = layout.fold_test_predictions(fold), layout.fold_test_masks(fold)
        _write(recipe, ids, probs, cls_probs, num_classes, *paths)
        outputs.append(probs)
        cls_outputs.append(cls_probs)
        say(f"predict: fold {fold}: {len(rows)} test images")
    mean = np.mean(outputs, axis=0)
    cls_mean = None if cls_outputs[0] is None else np.mean(cls_outputs, axis=0)
    _write(recipe, ids, mean, cls_mean, num_classes, layout.test_predictions, layout.test_masks)
    say(f"predict: mean of {len(outputs)} folds -> {layout.test_predictions}")


def _write(
    recipe: Recipe, ids: pd.Series, probs, cls_probs, num_classes: int, table_path, masks_path
) -> None:
    if not is_main():
        return
    if recipe.task == "segmentation":
        write_npy(masks_path, probs.astype(np.float16))
        frame = pd.DataFrame({"id": ids.to_numpy()})
    else:
        frame = prob_frame(ids, probs, num_classes)
    if cls_probs is not None:
        frame["p_cls"] = cls_probs.astype(np.float32)
    write_parquet(table_path, frame)
