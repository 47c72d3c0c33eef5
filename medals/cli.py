"""Command line: one verb per stage, `run` for all of them, `ensemble` across recipes, `demo`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medals import __version__
from medals.errors import MedalsError

_STAGE_HELP = {
    "prepare": "read the competition CSVs and images into table.parquet (optional resized cache)",
    "split": "assign a fold to every training image (folds.parquet)",
    "train": "train one model per fold (resumes from the last complete epoch)",
    "evaluate": "out-of-fold predictions with TTA, metrics per fold and pooled",
    "predict": "test predictions with TTA, averaged over folds",
    "submit": "post-process and write the submission, validated against the sample submission",
}


def _add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", type=Path, help="recipe YAML file")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides, e.g. train.epochs=2"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medals",
        description="Take a medical-imaging competition folder to a validated submission.",
    )
    parser.add_argument("--version", action="version", version=f"medals {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    for stage, text in _STAGE_HELP.items():
        sub = verbs.add_parser(stage, help=text, description=text)
        _add_recipe_args(sub)
        sub.add_argument("--force", action="store_true", help=f"redo {stage} even if it is done")
        if stage == "train":
            sub.add_argument("--fold", type=int, action="append", help="train only this fold (repeatable)")

    run = verbs.add_parser(
        "run",
        help="prepare, split, train, evaluate, predict and submit, skipping stages already done",
        description="Run every stage of a recipe; stages done for the same resolved config are skipped.",
    )
    _add_recipe_args(run)
    run.add_argument("--force", action="append", default=[], metavar="STAGE", help="redo this stage")

    ens = verbs.add_parser(
        "ensemble",
        help="combine several recipes' test predictions into one submission",
        description="Combine the test predictions of several trained recipes (mean or percentile rank).",
    )
    ens.add_argument("recipes", type=Path, nargs="+", help="recipe YAML files (already predicted)")
    ens.add_argument("--method", choices=["mean", "rank"], default="mean")
    ens.add_argument("--weights", help="comma-separated weights, one per recipe (default: equal)")
    ens.add_argument("--out", type=Path, default=Path("runs/ensemble"), help="output folder")

    demo = verbs.add_parser(
        "demo",
        help="generate small competitions and run the whole pipeline on each (CPU)",
        description="Write generated competitions (melanoma-like, 4-channel cells, chest masks) "
        "and run every stage on each, printing OOF metrics and submission paths.",
    )
    demo.add_argument("--task", choices=["melanoma", "cells", "chest"], action="append", help="run only this")
    demo.add_argument("--out", type=Path, default=Path("medals-demo"), help="output folder")
    demo.add_argument("--device", default="auto")
    return parser


def _main(argv: list[str] | None) -> int:
    from medals.config import load_recipe
    from medals.pipeline import STAGES, run_stages
    from medals.stages.common import resolve_device

    args = build_parser().parse_args(argv)
    if args.verb == "demo":
        from medals.demo.runner import run_demo

        run_demo(args.task or ["melanoma", "cells", "chest"], args.out, resolve_device(args.device))
        return 0
    if args.verb == "ensemble":
        from medals.stages.ensemble import run_ensemble

        recipes = [load_recipe(path) for path in args.recipes]
        weights = _parse_weights(args.weights)
        run_ensemble(recipes, args.method, weights, args.out)
        return 0
    overrides = list(args.overrides)
    if args.verb == "train" and args.fold:
        overrides.append(f"train.folds=[{','.join(str(k) for k in args.fold)}]")
    recipe = load_recipe(args.recipe, overrides)
    device = resolve_device(args.device)
    if args.verb == "run":
        run_stages(recipe, STAGES, device, force=args.force)
    else:
        run_stages(recipe, [args.verb], device, force=[args.verb] if args.force else [])
    return 0


def _parse_weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise MedalsError(f"--weights '{text}' is not a comma-separated list of numbers") from None


def _one_sentence(exc: MedalsError) -> str:
    """The error's own sentence, also when a DataLoader worker wrapped it in its traceback."""
    text = str(exc)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        return last.split("MedalsError: ", 1)[-1]
    return text


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except MedalsError as exc:
        print(f"medals: error: {_one_sentence(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medals: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
