"""report: a run folder -> report.html, one self-contained page (figures embedded, no network).

What the page shows follows what the folder holds, task by task: the recipe and which stages are done;
the data (sizes, class balance per fold, rows the query dropped, duplicates and leaks); per-fold and
pooled OOF metrics with a warning where the folds disagree, and the TTA gain; training curves; the OOF
predictions (classification: ROC/PR, calibration, confusion, the most confidently wrong images;
multilabel: per-class curves, label counts, F1 against threshold; segmentation: Dice per image, empty-mask
rates, thresholded overlays); test predictions against OOF and the submission checked against the
sample; time per stage and epoch. An ensemble folder (ensemble.json) gets its members, the blend's gain
and their correlation. Missing stages are listed, not guessed at.
"""

from __future__ import annotations

from pathlib import Path

from medals.errors import MedalsError
from medals.files import write_text
from medals.stages.report.page import page
from medals.stages.report.run_view import RunView

__all__ = ["is_run_folder", "write_report"]


def is_run_folder(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() or (folder / "ensemble.json").is_file()


def _plots():
    from medals.post import plots  # matplotlib only when a figure is drawn

    return plots


def write_report(folder: str | Path) -> Path:
    folder = Path(folder)
    if not is_run_folder(folder):
        raise MedalsError(f"{folder} is not a medals run folder (no config.yaml or ensemble.json in it)")
    if (folder / "ensemble.json").is_file():
        from medals.stages.report.ensemble import ensemble_sections

        title, sections = f"ensemble {folder.name}", ensemble_sections(folder, _plots())
    else:
        run = RunView.of(folder)
        title, sections = f"run {run.config.get('name', folder.name)}", run_sections(run)
    text = page(title, sections)
    path = folder / "report.html"
    if path.is_file() and path.read_text() == text:
        return path  # unchanged run, unchanged page: the file is left as it was
    return write_text(path, text)


def run_sections(run: RunView) -> list[str]:
    from medals.stages.report.classification import multilabel_section, single_label_section
    from medals.stages.report.data_summary import data_section
    from medals.stages.report.metrics import metrics_section
    from medals.stages.report.numeric import numeric_section
    from medals.stages.report.overview import recipe_summary, stages
    from medals.stages.report.segmentation import segmentation_section
    from medals.stages.report.test_side import test_section
    from medals.stages.report.training import timing_section, training_section

    plots = _plots()
    out = [recipe_summary(run), stages(run), data_section(run, plots), metrics_section(run)]
    out.append(training_section(run, plots))
    if run.oof_rows is not None and run.labels:
        predictions = {
            "binary": single_label_section,
            "multiclass": single_label_section,
            "multilabel": multilabel_section,
            "segmentation": segmentation_section,
            "regression": numeric_section,
            "ordinal": numeric_section,
        }.get(run.task)
        if predictions is not None:
            out.append(predictions(run, plots))
    out += [test_section(run, plots), timing_section(run, plots)]
    return [part for part in out if part]
