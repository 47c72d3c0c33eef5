"""report: a run folder -> report.html, one self-contained page (figures embedded, no network).

What the page shows follows what the folder holds: the recipe summary and which stages are done; per-fold
and pooled OOF metrics (metrics.json); training curves per fold (log.csv); for classification ROC and PR of
the submitted class, calibration, the confusion matrix (or per-class F1 and thresholds for multilabel); for
segmentation Dice per image and the best and worst cases; for an ensemble folder (ensemble.json) each
member's CV, the blend's and the members' correlation. Missing stages are listed, not guessed at.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from medals.config.recipe import MAIN_METRIC
from medals.errors import MedalsError
from medals.files import read_csv_frame, read_json, read_npy, read_parquet, read_yaml, write_text
from medals.stages.aside import stale_lines
from medals.stages.layout import RunLayout
from medals.stages.pipeline import STAGES, still_finished

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th{background:#f3f3f3}img{max-width:100%;display:block;margin:.5em 0}.missing{color:#a40}"""
# Every figure must decode: the test opens the page in a browser and reads these attributes back.
CHECK = """<script>window.addEventListener('load',()=>{const i=[...document.images];
document.body.dataset.images=i.length;document.body.dataset.broken=i.filter(x=>!x.complete||!x.naturalWidth).length;});</script>"""


def _figure(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def is_run_folder(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() or (folder / "ensemble.json").is_file()


def write_report(folder: str | Path) -> Path:
    folder = Path(folder)
    if not is_run_folder(folder):
        raise MedalsError(f"{folder} is not a medals run folder (no config.yaml or ensemble.json in it)")
    if (folder / "ensemble.json").is_file():
        title, sections = f"ensemble {folder.name}", _ensemble(folder)
    else:
        config = read_yaml(
            folder / "config.yaml", "rerun any stage of its recipe (`medals run RECIPE`) to write it again"
        )
        title, sections = f"run {config.get('name', folder.name)}", _run(RunLayout(folder), config)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}{CHECK}</body></html>"
    )
    path = folder / "report.html"
    if path.is_file() and path.read_text() == page:
        return path  # unchanged run, unchanged page: the file is left as it was
    return write_text(path, page)


def _run(layout: RunLayout, config: dict) -> list[str]:
    out = [_summary(config), _stages(layout)]
    if layout.metrics.is_file():
        out.append(_metrics(read_json(layout.metrics, layout.redo_hint(layout.metrics))))
    logs = {int(p.parent.name[4:]): read_csv_frame(p) for p in sorted(layout.root.glob("fold*/log.csv"))}
    if logs:
        metric = _main_metric(config)
        out.append("<h2>Training</h2>" + _figure(_plots().training_curves(logs, metric), "training curves"))
    if layout.oof.is_file() and layout.table.is_file() and layout.labels.is_file():
        out.append(_oof(layout, config))
    return out


def _plots():
    from medals.post import plots  # matplotlib only when a figure is drawn

    return plots


def _main_metric(config: dict) -> str:
    return MAIN_METRIC.get(config.get("task"), "auc")


def _summary(config: dict) -> str:
    model, train, infer = config.get("model", {}), config.get("train", {}), config.get("infer", {})
    rows = [
        {"key": "task", "value": config.get("task")},
        {"key": "model", "value": f"{model.get('arch')} / {model.get('backbone')}"},
        {"key": "head", "value": model.get("head") if model.get("arch") == "classifier" else "-"},
        {"key": "image size", "value": train.get("image_size")},
        {
            "key": "epochs, batch, lr",
            "value": f"{train.get('epochs')}, {train.get('batch_size')}, {train.get('lr')}",
        },
        {"key": "folds", "value": config.get("split", {}).get("n_folds")},
        {"key": "TTA views", "value": infer.get("tta")},
        {"key": "checkpoint used", "value": infer.get("checkpoint")},
    ]
    return "<h2>Recipe</h2>" + _table(rows, ["key", "value"])


def _stages(layout: RunLayout) -> str:
    done, missing = [], []
    for stage in STAGES:
        (done if still_finished(layout, stage) else missing).append(stage)
    text = f"<p>done: {', '.join(done) or 'none'}</p>"
    if missing:
        text += f"<p class='missing'>missing stages: {', '.join(missing)} (run `medals run` to make them)</p>"
    stale = stale_lines(layout.root)
    if stale:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in stale)
        text += (
            f"<p>set-aside folds (kept in stale/, brought back if their config returns; "
            f"`medals clean` deletes them):</p><ul>{items}</ul>"
        )
    return "<h2>Stages</h2>" + text


def _metrics(report: dict) -> str:
    rows = [{"rows": f"fold {fold}", **values} for fold, values in report.get("folds", {}).items()]
    rows.append({"rows": "pooled OOF", **report.get("pooled", {})})
    if "holdout" in report:
        rows.append({"rows": "hold-out", **report["holdout"]})
    columns = ["rows", *dict.fromkeys(k for row in rows for k in row if k != "rows")]
    return "<h2>Out-of-fold metrics</h2>" + _table(rows, columns)


def _oof(layout: RunLayout, config: dict) -> str:
    oof = read_parquet(layout.oof, layout.redo_hint(layout.oof))
    table = read_parquet(layout.table, layout.redo_hint(layout.table)).set_index("id")
    labels = read_json(layout.labels, layout.redo_hint(layout.labels))
    rows = table.loc[oof["id"].astype(str)]
    task = config.get("task")
    plots = _plots()
    out = ["<h2>Out-of-fold predictions</h2>"]
    if task in ("binary", "multiclass"):
        classes = labels["classes"]
        truth = rows["label"].to_numpy(np.int64)
        probs = oof[[c for c in oof.columns if c.startswith("p_") and c[2:].isdigit()]].to_numpy()
        positive = 1 if task == "binary" else _submitted_class(layout, config, classes)
        score = probs[:, -1] if task == "binary" else probs[:, positive]
        name = f"P({classes[positive]})"
        out.append(_figure(plots.roc_pr(truth == positive, score, name), "ROC and precision-recall"))
        out.append(_figure(plots.calibration((truth == positive).astype(float), score, name), "calibration"))
        predicted = (score > 0.5).astype(int) if task == "binary" else probs.argmax(axis=1)
        out.append(_figure(plots.confusion(truth, predicted, classes), "confusion matrix"))
    elif task == "multilabel":
        from medals.data.splits import multi_hot
        from medals.post.metrics import f1_per_class, search_thresholds

        k = labels["num_classes"]
        truth = multi_hot(rows["labels"], k)
        probs = oof[[f"p_{i}" for i in range(k)]].to_numpy()
        thresholds = search_thresholds(truth, probs)
        f1 = f1_per_class(truth, probs, thresholds)
        names = [str(c) for c in (labels["classes"] or range(k))]
        out.append(_figure(plots.per_class_bars({"F1": f1, "threshold": thresholds}, names), "per-class F1"))
    elif task == "segmentation" and layout.oof_masks.is_file():
        out.append(_segmentation(layout, config, oof, rows))
    return "".join(out)


def _submitted_class(layout: RunLayout, config: dict, classes: list[str]) -> int:
    """The class the curves show: submit.target_class, as evaluate reads it, else the last class."""
    from medals.config import recipe_from_dict
    from medals.stages.common import positive_index

    positive = positive_index(recipe_from_dict(config, str(layout.root / "config.yaml")), classes)
    return len(classes) - 1 if positive is None else positive


def _segmentation(layout: RunLayout, config: dict, oof: pd.DataFrame, rows: pd.DataFrame) -> str:
    import cv2

    from medals.config import recipe_from_dict
    from medals.data.io import read_image
    from medals.post.metrics import dice_per_image
    from medals.stages.truth import mask_truth

    plots = _plots()
    probs = read_npy(layout.oof_masks, layout.redo_hint(layout.oof_masks)).astype(np.float32)
    tree = {k: v for k, v in config.items() if k not in ("source", "run_dir")}
    truth = mask_truth(recipe_from_dict(tree, str(layout.config)), rows.reset_index())
    dice = dice_per_image(probs > 0.5, truth)
    out = [_figure(plots.histogram(dice, "Dice"), "Dice per image")]
    order = np.argsort(dice)
    cases = [*order[-3:][::-1], *order[:3]]  # best three, then worst three
    size = probs.shape[1:]
    images = []
    for i in cases:
        image = read_image(str(rows.iloc[i]["path"]))
        gray = image.mean(axis=2) if image.ndim == 3 else image
        gray = (gray - gray.min()) / max(float(np.ptp(gray)), 1e-9)
        images.append(cv2.resize(gray.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA))
    titles = [f"...{str(oof['id'].iloc[i])[-12:]}, Dice {dice[i]:.3f}" for i in cases]
    figure = plots.overlays(
        images, [truth[i].astype(np.float32) for i in cases], [probs[i] for i in cases], titles
    )
    out.append("<h3>Best and worst cases</h3>" + _figure(figure, "best and worst cases"))
    return "".join(out)


def _ensemble(folder: Path) -> list[str]:
    info = read_json(folder / "ensemble.json")
    members = info["members"]
    rows, tests = [], {}
    for name, run_dir in members.items():
        metrics_path = Path(run_dir) / "metrics.json"
        pooled = read_json(metrics_path).get("pooled", {}) if metrics_path.is_file() else {}
        rows.append({"member": name, **pooled})
        test_path = Path(run_dir) / "test.parquet"
        if test_path.is_file():
            frame = read_parquet(test_path).set_index("id").sort_index()
            tests[name] = frame[[c for c in frame.columns if c.startswith("p_")]].to_numpy().ravel()
    blend = _blend_cv(info)
    if blend:
        rows.append({"member": f"blend ({info['method']})", **blend})
    columns = ["member", *dict.fromkeys(k for row in rows for k in row if k != "member")]
    out = [
        f"<h2>Members</h2><p>{info['task']}, {info['method']} of {len(members)} runs"
        + (f", gated by {', '.join(info['gate'])}" if info.get("gate") else "")
        + "</p>",
        _table(rows, columns),
    ]
    if len(tests) > 1 and len({len(v) for v in tests.values()}) == 1:
        matrix = np.corrcoef(np.stack(list(tests.values())))
        out.append(_figure(_plots().correlation(matrix, list(tests)), "member correlation"))
    return out


def _blend_cv(info: dict) -> dict[str, float]:
    """The blend's pooled OOF metric where the members' OOF predictions line up (classification)."""
    from medals.post.blend import combine
    from medals.post.metrics import task_metrics

    if info["task"] == "segmentation":
        return {}
    dirs = [Path(d) for d in info["members"].values()]
    if not all((d / "oof.parquet").is_file() and (d / "table.parquet").is_file() for d in dirs):
        return {}
    oofs = [read_parquet(d / "oof.parquet").drop(columns="fold").sort_values("id") for d in dirs]
    widths = {tuple(c for c in o.columns if c.startswith("p_")) for o in oofs}
    if len(widths) != 1 or len({tuple(o["id"]) for o in oofs}) != 1:
        return {}
    blended = combine(oofs, method=info["method"], weights=info.get("weights"))
    rows = read_parquet(dirs[0] / "table.parquet").set_index("id").loc[blended["id"].astype(str)]
    probs = blended[list(next(iter(widths)))].to_numpy()
    labels = read_json(dirs[0] / "labels.json")
    if info["task"] == "multilabel":
        from medals.data.splits import multi_hot

        return task_metrics("multilabel", multi_hot(rows["labels"], labels["num_classes"]), probs)
    return task_metrics(info["task"], rows["label"].to_numpy(np.int64), probs)
