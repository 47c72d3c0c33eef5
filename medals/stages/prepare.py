"""prepare: competition CSVs and images -> table.parquet (+ labels.json, optional resized cache)."""

from __future__ import annotations

from medals.config import Recipe
from medals.files import write_json, write_parquet
from medals.stages.common import say
from medals.stages.layout import RunLayout


def run_prepare(recipe: Recipe, layout: RunLayout) -> None:
    from medals.data.table import build_table, resolved_classes

    table = build_table(recipe)
    classes = resolved_classes(recipe, table)
    # One output for binary (the sigmoid of the second class), for a regression value and for an ordinal
    # grade (regressed on the class index); segmentation: one per mask class.
    if recipe.task == "segmentation":
        num_classes = len(classes)
    elif recipe.task in ("binary", "regression", "ordinal"):
        num_classes = 1
    else:
        num_classes = recipe.data.num_classes or len(classes or [])
    if recipe.task == "segmentation" and len(classes) > 1 and not recipe.data.classes:
        say(f"prepare: data.classes not set: {len(classes)} mask classes read from {recipe.data.train_csv}")
    if recipe.task in ("multiclass", "binary", "ordinal") and not recipe.data.classes:
        shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
        say(
            f"prepare: data.classes not set: {len(classes)} classes read from column "
            f"'{recipe.data.label_column}' of {recipe.data.train_csv} ({shown}); set data.classes to fix the order"
        )
    # Channel counts from the source headers: an image that cannot feed model.in_chans is named here.
    from medals.data.channels import channel_notes, check_channels

    for note in channel_notes(
        check_channels(table["path"].tolist(), recipe.model.in_chans), recipe.model.in_chans
    ):
        say(f"prepare: {note}")
    if recipe.data.cache_size:
        from medals.data.cache import build_cache

        size, fmt = recipe.data.cache_size, recipe.data.cache_format
        say(f"prepare: caching {len(table)} images at {size} px as {fmt}")
        table = build_cache(table, size, layout.cache_dir, fmt=fmt)
    if recipe.data.duplicates is not None:
        from medals.stages.duplicates import find_duplicates

        table = find_duplicates(recipe, table, layout)
    if recipe.train.normalize == "dataset":
        from medals.data.stats import channel_stats

        train_paths = table.loc[table["split"] == "train", "path"].tolist()
        # A sample is enough for stable statistics and keeps prepare fast on 100k-image sets.
        mean, std = channel_stats(train_paths, sample=min(len(train_paths), 2000), seed=recipe.seed)
        write_json(layout.channel_stats, {"mean": mean, "std": std})
        say(
            "prepare: channel mean "
            + " ".join(f"{m:.4f}" for m in mean)
            + ", std "
            + " ".join(f"{v:.4f}" for v in std)
        )
    write_json(layout.labels, {"classes": classes, "num_classes": num_classes})
    write_json(layout.data_summary, _data_summary(recipe, table))
    write_parquet(layout.table, table)
    counts = table["split"].value_counts().to_dict()
    say(f"prepare: {counts.get('train', 0)} train and {counts.get('test', 0)} test images -> {layout.table}")


def _data_summary(recipe: Recipe, table) -> dict:
    """The training CSV's rows and the ones data.query kept (the report's "rows dropped"), and the
    training rows of the prepared table (external data included)."""
    summary = {"query": recipe.data.query, "train_images": int((table["split"] == "train").sum())}
    if recipe.data.query:
        from medals.data.csv import read_csv

        frame = read_csv(recipe.data_root / recipe.data.train_csv)
        summary["csv_rows"] = len(frame)
        summary["rows_after_query"] = len(frame.query(recipe.data.query))  # build_table checked it applies
    return summary
