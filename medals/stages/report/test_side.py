"""The test side: test predictions against OOF (a shift shows here first), and the submission itself:
its first rows, and its row count and ids checked against the sample submission."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medals.stages.report.page import figure, paragraph, section, table, warning
from medals.stages.report.run_view import RunView

PREVIEW_ROWS = 5


def test_section(run: RunView, plots) -> str:
    parts = [_shift(run, plots), _submission(run)]
    parts = [p for p in parts if p]
    return section("Test predictions and submission", *parts) if parts else ""


def _scores(run: RunView, frame: pd.DataFrame) -> tuple[np.ndarray, str] | None:
    """The one score per row a shift shows best in: the submitted class's probability (classification),
    the mean probability over classes (multilabel), the image's largest pixel probability (segmentation)."""
    if run.task == "segmentation":
        return (
            (frame["p_max"].to_numpy(np.float64), "largest pixel probability") if "p_max" in frame else None
        )
    columns = run.prob_columns(frame)
    if not columns:
        return None
    probs = frame[columns].to_numpy(np.float64)
    if run.task == "binary":
        return probs[:, -1], f"P({run.classes[-1]})"
    if run.task == "multiclass":
        from medals.stages.report.classification import submitted_class

        k = submitted_class(run)
        return probs[:, k], f"P({run.classes[k]})"
    if run.task == "multilabel":
        return probs.mean(axis=1), "mean class probability"
    return probs[:, 0], columns[0]


def _shift(run: RunView, plots) -> str:
    if run.oof is None or run.test is None:
        return ""
    oof, test = _scores(run, run.oof), None
    if run.task == "segmentation" and run.layout.test_masks.is_file():
        masks = np.load(run.layout.test_masks, mmap_mode="r")
        test = (masks.reshape(len(masks), -1).max(axis=1).astype(np.float64), "largest pixel probability")
    else:
        test = _scores(run, run.test)
    if oof is None or test is None:
        return ""
    name = oof[1]
    gap = float(np.mean(test[0]) - np.mean(oof[0]))
    return figure(plots.prediction_shift(oof[0], test[0], name), "test against OOF") + paragraph(
        f"mean {name}: OOF {np.mean(oof[0]):.4f}, test {np.mean(test[0]):.4f} (difference {gap:+.4f})"
    )


def _sample_path(run: RunView):
    name = run.config.get("data", {}).get("sample_submission")
    if not name:
        return None
    try:
        path = run.recipe.data_root / name
    except Exception:  # noqa: BLE001 - a config that no longer loads still gets its report
        return None
    return path if path.is_file() else None


def _submission(run: RunView) -> str:
    name = run.config.get("submit", {}).get("file", "submission.csv")
    path = run.layout.in_run(name)
    if not path.is_file():
        return paragraph(f"no {name} yet (the submit stage writes it)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    columns = list(frame.columns)
    text_columns = tuple(columns)
    parts = [
        f"<h3>{name}: first {min(PREVIEW_ROWS, len(frame))} of {len(frame)} rows</h3>",
        table(frame.head(PREVIEW_ROWS).to_dict("records"), columns, text_columns=text_columns),
    ]
    sample_path = _sample_path(run)
    if sample_path is None:
        parts.append(paragraph("sample submission not found: row count not checked"))
        return "".join(parts)
    sample = pd.read_csv(sample_path, dtype=str, keep_default_na=False)
    same_ids = columns[:1] == list(sample.columns[:1]) and set(frame.iloc[:, 0]) == set(sample.iloc[:, 0])
    if len(frame) == len(sample) and list(sample.columns) == columns and same_ids:
        parts.append(paragraph(f"{len(frame)} rows, the columns and ids of the sample ({sample_path.name})"))
    else:
        parts.append(
            warning(
                f"the submission has {len(frame)} rows and columns {columns}; the sample {sample_path} has "
                f"{len(sample)} rows and columns {list(sample.columns)}"
                + ("" if same_ids else "; their ids differ")
            )
        )
    return "".join(parts)
