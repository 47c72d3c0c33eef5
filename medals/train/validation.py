"""Validation after each epoch: the loss and the task's metrics at tta 1, on this fold's rows."""

from __future__ import annotations

import numpy as np
import torch

from medals.data.prefetch import prefetched
from medals.runtime import sharding
from medals.train.setup import Run


@torch.no_grad()
def validate(run: Run) -> tuple[float, dict[str, float]]:
    """Validation loss and the task's metrics at tta 1.

    One pass gives both: the loss needs logits, which medals.infer.predict does not return; the
    probabilities come from predict's own activation, so they match what evaluate computes at tta 1.
    """
    from medals.infer.predict import activation
    from medals.models.outputs import split_outputs
    from medals.post.metrics import score

    task = run.recipe.task
    # Under DDP: the plain module with rank 0's buffers, so ranks with different numbers of validation
    # batches make no collective calls in forward.
    model = sharding.evaluation_model(run.model)
    model.eval()
    loss_sum, seen = torch.zeros((), device=run.device), 0
    term_sums: dict[str, torch.Tensor] = {}
    truths, probs, cls_probs = [], [], []
    for batch in prefetched(run.val_loader, run.prepare_val, None, run.device):
        with run.runtime.autocast(run.device):
            outputs = model(batch["image"], batch.get("meta"))
            loss = run.loss_fn(outputs, batch)
        size = batch["image"].shape[0]
        loss_sum += loss.detach().float() * size
        seen += size
        for name, value in run.loss_fn.parts.items():
            term_sums[name] = term_sums.get(name, 0.0) + value.float() * size
        logits, cls_logits = split_outputs(outputs)
        prob = activation(logits, task)
        if cls_logits is not None and task == "segmentation":
            cls_probs.append(torch.sigmoid(cls_logits.float()).reshape(-1).cpu().numpy())
        if task in ("multiclass", "binary"):
            probs.append(prob.cpu().numpy())
            truths.append(batch["target"].cpu().numpy().astype(np.int64))
        elif task == "multilabel":
            probs.append(prob.cpu().numpy())
            truths.append(batch["target"].cpu().numpy().astype(np.uint8))
        elif task in ("regression", "ordinal"):  # values [B, 1]; ordinal truth: the class index
            probs.append(prob.cpu().numpy())
            target = batch["target"].cpu().numpy()
            truths.append(target.astype(np.int64) if task == "ordinal" else target.astype(np.float64))
        else:
            # float16 keeps a large segmentation fold's probabilities in memory at half the cost.
            # One mask: [B, H, W]; several classes: [B, C, H, W].
            one = prob.shape[1] == 1
            probs.append((prob[:, 0] if one else prob).to(torch.float16).cpu().numpy())
            truths.append((batch["mask"][:, 0] if one else batch["mask"]).cpu().numpy() > 0.5)
    # Each rank validated its own chunk of rows: every rank gets all of them, in row order.
    term_totals = {name: float(total) for name, total in term_sums.items()}
    truth, prob, cls_prob, loss_total, seen, term_totals = sharding.gather_validation(
        truths, probs, cls_probs, loss_sum.item(), seen, term_totals
    )
    metrics = score(run.recipe, run.val_rows, truth, prob, run.positive, cls_prob)
    if len(term_sums) > 1:
        # Each term's validation value (val_focal, ...): a checkpoint rule may pick one (HPA1 kept the
        # epoch of the lowest validation focal loss, not of the whole sum).
        metrics.update({f"val_{name}": total / max(seen, 1) for name, total in term_totals.items()})
    return loss_total / max(seen, 1), {key: float(value) for key, value in metrics.items()}
