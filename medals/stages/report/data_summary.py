"""What the data looked like: rows per split and after the recipe's query, image sizes, class balance per
fold, duplicates and leaks that prepare found."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medals.files import read_json
from medals.stages.report.page import figure, paragraph, section, table
from medals.stages.report.run_view import RunView


def data_section(run: RunView, plots) -> str:
    frame = run.table
    if frame is None:
        return ""
    counts = frame["split"].value_counts()
    parts = [
        paragraph(f"{int(counts.get('train', 0))} training and {int(counts.get('test', 0))} test images")
    ]
    parts.append(_query_drop(run))
    parts.append(_sizes(frame))
    balance = _balance(run, plots)
    if balance:
        parts.append(balance)
    parts.append(_duplicates(run))
    return section("Data", *parts)


def _query_drop(run: RunView) -> str:
    path = run.layout.data_summary
    if not path.is_file():
        return ""
    summary = read_json(path)
    if not summary.get("query"):
        return paragraph("no data.query: every training row of the CSV is used")
    dropped = summary["csv_rows"] - summary["rows_after_query"]
    return paragraph(
        f"data.query '{summary['query']}' kept {summary['rows_after_query']} of {summary['csv_rows']} "
        f"training CSV rows ({dropped} dropped)"
    )


def _sizes(frame: pd.DataFrame) -> str:
    if "height" not in frame or "width" not in frame:
        return ""
    rows = []
    for split, part in frame.groupby("split"):
        sizes = part["height"].astype(str) + "x" + part["width"].astype(str)
        common = sizes.value_counts()
        rows.append(
            {
                "split": split,
                "images": len(part),
                "distinct sizes": len(common),
                "most common (HxW px)": f"{common.index[0]} ({int(common.iloc[0])} images)",
                "height range (px)": f"{int(part['height'].min())}..{int(part['height'].max())}",
                "width range (px)": f"{int(part['width'].min())}..{int(part['width'].max())}",
            }
        )
    columns = [
        "split",
        "images",
        "distinct sizes",
        "most common (HxW px)",
        "height range (px)",
        "width range (px)",
    ]
    return "<h3>Image sizes</h3>" + table(rows, columns)


def _fold_labels(run: RunView) -> tuple[pd.DataFrame, np.ndarray] | None:
    """Training rows with their fold, and their labels as a [rows, classes] 0/1 matrix."""
    from medals.data.splits import multi_hot

    if run.folds is None or run.table is None or not run.classes:
        return None
    rows = run.table[run.table["split"] == "train"].merge(run.folds[["id", "fold"]], on="id")
    k = len(run.classes)
    if run.task == "multilabel" and "labels" in rows:
        return rows, multi_hot(rows["labels"], k).astype(np.float64)
    if run.task in ("binary", "multiclass") and "label" in rows:
        return rows, np.eye(k)[rows["label"].to_numpy(np.int64)]
    return None


def _balance(run: RunView, plots) -> str:
    found = _fold_labels(run)
    if found is None:
        return ""
    rows, onehot = found
    folds = sorted(rows["fold"].unique())
    shares, counts = [], []
    for fold in folds:
        part = onehot[(rows["fold"] == fold).to_numpy()]
        counts.append(len(part))
        shares.append(part.mean(axis=0) if len(part) else np.zeros(onehot.shape[1]))
    names = [str(f) if f >= 0 else "hold-out" for f in folds]
    image = plots.fold_balance(
        np.array(shares), names, run.classes, counts, multilabel=run.task == "multilabel"
    )
    out = "<h3>Class balance per fold</h3>" + figure(image, "class balance per fold")
    if run.task == "multilabel":
        out += figure(
            plots.label_counts(onehot.sum(axis=1), onehot.sum(axis=0), run.classes),
            "labels per image and class",
        )
    return out


def _duplicates(run: RunView) -> str:
    parts = []
    if run.layout.duplicates.is_file():
        pairs = pd.read_parquet(run.layout.duplicates)
        parts.append(paragraph(f"prepare found {len(pairs)} near-duplicate image pairs (kept in one fold)"))
    if run.layout.leaks.is_file():
        leaks = pd.read_csv(run.layout.leaks)
        parts.append(paragraph(f"{len(leaks)} test images duplicate a labelled training image (leaks.csv)"))
    if not parts:
        return paragraph("no duplicate search (data.duplicates not set)")
    return "".join(parts)
