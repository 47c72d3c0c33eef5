"""The recipe in a table, and which stages are done, with the time each took."""

from __future__ import annotations

import html

from medals.stages.aside import stale_lines
from medals.stages.pipeline import STAGES, still_finished
from medals.stages.report.page import paragraph, section, table
from medals.stages.report.run_view import RunView


def recipe_summary(run: RunView) -> str:
    config = run.config
    model, train, infer = config.get("model", {}), config.get("train", {}), config.get("infer", {})
    rows = [
        {"key": "task", "value": config.get("task")},
        {"key": "model", "value": f"{model.get('arch')} / {model.get('backbone')}"},
        {"key": "head", "value": model.get("head") if model.get("arch") == "classifier" else "-"},
        {"key": "image size (px)", "value": train.get("image_size")},
        {
            "key": "epochs, batch, lr",
            "value": f"{train.get('epochs')}, {train.get('batch_size')}, {train.get('lr')}",
        },
        {"key": "folds", "value": config.get("split", {}).get("n_folds")},
        {"key": "TTA views", "value": infer.get("tta")},
        {"key": "checkpoint used", "value": infer.get("checkpoint")},
        {"key": "run folder", "value": str(run.layout.root)},
    ]
    return section("Recipe", table(rows, ["key", "value"], text_columns=("value",)))


def stages(run: RunView) -> str:
    done, missing = [], []
    for stage in STAGES:
        (done if still_finished(run.layout, stage) else missing).append(stage)
    text = paragraph(f"done: {', '.join(done) or 'none'}")
    if missing:
        text += f"<p class='missing'>missing stages: {', '.join(missing)} (run `medals run` to make them)</p>"
    stale = stale_lines(run.layout.root)
    if stale:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in stale)
        text += (
            "<p>set-aside folds (kept in stale/, brought back if their config returns; "
            f"`medals clean` deletes them):</p><ul>{items}</ul>"
        )
    return section("Stages", text)
